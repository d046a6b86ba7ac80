"""Authorization cases of the device alarm routes (walked by tests/noaber/test_api_authz.py).

The seed records one alarm at each site of the world, so an own site answers with data and a
foreign one with 404.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from energy.alarms import record_alarm
from tests.noaber.api_world import Case, World

SITE_ROLES = {"operator", "site_manager", "firm"}
OWN_SITE = {
    "operator": {"site_name": "hall-a"},
    "site_manager": {"site_name": "hall-a"},
    "firm": {"site_name": "factory-own"},
}
FOREIGN_SITES = [{"site_name": "hall-b"}, {"site_name": "factory-other"}]


def seed(session: Session, world: World) -> None:
    at = dt.datetime(2026, 6, 2, 8, 0, tzinfo=dt.UTC)
    for site in ("hall-a", "hall-b", "factory-own", "factory-other"):
        record_alarm(session, site, at, "battery", "battery-gx", "control_lost", "test alarm")


CASES = {
    ("GET", "/alarms/sites/{site_name}"): Case(
        roles=SITE_ROLES, own=OWN_SITE, foreign=FOREIGN_SITES
    ),
}
