"""Authorization cases of the campaign routes (walked by tests/energy/test_api_authz.py).

The seed adds one campaign for the world's firm (``m-firm``, site ``factory-own``) and one for
another firm (``m-firm-other``, site ``factory-other``), each with a finding and a savings
verification, mapped onto the world's ``line-1`` channels.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from meetkoffer.models import Campaign, Equipment, FindingRecord, SavingsRecord
from tests.energy.api_world import Case, World

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
    session.add(
        SavingsRecord(
            campaign_id=c.id, option="C", model="regression:intercept", baseline_start=T0,
            baseline_end=T0 + dt.timedelta(hours=12), reporting_start=T0 + dt.timedelta(hours=12),
            reporting_end=T0 + dt.timedelta(days=1), adjusted_baseline_kwh=100.0,
            reporting_kwh=90.0, nonroutine_kwh=0.0, avoided_kwh=10.0, avoided_eur=2.0,
            avoided_co2_t=0.004, fsu_68=0.2, fsu_90=0.35, cv_rmse=0.05, nmbe=0.0, r2=0.9,
            ashrae14_pass=True, summary={},
        )
    )  # fmt: skip
    session.flush()
    return c.id


def seed(session: Session, world: World) -> None:
    world.extra["campaign-own"] = _campaign(session, world, "own", "m-firm", "factory-own")
    world.extra["campaign-other"] = _campaign(
        session, world, "other", "m-firm-other", "factory-other"
    )


CASES = {
    ("GET", "/campaigns"): Case(roles=READERS, own={r: {} for r in READERS}),
    ("GET", "/campaigns/dashboard"): Case(roles=READERS, own={r: {} for r in READERS}),
    ("GET", "/campaigns/{campaign_id}"): Case(
        roles=READERS,
        own={
            "operator": lambda w: {"campaign_id": w.extra["campaign-other"]},
            "firm": lambda w: {"campaign_id": w.extra["campaign-own"]},
        },
        foreign=[lambda w: {"campaign_id": w.extra["campaign-other"]}],
    ),
    ("GET", "/campaigns/{campaign_id}/report"): Case(
        roles=READERS,
        own={
            "operator": lambda w: {"campaign_id": w.extra["campaign-other"]},
            "firm": lambda w: {"campaign_id": w.extra["campaign-own"]},
        },
        foreign=[lambda w: {"campaign_id": w.extra["campaign-other"]}],
    ),
}
