"""Authorization cases of the statement routes (walked by tests/noaber/test_api_authz.py).

The seed settles a small community of the world's two EV owners (``m-ev``, whose user is
``evowner``, and ``m-ev-other``) so that each has a real statement read from the ledger.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from settlement.community import MeterData, parse_community
from settlement.models import Statement
from settlement.pricing import load_tariff
from settlement.settle import period_isps, plan_energy, post_run
from tests.noaber.api_world import Case, World

ROLES = {"operator", "member"}


def seed(session: Session, world: World) -> None:
    community = parse_community(
        {
            "name": "authz",
            "key": {"type": "proportional"},
            "members": [
                {"name": "hall", "ref": "m-hall-a", "kind": "organisation", "meters": ["H"]},
                {"name": "ev", "ref": "m-ev", "meters": ["E1"], "assets": ["ev"]},
                {"name": "ev other", "ref": "m-ev-other", "meters": ["E2"], "assets": ["ev"]},
            ],
        }
    )
    isps = period_isps("2026-06")
    t = len(isps)
    off = np.zeros((t, 3), dtype=np.int64)
    inj = np.zeros((t, 3), dtype=np.int64)
    inj[:, 0] = 400
    off[:, 1] = 150
    off[:, 2] = 100
    plan = plan_energy(
        community, "2026-06", MeterData(isps, community.refs, off, inj), load_tariff()
    )
    # post on the seeding session's connection so that the world and the run share one transaction
    bind = session.connection()
    post_run(lambda: Session(bind=bind, join_transaction_mode="create_savepoint"), plan)  # type: ignore[arg-type]
    ids = {s.member_ref: s.id for s in session.scalars(select(Statement))}
    world.extra["statement-own"] = ids["m-ev"]
    world.extra["statement-other"] = ids["m-ev-other"]


def _own(w: World) -> dict[str, int]:
    return {"statement_id": w.extra["statement-own"]}


def _other(w: World) -> dict[str, int]:
    return {"statement_id": w.extra["statement-other"]}


def _detail() -> Case:
    return Case(roles=ROLES, own={"operator": _own, "member": _own}, foreign=[_other])


CASES = {
    ("GET", "/statements"): Case(roles=ROLES, own={r: {} for r in ROLES}),
    ("GET", "/statements/{statement_id}"): _detail(),
    ("GET", "/statements/{statement_id}/csv"): _detail(),
    ("GET", "/statements/{statement_id}/pdf"): _detail(),
    ("GET", "/statements/{statement_id}/root"): _detail(),
    ("GET", "/statements/{statement_id}/json"): _detail(),
}
