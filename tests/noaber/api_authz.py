"""Authorization cases of the job and operations routes (walked by tests/noaber/test_api_authz.py).

The seed records a re-plan job of each hall and a settlement job (no site: operators only),
and the community the settlement route enqueues for. The walk's app has no queue URL: a
POST records the job (202) without sending it.
"""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy.orm import Session

from energy import jobs as jobstore
from energy.gateways import QuarantinedSample
from energy.models import Community, Role, User
from settlement.models import SettlementRun
from tests.noaber.api_world import Case, World, password_hash

COMMUNITY = "energie-walk"


def seed(session: Session, world: World) -> None:
    session.add(Community(name=COMMUNITY, display_name="Walk community"))
    for site in ("hall-a", "hall-b"):
        sub = jobstore.submit(
            session,
            "replan",
            f"replan:{site}:2026-06-02T06:00:00Z",
            {"site": site, "start": "2026-06-02T06:00:00Z"},
            "cli:seed",
            site_id=world.sites[site],
        )
        session.flush()
        world.extra[f"job-{site}"] = sub.job.id
    sub = jobstore.submit(
        session,
        "settle",
        "settle:energie-walk:2026-05",
        {"community": COMMUNITY, "period": "2026-05"},
        "cli:seed",
        community=COMMUNITY,
    )
    session.flush()
    world.extra["job-settle"] = sub.job.id
    # two provisional runs without transfers (the runs page posts one and voids the other)
    for what in ("post", "void"):
        run = SettlementRun(
            community=COMMUNITY, period="2026-04" if what == "post" else "2026-03",
            data_version=f"walk-{what}", provisional=True, status="pending",
            tariff_digest="walk", kind="settle",
        )  # fmt: skip
        session.add(run)
        session.flush()
        world.extra[f"run-{what}"] = run.id
    # users whose role (the API route, the page form) and password the walk changes
    for name in ("walk-role-api", "walk-role-page", "walk-password"):
        session.add(User(username=name, password_hash=password_hash(), role=Role.OPERATOR))
    session.flush()
    # two quarantined samples of a hall's channel: one to accept, one to reject
    channel_id = next(iter(world.channels.values()))
    for i, what in enumerate(("accept", "reject")):
        q = QuarantinedSample(
            received_at=dt.datetime(2026, 6, 2, 8, 0, tzinfo=dt.UTC), gateway="gw-walk",
            batch_id=f"walk:{i}", channel_id=channel_id, ts_ns=1_780_387_200_000_000_000 + i,
            stored_value=100.0, stored_quality=0, value=200.0, quality=0, status="open",
        )  # fmt: skip
        session.add(q)
        session.flush()
        world.extra[f"quarantine-{what}"] = q.id


def _job(name: str):
    return lambda w: {"job_id": w.extra[f"job-{name}"]}


def _period(_w: World, _role: str | None) -> dict:
    return {"period": "2026-05"}


CASES = {
    ("POST", "/api/sites/{site_name}/replan"): Case(
        roles={"operator", "site_manager"},
        own={"operator": {"site_name": "hall-b"}, "site_manager": {"site_name": "hall-a"}},
        foreign=[{"site_name": "hall-b"}, {"site_name": "factory-other"}],
        ok=202,
    ),
    ("POST", "/api/communities/{community}/settlement-runs"): Case(
        roles={"operator"}, own={"operator": {"community": COMMUNITY}}, body=_period, ok=202
    ),
    ("GET", "/api/jobs/{job_id}"): Case(
        roles={"operator", "site_manager"},
        own={"operator": _job("hall-b"), "site_manager": _job("hall-a")},
        foreign=[_job("hall-b"), _job("settle")],
    ),
    ("GET", "/ready"): Case(public=True),
    ("GET", "/metrics"): Case(roles={"operator"}, own={"operator": {}}),
}


_counter = itertools.count()
OPERATOR = {"operator"}
MANAGERS = {"operator", "site_manager"}


def _new_member(_w: World, _role: str | None) -> dict:
    return {
        "kind": "organisation",
        "name": f"Walk club {next(_counter)}",
        "iban": "NL91ABNA0417164300",
    }


def _member_edit(_w: World, _role: str | None) -> dict:
    return {"name": f"Hall B foundation {next(_counter)}", "email": "hall-b@example.nl"}


def _new_user_form(_w: World, _role: str | None) -> dict:
    return {"username": f"walk-page-{next(_counter)}", "password": "a-long-enough-password",
            "role": "site_manager", "site_names": ["hall-b"]}  # fmt: skip


