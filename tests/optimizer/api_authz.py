"""Authorization cases of the schedule routes (walked by tests/noaber/test_api_authz.py).

The seed stores a small real plan for each site of the world; the hall schedules carry the
world's EVs (``ev-own`` of ``m-ev`` at hall-a, ``ev-other`` of ``m-ev-other`` at hall-b).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from optimizer.model import plan
from optimizer.report import compare
from optimizer.scenario import SiteSpec
from optimizer.store import save_plan
from tests.noaber.api_world import Case, World
from tests.optimizer.helpers import ev, make_scenario

SITE_ROLES = {"operator", "site_manager", "firm"}
OWN_SITE = {
    "operator": {"site_name": "hall-a"},
    "site_manager": {"site_name": "hall-a"},
    "firm": {"site_name": "factory-own"},
}
FOREIGN_SITES = [{"site_name": "hall-b"}, {"site_name": "factory-other"}]


def _scenario(site: str, car: str | None, owner: str | None):
    evs = ()
    if car is not None:
        evs = (
            ev(
                car,
                "2026-06-02T08:00:00+02:00",
                "2026-06-02T12:00:00+02:00",
                30,
                60,
                owner=owner,
                capacity_kwh=40.0,
                max_charge_kw=11.0,
            ),
        )
    sc = make_scenario(
        [0.3, 0.2, 0.1, 0.25],
        load_kw=3.0,
        pv_kw=[0, 2, 6, 4],
        export_price=0.05,
        start="2026-06-02T08:00:00+02:00",
        evs=evs,
    )
    return sc.replace(site=SiteSpec(name=site, grid_import_limit_kw=40, grid_export_limit_kw=25))


def seed(session: Session, world: World) -> None:
    for site, car, owner in (
        ("hall-a", "ev-own", "m-ev"),
        ("hall-b", "ev-other", "m-ev-other"),
        ("factory-own", None, None),
        ("factory-other", None, None),
    ):
        sc = _scenario(site, car, owner)
        result = plan(sc)
        world.extra[f"schedule-{site}"] = save_plan(session, sc, result, compare(sc, result))


def _sched(site: str):
    return lambda w: {"schedule_id": w.extra[f"schedule-{site}"]}


CASES = {
    ("GET", "/schedules/sites/{site_name}"): Case(
        roles=SITE_ROLES, own=OWN_SITE, foreign=FOREIGN_SITES
    ),
    ("GET", "/schedules/sites/{site_name}/list"): Case(
        roles=SITE_ROLES, own=OWN_SITE, foreign=FOREIGN_SITES
    ),
    ("GET", "/schedules/{schedule_id}/csv"): Case(
        roles=SITE_ROLES,
        own={
            "operator": _sched("hall-b"),
            "site_manager": _sched("hall-a"),
            "firm": _sched("factory-own"),
        },
        foreign=[_sched("hall-b"), _sched("factory-other")],
    ),
    ("GET", "/schedules/my-car"): Case(roles={"member"}, own={"member": {}}),
}
