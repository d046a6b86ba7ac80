"""Authorization cases of the campaign routes (walked by tests/noaber/test_api_authz.py).

The seed adds one campaign for the world's firm (``m-firm``, site ``factory-own``) and one for
another firm (``m-firm-other``, site ``factory-other``), each with a finding and a real (hourly)
savings verification, mapped onto the world's ``line-1`` channels.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from meetkoffer import campaign as cp
from meetkoffer import mv
from meetkoffer.models import Campaign, Equipment, FindingRecord
from tests.noaber.api_world import Case, World

READERS = {"operator", "firm"}
T0 = dt.datetime(2026, 6, 1, 22, 0, tzinfo=dt.UTC)


def _campaign(session: Session, world: World, name: str, member: str, site: str) -> int:
    c = Campaign(
        name=name,
        display_name=f"Campaign {name}",
        site_id=world.sites[site],
        firm_member_id=world.members[member],
        start_at=T0,
        end_at=T0 + dt.timedelta(days=1),
        price_eur_per_kwh=0.2,
        operating_hours={},
        params={},
    )
    session.add(c)
    session.flush()
    session.add(
        Equipment(
            campaign_id=c.id,
            channel_id=world.channels[f"{site}/line-1/power"],
            name="line 1",
            role="incomer",
        )
    )
    session.add(
        FindingRecord(
            campaign_id=c.id, rank=1, kind="standby", title=f"Base load at {name}", equipment=None,
            energy_kwh_per_year=1000.0, cost_eur_per_year=200.0, co2_t_per_year=0.37,
            chart="carpet", evidence={"base_load_kw": 1.0},
        )
    )  # fmt: skip
    session.add(  # a key figure: shown, never summed with the savings
        FindingRecord(
            campaign_id=c.id, rank=2, kind="unmetered", title="40% not sub-metered",
            equipment=None, energy_kwh_per_year=5000.0, cost_eur_per_year=900.0,
            co2_t_per_year=1.87, chart="breakdown", counted=False,
            evidence={"unmetered_kwh_in_campaign": 400.0, "unmetered_share": 0.4},
        )
    )  # fmt: skip
    session.flush()
    session.refresh(c)
    # A real (hourly, intercept-only) verification on the world's day of readings, so that
    # its report can be recomputed: baseline the first 12 hours, reporting the last 12.
    _, rec = cp.verify(
        session,
        c,
        (pd.Timestamp(T0), pd.Timestamp(T0 + dt.timedelta(hours=12))),
        (pd.Timestamp(T0 + dt.timedelta(hours=12)), pd.Timestamp(T0 + dt.timedelta(days=1))),
        option="C",
        interval="hourly",
        spec=mv.RegressionSpec(production=False, time_of_week=False),
    )
    world.extra[f"savings-{name}"] = rec.id
    world.extra[f"verification-{name}"] = rec.verification_id
    session.flush()
    return c.id


def seed(session: Session, world: World) -> None:
    world.extra["campaign-own"] = _campaign(session, world, "own", "m-firm", "factory-own")
    world.extra["campaign-other"] = _campaign(
        session, world, "other", "m-firm-other", "factory-other"
    )


def _own_campaign(
    extra: dict[str, Any] | None = None,
    body: Callable[[World, str | None], dict[str, Any]] | None = None,
) -> Case:
    """A route under one campaign: the firm's own, the other firm's is 404 for it."""
    extra = extra or {}

    def params(which: str) -> Callable[[World], dict[str, Any]]:
        def f(w: World) -> dict[str, Any]:
            out: dict[str, Any] = {"campaign_id": w.extra[f"campaign-{which}"]}
            for k, v in extra.items():
                out[k] = v(w, which) if callable(v) else v
            return out

        return f

    return Case(
        roles=READERS,
        own={"operator": params("other"), "firm": params("own")},
        foreign=[params("other")],
        body=body,
    )


def _savings_id(w: World, which: str) -> int:
    return int(w.extra[f"savings-{which}"])


def _verification_id(w: World, which: str) -> int:
    return int(w.extra[f"verification-{which}"])


def _withdraw_body(_w: World, _role: str | None) -> dict[str, Any]:
    # The same reason on every call: the operator's second call (the other firm's campaign
    # as "foreign") repeats its withdrawal, which answers 200 and changes nothing.
    return {"reason": "meter swapped during the reporting period"}


#: A savings id of the same campaign (another campaign's savings id under one's own campaign
#: is 404 as well: tests/meetkoffer/test_api_campaigns.py).
SAVINGS = {"savings_id": _savings_id}
CASES = {
    ("GET", "/campaigns"): Case(roles=READERS, own={r: {} for r in READERS}),
    ("GET", "/campaigns/dashboard"): Case(roles=READERS, own={r: {} for r in READERS}),
    ("GET", "/campaigns/{campaign_id}"): _own_campaign(),
    ("GET", "/campaigns/{campaign_id}/report"): _own_campaign(),
    ("GET", "/campaigns/{campaign_id}/report/pdf"): _own_campaign(),
    ("GET", "/campaigns/{campaign_id}/report/csv/{table}"): _own_campaign({"table": "summary"}),
    ("GET", "/campaigns/{campaign_id}/savings/{savings_id}"): _own_campaign(SAVINGS),
    ("GET", "/campaigns/{campaign_id}/savings/{savings_id}/pdf"): _own_campaign(SAVINGS),
    ("GET", "/campaigns/{campaign_id}/savings/{savings_id}/versions"): _own_campaign(SAVINGS),
    ("GET", "/campaigns/{campaign_id}/savings/{savings_id}/csv/{table}"): _own_campaign(
        {**SAVINGS, "table": "savings_summary"}
    ),
    ("POST", "/campaigns/{campaign_id}/verifications/{verification_id}/withdraw"): _own_campaign(
        {"verification_id": _verification_id}, body=_withdraw_body
    ),
}
