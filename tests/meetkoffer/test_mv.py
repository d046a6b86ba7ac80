"""M&V: a known step change is found within its reported uncertainty."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from meetkoffer import mv
from meetkoffer.emissions import EmissionFactor, load_emission_factors
from tests.meetkoffer.synth import TZ, make_plant

FACTORS = {
    2025: EmissionFactor(2025, 0.30, "test"),
    2026: EmissionFactor(2026, 0.25, "test"),
}


def _split(step_kw: float, seed: int = 11):
    plant = make_plant(
        start="2026-04-06", days=56, step_kw=step_kw, step_at="2026-05-04", seed=seed, peak_kw=0.0
    )
    daily = mv.daily_frame(plant.incomer_wh, plant.production_per_day, plant.temp_c_per_day)
    cut = pd.Timestamp("2026-05-04", tz=TZ).tz_convert("UTC")
    return plant, daily[daily.index < cut], daily[daily.index >= cut]


def test_daily_frame_sums_and_drops_partial_days() -> None:
    plant = make_plant(start="2026-03-27", days=4)
    d = mv.daily_frame(plant.incomer_wh.iloc[10:], plant.production_per_day)
    assert len(d) == 3  # the first day lost 10 ISPs: 86 of 96 < 90 %, so it is left out
    assert list(d["isp_count"]) == [96, 92, 96]
    assert d["energy_kwh"].iloc[1] == pytest.approx(
        plant.incomer_wh.loc[d.index[1] : d.index[2]].iloc[:-1].sum() / 1000
    )


@pytest.mark.parametrize("step_kw", [25.0, 0.0])
def test_known_step_within_uncertainty(step_kw: float) -> None:
    """Option C on the incomer: over 10 random plants the known step lies inside the 90 %
    interval at least 8 times (expected 9), and the estimate is always close."""
    inside = 0
    for seed in range(10):
        _, base, rep = _split(step_kw, seed=seed)
        spec = mv.RegressionSpec(production=True, time_of_week=True)
        res = mv.verify_savings(
            base, rep, option="C", price_eur_per_kwh=0.2, emission_factors=FACTORS, spec=spec
        )
        weekdays = int((rep.index.tz_convert(TZ).day_of_week < 5).sum())
        true_kwh = step_kw * 16 * weekdays
        inside += abs(res.avoided_kwh - true_kwh) <= res.uncertainty_kwh_90
        assert abs(res.avoided_kwh - true_kwh) <= 2 * res.uncertainty_kwh_90
        assert res.uncertainty_kwh_68 < res.uncertainty_kwh_90
        assert res.metrics.passes
        assert res.baseline_n == 28 and res.reporting_m == 28
        if step_kw:
            assert res.uncertainty_kwh_90 < 0.5 * true_kwh
            assert res.significant
            assert res.fsu_68 < res.fsu_90
            assert res.uncertainty_kwh_90 == pytest.approx(res.fsu_90 * res.avoided_kwh)
            assert res.avoided_eur == pytest.approx(res.avoided_kwh * 0.2)
            assert res.avoided_co2_t == pytest.approx(res.avoided_kwh * 0.25 / 1000)
        else:
            assert not res.significant
    assert inside >= 8


def test_option_b_isolated_machine_and_nonroutine_adjustment() -> None:
    inside = 0
    for seed in range(10):
        plant = make_plant(
            start="2026-04-06", days=56, step_kw=25.0, step_at="2026-05-04", noise_kw=0.0
        )
        noisy = plant.extruder_wh + np.random.default_rng(seed).normal(0, 100, len(plant.index))
        daily = mv.daily_frame(noisy, plant.production_per_day)
        cut = pd.Timestamp("2026-05-04", tz=TZ).tz_convert("UTC")
        base, rep = daily[daily.index < cut], daily[daily.index >= cut]
        adj = mv.NonRoutineAdjustment(
            500.0, "second extruder die installed", dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
        )
        res = mv.verify_savings(
            base,
            rep,
            option="B",
            price_eur_per_kwh=0.2,
            emission_factors=FACTORS,
            spec=mv.RegressionSpec(production=True),
            adjustments=[adj],
        )
        true_kwh = 25.0 * 16 * 20 + 500.0
        assert res.nonroutine_kwh == 500.0
        assert res.coefficients["production"] == pytest.approx(120 * 16 / 100, rel=0.02)
        assert abs(res.avoided_kwh - true_kwh) <= 3 * res.uncertainty_kwh_90
        inside += abs(res.avoided_kwh - true_kwh) <= res.uncertainty_kwh_90
    assert inside >= 8


def test_validation_messages() -> None:
    _, base, rep = _split(10.0)
    with pytest.raises(ValueError, match="option"):
        mv.verify_savings(base, rep, option="A", price_eur_per_kwh=0.2, emission_factors=FACTORS)
    with pytest.raises(ValueError, match="before the reporting"):
        mv.verify_savings(rep, base, option="C", price_eur_per_kwh=0.2, emission_factors=FACTORS)
    with pytest.raises(ValueError, match="reason"):
        mv.NonRoutineAdjustment(10.0, "  ")
    with pytest.raises(ValueError, match="production"):
        mv.verify_savings(
            base.drop(columns=["production"]),
            rep,
            option="C",
            price_eur_per_kwh=0.2,
            emission_factors=FACTORS,
        )


def test_caltrack_model_in_verification_warns_about_short_baseline() -> None:
    _, base, rep = _split(25.0)
    res = mv.verify_savings(
        base, rep, option="C", model="caltrack", price_eur_per_kwh=0.2, emission_factors=FACTORS
    )
    assert res.model.startswith("caltrack_daily:")
    assert any("365" in w for w in res.warnings)


def test_emission_factor_of_missing_year_is_noted() -> None:
    _, base, rep = _split(25.0)
    res = mv.verify_savings(
        base,
        rep,
        option="C",
        price_eur_per_kwh=0.2,
        emission_factors={2021: EmissionFactor(2021, 0.374, "src")},
    )
    assert res.avoided_co2_t == pytest.approx(res.avoided_kwh * 0.374 / 1000)
    assert any("2021 factor is used" in w for w in res.warnings)


def test_shipped_emission_factors_have_sources(tmp_path) -> None:
    f = load_emission_factors()
    assert f and all(x.source for x in f.values())
    bad = tmp_path / "f.yaml"
    bad.write_text("unit: kg_co2_per_kwh\nfactors:\n  - {year: 2024, kg_co2_per_kwh: 0.3}\n")
    from energy.errors import ValidationError

    with pytest.raises(ValidationError, match=r"factors\[0\]"):
        load_emission_factors(bad)


def test_hourly_frame_sums_four_isps_and_interpolates_temperature() -> None:
    plant = make_plant(start="2026-03-27", days=3)  # Fri, Sat, Sun 29 March (23 hours)
    e = plant.incomer_wh.drop(plant.incomer_wh.index[5])  # the second hour loses an ISP
    h = mv.hourly_frame(e, plant.temp_c_per_day)
    assert len(h) == 24 + 24 + 23 - 1
    assert (h["isp_count"] == 4).all()
    assert h["energy_kwh"].iloc[0] == pytest.approx(plant.incomer_wh.iloc[:4].sum() / 1000)
    t = plant.temp_c_per_day
    noon = (t.index[0].tz_convert(TZ) + pd.Timedelta(hours=12)).tz_convert("UTC")
    assert h.loc[noon, "temp_c"] == pytest.approx((t.iloc[0] + t.iloc[1]) / 2)
    assert h["temp_c"].iloc[-1] != h["temp_c"].iloc[-1]  # after the last reading: NaN
    with pytest.raises(ValueError, match="min_isps"):
        mv.hourly_frame(e, min_isps=5)


@pytest.mark.parametrize("step_kw", [20.0, 0.0])
def test_hourly_model_known_step_within_uncertainty(step_kw: float) -> None:
    """Hour-of-week load + heating below 14 degC + AR(1) noise; a step of known size."""
    rng = np.random.default_rng(5)
    idx = pd.date_range("2026-01-05", periods=42 * 24, freq="h", tz=TZ).tz_convert("UTC")
    local = idx.tz_convert(TZ)
    producing = (local.day_of_week < 5) & (local.hour >= 6) & (local.hour < 22)
    temp = 6 + 5 * np.sin(2 * np.pi * np.arange(len(idx)) / (24 * 9)) + rng.normal(0, 1, len(idx))
    noise = np.zeros(len(idx))
    for i in range(1, len(idx)):
        noise[i] = 0.6 * noise[i - 1] + rng.normal(0, 3.0)
    cut = pd.Timestamp("2026-01-26", tz=TZ).tz_convert("UTC")
    after = producing & (idx >= cut)
    kw = 50 + 80 * producing + 2.5 * np.maximum(14 - temp, 0) + noise - step_kw * after
    frame = pd.DataFrame({"energy_kwh": kw, "temp_c": temp}, index=idx)
    res = mv.verify_savings(
        frame[idx < cut],
        frame[idx >= cut],
        option="C",
        price_eur_per_kwh=0.2,
        emission_factors=FACTORS,
        spec=mv.RegressionSpec(production=False, heating_bp_c=14.0, time_of_week=True),
        interval="hourly",
    )
    true_kwh = step_kw * float(after.sum())
    assert res.metrics.interval == "hourly" and res.metrics.passes
    assert res.coefficients["hdd"] == pytest.approx(2.5, abs=0.3)
    assert abs(res.avoided_kwh - true_kwh) <= res.uncertainty_kwh_90
    assert res.uncertainty_kwh_90 < 0.25 * 20.0 * float(after.sum())  # the step is resolvable
