"""The Dutch monthly kW-max (issue 11, point 7): the month's peak so far is sunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from energy.errors import ValidationError
from energy.models import Channel, Site
from energy.readings import upsert_readings
from energy.siteconfig import import_site_file
from energy.tariffs import SiteTariff, site_tariff
from optimizer.model import plan
from optimizer.report import compare
from optimizer.sitestore import scenario_from_store
from optimizer.tariff import month_peak_so_far_kw, month_start
from tests.optimizer.helpers import ev, make_scenario

SITE_FILE = (
    Path(__file__).resolve().parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"
)


def _car_day(**site: float):
    # an 8 kWh car (8 kW charger, efficiency 1) over 4 hours; the first hour is cheap
    car = ev(
        "car-1",
        "2026-03-02T00:00:00+01:00",
        "2026-03-02T04:00:00+01:00",
        0,
        100,
        capacity_kwh=8.0,
        max_charge_kw=8.0,
        v2g=False,
    )
    sc = make_scenario([0.10, 0.20, 0.20, 0.20], evs=(car,), capacity_tariff_eur_per_kw=5.0)
    return sc.replace(site=sc.site.__class__(**{**_site_fields(sc.site), **site}))


def _site_fields(site) -> dict:
    return {f: getattr(site, f) for f in site.__slots__}


def test_a_peak_already_reached_this_month_is_sunk() -> None:
    flat = plan(_car_day())  # no floor: 2 kW over four hours beats 8 kW in the cheap hour
    assert flat.flows["grid_import_kw"].max() == pytest.approx(2.0)
    sunk = plan(_car_day().replace(peak_so_far_kw=8.0))
    # the month already has 8 kW: charging all in the cheap hour costs no more capacity
    assert sunk.flows["ev:car-1:charge_kw"].tolist() == pytest.approx([8.0, 0.0, 0.0, 0.0])
    assert sunk.objective_eur == pytest.approx(8 * 0.10 + 5.0 * 8.0)  # the 40 EUR are sunk


def test_a_contracted_kw_is_a_floor_too() -> None:
    result = plan(_car_day(contracted_kw=4.0))
    f = result.flows
    assert f["grid_import_kw"].max() == pytest.approx(4.0)
    assert f["ev:car-1:charge_kw"].iloc[0] == pytest.approx(4.0)  # 4 kW in the cheap hour
    # 4 kWh at 0.10 and 4 kWh at 0.20, the contracted 4 kW at 5 EUR
    assert result.objective_eur == pytest.approx(0.4 + 0.8 + 20.0)


def test_the_month_peak_so_far_from_the_store(sessions) -> None:
    import_site_file(SITE_FILE, sessions)
    now = pd.Timestamp("2026-06-15T10:00:00+02:00").tz_convert("UTC")
    start = month_start(now, "Europe/Amsterdam")
    assert start == pd.Timestamp("2026-06-01T00:00:00+02:00").tz_convert("UTC")
    idx = pd.date_range(start - pd.Timedelta(days=2), now + pd.Timedelta(hours=2), freq="15min")
    w = np.full(len(idx), 6000.0)
    w[idx < start] = 30000.0  # May's peak does not count
    w[idx == start + pd.Timedelta(days=3)] = 12500.0  # June's peak so far
    w[idx >= now] = 20000.0  # after now: not yet
    frame = pd.DataFrame(
        {"energy_wh": w / 4, "power_mean_w": w, "sample_count": 900, "coverage": 1.0},
        index=idx.as_unit("ns"),
    )
    with sessions() as s, s.begin():
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        upsert_readings(s, ch["dorpshuis-noaberhof/grid/power"], frame)
    with sessions() as s:
        site = s.scalars(select(Site).where(Site.name == "dorpshuis-noaberhof")).one()
        assert month_peak_so_far_kw(s, site, now) == pytest.approx(12.5)
        assert month_peak_so_far_kw(s, site, start) == 0.0


def _prices_csv(path, start: pd.Timestamp, hours: int = 24):
    idx = pd.date_range(start, periods=4 * hours, freq="15min")
    pd.DataFrame(
        {
            "timestamp": [t.isoformat() for t in idx],
            "import_price_eur_per_kwh": 0.25,
            "export_price_eur_per_kwh": 0.10,
        }
    ).to_csv(path, index=False)
    return path


def test_the_site_file_tariff_reaches_the_plan_with_the_peak_so_far(sessions, tmp_path) -> None:
    import_site_file(SITE_FILE, sessions)
    again = import_site_file(SITE_FILE, sessions)  # idempotent
    assert "site_tariffs" not in again.updated
    now = pd.Timestamp("2026-06-15T10:00:00+02:00").tz_convert("UTC")
    idx = pd.date_range(now - pd.Timedelta(days=15), now, freq="15min", inclusive="left")
    w = np.full(len(idx), 6000.0)
    w[-10] = 17500.0  # this month's peak so far [W]
    frame = pd.DataFrame(
        {"energy_wh": w / 4, "power_mean_w": w, "sample_count": 900, "coverage": 1.0},
        index=idx.as_unit("ns"),
    )
    with sessions() as s, s.begin():
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        upsert_readings(s, ch["dorpshuis-noaberhof/grid/power"], frame)
        upsert_readings(s, ch["dorpshuis-noaberhof/building/power"], frame)
        site = s.scalars(select(Site).where(Site.name == "dorpshuis-noaberhof")).one()
        row = site_tariff(s, site)
        assert row is not None  # from the demo site file's site.tariff
        assert (row.capacity_eur_per_kw_month, row.contracted_kw) == (3.5, 0.0)
    prices = _prices_csv(tmp_path / "prices.csv", now)
    with sessions() as s:
        sc = scenario_from_store(s, "dorpshuis-noaberhof", now, 24, prices)
    assert sc.site.capacity_tariff_eur_per_kw == 3.5 and sc.site.contracted_kw == 0.0
    assert sc.peak_so_far_kw == pytest.approx(17.5)
    # the month's 17.5 kW are paid anyway (sunk); with flat prices nothing pays for more
    result = plan(sc)
    peak = float(result.flows["grid_import_kw"].max())
    assert peak <= 17.5 + 1e-6
    capacity = compare(sc, result)["kpis"]["optimized"]["capacity_cost_eur"]
    assert capacity == pytest.approx(3.5 * 17.5, abs=1e-4)


def test_a_bad_tariff_in_the_site_file_names_the_field_and_stores_nothing(
    sessions, tmp_path
) -> None:
    text = SITE_FILE.read_text(encoding="utf-8").replace(
        "capacity_eur_per_kw_month: 3.5", "capacity_eur_per_kw_month: -2"
    )
    bad = tmp_path / "site.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError, match=r"site\.tariff\.capacity_eur_per_kw_month"):
        import_site_file(bad, sessions)
    with sessions() as s:
        assert s.scalars(select(SiteTariff)).all() == []
        assert s.scalars(select(Site)).all() == []
