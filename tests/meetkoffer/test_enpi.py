"""ISO 50006 multi-variable EnPI baselines: statistics, validity checks and CUSUM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from meetkoffer import caltrack as ct
from meetkoffer import enpi
from tests.meetkoffer.synth import TZ


def _days(
    n: int = 120, seed: int = 2, start: str = "2025-09-01", trend: float = -0.08
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n, freq="D").tz_localize(TZ).tz_convert("UTC")
    hours = ct.day_hours(idx)
    prod = rng.uniform(20, 60, n).round(1)
    temp = 12 + trend * np.arange(n) + rng.normal(0, 2.5, n)
    hdd = np.maximum(18.0 - temp, 0)
    e = hours / 24 * (800.0 + 25.0 * hdd) + 40.0 * prod + rng.normal(0, 30.0, n)
    return pd.DataFrame(
        {"energy_kwh": e, "production": prod, "temp_c": temp, "hours": hours}, index=idx
    )


def test_production_and_degree_days_together() -> None:
    f = _days()
    m = enpi.fit_baseline(f, ["production", "hdd"])
    coef = {t.name: t for t in m.terms}
    assert coef["intercept"].value == pytest.approx(800.0, rel=0.05)
    assert coef["production"].value == pytest.approx(40.0, rel=0.05)
    assert coef["hdd"].value == pytest.approx(25.0, rel=0.08)
    assert coef["production"].unit == "kWh/unit" and coef["hdd"].unit == "kWh/(°C·d)"
    assert m.valid and m.r2 > 0.9 and m.f_p_value < 1e-20
    assert all(t.p_value < 1e-6 for t in m.terms)
    assert m.ranges["production"] == (f["production"].min(), f["production"].max())


def test_statistics_agree_with_scipy_on_one_variable() -> None:
    """One regressor and 24-hour days: the same slope, its standard error and p as linregress."""
    f = _days().drop(columns="hours")
    m = enpi.fit_baseline(f, ["production"])
    lr = stats.linregress(f["production"], f["energy_kwh"])
    slope = m.terms[1]
    assert slope.value == pytest.approx(lr.slope, rel=1e-9)
    assert slope.std_error == pytest.approx(lr.stderr, rel=1e-9)
    assert slope.p_value == pytest.approx(lr.pvalue, rel=1e-6, abs=1e-300)
    assert m.r2 == pytest.approx(lr.rvalue**2, rel=1e-9)
    assert m.f_p_value == pytest.approx(lr.pvalue, rel=1e-6, abs=1e-300)  # F = t^2


def test_validity_checks_name_what_fails() -> None:
    f = _days()
    f["energy_kwh"] = 1000.0 + np.random.default_rng(1).normal(0, 30, len(f))
    m = enpi.fit_baseline(f, ["production"])
    assert not m.valid
    assert any("production p-value" in p for p in m.problems)
    assert any(p.startswith("R²") for p in m.problems)
    with pytest.raises(ValueError, match="among"):
        enpi.fit_baseline(f, ["weather"])
    with pytest.raises(ValueError, match="needs columns \\['temp_c'\\]"):
        enpi.fit_baseline(f.drop(columns="temp_c"), ["hdd"])


def test_cusum_flat_in_baseline_and_falls_by_the_saving() -> None:
    f = _days(n=150, trend=0.0)  # the reporting weather within the baseline's range
    base, rep = f.iloc[:100].copy(), f.iloc[100:].copy()
    rep["energy_kwh"] -= 120.0  # 120 kWh saved every day
    rep["temp_c"] = rep["temp_c"].clip(base["temp_c"].min(), base["temp_c"].max())
    s = enpi.enpi_summary(base, rep)
    assert s["problems"] == []
    assert s["valid"] and s["variables"] == ["production", "hdd"]
    cs = np.array(s["cusum"]["cusum_kwh"])
    # residuals are orthogonal to the exposure column: they sum to ~0 (not exactly: DST days)
    assert abs(cs[99]) < 1e-6 * abs(base["energy_kwh"].sum())
    assert s["reporting_difference_kwh"] == pytest.approx(-120.0 * 50, rel=0.1)
    assert cs[-1] - cs[99] == pytest.approx(s["reporting_difference_kwh"], rel=1e-9)
    # A reporting period far outside the baseline's production is flagged.
    rep2 = rep.assign(production=rep["production"] * 3)
    s2 = enpi.enpi_summary(base, rep2)
    assert not s2["valid"]
    assert any("production outside the baseline range" in p for p in s2["problems"])
