"""The CalTRACK 2.0 daily model against the method's own rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from meetkoffer import caltrack as ct


def _year(
    temp: np.ndarray, usage: np.ndarray, start: str = "2025-01-01"
) -> tuple[pd.Series, pd.Series]:
    idx = pd.date_range(start, periods=len(temp), freq="D", tz="UTC")
    return pd.Series(usage, index=idx), pd.Series(temp, index=idx)


def _temps(n: int = 365) -> np.ndarray:
    d = np.arange(n)
    return 11.0 - 10.0 * np.cos(2 * np.pi * d / 365.0) + np.random.default_rng(3).normal(0, 2, n)


def test_balance_point_grid_is_30_to_90_F_in_1F_steps() -> None:
    assert ct.BALANCE_POINTS_F[0] == 30 and ct.BALANCE_POINTS_F[-1] == 90
    assert np.allclose(np.diff(ct.BALANCE_POINTS_F), 1.0)
    assert ct.BALANCE_POINTS_C[0] == pytest.approx(-10 / 9)
    assert ct.BALANCE_POINTS_C[-1] == pytest.approx(32.2222, abs=1e-3)


def test_heating_model_recovers_balance_point_and_slope() -> None:
    t = _temps()
    u = 200.0 + 12.0 * np.maximum(15.0 - t, 0) + np.random.default_rng(4).normal(0, 3, t.size)
    usage, temp = _year(t, u)
    m = ct.fit_daily(usage, temp)
    assert m.sufficiency.ok
    assert m.best.kind in ("hdd_only", "hdd_cdd")
    assert m.best.heating_bp_c == pytest.approx(15.0, abs=0.6)  # 1 degF = 0.56 degC grid
    assert m.best.beta_hdd_kwh_per_cdd == pytest.approx(12.0, rel=0.1)
    q = [c for c in m.candidates if c.qualified]
    assert m.best.adj_r2 == max(c.adj_r2 for c in q)
    assert all(c.beta_hdd_kwh_per_cdd > 0 for c in q if c.kind in ("hdd_only", "hdd_cdd"))
    assert all(c.beta_cdd_kwh_per_cdd > 0 for c in q if c.kind in ("cdd_only", "hdd_cdd"))
    pred = m.predict(temp)
    assert np.corrcoef(pred, u)[0, 1] > 0.99


def test_heating_and_cooling_model() -> None:
    t = _temps() + 4
    u = 100.0 + 5.0 * np.maximum(12.0 - t, 0) + 9.0 * np.maximum(t - 20.0, 0)
    usage, temp = _year(t, u + np.random.default_rng(5).normal(0, 1, t.size))
    m = ct.fit_daily(usage, temp)
    assert m.best.kind == "hdd_cdd"
    assert m.best.heating_bp_c <= m.best.cooling_bp_c
    assert m.best.beta_cdd_kwh_per_cdd == pytest.approx(9.0, rel=0.15)


def test_negative_slope_is_disqualified_and_intercept_wins() -> None:
    t = _temps()
    u = 300.0 - 4.0 * np.maximum(15.0 - t, 0) + np.random.default_rng(6).normal(0, 2, t.size)
    usage, temp = _year(t, u)
    m = ct.fit_daily(usage, temp)
    hdd = [c for c in m.candidates if c.kind == "hdd_only" and not np.isnan(c.beta_hdd_kwh_per_cdd)]
    assert hdd and all(not c.qualified for c in hdd if c.beta_hdd_kwh_per_cdd <= 0)
    assert m.best.kind in ("intercept_only", "cdd_only")
    assert m.best.beta_hdd_kwh_per_cdd == 0.0


def test_degree_day_sufficiency_per_candidate() -> None:
    # Only 5 days are colder than 10 degC: a heating balance point at 10 degC has < 10 days.
    t = np.full(365, 20.0)
    t[:5] = 5.0
    usage, temp = _year(t, 100 + np.maximum(10 - t, 0) * 10)
    cands = ct.candidates(usage.to_numpy(), temp.to_numpy())
    low = [
        c
        for c in cands
        if c.kind == "hdd_only" and c.heating_bp_c is not None and 5 < c.heating_bp_c < 20
    ]
    assert low and all(not c.qualified and "non-zero degree days" in c.reason for c in low)


def test_data_sufficiency_rules() -> None:
    t = _temps(300)
    usage, temp = _year(t, 100 + t)
    s = ct.data_sufficiency(usage, temp)
    assert not s.ok and any("365" in r for r in s.reasons)
    with pytest.raises(ValueError, match="sufficiency"):
        ct.fit_daily(usage, temp)
    t = _temps(365)
    usage, temp = _year(t, 100 + t)
    usage.iloc[::8] = np.nan  # 46 of 365 days missing = 12.6 %
    s = ct.data_sufficiency(usage, temp)
    assert not s.ok and any("10%" in r for r in s.reasons)
    usage.iloc[::8] = 1.0
    usage.iloc[::12] = np.nan  # 31 days = 8.5 %
    assert ct.data_sufficiency(usage, temp).ok
