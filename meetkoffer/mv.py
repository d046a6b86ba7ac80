"""Savings verification (M&V) following IPMVP Options B and C.

A baseline model is fitted on the baseline period, driven by the reporting period's
conditions (production, degree days, time of week) to give the *adjusted baseline*, and

    avoided energy = adjusted baseline - reporting-period energy + non-routine adjustments

(IPMVP Core Concepts 2022, eq. 1). Option B applies this to an isolated machine measured on
its own channel, Option C to the whole facility (the main incomer). The fit is judged with
ASHRAE Guideline 14 metrics and the savings get the Annex B fractional savings uncertainty at
68 % and 90 % confidence (see :mod:`meetkoffer.ashrae14`). CO2 avoided uses per-year emission
factors from configuration (:mod:`meetkoffer.emissions`).

The reported savings uncertainty is the larger of the ASHRAE 14 Annex B approximation
(eq. B-14, the 1.26 factor; also reported on its own as ``fsu_ashrae_*``) and the exact
ordinary-least-squares prediction interval of the summed reporting period with the same
autocorrelation correction. The approximation assumes few parameters against many baseline
points; with time-of-week terms over a few weeks of days the exact form is larger (by about
5-25 % on the generated plants of the tests, whose 90 % intervals hold the known step in
8 of 10 cases).

Input frames are indexed by period start (UTC; days, hours or ISPs) and hold ``energy_kwh``
plus the drivers the model uses: ``production`` [units] and/or ``temp_c`` [degC mean].
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from energy.timegrid import LOCAL_TZ
from meetkoffer import ashrae14, caltrack
from meetkoffer.emissions import AppliedFactor, EmissionFactor, factor_for_year

OPTIONS = ("B", "C")
MODELS = ("regression", "caltrack", "caltrack_billing")


def _local_day_start(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(index.tz_convert(tz).normalize()).tz_convert("UTC")


def daily_frame(
    energy_wh: pd.Series,
    production: pd.Series | None = None,
    temp_c: pd.Series | None = None,
    tz: str = LOCAL_TZ,
    min_coverage: float = 0.9,
) -> pd.DataFrame:
    """Daily M&V data from 15-minute energy [Wh per ISP] and driver series.

    Parameters
    ----------
    energy_wh
        Energy per ISP [Wh], UTC index of ISP starts.
    production
        Units produced per period (hour, shift or day), indexed by the period start (UTC);
        summed per local day of the start.
    temp_c
        Outdoor temperature readings [degC]; averaged per local day.
    min_coverage
        Days with fewer than this share of their ISPs (92, 96 or 100) are left out rather
        than extrapolated.

    Returns
    -------
    DataFrame indexed by the UTC instant of each local midnight: ``energy_kwh``,
    ``isp_count``, ``hours`` (the local day's length: 23, 24 or 25 h; the daily models use
    it as exposure) and, if given, ``production`` (0 on days without production records
    inside the covered span) and ``temp_c``.
    """
    e = energy_wh.dropna()
    day = _local_day_start(pd.DatetimeIndex(e.index), tz)
    g = e.groupby(day)
    out = pd.DataFrame({"energy_kwh": g.sum() / 1000.0, "isp_count": g.count()})
    nxt = pd.DatetimeIndex(
        (out.index.tz_convert(tz) + pd.DateOffset(days=1)).normalize()
    ).tz_convert("UTC")
    seconds = (nxt - out.index).total_seconds()
    out["hours"] = np.asarray(seconds / 3600.0, float)
    expected = (seconds / 900.0).astype(int)
    out = out[out["isp_count"].to_numpy() >= min_coverage * expected.to_numpy()]
    if production is not None:
        pr = production.dropna()
        daily = pr.groupby(_local_day_start(pd.DatetimeIndex(pr.index), tz)).sum()
        out["production"] = daily.reindex(out.index).fillna(0.0).to_numpy()
    if temp_c is not None:
        tc = temp_c.dropna()
        daily = tc.groupby(_local_day_start(pd.DatetimeIndex(tc.index), tz)).mean()
        out["temp_c"] = daily.reindex(out.index).to_numpy()
    return out


def hourly_frame(
    energy_wh: pd.Series,
    temp_c: pd.Series | None = None,
    min_isps: int = 4,
) -> pd.DataFrame:
    """Hourly M&V data from 15-minute energy [Wh per ISP] and outdoor temperature.

    The hourly model is a time-of-week-and-temperature regression (LBNL TOWT, Mathieu et al.
    2011): 168 hour-of-week terms (local time) plus degree-hour terms, without production
    (production records cover shifts or days, not hours; the daily model uses them).

    Parameters
    ----------
    energy_wh
        Energy per ISP [Wh], UTC index of ISP starts. Europe/Amsterdam hours start on whole
        UTC hours, so each local hour is four ISPs.
    temp_c
        Outdoor temperature readings [degC]; averaged per hour and interpolated in time
        between readings (not beyond the first and last reading), since weather exports are
        often daily or three-hourly.
    min_isps
        Hours with fewer ISPs than this (of 4) are left out rather than extrapolated.

    Returns
    -------
    DataFrame indexed by the UTC start of each hour: ``energy_kwh``, ``isp_count`` and, if
    given, ``temp_c`` (NaN where no reading brackets the hour).
    """
    if not 1 <= min_isps <= 4:
        raise ValueError(f"min_isps must lie in 1..4, got {min_isps}")
    e = energy_wh.dropna()
    hour = pd.DatetimeIndex(e.index).floor("h")
    g = e.groupby(hour)
    out = pd.DataFrame({"energy_kwh": g.sum() / 1000.0, "isp_count": g.count()})
    out = out[out["isp_count"].to_numpy() >= min_isps]
    out.index = pd.DatetimeIndex(out.index).as_unit("ns")
    if temp_c is not None:
        tc = temp_c.dropna()
        if tc.empty:
            out["temp_c"] = np.nan
        else:
            hourly = tc.groupby(pd.DatetimeIndex(tc.index).floor("h")).mean()
            hourly.index = pd.DatetimeIndex(hourly.index).as_unit("ns")
            grid = hourly.index.union(out.index)
            filled = hourly.reindex(grid).interpolate(method="time", limit_area="inside")
            out["temp_c"] = filled.reindex(out.index).to_numpy()
    return out


@dataclass(frozen=True, slots=True)
class NonRoutineAdjustment:
    """A non-routine adjustment [kWh] with the reason it is made.

    Positive ``energy_kwh`` raises the adjusted baseline (e.g. a production line added in the
    reporting period that the baseline did not have); negative lowers it.
    """

    energy_kwh: float
    reason: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.reason or not self.reason.strip():
            raise ValueError("a non-routine adjustment needs a reason, got an empty one")
        if not np.isfinite(self.energy_kwh):
            raise ValueError(
                f"non-routine adjustment energy_kwh must be finite, got {self.energy_kwh}"
            )


@dataclass(frozen=True, slots=True)
class RegressionSpec:
    """Drivers of a regression baseline.

    ``production``: a term per unit produced. ``heating_bp_c`` / ``cooling_bp_c``: HDD / CDD
    terms with these balance points [degC]. ``time_of_week``: indicator terms per day of week
    (daily data) or hour of week (hourly and 15-minute data), as in the LBNL TOWT model.
    """

    production: bool = True
    heating_bp_c: float | None = None
    cooling_bp_c: float | None = None
    time_of_week: bool = False


@dataclass(frozen=True, slots=True)
class RegressionModel:
    """An OLS baseline model: named coefficients and what it needs to predict."""

    spec: RegressionSpec
    interval: str
    columns: tuple[str, ...]
    coef: np.ndarray
    tz: str = LOCAL_TZ

    @property
    def p(self) -> int:
        return len(self.columns)

    def coefficients(self) -> dict[str, float]:
        return {c: float(v) for c, v in zip(self.columns, self.coef)}

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """Regressor matrix in the fitted column order (unseen time-of-week bins are 0)."""
        x = design_matrix(frame, self.spec, self.interval, self.tz)
        return x.reindex(columns=list(self.columns), fill_value=0.0).to_numpy(float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.design(frame) @ self.coef


def _tow_labels(index: pd.DatetimeIndex, interval: str, tz: str) -> pd.Index:
    local = index.tz_convert(tz)
    if interval in ("daily", "monthly"):
        return pd.Index([f"dow{d}" for d in local.day_of_week])
    return pd.Index([f"how{d * 24 + h:03d}" for d, h in zip(local.day_of_week, local.hour)])


def design_matrix(
    frame: pd.DataFrame, spec: RegressionSpec, interval: str, tz: str = LOCAL_TZ
) -> pd.DataFrame:
    """Regressors of ``spec`` for the periods of ``frame`` (intercept first).

    Daily frames with an ``hours`` column (see :func:`daily_frame`) are calendar-true: the
    intercept, degree-day and day-of-week terms are scaled by the day's exposure ``hours /
    24``, so that a 25-hour day is predicted with its 25 hours of base load; the production
    term is per unit and is not scaled.
    """
    cols: dict[str, np.ndarray] = {"intercept": np.ones(len(frame))}
    if spec.production:
        if "production" not in frame:
            raise ValueError("the model uses production but the data have no 'production' column")
        cols["production"] = frame["production"].to_numpy(float)
    for name, bp in (("hdd", spec.heating_bp_c), ("cdd", spec.cooling_bp_c)):
        if bp is None:
            continue
        if "temp_c" not in frame:
            raise ValueError(f"the model uses {name} but the data have no 'temp_c' column")
        t = frame["temp_c"].to_numpy(float)
        cols[name] = np.maximum(bp - t, 0.0) if name == "hdd" else np.maximum(t - bp, 0.0)
    x = pd.DataFrame(cols, index=frame.index)
    if spec.time_of_week:
        labels = _tow_labels(pd.DatetimeIndex(frame.index), interval, tz)
        dummies = pd.get_dummies(pd.Series(labels, index=frame.index), dtype=float)
        first = sorted(dummies.columns)[0]
        x = pd.concat([x, dummies.drop(columns=[first])], axis=1)
    if interval == "daily" and "hours" in frame:
        e = frame["hours"].to_numpy(float) / 24.0
        scaled = [c for c in x.columns if c != "production"]
        x[scaled] = x[scaled].to_numpy(float) * e[:, None]
    return x


def fit_regression(
    baseline: pd.DataFrame, spec: RegressionSpec, interval: str = "daily", tz: str = LOCAL_TZ
) -> RegressionModel:
    """Ordinary least squares of ``energy_kwh`` on the regressors of ``spec``.

    Raises
    ------
    ValueError
        If there are not more baseline points than parameters.
    """
    df = baseline.dropna(subset=["energy_kwh"])
    x = design_matrix(df, spec, interval, tz)
    ok = np.isfinite(x.to_numpy(float)).all(axis=1)
    x, y = x[ok], df["energy_kwh"].to_numpy(float)[ok]
    if len(y) <= x.shape[1]:
        raise ValueError(
            f"baseline has {len(y)} usable periods for {x.shape[1]} parameters; it needs more"
        )
    coef, *_ = np.linalg.lstsq(x.to_numpy(float), y, rcond=None)
    return RegressionModel(spec, interval, tuple(x.columns), coef, tz)


@dataclass
class SavingsResult:
    """The outcome of one savings verification."""

    option: str
    model: str
    interval: str
    coefficients: dict[str, float]
    metrics: ashrae14.FitMetrics
    baseline_n: int
    reporting_m: int
    adjusted_baseline_kwh: float
    reporting_kwh: float
    nonroutine_kwh: float
    avoided_kwh: float
    fraction_saved: float
    fsu_68: float
    fsu_90: float
    fsu_ashrae_68: float
    fsu_ashrae_90: float
    uncertainty_kwh_68: float
    uncertainty_kwh_90: float
    avoided_eur: float
    avoided_co2_t: float
    emission_factors: list[AppliedFactor]
    adjustments: list[NonRoutineAdjustment]
    warnings: list[str]
    baseline_series: pd.DataFrame = field(repr=False)  # energy_kwh, fitted_kwh[, temp_c]
    reporting_series: pd.DataFrame = field(repr=False)  # energy_kwh, adjusted_baseline_kwh, ...
    #: term, value, unit, std_error, p_value, balance_point_c (CalTRACK models)
    coefficient_table: list[dict[str, Any]] = field(default_factory=list)
    #: the ISO 50006 EnPI baseline and CUSUM of the same data (see :mod:`meetkoffer.enpi`)
    enpi: dict[str, Any] | None = None

    @property
    def significant(self) -> bool:
        """ASHRAE 14: savings should exceed about twice their standard error (FSU_68 < 50 %)."""
        return self.avoided_kwh > 0 and self.fsu_68 < 0.5

    def summary(self) -> dict[str, object]:
        """Plain numbers for tables, JSON and the database."""
        return {
            "option": self.option,
            "model": self.model,
            "interval": self.interval,
            "baseline_n": self.baseline_n,
            "reporting_m": self.reporting_m,
            "adjusted_baseline_kwh": self.adjusted_baseline_kwh,
            "reporting_kwh": self.reporting_kwh,
            "nonroutine_kwh": self.nonroutine_kwh,
            "avoided_kwh": self.avoided_kwh,
            "fraction_saved": self.fraction_saved,
            "fsu_68": self.fsu_68,
            "fsu_90": self.fsu_90,
            "fsu_ashrae_68": self.fsu_ashrae_68,
            "fsu_ashrae_90": self.fsu_ashrae_90,
            "uncertainty_kwh_68": self.uncertainty_kwh_68,
            "uncertainty_kwh_90": self.uncertainty_kwh_90,
            "avoided_eur": self.avoided_eur,
            "avoided_co2_t": self.avoided_co2_t,
            "cv_rmse": self.metrics.cv_rmse,
            "nmbe": self.metrics.nmbe,
            "r2": self.metrics.r2,
            "rho": self.metrics.rho,
            "ashrae14_pass": self.metrics.passes,
            "significant": self.significant,
        }


def verify_savings(
    baseline: pd.DataFrame,
    reporting: pd.DataFrame,
    *,
    option: str,
    price_eur_per_kwh: float,
    emission_factors: dict[int, EmissionFactor],
    model: str = "regression",
    spec: RegressionSpec | None = None,
    interval: str = "daily",
    adjustments: Sequence[NonRoutineAdjustment] = (),
    tz: str = LOCAL_TZ,
    caltrack_require_sufficiency: bool = False,
) -> SavingsResult:
    """Verify the savings of a measure (IPMVP Option B or C).

    Parameters
    ----------
    baseline, reporting
        Periods (UTC index) with ``energy_kwh`` and the model's drivers.
    option
        ``"B"`` (isolated machine, its own channel) or ``"C"`` (whole facility, incomer).
    model
        ``"regression"`` (drivers from ``spec``) or ``"caltrack"`` (CalTRACK 2.0 daily
        change-point model on ``temp_c``; needs daily data).
    interval
        Data interval for the ASHRAE 14 limits: ``daily``, ``hourly``, ``15min`` or ``monthly``.
    adjustments
        Non-routine adjustments with their reasons.
    caltrack_require_sufficiency
        Refuse a CalTRACK baseline shorter than 365 days (Meetkoffer campaigns last weeks, so
        by default the shortfall is reported as a warning instead).

    Returns
    -------
    SavingsResult
        Avoided energy [kWh], EUR, t CO2, FSU at 68 % and 90 %, fit metrics and series.
    """
    _check_periods(baseline, reporting, option, model, price_eur_per_kwh)
    if model == "caltrack_billing":
        raise ValueError("the CalTRACK billing model takes bills: use verify_billing")
    warnings: list[str] = []
    base = baseline.dropna(subset=["energy_kwh"])
    rep = reporting.dropna(subset=["energy_kwh"])
    if model == "caltrack":
        fit = _caltrack_fit(base, rep, interval, caltrack_require_sufficiency, warnings)
    else:
        fit = _regression_fit(base, rep, spec or RegressionSpec(), interval, tz, warnings)
    return _result(
        fit, option, model, interval, price_eur_per_kwh, emission_factors, adjustments, tz, warnings
    )


def verify_billing(
    baseline: caltrack.BillingData,
    reporting: caltrack.BillingData,
    *,
    option: str,
    price_eur_per_kwh: float,
    emission_factors: dict[int, EmissionFactor],
    adjustments: Sequence[NonRoutineAdjustment] = (),
    tz: str = LOCAL_TZ,
    require_sufficiency: bool = False,
) -> SavingsResult:
    """Verify savings from monthly bills with the CalTRACK billing model.

    ``baseline`` and ``reporting`` come from :func:`meetkoffer.caltrack.billing_data` (bills
    ``[start, end, kwh]`` with daily mean temperatures); the fit is judged against the ASHRAE
    14 monthly limits. Each bill's adjusted baseline is its days times the modelled usage per
    day at its degree days.
    """
    base, rep = baseline.frame(), reporting.frame()
    _check_periods(base, rep, option, "caltrack_billing", price_eur_per_kwh)
    warnings = [*baseline.warnings, *reporting.warnings]
    bm = caltrack.fit_billing(baseline, require_sufficiency=require_sufficiency)
    warnings.extend(f"CalTRACK sufficiency: {r}" for r in bm.sufficiency.reasons)
    fit = _BaselineFit(
        base,
        rep,
        bm.predict(baseline),
        bm.predict(reporting),
        bm.design(baseline),
        bm.design(reporting),
        bm.p,
        caltrack_coefficients(bm.best),
        f"caltrack_billing:{bm.best.kind}",
        caltrack_table(bm.best),
    )
    return _result(
        fit,
        option,
        "caltrack_billing",
        "monthly",
        price_eur_per_kwh,
        emission_factors,
        adjustments,
        tz,
        warnings,
    )


def _result(
    fit: _BaselineFit,
    option: str,
    model: str,
    interval: str,
    price_eur_per_kwh: float,
    emission_factors: dict[int, EmissionFactor],
    adjustments: Sequence[NonRoutineAdjustment],
    tz: str,
    warnings: list[str],
) -> SavingsResult:
    """Savings, their uncertainty and CO2 from a fitted baseline (every model ends here)."""
    base, rep = fit.base, fit.rep
    y = base["energy_kwh"].to_numpy(float)
    metrics = ashrae14.fit_metrics(y, fit.fitted, fit.p, interval)
    if not metrics.passes:
        warnings.append(
            f"baseline fails ASHRAE 14 ({interval}): CV(RMSE) {metrics.cv_rmse:.1%} "
            f"(max {metrics.cv_rmse_max:.0%}), NMBE {metrics.nmbe:.2%} (max {metrics.nmbe_max:.0%})"
        )
    measured = rep["energy_kwh"].to_numpy(float)
    adj_base = float(fit.predicted.sum())
    reporting_kwh = float(measured.sum())
    nonroutine = float(sum(a.energy_kwh for a in adjustments))
    avoided = adj_base - reporting_kwh + nonroutine
    denom = adj_base + nonroutine
    fraction = avoided / denom if denom else 0.0
    months = int(measured.size) / (365.25 / 12) if model == "caltrack" else None
    fsu_ashrae, unc = _uncertainty(fit, metrics, y, measured, denom, fraction, months)
    fsu = {c: unc[c] / abs(avoided) if avoided else float("inf") for c in (0.68, 0.90)}
    co2_kg, applied = _avoided_co2_kg(
        pd.Series(fit.predicted - measured, index=rep.index), adjustments, emission_factors, tz
    )
    warnings.extend(af.note for af in applied if af.note)
    rep_series = pd.DataFrame(
        {
            "energy_kwh": measured,
            "adjusted_baseline_kwh": fit.predicted,
            "avoided_kwh": fit.predicted - measured,
        },
        index=rep.index,
    )
    rep_series["cumulative_avoided_kwh"] = rep_series["avoided_kwh"].cumsum()
    base_series = pd.DataFrame({"energy_kwh": y, "fitted_kwh": fit.fitted}, index=base.index)
    for col in ("temp_c", "hours", "days"):
        if col in base and col in rep:
            base_series[col] = base[col].to_numpy(float)
            rep_series[col] = rep[col].to_numpy(float)
    return SavingsResult(
        option=option,
        model=fit.model_name,
        interval=interval,
        coefficients=fit.coefficients,
        metrics=metrics,
        baseline_n=int(y.size),
        reporting_m=int(measured.size),
        adjusted_baseline_kwh=adj_base,
        reporting_kwh=reporting_kwh,
        nonroutine_kwh=nonroutine,
        avoided_kwh=avoided,
        fraction_saved=fraction,
        fsu_68=fsu[0.68],
        fsu_90=fsu[0.90],
        fsu_ashrae_68=fsu_ashrae[0.68],
        fsu_ashrae_90=fsu_ashrae[0.90],
        uncertainty_kwh_68=unc[0.68],
        uncertainty_kwh_90=unc[0.90],
        avoided_eur=avoided * price_eur_per_kwh,
        avoided_co2_t=co2_kg / 1000.0,
        emission_factors=applied,
        adjustments=list(adjustments),
        warnings=warnings,
        baseline_series=base_series,
        reporting_series=rep_series,
        coefficient_table=fit.table,
    )


def _check_periods(
    baseline: pd.DataFrame, reporting: pd.DataFrame, option: str, model: str, price: float
) -> None:
    """Refuse an unknown option or model, a negative price, periods without energy or in the
    wrong order (:class:`ValueError`)."""
    if option not in OPTIONS:
        raise ValueError(f"option must be 'B' or 'C', got {option!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if price < 0:
        raise ValueError(f"price_eur_per_kwh must be >= 0, got {price}")
    for name, fr in (("baseline", baseline), ("reporting", reporting)):
        if "energy_kwh" not in fr or fr["energy_kwh"].dropna().empty:
            raise ValueError(f"the {name} period has no energy data")
    if baseline.index.max() >= reporting.index.min():
        raise ValueError("the baseline period must end before the reporting period starts")


@dataclass
class _BaselineFit:
    """A baseline model fitted on ``base`` and driven by ``rep`` (the periods it could use)."""

    base: pd.DataFrame
    rep: pd.DataFrame
    fitted: np.ndarray  # on the baseline periods [kWh]
    predicted: np.ndarray  # the adjusted baseline of the reporting periods [kWh]
    x_base: np.ndarray  # design matrices (for the exact savings uncertainty)
    x_rep: np.ndarray
    p: int  # parameters
    coefficients: dict[str, float]
    model_name: str
    table: list[dict[str, Any]] = field(default_factory=list)  # coefficient table


def _caltrack_fit(
    base: pd.DataFrame,
    rep: pd.DataFrame,
    interval: str,
    require_sufficiency: bool,
    warnings: list[str],
) -> _BaselineFit:
    """The CalTRACK 2.0 daily change-point model on ``temp_c``."""
    if interval != "daily":
        raise ValueError("the CalTRACK model is a daily model; use interval='daily'")
    if "temp_c" not in base or "temp_c" not in rep:
        raise ValueError("the CalTRACK model needs 'temp_c' in the baseline and reporting data")
    base = base.dropna(subset=["temp_c"])
    rep = rep.dropna(subset=["temp_c"])
    hb = base.get("hours")
    hr = rep.get("hours")
    cm = caltrack.fit_daily(
        base["energy_kwh"], base["temp_c"], require_sufficiency=require_sufficiency, hours=hb
    )
    warnings.extend(f"CalTRACK sufficiency: {r}" for r in cm.sufficiency.reasons)
    if hr is None:
        hr = pd.Series(caltrack.day_hours(rep.index), index=rep.index)
    if hb is None:
        hb = pd.Series(caltrack.day_hours(base.index), index=base.index)
    return _BaselineFit(
        base,
        rep,
        cm.predict(base["temp_c"], hb),
        cm.predict(rep["temp_c"], hr),
        cm.design(base["temp_c"], hb),
        cm.design(rep["temp_c"], hr),
        cm.p,
        caltrack_coefficients(cm.best),
        f"caltrack_daily:{cm.best.kind}",
        caltrack_table(cm.best),
    )


def caltrack_coefficients(b: caltrack.Candidate) -> dict[str, float]:
    """The coefficients of a CalTRACK model as plain numbers (NaN for an absent term)."""
    return {
        "intercept": b.intercept_kwh,
        "beta_hdd": b.beta_hdd_kwh_per_cdd,
        "beta_cdd": b.beta_cdd_kwh_per_cdd,
        "heating_bp_c": np.nan if b.heating_bp_c is None else b.heating_bp_c,
        "cooling_bp_c": np.nan if b.cooling_bp_c is None else b.cooling_bp_c,
    }


def caltrack_table(b: caltrack.Candidate) -> list[dict[str, Any]]:
    """The coefficient table of a CalTRACK model: term, value, unit, standard error, p-value,
    balance point (the report's CalTRACK table)."""
    terms: list[tuple[str, float, float | None]] = [("intercept", b.intercept_kwh, None)]
    if b.heating_bp_c is not None:
        terms.append(("beta_hdd", b.beta_hdd_kwh_per_cdd, b.heating_bp_c))
    if b.cooling_bp_c is not None:
        terms.append(("beta_cdd", b.beta_cdd_kwh_per_cdd, b.cooling_bp_c))
    units = {"intercept": "kWh/d", "beta_hdd": "kWh/(°C·d)", "beta_cdd": "kWh/(°C·d)"}
    return [
        {
            "term": name,
            "value": value,
            "unit": units[name],
            "std_error": b.se[i] if i < len(b.se) else np.nan,
            "p_value": b.p_values[i] if i < len(b.p_values) else np.nan,
            "balance_point_c": np.nan if bp is None else bp,
        }
        for i, (name, value, bp) in enumerate(terms)
    ]


def _regression_fit(
    base: pd.DataFrame,
    rep: pd.DataFrame,
    spec: RegressionSpec,
    interval: str,
    tz: str,
    warnings: list[str],
) -> _BaselineFit:
    """The regression of ``spec``; periods without outdoor temperature are left out (with a
    warning) when it has degree-day terms."""
    if spec.heating_bp_c is not None or spec.cooling_bp_c is not None:
        if "temp_c" not in base or "temp_c" not in rep:
            raise ValueError("degree-day terms need 'temp_c' in the baseline and reporting data")
        nb, nr = int(base["temp_c"].isna().sum()), int(rep["temp_c"].isna().sum())
        base = base.dropna(subset=["temp_c"])
        rep = rep.dropna(subset=["temp_c"])
        if nb or nr:
            warnings.append(
                f"{nb} baseline and {nr} reporting periods without outdoor temperature "
                "were left out (their savings are not counted)"
            )
        if base.empty or rep.empty:
            raise ValueError("no periods with outdoor temperature in the baseline or reporting")
    rm = fit_regression(base, spec, interval, tz)
    model_name = "regression:" + "+".join(c for c in rm.columns if not c.startswith(("dow", "how")))
    if spec.time_of_week:
        model_name += "+time_of_week"
    return _BaselineFit(
        base,
        rep,
        rm.predict(base),
        rm.predict(rep),
        rm.design(base),
        rm.design(rep),
        rm.p,
        rm.coefficients(),
        model_name,
    )


def _uncertainty(
    fit: _BaselineFit,
    metrics: ashrae14.FitMetrics,
    y: np.ndarray,
    measured: np.ndarray,
    denom: float,
    fraction: float,
    months: float | None,
) -> tuple[dict[float, float], dict[float, float]]:
    """FSU of the ASHRAE 14 Annex B approximation (eq. B-14) and the savings uncertainty
    [kWh], the larger of that approximation and the exact OLS form, at 68 % and 90 %."""
    n, m, p = int(y.size), int(measured.size), fit.p
    fsu_ashrae = {
        c: ashrae14.fractional_savings_uncertainty(
            metrics.cv_rmse, n, p, m, fraction, metrics.rho, c, reporting_months=months
        )
        for c in (0.68, 0.90)
    }
    unc_ashrae = {
        c: ashrae14.savings_uncertainty_kwh(
            metrics.cv_rmse, n, p, m, denom, metrics.rho, c, reporting_months=months
        )
        for c in (0.68, 0.90)
    }
    unc_exact = {
        c: ashrae14.ols_savings_uncertainty_kwh(
            fit.x_base, fit.x_rep, y - fit.fitted, c, metrics.rho
        )
        for c in (0.68, 0.90)
    }
    return fsu_ashrae, {c: max(unc_ashrae[c], unc_exact[c]) for c in (0.68, 0.90)}


def _avoided_co2_kg(
    per_period: pd.Series,
    adjustments: Sequence[NonRoutineAdjustment],
    emission_factors: dict[int, EmissionFactor],
    tz: str,
) -> tuple[float, list[AppliedFactor]]:
    """CO2 avoided [kg] by the savings of each reporting period [kWh] and the adjustments,
    each with the emission factor of its (local) year; and the factors applied."""
    years = pd.DatetimeIndex(per_period.index).tz_convert(tz).year
    applied: dict[int, AppliedFactor] = {}
    co2_kg = 0.0
    for year, s in per_period.groupby(np.asarray(years)):
        af = factor_for_year(emission_factors, int(year))
        applied[int(year)] = af
        co2_kg += float(s.sum()) * af.factor.kg_co2_per_kwh
    for a in adjustments:
        year = (a.start or pd.DatetimeIndex(per_period.index)[0]).astimezone(dt.UTC).year
        af = applied.get(year) or factor_for_year(emission_factors, year)
        applied[year] = af
        co2_kg += a.energy_kwh * af.factor.kg_co2_per_kwh
    return co2_kg, list(applied.values())


# --- frozen results ---------------------------------------------------------------------------

FROZEN_FORMAT = 1


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of the data a verification used: its period starts and every numeric column
    (rounded to 1e-6, i.e. mWh for kWh), column names included; independent of column order."""
    h = hashlib.sha256()
    idx = pd.DatetimeIndex(frame.index)
    h.update((idx.tz_convert("UTC") if idx.tz is not None else idx).as_unit("ns").asi8.tobytes())
    for col in sorted(frame.columns):
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().all() and frame[col].notna().any():
            continue  # not a number column (e.g. bill ends): covered by the index and days
        h.update(str(col).encode())
        h.update(np.round(values.to_numpy(float), 6).tobytes())
    return h.hexdigest()


def _series_json(df: pd.DataFrame) -> dict[str, Any]:
    return {
        "index": [t.isoformat() for t in pd.DatetimeIndex(df.index)],
        "columns": {c: [_num(v) for v in df[c].to_numpy(float)] for c in df.columns},
    }


def _series_frame(d: dict[str, Any]) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(d["index"], utc=True)).as_unit("ns")
    return pd.DataFrame(
        {
            c: np.array([np.nan if v is None else v for v in vs], float)
            for c, vs in d["columns"].items()
        },
        index=idx,
    )


def _num(v: Any) -> float | None:
    f = float(v)
    return f if np.isfinite(f) else None


def _clean(obj: Any) -> Any:
    """Plain JSON values: non-finite floats as None, numpy scalars as Python ones."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _num(obj)
    if isinstance(obj, (dt.datetime, pd.Timestamp)):
        return obj.isoformat()
    return obj


_SCALARS = (
    "option",
    "model",
    "interval",
    "baseline_n",
    "reporting_m",
    "adjusted_baseline_kwh",
    "reporting_kwh",
    "nonroutine_kwh",
    "avoided_kwh",
    "fraction_saved",
    "fsu_68",
    "fsu_90",
    "fsu_ashrae_68",
    "fsu_ashrae_90",
    "uncertainty_kwh_68",
    "uncertainty_kwh_90",
    "avoided_eur",
    "avoided_co2_t",
)


def freeze(res: SavingsResult) -> dict[str, Any]:
    """Everything a savings report shows, as JSON: stored with a verification so that showing
    it never recomputes (:func:`thaw` gives the result back)."""
    return _clean(
        {
            "format": FROZEN_FORMAT,
            **{k: getattr(res, k) for k in _SCALARS},
            "coefficients": res.coefficients,
            "coefficient_table": res.coefficient_table,
            "metrics": dataclasses.asdict(res.metrics),
            "emission_factors": [
                {
                    "requested_year": a.requested_year,
                    "factor": dataclasses.asdict(a.factor),
                    "note": a.note,
                }
                for a in res.emission_factors
            ],
            "adjustments": [
                {"energy_kwh": a.energy_kwh, "reason": a.reason, "start": a.start, "end": a.end}
                for a in res.adjustments
            ],
            "warnings": res.warnings,
            "baseline_series": _series_json(res.baseline_series),
            "reporting_series": _series_json(res.reporting_series),
            "enpi": res.enpi,
        }
    )


def _inf(v: Any) -> float:
    return float("inf") if v is None else float(v)


def thaw(d: dict[str, Any]) -> SavingsResult:
    """The :class:`SavingsResult` of a frozen verification (see :func:`freeze`)."""
    if d.get("format") != FROZEN_FORMAT:
        raise ValueError(f"frozen savings result of unknown format {d.get('format')!r}")
    scalars = {k: d[k] for k in _SCALARS}
    for k in ("fsu_68", "fsu_90", "fsu_ashrae_68", "fsu_ashrae_90"):
        scalars[k] = _inf(scalars[k])
    m: dict[str, Any] = {k: (np.nan if v is None else v) for k, v in d["metrics"].items()}
    return SavingsResult(
        **scalars,
        coefficients={k: (np.nan if v is None else v) for k, v in d["coefficients"].items()},
        metrics=ashrae14.FitMetrics(**m),
        emission_factors=[
            AppliedFactor(a["requested_year"], EmissionFactor(**a["factor"]), a["note"])
            for a in d["emission_factors"]
        ],
        adjustments=[
            NonRoutineAdjustment(
                a["energy_kwh"],
                a["reason"],
                None if a["start"] is None else pd.Timestamp(a["start"]).to_pydatetime(),
                None if a["end"] is None else pd.Timestamp(a["end"]).to_pydatetime(),
            )
            for a in d["adjustments"]
        ],
        warnings=list(d["warnings"]),
        baseline_series=_series_frame(d["baseline_series"]),
        reporting_series=_series_frame(d["reporting_series"]),
        coefficient_table=[
            {k: (np.nan if v is None else v) for k, v in row.items()}
            for row in d["coefficient_table"]
        ],
        enpi=d.get("enpi"),
    )