def _role_api(_w: World, _role: str | None) -> dict:
    return {"role": "site_manager", "site_names": ["hall-b"]}


def _role_form(_w: World, _role: str | None) -> dict:
    return {"role": "member", "member_ref": "m-ev-other"}


def _password_form(_w: World, _role: str | None) -> dict:
    return {"new_password": f"walk-reset-{next(_counter)}-password"}


def _run(what: str):
    return lambda w: {"run_id": w.extra[f"run-{what}"]}


# the operator's write pages and the job status page (noaber/api/routers/operator.py), and
# the member and role routes of the API (issue 16)
CASES.update(
    {
        ("GET", "/members"): Case(roles=OPERATOR, own={"operator": {}}),
        ("POST", "/members"): Case(roles=OPERATOR, own={"operator": {}}, body=_new_member, ok=201),
        ("GET", "/members/{ref}"): Case(
            roles={"operator", "member", "firm"},
            own={
                "operator": {"ref": "m-hall-b"},
                "member": {"ref": "m-ev"},
                "firm": {"ref": "m-firm"},
            },
            foreign=[{"ref": "m-ev-other"}, {"ref": "m-firm-other"}],
        ),
        ("PATCH", "/members/{ref}"): Case(
            roles=OPERATOR, own={"operator": {"ref": "m-hall-b"}}, body=_member_edit
        ),
        ("PUT", "/users/{username}/role"): Case(
            roles=OPERATOR, own={"operator": {"username": "walk-role-api"}}, body=_role_api
        ),
        ("GET", "/operator/members"): Case(roles=OPERATOR, own={"operator": {}}),
        ("POST", "/operator/members"): Case(
            roles=OPERATOR, own={"operator": {}}, body=_new_member, form=True, ok=303
        ),
        ("GET", "/operator/members/{ref}"): Case(
            roles=OPERATOR, own={"operator": {"ref": "m-hall-b"}}
        ),
        ("POST", "/operator/members/{ref}"): Case(
            roles=OPERATOR,
            own={"operator": {"ref": "m-hall-b"}},
            body=_member_edit,
            form=True,
            ok=303,
        ),
        ("GET", "/operator/users"): Case(roles=OPERATOR, own={"operator": {}}),
        ("POST", "/operator/users"): Case(
            roles=OPERATOR, own={"operator": {}}, body=_new_user_form, form=True, ok=303
        ),
        ("GET", "/operator/users/{username}"): Case(
            roles=OPERATOR, own={"operator": {"username": "mgr"}}
        ),
        ("POST", "/operator/users/{username}/role"): Case(
            roles=OPERATOR,
            own={"operator": {"username": "walk-role-page"}},
            body=_role_form,
            form=True,
            ok=303,
        ),
        ("POST", "/operator/users/{username}/password"): Case(
            roles=OPERATOR,
            own={"operator": {"username": "walk-password"}},
            body=_password_form,
            form=True,
            ok=303,
        ),
        ("GET", "/operator/runs"): Case(roles=OPERATOR, own={"operator": {}}),
        ("GET", "/operator/runs/{run_id}"): Case(roles=OPERATOR, own={"operator": _run("post")}),
        ("POST", "/operator/runs"): Case(
            roles=OPERATOR,
            own={"operator": {}},
            body=lambda _w, _r: {"community": COMMUNITY, "period": "2026-05"},
            form=True,
            ok=303,
        ),
        ("POST", "/operator/runs/{run_id}/post"): Case(
            roles=OPERATOR, own={"operator": _run("post")}, ok=303
        ),
        ("POST", "/operator/runs/{run_id}/void"): Case(
            roles=OPERATOR, own={"operator": _run("void")}, ok=303
        ),
        ("GET", "/jobs/{job_id}"): Case(
            roles=MANAGERS,
            own={"operator": _job("hall-b"), "site_manager": _job("hall-a")},
            foreign=[_job("hall-b"), _job("settle")],
        ),
        ("POST", "/sites/{site_name}/replan"): Case(
            roles=MANAGERS,
            own={"operator": {"site_name": "hall-b"}, "site_manager": {"site_name": "hall-a"}},
            foreign=[{"site_name": "hall-b"}, {"site_name": "factory-other"}],
            form=True,
            body=lambda _w, _r: {},
            ok=303,
        ),
    }
)
