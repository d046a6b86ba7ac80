"""Shared data for the settlement tests: a small community and a month of meter data."""

from __future__ import annotations

import numpy as np
import pytest

from energy.db import make_engine, session_factory, upgrade
from settlement.community import CommunitySpec, MeterData, parse_community
from settlement.pricing import load_tariff
from settlement.settle import EnergyPlan, period_isps, plan_energy

COMMUNITY = {
    "name": "dorp-test",
    "display_name": "Dorpshuis Test",
    "key": {"type": "optimal", "shares": {"dorpshuis": "0.5", "ev-jansen": "0.25", "club": "0.25"}},
    "members": [
        {
            "name": "Zonnedak Coop",
            "ref": "m-pv01",
            "kind": "organisation",
            "meters": ["PV"],
            "assets": ["pv"],
        },
        {
            "name": "dorpshuis",
            "ref": "m-dh01",
            "kind": "organisation",
            "meters": ["DH"],
            "assets": ["building"],
        },
        {
            "name": "ev-jansen",
            "ref": "m-ev01",
            "meters": ["EV"],
            "assets": [{"kind": "ev", "efficiency": "0.9"}],
        },
        {"name": "club", "ref": "m-cl01", "kind": "organisation", "meters": ["CL"]},
    ],
}


def community() -> CommunitySpec:
    return parse_community(COMMUNITY, "test-community")


def meter_data(period: str = "2026-10", seed: int = 1, days: int | None = None) -> MeterData:
    """Deterministic meter data for ``period``: pv injects by day, the EV charges and discharges."""
    c = community()
    isps = period_isps(period)
    t = len(isps)
    rng = np.random.default_rng(seed)
    hour = np.asarray(isps.tz_convert("Europe/Amsterdam").hour)
    sun = np.clip(np.sin((hour - 6) / 14 * np.pi), 0, None)
    off = np.zeros((t, 4), dtype=np.int64)
    inj = np.zeros((t, 4), dtype=np.int64)
    inj[:, 0] = (sun * rng.integers(200, 900, t)).astype(np.int64)
    off[:, 1] = rng.integers(50, 400, t)
    charging = (hour >= 10) & (hour < 15)
    discharging = (hour >= 18) & (hour < 21)
    off[:, 2] = np.where(charging, rng.integers(100, 800, t), 0)
    inj[:, 2] = np.where(discharging, rng.integers(50, 300, t), 0)
    off[:, 3] = rng.integers(0, 200, t)
    if days is not None:
        keep = np.arange(t) < days * 96
        off[~keep] = 0
        inj[~keep] = 0
    return MeterData(isps, c.refs, off, inj)


def make_plan(period: str = "2026-10", data: MeterData | None = None) -> EnergyPlan:
    return plan_energy(community(), period, data or meter_data(period), load_tariff())


@pytest.fixture
def sqlite_sessions(tmp_path):
    """A session factory on a fresh migrated SQLite file, for tests whose subject is not the
    database backend (rendering, pricing); the ledger tests run on both backends."""
    eng = make_engine(f"sqlite:///{tmp_path / 'settlement.db'}")
    upgrade(eng)
    yield session_factory(eng)
    eng.dispose()
