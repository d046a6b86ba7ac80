"""ASHRAE Guideline 14 goodness-of-fit metrics and fractional savings uncertainty.

References
----------
ASHRAE Guideline 14-2014, *Measurement of Energy, Demand, and Water Savings*: clause 4.3.2 and
Annex B (CV(RMSE) and NMBE with ``n - p`` degrees of freedom; savings uncertainty with the
lag-1 autocorrelation correction ``n' = n (1 - rho) / (1 + rho)``). Calibration limits:
monthly CV(RMSE) <= 15 %, |NMBE| <= 5 %; hourly CV(RMSE) <= 30 %, |NMBE| <= 10 %. The
Guideline gives no separate daily limits; daily and 15-minute models are judged against the
hourly limits here. R^2 >= 0.75 is the Guideline's recommended minimum for a regression
model. CalTRACK 2.0 (daily methods, section 4.3) replaces the constant 1.26 by a polynomial in
the number of reporting months.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: (max CV(RMSE), max |NMBE|) as fractions, by data interval.
LIMITS: dict[str, tuple[float, float]] = {
    "monthly": (0.15, 0.05),
    "daily": (0.30, 0.10),
    "hourly": (0.30, 0.10),
    "15min": (0.30, 0.10),
}
R2_MIN = 0.75
#: CalTRACK daily-data coefficients of a*M^2 + b*M + d (M = reporting months).
CALTRACK_DAILY_ABD = (-0.00024, 0.03535, 1.00286)


def _arrays(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, float)
    yhat = np.asarray(yhat, float)
    if y.shape != yhat.shape or y.ndim != 1:
        raise ValueError(f"y and yhat must be 1-D of equal length, got {y.shape} and {yhat.shape}")
    if y.size == 0:
        raise ValueError("no data points")
    return y, yhat


def cv_rmse(y: np.ndarray, yhat: np.ndarray, p: int) -> float:
    """CV(RMSE) = sqrt(sum (y - yhat)^2 / (n - p)) / mean(y), as a fraction.

    Parameters
    ----------
    y, yhat
        Measured and modelled values (same unit).
    p
        Number of model parameters (including the intercept).
    """
    y, yhat = _arrays(y, yhat)
    dof = y.size - p
    if dof <= 0:
        raise ValueError(f"n - p must be > 0, got n={y.size}, p={p}")
    return float(np.sqrt(np.sum((y - yhat) ** 2) / dof) / np.mean(y))


def nmbe(y: np.ndarray, yhat: np.ndarray, p: int) -> float:
    """NMBE = sum(y - yhat) / ((n - p) * mean(y)), as a fraction."""
    y, yhat = _arrays(y, yhat)
    dof = y.size - p
    if dof <= 0:
        raise ValueError(f"n - p must be > 0, got n={y.size}, p={p}")
    return float(np.sum(y - yhat) / (dof * np.mean(y)))


def r_squared(y: np.ndarray, yhat: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot."""
    y, yhat = _arrays(y, yhat)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return 0.0
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot


def lag1_autocorrelation(residuals: np.ndarray) -> float:
    """Lag-1 autocorrelation of residuals in time order (Annex B ``rho``)."""
    r = np.asarray(residuals, float)
    if r.size < 3:
        return 0.0
    r = r - r.mean()
    den = float(np.sum(r * r))
    if den == 0:
        return 0.0
    return float(np.sum(r[1:] * r[:-1]) / den)


@dataclass(frozen=True, slots=True)
class FitMetrics:
    """ASHRAE 14 metrics of a baseline fit with pass/fail against the limits of ``interval``."""

    n: int
    p: int
    cv_rmse: float
    nmbe: float
    r2: float
    rho: float
    interval: str
    cv_rmse_max: float
    nmbe_max: float
    cv_rmse_ok: bool
    nmbe_ok: bool
    r2_ok: bool

    @property
    def passes(self) -> bool:
        """True when CV(RMSE) and NMBE are within the limits (R^2 is advisory)."""
        return self.cv_rmse_ok and self.nmbe_ok


def fit_metrics(y: np.ndarray, yhat: np.ndarray, p: int, interval: str = "daily") -> FitMetrics:
    """All metrics of a fit; ``interval`` is one of ``monthly, daily, hourly, 15min``."""
    if interval not in LIMITS:
        raise ValueError(f"interval must be one of {sorted(LIMITS)}, got {interval!r}")
    y, yhat = _arrays(y, yhat)
    cv = cv_rmse(y, yhat, p)
    nb = nmbe(y, yhat, p)
    r2 = r_squared(y, yhat)
    cv_max, nb_max = LIMITS[interval]
    return FitMetrics(
        int(y.size),
        p,
        cv,
        nb,
        r2,
        lag1_autocorrelation(y - yhat),
        interval,
        cv_max,
        nb_max,
        cv <= cv_max,
        abs(nb) <= nb_max,
        r2 >= R2_MIN,
    )


