"""Multi-variable EnPI baselines (ISO 50006) and their CUSUM.

ISO 50006:2014 (clause 4.4 and annex C) normalises an energy performance indicator (EnPI) for
its relevant variables with a statistical model of the energy baseline (EnB). Here that model
is ordinary least squares of daily energy on production *and* heating degree days together:

    E_d = h_d/24 * (a + b_hdd * HDD_d) + b_prod * P_d

``h_d/24`` is the exposure of a local day of 23, 24 or 25 hours (the base load and the heating
run for the hours the day has; production is per unit made). HDD use the Dutch convention,
``max(0, 18 degC - T_mean)`` per day (the base is a parameter).

The model is judged with the validity rules of the US DOE EnPI tool (docs/SOURCES.md, as the
single-variable EnPI of :mod:`meetkoffer.analysis`): the model's F-test p-value < 0.10, every
variable's p-value < 0.20 and at least one < 0.10, R^2 >= 0.50; and with the range check of
ISO 50006 annex C: the reporting period's relevant variables lie within the range seen in the
baseline (give or take 5 % of it; the model is not extrapolated).

The CUSUM (cumulative sum of differences, ISO 50006 annex D) is ``sum (E_actual - E_expected)``
over baseline and reporting days: flat around zero in the baseline, falling when energy is
saved; its value at the end is the energy saved (negative) against the EnB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

HDD_BASE_C = 18.0
MAX_P_VALUE = 0.10  # the model's F-test, and at least one variable
MAX_P_VALUE_EACH = 0.20  # every variable
MIN_R2 = 0.50
#: Relevant variables a baseline may use, with their units.
VARIABLES = {"production": "units", "hdd": "°C·d"}


@dataclass(frozen=True, slots=True)
class Term:
    """One coefficient of the EnB model with its statistics."""

    name: str
    unit: str
    value: float
    std_error: float
    t: float
    p_value: float


@dataclass
class EnpiBaseline:
    """An ISO 50006 energy baseline: the OLS model, its statistics and validity checks."""

    variables: tuple[str, ...]
    terms: list[Term]
    n: int
    r2: float
    adj_r2: float
    f_p_value: float
    cv_rmse: float
    hdd_base_c: float
    ranges: dict[str, tuple[float, float]]
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """All validity checks pass (see the module docstring)."""
        return not self.problems

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """Regressors (intercept, then the variables) of the days of ``frame``."""
        return _design(_with_hdd(frame, self.hdd_base_c), self.variables)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected energy [kWh] of each day of ``frame`` (the EnB)."""
        return self.design(frame) @ np.array([t.value for t in self.terms])

    def out_of_range(self, frame: pd.DataFrame) -> dict[str, int]:
        """Days of ``frame`` whose relevant variables lie outside the baseline's range."""
        f = _with_hdd(frame, self.hdd_base_c)
        out = {}
        for v, (lo, hi) in self.ranges.items():
            x = f[v].to_numpy(float)
            span = hi - lo
            n = int(np.count_nonzero((x < lo - 0.05 * span) | (x > hi + 0.05 * span)))
            if n:
                out[v] = n
        return out


def _with_hdd(frame: pd.DataFrame, base_c: float) -> pd.DataFrame:
    if "temp_c" not in frame:
        return frame
    f = frame.copy()
    f["hdd"] = np.maximum(base_c - f["temp_c"].to_numpy(float), 0.0)
    return f


def _design(frame: pd.DataFrame, variables: Sequence[str]) -> np.ndarray:
    e = frame["hours"].to_numpy(float) / 24.0 if "hours" in frame else np.ones(len(frame))
    cols = [e]
    for v in variables:
        x = frame[v].to_numpy(float)
        cols.append(x if v == "production" else x * e)
    return np.column_stack(cols)


def fit_baseline(
    frame: pd.DataFrame, variables: Sequence[str], hdd_base_c: float = HDD_BASE_C
) -> EnpiBaseline:
    """Fit the EnB of daily ``energy_kwh`` on ``variables`` (``production``, ``hdd``).

    ``frame`` holds ``energy_kwh``, optionally ``hours`` and what the variables need
    (``production`` [units], ``temp_c`` [degC mean] for ``hdd``). Days with a missing value
    are left out.

    Raises
    ------
    ValueError
        Naming an unknown variable or a missing column, or too few days for the model.
    """
    unknown = [v for v in variables if v not in VARIABLES]
    if unknown or not variables:
        raise ValueError(f"EnPI variables must be among {sorted(VARIABLES)}, got {list(variables)}")
    need = ["energy_kwh"] + [("temp_c" if v == "hdd" else v) for v in variables]
    missing = [c for c in need if c not in frame]
    if missing:
        raise ValueError(f"the EnPI baseline needs columns {missing}")
    f = _with_hdd(frame.dropna(subset=need), hdd_base_c)
    x = _design(f, variables)
    y = f["energy_kwh"].to_numpy(float)
    n, p = x.shape
    if n <= p + 1:
        raise ValueError(f"the EnPI baseline has {n} days for {p} coefficients; it needs more")
    return _statistics(f, x, y, tuple(variables), hdd_base_c)


