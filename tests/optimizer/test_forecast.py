"""Forecasts: pvlib clear-sky PV x cloud factor, time-of-week load profile, forecast scenarios."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from energy.timegrid import local_day_isps
from optimizer.forecast import pv_clear_sky_kw, time_of_week_profile
from optimizer.model import plan
from optimizer.scenario import load_scenario

LAT, LON = 52.99, 6.56  # Assen


def test_pv_clear_sky_shape_and_cloud_factor() -> None:
    idx = local_day_isps(dt.date(2026, 6, 21))
    pv = pv_clear_sky_kw(idx, LAT, LON, peak_kw=10.0)
    assert len(pv) == 96
    local = idx.tz_convert("Europe/Amsterdam")
    assert pv[(local.hour < 4) | (local.hour >= 23)].max() == 0.0
    peak_hour = local[int(np.argmax(pv))].hour
    assert 12 <= peak_hour <= 14  # solar noon in Drenthe is about 13:30 CEST
    assert 6.0 < pv.max() < 10.0  # losses and temperature keep it below nameplate
    half = pv_clear_sky_kw(idx, LAT, LON, peak_kw=10.0, cloud_factor=0.5)
    assert half.sum() < 0.55 * pv.sum()
    winter = pv_clear_sky_kw(local_day_isps(dt.date(2026, 12, 21)), LAT, LON, peak_kw=10.0)
    assert winter.sum() < 0.35 * pv.sum()


def test_pv_on_dst_days_has_92_and_100_steps() -> None:
    for day, n in ((dt.date(2026, 3, 29), 92), (dt.date(2026, 10, 25), 100)):
        pv = pv_clear_sky_kw(local_day_isps(day), LAT, LON, peak_kw=5.0)
        assert len(pv) == n and pv.max() > 0


def test_time_of_week_profile_repeats_weekly_pattern() -> None:
    hist_idx = pd.date_range("2026-05-04T00:00+02:00", periods=14 * 96, freq="15min").tz_convert(
        "UTC"
    )
    local = hist_idx.tz_convert("Europe/Amsterdam")
    weekend = local.day_of_week >= 5
    evening = (local.hour >= 18) & (local.hour < 22)
    values = 3.0 + 10.0 * (evening & ~weekend) + 5.0 * weekend
    history = pd.Series(values, index=hist_idx)
    history.iloc[5] = np.nan
    future = pd.date_range("2026-05-18T00:00+02:00", periods=7 * 96, freq="15min").tz_convert("UTC")
    forecast = time_of_week_profile(history, future)
    fl = future.tz_convert("Europe/Amsterdam")
    expected = (
        3.0
        + 10.0 * (((fl.hour >= 18) & (fl.hour < 22)) & (fl.day_of_week < 5))
        + 5.0 * (fl.day_of_week >= 5)
    )
    assert forecast == pytest.approx(np.asarray(expected, float))
    with pytest.raises(ValueError, match="load history is empty"):
        time_of_week_profile(pd.Series([np.nan], index=hist_idx[:1]), future)


def test_scenario_from_forecasts_plans(tmp_path: Path) -> None:
    start = pd.Timestamp("2026-06-15T00:00+02:00")
    hist = pd.date_range(start - pd.Timedelta(days=7), periods=7 * 96, freq="15min")
    hl = hist.tz_convert("Europe/Amsterdam")
    pd.DataFrame(
        {
            "timestamp": [t.isoformat() for t in hist],
            "load_kw": 4 + 8 * ((hl.hour >= 18) & (hl.hour < 22)),
        }
    ).to_csv(tmp_path / "load_history.csv", index=False)
    fut = pd.date_range(start, periods=96, freq="15min")
    fl = fut.tz_convert("Europe/Amsterdam")
    price = (
        0.25 + 0.1 * ((fl.hour >= 17) & (fl.hour < 21)) - 0.1 * ((fl.hour >= 11) & (fl.hour < 15))
    )
    pd.DataFrame(
        {
            "timestamp": [t.isoformat() for t in fut],
            "import_price_eur_per_kwh": price,
            "export_price_eur_per_kwh": price - 0.13,
        }
    ).to_csv(tmp_path / "prices.csv", index=False)
    doc = {
        "site": {
            "name": "forecast-site",
            "grid_import_limit_kw": 30,
            "grid_export_limit_kw": 30,
            "latitude": LAT,
            "longitude": LON,
        },
        "start": start.isoformat(),
        "horizon_hours": 24,
        "forecast": {
            "pv": {"peak_kw": 25, "tilt_deg": 35, "azimuth_deg": 180, "cloud_factor": 0.8},
            "load": {"history_csv": "load_history.csv"},
            "prices": {"csv": "prices.csv"},
        },
        "battery": {
            "capacity_kwh": 20,
            "max_charge_kw": 10,
            "max_discharge_kw": 10,
            "soc_initial_pct": 50,
        },
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    sc = load_scenario(tmp_path / "s.yaml")
    assert sc.series["pv_kw"].max() > 10 and sc.series["load_kw"].max() == pytest.approx(12.0)
    result = plan(sc)
    evening = result.flows.index.tz_convert("Europe/Amsterdam").hour.isin([18, 19, 20])
    assert result.flows.loc[evening, "battery_discharge_kw"].sum() > 0
    del doc["site"]["latitude"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"site\.latitude and site\.longitude are required"):
        load_scenario(tmp_path / "s.yaml")
