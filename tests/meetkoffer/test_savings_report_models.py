"""The savings report of a CalTRACK verification: coefficient table, usage against
temperature, EnPI CUSUM, Dutch decimals and dates; and the frozen round trip it is shown from."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from meetkoffer import caltrack as ct
from meetkoffer import enpi, mv
from meetkoffer.emissions import EmissionFactor
from meetkoffer.report import savings_report
from tests.meetkoffer.synth import TZ

FACTORS = {2025: EmissionFactor(2025, 0.3, "test")}


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    local = pd.date_range("2025-01-01", periods=120, freq="D")
    idx = local.tz_localize(TZ).tz_convert("UTC")
    t = 12 + 7 * np.sin(2 * np.pi * np.arange(120) / 30) + rng.normal(0, 2, 120)
    hours = ct.day_hours(idx)
    prod = rng.uniform(10, 30, 120)
    e = hours / 24 * (900 + 40 * np.maximum(16 - t, 0)) + rng.normal(0, 15, 120)
    f = pd.DataFrame({"energy_kwh": e, "temp_c": t, "hours": hours, "production": prod}, index=idx)
    f.loc[f.index >= idx[90], "energy_kwh"] -= 100.0
    return f.iloc[:90], f.iloc[90:]


def test_caltrack_report_sections_and_frozen_round_trip() -> None:
    base, rep = _frames()
    res = mv.verify_savings(
        base, rep, option="C", model="caltrack", price_eur_per_kwh=0.2, emission_factors=FACTORS
    )
    res.enpi = enpi.enpi_summary(base, rep, ["hdd"])
    assert res.model == "caltrack_daily:hdd_only"
    assert abs(res.avoided_kwh - 3000.0) <= res.uncertainty_kwh_90  # 100 kWh a day for 30
    frozen = mv.freeze(res)
    json.dumps(frozen, allow_nan=False)  # plain JSON, no NaN
    back = mv.thaw(frozen)
    assert mv.freeze(back) == frozen
    want = res.reporting_series.set_axis(pd.DatetimeIndex(res.reporting_series.index).as_unit("ns"))
    pd.testing.assert_frame_equal(back.reporting_series, want, check_freq=False)
    meta = {"display_name": "Kunststof Emmen", "baseline": "a", "reporting": "b"}
    nl = savings_report(meta, back, "nl")
    assert "Coëfficiënten van het CalTRACK-model" in nl.html
    assert "EnPI-referentie (ISO 50006)" in nl.html
    assert {"caltrack_coefficients", "enpi_terms", "enpi_cusum"} <= set(nl.tables)
    table = nl.tables["caltrack_coefficients"]
    assert list(table.index) == ["intercept", "beta_hdd"]
    assert table.loc["beta_hdd", "p_value"] < 0.1
    assert table.loc["beta_hdd", "unit"] == "kWh/(°C·d)"
    # The charts: Dutch decimal comma, dd-mm-yyyy dates, units on both axes.
    assert '"separators":",."' in nl.html
    assert nl.html.count('"tickformat":"%d-%m-%Y"') >= 4
    assert "gemiddelde buitentemperatuur [\\u00b0C]" in nl.html  # plotly JSON escapes
    assert "CUSUM van gemeten min verwachte energie [kWh]" in nl.html
    en = savings_report(meta, back, "en")
    assert '"separators":".,"' in en.html and "CalTRACK model coefficients" in en.html
