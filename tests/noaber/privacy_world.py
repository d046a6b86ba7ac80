"""A small settled community with real personal data, for the export and erasure tests.

Three members at hall ``zaal``: the hall (an organisation that injects solar) and two EV
owners with a name, e-mail, address, IBAN, licence plate and label. Each has a site asset
with 15-minute readings, the EV owners a user, and the community is settled for June 2026 so
that each member has a statement read from the hash-chained ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from energy.models import AssetKind, MemberKind, Quantity
from energy.readings import upsert_readings
from energy.sitecontrols import EvSession
from energy.sites import (
    AssetSpec,
    ChannelSpec,
    MemberSpec,
    SiteSpec,
    ensure_asset,
    ensure_channel,
    ensure_member,
    ensure_site,
)
from energy.users import create_user
from settlement.community import MeterData, parse_community
from settlement.models import Statement
from settlement.pricing import load_tariff
from settlement.settle import period_isps, plan_energy, post_run

PASSWORD = "a-long-member-password"
PERIOD = "2026-06"
HALL = "m-0a11aa"
#: The member the tests erase, and the one whose data must stay exactly as it was.
LEAVER = "m-3a7f01"
STAYER = "m-5c2e9d"
PEOPLE = {
    LEAVER: {
        "name": "Anna Bakker",
        "email": "anna.bakker@example.org",
        "address": "Hoofdstraat 3, Exloo",
        "iban": "NL91ABNA0417164300",
        "licence_plate": "N-123-AB",
        "label": "ev-anna",
    },
    STAYER: {
        "name": "Jan Hofstee",
        "email": "jan.hofstee@example.org",
        "address": "Brink 12, Exloo",
        "iban": "NL02ABNA0123456789",
        "licence_plate": "X-456-CD",
        "label": "ev-jan",
    },
}
USERNAMES = {LEAVER: "lid-101", STAYER: "lid-102"}
#: Bank and SEPA mandate of each person (personal data beside the IBAN).
BANK = {
    LEAVER: {"bic": "ABNANL2A", "sepa_mandate_id": "MANDAAT-BAKKER-01"},
    STAYER: {"bic": "RABONL2U", "sepa_mandate_id": "MANDAAT-HOFSTEE-02"},
}
MANDATE_DATE = dt.date(2026, 5, 1)


@dataclass
class PrivacyWorld:
    """Ids of what :func:`build` made."""

    channels: dict[str, int] = field(default_factory=dict)  # member ref -> power channel id
    assets: dict[str, int] = field(default_factory=dict)  # member ref -> asset id
    statements: dict[str, int] = field(default_factory=dict)  # member ref -> statement id


def _readings(session: Session, channel_id: int, power_w: float) -> None:
    idx = pd.date_range(dt.datetime(2026, 6, 1, 22, tzinfo=dt.UTC), periods=8, freq="15min")
    frame = pd.DataFrame(
        {
            "energy_wh": np.full(8, power_w / 4),
            "power_mean_w": np.full(8, power_w),
            "power_min_w": np.full(8, power_w),
            "power_max_w": np.full(8, power_w),
            "sample_count": 900,
            "coverage": 1.0,
        },
        index=idx.as_unit("ns"),
    )
    upsert_readings(session, channel_id, frame)


def build(sessions: sessionmaker[Session]) -> PrivacyWorld:
    """Create and settle the world (commits)."""
    world = PrivacyWorld()
    with sessions() as session, session.begin():
        hall = ensure_member(
            session, MemberSpec(HALL, MemberKind.ORGANISATION, "Stichting Zaal", "zaal@example.org")
        ).row
        site = ensure_site(
            session,
            SiteSpec("zaal", "871685900000000509", 52.9, 6.8, 40, 25, owner_member_id=hall.id),
        ).row
        owners = {HALL: (hall, AssetKind.PV, "pv", -2000.0)}
        for k, (ref, p) in enumerate(PEOPLE.items(), start=1):
            member = ensure_member(session, MemberSpec(ref, MemberKind.PERSON, **p)).row
            owners[ref] = (member, AssetKind.EV, f"ev-{k}", 1500.0 * k)
            create_user(session, USERNAMES[ref], PASSWORD, "member", member_ref=ref)
            member.personal.bic = BANK[ref]["bic"]
            member.personal.sepa_mandate_id = BANK[ref]["sepa_mandate_id"]
            member.personal.sepa_mandate_date = MANDATE_DATE
        for ref, (member, kind, name, power_w) in owners.items():
            asset = ensure_asset(session, site, AssetSpec(name, kind, member.id)).row
            key = f"zaal/{name}/power"
            channel = ensure_channel(session, asset, ChannelSpec(key, Quantity.POWER, "W")).row
            _readings(session, channel.id, power_w)
            world.channels[ref], world.assets[ref] = channel.id, asset.id
            if ref in USERNAMES:  # the owner announced a stay (set by their own user)
                session.add(
                    EvSession(
                        asset_id=asset.id,
                        member_id=member.id,
                        arrival_at=dt.datetime(2026, 6, 2, 16, tzinfo=dt.UTC),
                        departure_at=dt.datetime(2026, 6, 3, 7, tzinfo=dt.UTC),
                        soc_target_pct=80.0,
                        soc_min_pct=20.0,
                        soc_arrival_pct=None,
                        v2g_allowed=True,
                        created_by=USERNAMES[ref],
                    )
                )
    community = parse_community(
        {
            "name": "zaal-energie",
            "key": {"type": "proportional"},
            "members": [
                {"ref": HALL, "kind": "organisation", "meters": ["H"]},
                {"ref": LEAVER, "meters": ["E1"], "assets": ["ev"]},
                {"ref": STAYER, "meters": ["E2"], "assets": ["ev"]},
            ],
        }
    )
    isps = period_isps(PERIOD)
    off = np.zeros((len(isps), 3), dtype=np.int64)
    inj = np.zeros((len(isps), 3), dtype=np.int64)
    inj[:, 0] = 500
    off[:, 1] = 170
    off[:, 2] = 230
    plan = plan_energy(community, PERIOD, MeterData(isps, community.refs, off, inj), load_tariff())
    post_run(sessions, plan)
    with sessions() as session:
        for st in session.scalars(select(Statement)):
            world.statements[st.member_ref] = st.id
    return world
