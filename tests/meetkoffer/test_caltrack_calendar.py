"""CalTRACK on the local calendar: 23/25-hour days, local-day sufficiency, p-values, bills."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from meetkoffer import caltrack as ct
from meetkoffer import mv
from meetkoffer.emissions import EmissionFactor
from tests.meetkoffer.synth import TZ

FACTORS = {2025: EmissionFactor(2025, 0.3, "test")}


def _isp_energy(start: str, end: str, kw: float) -> pd.Series:
    """A constant load [W as Wh per ISP] on the ISP grid between two local midnights."""
    a = pd.Timestamp(start, tz=TZ).tz_convert("UTC")
    b = pd.Timestamp(end, tz=TZ).tz_convert("UTC")
    idx = pd.date_range(a, b, freq="15min", inclusive="left")
    return pd.Series(kw * 250.0, index=idx)


def test_full_dutch_year_has_no_sufficiency_warning() -> None:
    """2025 in 15-minute data: 365 local days, 210 of them start in summer time (22:00 UTC)."""
    e = _isp_energy("2025-01-01", "2026-01-01", 10.0)
    t = pd.Series(10.0, index=e.index[::96])
    frame = mv.daily_frame(e, temp_c=t)
    assert len(frame) == 365
    assert sorted(frame["hours"].unique()) == [23.0, 24.0, 25.0]
    suff = ct.data_sufficiency(frame["energy_kwh"], frame["temp_c"])
    assert suff.ok and suff.reasons == ()
    assert (suff.days_in_period, suff.days_with_data, suff.missing_share) == (365, 365, 0.0)
    # The cause of the old "59 % missing": a day grid at 23:00 UTC (the first midnight)
    # meets only the winter days; the 210 days that start at 22:00 UTC fell between.
    utc_grid = pd.date_range(frame.index[0], frame.index[-1], freq="D")
    assert (~frame.index.isin(utc_grid)).sum() == 210
    # A real gap still counts: 40 local days missing are 11 %.
    gap = frame.drop(frame.index[100:140])
    s2 = ct.data_sufficiency(gap["energy_kwh"], gap["temp_c"])
    assert not s2.ok and "11% of days missing" in s2.reasons[0]


def _year_frame(seed: int = 1, start: str = "2025-01-01", days: int = 365) -> pd.DataFrame:
    """Daily frame whose usage follows kW-per-hour physics: 25-hour days use 25/24."""
    rng = np.random.default_rng(seed)
    local = pd.date_range(start, periods=days, freq="D")
    idx = local.tz_localize(TZ).tz_convert("UTC")
    d = np.arange(days)
    t = 10.0 - 8.0 * np.cos(2 * np.pi * d / 365.25) + rng.normal(0, 2.0, days)
    hours = ct.day_hours(idx)
    usage = hours / 24 * (500.0 + 30.0 * np.maximum(15.0 - t, 0))
    return pd.DataFrame({"energy_kwh": usage, "temp_c": t, "hours": hours}, index=idx)


def test_dst_day_predicted_with_its_25_hours() -> None:
    f = _year_frame()
    m = ct.fit_daily(f["energy_kwh"], f["temp_c"], hours=f["hours"])
    assert m.best.kind == "hdd_only"
    assert m.best.heating_bp_c == pytest.approx(15.0, abs=0.3)
    assert m.best.intercept_kwh == pytest.approx(500.0, rel=1e-3)
    long_day = f.index[f["hours"] == 25.0][0]
    assert long_day.tz_convert(TZ).strftime("%Y-%m-%d") == "2025-10-26"
    row = f.loc[[long_day]]
    pred25 = m.predict(row["temp_c"], row["hours"])[0]
    pred24 = m.predict(row["temp_c"], [24.0])[0]
    assert pred25 == pytest.approx(pred24 * 25 / 24, rel=1e-12)
    assert pred25 == pytest.approx(row["energy_kwh"].iloc[0], rel=2e-3)
    # The hours are derived from the index when not given: the same prediction.
    m2 = ct.fit_daily(f["energy_kwh"], f["temp_c"])
    assert m2.best.intercept_kwh == pytest.approx(m.best.intercept_kwh)
    # The daily regression of mv is calendar-true too: its intercept is per 24 hours.
    spec = mv.RegressionSpec(production=False, heating_bp_c=m.best.heating_bp_c)
    rm = mv.fit_regression(f, spec)
    assert rm.predict(row)[0] == pytest.approx(pred25, rel=1e-9)
    short = f.loc[f["hours"] == 23.0]
    assert rm.predict(short)[0] == pytest.approx(short["energy_kwh"].iloc[0], rel=2e-3)


def test_coefficient_p_value_rule() -> None:
    """A positive but insignificant heating slope is disqualified with its p-value."""
    rng = np.random.default_rng(8)
    t = rng.uniform(-5, 25, 365)
    noise = rng.normal(0, 60.0, 365)
    hdd16 = np.maximum(16.0 - t, 0)
    usage = 1000.0 + 0.3 * hdd16 + noise  # a tiny heating slope lost in the noise
    cands = ct.candidates(usage, t)
    c16 = next(c for c in cands if c.kind == "hdd_only" and abs(c.heating_bp_c - 16.111) < 0.01)
    # The p-value is the two-sided t-test of the slope: the same as scipy's linregress.
    lr = stats.linregress(np.maximum(c16.heating_bp_c - t, 0), usage)
    assert c16.p_hdd == pytest.approx(lr.pvalue, rel=1e-6)
    assert c16.se[1] == pytest.approx(lr.stderr, rel=1e-9)
    positive = [c for c in cands if c.kind == "hdd_only" and c.beta_hdd_kwh_per_cdd > 0]
    assert positive
    for c in positive:
        assert c.qualified == (c.p_hdd < 0.1)
        if not c.qualified and c.reason.startswith("coefficient p-value"):
            assert c.p_hdd >= 0.1
    assert any(not c.qualified and "p-value" in c.reason for c in positive)
    # A clear slope passes the rule.
    strong = ct.candidates(1000.0 + 25.0 * hdd16 + noise, t)
    best = ct._select(strong)
    assert best.kind in ("hdd_only", "hdd_cdd") and best.p_hdd < 1e-10


def _bills(daily: pd.DataFrame, months: pd.DatetimeIndex) -> pd.DataFrame:
    """Calendar-month bills (local midnights) summed from daily usage."""
    local = daily.index.tz_convert(TZ).tz_localize(None)
    rows = []
    for a, b in itertools.pairwise(months):
        sel = (local >= a) & (local < b)
        rows.append({"start": a, "end": b, "kwh": float(daily["energy_kwh"][sel].sum())})
    return pd.DataFrame(rows)


def test_billing_model_on_monthly_bills() -> None:
    f = _year_frame(seed=3, start="2024-01-01", days=731)
    saving = np.where(f.index >= pd.Timestamp("2025-01-01", tz=TZ), 0.9, 1.0)
    f["energy_kwh"] = f["energy_kwh"] * saving
    months = pd.date_range("2024-01-01", "2026-01-01", freq="MS")
    bills = _bills(f, months)
    temps = f["temp_c"]
    base = ct.billing_data(bills.iloc[:12], temps)
    rep = ct.billing_data(bills.iloc[12:], temps)
    assert len(base) == 12 and base.warnings == ()
    march = base.days[2]
    assert march == pytest.approx(31 - 1 / 24)  # summer time starts: a day of 23 hours
    bm = ct.fit_billing(base)
    assert bm.sufficiency.ok
    assert bm.best.kind == "hdd_only"
    # Monthly means blur the change point; usage per day is still recovered closely.
    assert bm.best.intercept_kwh == pytest.approx(500.0, rel=0.05)
    assert np.allclose(bm.predict(base), base.kwh, rtol=0.01)
    res = mv.verify_billing(base, rep, option="C", price_eur_per_kwh=0.2, emission_factors=FACTORS)
    true_saving = 0.1 / 0.9 * rep.kwh.sum()
    assert res.interval == "monthly" and res.model.startswith("caltrack_billing:")
    assert res.avoided_kwh == pytest.approx(true_saving, rel=0.03)
    assert res.metrics.cv_rmse_max == 0.15
    assert [r["term"] for r in res.coefficient_table] == ["intercept", "beta_hdd"]


def test_bad_bills_are_refused_by_row() -> None:
    temps = pd.Series(5.0, index=pd.date_range("2025-01-01", periods=90, freq="D", tz=TZ))
    good = pd.DataFrame(
        {"start": ["2025-01-01", "2025-02-01"], "end": ["2025-02-01", "2025-03-01"], "kwh": [1, 2]}
    )
    with pytest.raises(ValueError, match="row 2 overlaps"):
        ct.billing_data(good.assign(start=["2025-01-01", "2025-01-20"]), temps)
    with pytest.raises(ValueError, match="row 1: usage"):
        ct.billing_data(good.assign(kwh=[-1.0, 2.0]), temps)
    with pytest.raises(ValueError, match="missing \\['kwh'\\]"):
        ct.billing_data(good.drop(columns="kwh"), temps)
    short = pd.DataFrame({"start": ["2025-01-01"], "end": ["2025-01-10"], "kwh": [1.0]})
    with pytest.raises(ValueError, match=r"9\.0 days, monthly bills need 25-35"):
        ct.billing_data(short, temps)