def t_value(confidence: float, dof: int) -> float:
    """Two-sided Student-t value for ``confidence`` (e.g. 0.68, 0.90) and ``dof`` degrees."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))


def fractional_savings_uncertainty(
    cv: float,
    n: int,
    p: int,
    m: int,
    fraction_saved: float,
    rho: float = 0.0,
    confidence: float = 0.90,
    reporting_months: float | None = None,
) -> float:
    """Fractional savings uncertainty (ASHRAE 14 Annex B, eq. B-14 with autocorrelation).

    ``FSU = t * k * CV * sqrt((n / n') * (1 + 2 / n') * (1 / m)) / F``, where
    ``n' = n (1 - rho) / (1 + rho)`` and ``k = 1.26`` (ASHRAE) or, when ``reporting_months``
    is given, the CalTRACK daily polynomial ``a M^2 + b M + d``.

    Parameters
    ----------
    cv
        CV(RMSE) of the baseline model (fraction).
    n, p
        Baseline points and model parameters; ``t`` uses ``n - p`` degrees of freedom.
    m
        Number of reporting-period points.
    fraction_saved
        F = savings / adjusted baseline (fraction, non-zero).
    rho
        Lag-1 autocorrelation of the baseline residuals (negative values are taken as 0).

    Returns
    -------
    float
        Uncertainty of the savings as a fraction of the savings (0.5 = +-50 %); ``inf`` if
        nothing was saved.
    """
    if n - p < 1:
        raise ValueError(f"n - p must be >= 1, got n={n}, p={p}")
    if m < 1:
        raise ValueError(f"reporting points m must be >= 1, got {m}")
    if fraction_saved == 0:
        return float("inf")
    rho = min(max(rho, 0.0), 0.99)
    n_eff = n * (1.0 - rho) / (1.0 + rho)
    k = 1.26
    if reporting_months is not None:
        a, b, d = CALTRACK_DAILY_ABD
        k = a * reporting_months**2 + b * reporting_months + d
    t = t_value(confidence, n - p)
    return float(
        t * k * cv * np.sqrt((n / n_eff) * (1.0 + 2.0 / n_eff) * (1.0 / m)) / abs(fraction_saved)
    )


def savings_uncertainty_kwh(
    cv: float,
    n: int,
    p: int,
    m: int,
    adjusted_baseline_kwh: float,
    rho: float = 0.0,
    confidence: float = 0.90,
    reporting_months: float | None = None,
) -> float:
    """Absolute savings uncertainty [kWh]: FSU times the savings (finite even for zero savings).

    Equals ``t * k * CV * sqrt((n / n') * (1 + 2 / n') / m) * E_adjusted_baseline``.
    """
    return float(
        fractional_savings_uncertainty(
            cv, n, p, m, 1.0, rho, confidence, reporting_months=reporting_months
        )
        * abs(adjusted_baseline_kwh)
    )


def ols_savings_uncertainty_kwh(
    x_baseline: np.ndarray,
    x_reporting: np.ndarray,
    residuals: np.ndarray,
    confidence: float = 0.90,
    rho: float = 0.0,
) -> float:
    """Uncertainty [kWh] of the summed OLS prediction over the reporting period (exact form).

    ``t * sqrt(MSE * (n / n') * (m + s' (X'X)^-1 s))`` with ``s`` the column sums of the
    reporting regressors: the variance of ``m`` new observations plus that of the fitted
    parameters (ASHRAE 14 Annex B, the matrix form that eq. B-14 approximates; Reddy and
    Claridge 2000). Unlike the 1.26 approximation it stays valid when the model has many
    parameters (time-of-week terms) relative to the baseline length.
    """
    xb = np.asarray(x_baseline, float)
    xr = np.asarray(x_reporting, float)
    r = np.asarray(residuals, float)
    n, p = xb.shape
    if n - p < 1:
        raise ValueError(f"n - p must be >= 1, got n={n}, p={p}")
    mse = float(np.sum(r * r) / (n - p))
    rho = min(max(rho, 0.0), 0.99)
    n_eff = n * (1.0 - rho) / (1.0 + rho)
    s = xr.sum(axis=0)
    lev = float(s @ np.linalg.pinv(xb.T @ xb) @ s)
    return float(t_value(confidence, n - p) * np.sqrt(mse * (n / n_eff) * (xr.shape[0] + lev)))