def _statistics(
    f: pd.DataFrame, x: np.ndarray, y: np.ndarray, variables: tuple[str, ...], hdd_base_c: float
) -> EnpiBaseline:
    """OLS coefficients with standard errors, t, p, R^2, the F-test and the validity checks."""
    n, p = x.shape
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    dof = n - p
    ss_res = float(resid @ resid)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    s2 = ss_res / dof
    cov = s2 * np.linalg.pinv(x.T @ x)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, coef / se, np.inf)
    pv = 2.0 * stats.t.sf(np.abs(t), dof)
    f_stat = ((ss_tot - ss_res) / (p - 1)) / s2 if s2 > 0 else np.inf
    f_p = float(stats.f.sf(f_stat, p - 1, dof))
    names = ["intercept", *variables]
    units = ["kWh/d"] + ["kWh/unit" if v == "production" else "kWh/(°C·d)" for v in variables]
    terms = [
        Term(nm, u, float(c), float(s), float(tt), float(pp))
        for nm, u, c, s, tt, pp in zip(names, units, coef, se, t, pv)
    ]
    problems = []
    if not f_p < MAX_P_VALUE:
        problems.append(f"model F-test p-value {f_p:.3f} >= {MAX_P_VALUE}")
    for term in terms[1:]:
        if not term.p_value < MAX_P_VALUE_EACH:
            problems.append(f"{term.name} p-value {term.p_value:.3f} >= {MAX_P_VALUE_EACH}")
    if not any(term.p_value < MAX_P_VALUE for term in terms[1:]):
        problems.append(f"no variable has a p-value below {MAX_P_VALUE}")
    if r2 < MIN_R2:
        problems.append(f"R² {r2:.2f} < {MIN_R2}")
    ranges = {v: (float(f[v].min()), float(f[v].max())) for v in variables}
    return EnpiBaseline(
        variables,
        terms,
        n,
        r2,
        1.0 - (1.0 - r2) * (n - 1) / dof,
        f_p,
        float(np.sqrt(s2) / y.mean()) if y.mean() else np.inf,
        hdd_base_c,
        ranges,
        problems,
    )


def cusum(model: EnpiBaseline, frame: pd.DataFrame) -> pd.DataFrame:
    """Expected and actual energy per day and the CUSUM of their difference [kWh]."""
    need = ["energy_kwh"] + [("temp_c" if v == "hdd" else v) for v in model.variables]
    f = frame.dropna(subset=need)
    expected = model.predict(f)
    diff = f["energy_kwh"].to_numpy(float) - expected
    return pd.DataFrame(
        {
            "energy_kwh": f["energy_kwh"].to_numpy(float),
            "expected_kwh": expected,
            "difference_kwh": diff,
            "cusum_kwh": np.cumsum(diff),
        },
        index=f.index,
    )


def relevant_variables(frame: pd.DataFrame) -> list[str]:
    """The relevant variables the data can support: production if it varies, HDD if the
    temperature is known on every day."""
    out = []
    if "production" in frame and frame["production"].nunique(dropna=True) > 1:
        out.append("production")
    if "temp_c" in frame and frame["temp_c"].notna().all():
        out.append("hdd")
    return out


def enpi_summary(
    baseline: pd.DataFrame, reporting: pd.DataFrame, variables: Sequence[str] | None = None
) -> dict[str, Any]:
    """The EnB fitted on ``baseline`` and the CUSUM over both periods, as plain data (stored
    with a verification and shown in its report).

    Raises
    ------
    ValueError
        If no relevant variable is available or the model cannot be fitted.
    """
    variables = list(variables) if variables is not None else relevant_variables(baseline)
    if not variables:
        raise ValueError("no relevant variable (production, outdoor temperature) for an EnPI")
    m = fit_baseline(baseline, variables)
    problems = list(m.problems)
    outside = m.out_of_range(reporting)
    problems.extend(
        f"{n} reporting days have {v} outside the baseline range" for v, n in outside.items()
    )
    both = pd.concat([baseline, reporting]).sort_index()
    cs = cusum(m, both)
    rep_start = pd.DatetimeIndex(reporting.index).min()
    rep_part = cs[cs.index >= rep_start]
    return {
        "variables": list(m.variables),
        "hdd_base_c": m.hdd_base_c,
        "terms": [
            {
                "term": t.name,
                "unit": t.unit,
                "value": t.value,
                "std_error": t.std_error,
                "t": t.t,
                "p_value": t.p_value,
            }
            for t in m.terms
        ],
        "n": m.n,
        "r2": m.r2,
        "adj_r2": m.adj_r2,
        "f_p_value": m.f_p_value,
        "cv_rmse": m.cv_rmse,
        "valid": not problems,
        "problems": problems,
        "reporting_start": rep_start.isoformat(),
        "reporting_difference_kwh": float(rep_part["difference_kwh"].sum()),
        "cusum": {
            "index": [t.isoformat() for t in pd.DatetimeIndex(cs.index)],
            "cusum_kwh": [float(v) for v in cs["cusum_kwh"]],
            "expected_kwh": [float(v) for v in cs["expected_kwh"]],
            "energy_kwh": [float(v) for v in cs["energy_kwh"]],
        },
    }
