from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from meetkoffer import analysis as an
from tests.meetkoffer.synth import make_plant

HOURS = an.OperatingHours()


def test_base_load_is_found_and_costed() -> None:
    plant = make_plant(base_kw=40.0)
    bl = an.base_load(plant.incomer_wh, HOURS, price_eur_per_kwh=0.20, percentile=10)
    # Off-hours: nights (base only) and weekends (base + compressor); p10 lies on nights.
    assert bl.base_load_kw == pytest.approx(40.0, abs=3.0)
    assert bl.energy_kwh_per_year == pytest.approx(bl.base_load_kw * 8760)
    assert bl.cost_eur_per_year == pytest.approx(bl.base_load_kw * 8760 * 0.20)


def test_base_load_without_off_hours_is_the_load_floor() -> None:
    plant = make_plant(days=1)
    always = an.OperatingHours.weekly((0, 1, 2, 3, 4, 5, 6), dt.time(0), dt.time(0))
    assert always.runs_always() is False  # Dutch holidays stay off-hours
    assert always.producing(plant.incomer_wh.index).all()  # 2 March 2026: no holiday
    bl = an.base_load(plant.incomer_wh, always, 0.2)
    kw = plant.incomer_wh.to_numpy() / 250.0
    assert bl.method == "load_floor" and bl.isp_count == kw.size
    assert bl.base_load_kw == pytest.approx(np.percentile(kw, 10))


def test_off_hours_share_matches_construction() -> None:
    plant = make_plant(
        noise_kw=0.0, peak_kw=0.0, base_kw=10.0, extruder_kw=0.0, lighting_kw=0.0, compressor_kw=0.0
    )
    oh = an.off_hours_share(plant.incomer_wh, HOURS)
    # Constant load: the energy share equals the share of off-hours ISPs. 20 working days of
    # 64 producing ISPs; the campaign spans the spring DST day (28 * 96 - 4 ISPs).
    n = len(plant.index)
    assert n == 28 * 96 - 4
    assert oh.share == pytest.approx(1 - 20 * 64 / n, abs=1e-9)
    assert oh.total_kwh == pytest.approx(10.0 * n / 4)


def test_peak_found_at_known_isp() -> None:
    plant = make_plant(peak_kw=150.0)
    pk = an.peak_demand(plant.incomer_wh)
    assert pk.at == plant.peak_at
    assert pk.peak_kw > pk.p99_kw + 100


def test_load_duration_curve_sorted_and_complete() -> None:
    plant = make_plant(days=7)
    ldc = an.load_duration_curve(plant.incomer_wh)
    assert len(ldc) == 7 * 96
    assert (np.diff(ldc["power_kw"]) <= 0).all()
    assert ldc["hours"].iloc[-1] == pytest.approx(7 * 24)


def test_carpet_has_dst_days_right() -> None:
    # 2026-03-29 is the spring DST day (92 ISPs), 2026-10-25 the autumn one (100).
    plant = make_plant(start="2026-03-27", days=4, noise_kw=0.0)
    c = an.carpet(plant.incomer_wh)
    assert c.shape == (4, 96)
    spring = c.loc[dt.date(2026, 3, 29)]
    assert spring[["02:00", "02:15", "02:30", "02:45"]].isna().all()
    assert spring.notna().sum() == 92
    daily = an.daily_energy_kwh(plant.incomer_wh)
    assert daily.loc[dt.date(2026, 3, 29), "isp_count"] == 92
    autumn = make_plant(start="2026-10-24", days=3)
    assert an.daily_energy_kwh(autumn.incomer_wh).loc[dt.date(2026, 10, 25), "isp_count"] == 100


def test_profile_separates_weekday_and_weekend() -> None:
    plant = make_plant(noise_kw=0.0, peak_kw=0.0)
    prof = an.profile_15min(plant.compressor_wh)
    assert prof.loc["03:00", "weekday"] == pytest.approx(0.0)
    assert prof.loc["03:00", "saturday"] == pytest.approx(30.0)
    assert prof.loc["12:00", "weekday"] == pytest.approx(30.0)


def test_breakdown_pareto_and_unmetered_remainder() -> None:
    plant = make_plant(noise_kw=0.0, peak_kw=0.0)
    bd = an.equipment_breakdown(
        {
            "extruder": plant.extruder_wh,
            "compressor": plant.compressor_wh,
            "lighting": plant.lighting_wh,
        },
        plant.incomer_wh,
    )
    assert list(bd.index[:3]) == ["extruder", "compressor", "lighting"]
    # The unmetered remainder is exactly the base load.
    assert bd.at["unmetered", "energy_kwh"] == pytest.approx(40.0 * len(plant.index) / 4, rel=1e-9)
    assert bd["share"].sum() == pytest.approx(1.0)
    assert bd.at["extruder", "significant"]
    assert not bd.at["lighting", "significant"]
    assert not bd.at["unmetered", "significant"]


def test_enpi_regression_recovers_slope() -> None:
    rng = np.random.default_rng(1)
    prod = pd.Series(rng.uniform(50, 150, 30))
    energy = 500.0 + 12.0 * prod + rng.normal(0, 5, 30)
    r = an.enpi_regression(energy, prod)
    assert r.slope_kwh_per_unit == pytest.approx(12.0, abs=0.3)
    assert r.intercept_kwh == pytest.approx(500.0, abs=30)
    assert r.valid and r.r2 > 0.99
    with pytest.raises(ValueError, match="constant"):
        an.enpi_regression(energy, pd.Series(np.ones(30)))


def test_operating_hours_validation() -> None:
    with pytest.raises(ValueError, match="weekdays"):
        an.OperatingHours.weekly((7,), dt.time(6), dt.time(22))
    oh = an.OperatingHours.from_dict({"weekdays": [0, 1], "start": "07:00", "end": "15:30"})
    assert an.OperatingHours.from_dict(oh.to_dict()) == oh


def test_channel_summary_shows_empty_channels() -> None:
    plant = make_plant(days=7)
    empty = pd.Series([], dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
    cs = an.channel_summary(
        {"inc": plant.incomer_wh, "compressor": plant.compressor_wh, "dead clamp": empty},
        HOURS,
        0.2,
        {"inc": 1.0, "compressor": 1.0, "dead clamp": 0.0},
    )
    assert list(cs.index) == ["inc", "compressor", "dead clamp"]
    assert cs.at["inc", "base_load_kw"] == pytest.approx(40.0, abs=3.0)
    assert cs.at["compressor", "peak_kw"] == pytest.approx(30.0)
    assert np.isnan(cs.at["dead clamp", "peak_kw"]) and cs.at["dead clamp", "coverage"] == 0.0
