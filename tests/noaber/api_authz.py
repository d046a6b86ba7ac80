"""Authorization cases of the job and operations routes (walked by tests/noaber/test_api_authz.py).

The seed records a re-plan job of each hall and a settlement job (no site: operators only),
and the community the settlement route enqueues for. The walk's app has no queue URL: a
POST records the job (202) without sending it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from energy import jobs as jobstore
from energy.models import Community
from tests.noaber.api_world import Case, World

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
