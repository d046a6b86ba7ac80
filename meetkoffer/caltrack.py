"""CalTRACK 2.0 daily change-point model: heating/cooling degree days with a balance-point search.

Implements the daily methods of CalTRACK 2.0 (sections 2 and 3 of the CalTRACK methods,
https://docs.caltrack.org), so that results can be compared with OpenEEmeter:

- candidate models: intercept only, heating only (HDD), cooling only (CDD), heating and
  cooling (HDD + CDD), fitted by ordinary least squares on daily usage;
- balance points on a grid from 30 to 90 degF in steps of 3 degF (converted to degC here),
  with the cooling balance point >= the heating balance point;
- a candidate qualifies only with at least 10 days of non-zero degree days *and* at least
  20 degree days (degF) per year for each of its terms, and strictly positive heating and
  cooling coefficients;
- the qualifying model with the highest adjusted R^2 wins; a model with CV(RMSE) > 100 % is
  disqualified;
- data sufficiency: a 365-day baseline with at most 10 % of days missing.

Temperatures are degC, usage kWh per day. Degree days use the daily mean temperature:
``HDD = max(0, bp - T)``, ``CDD = max(0, T - bp)`` [degC day].
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

#: Balance-point grid of CalTRACK: 30..90 degF in 3 degF steps, as degC.
BALANCE_POINTS_F = np.arange(30.0, 90.0 + 1e-9, 3.0)
BALANCE_POINTS_C = (BALANCE_POINTS_F - 32.0) * 5.0 / 9.0
MIN_NONZERO_DAYS = 10
MIN_DEGREE_DAYS_F_PER_YEAR = 20.0
MIN_DEGREE_DAYS_C_PER_YEAR = MIN_DEGREE_DAYS_F_PER_YEAR * 5.0 / 9.0
BASELINE_DAYS = 365
MAX_MISSING_SHARE = 0.10
MAX_CV_RMSE = 1.0


@dataclass(frozen=True, slots=True)
class Sufficiency:
    """CalTRACK data sufficiency of a baseline: ``ok`` with the reasons where it fails."""

    ok: bool
    days_in_period: int
    days_with_data: int
    missing_share: float
    reasons: tuple[str, ...]


def data_sufficiency(
    usage_kwh: pd.Series, temp_c: pd.Series, baseline_days: int = BASELINE_DAYS
) -> Sufficiency:
    """Check CalTRACK 2.0 daily sufficiency: ``baseline_days`` days, <= 10 % missing.

    A day counts when both its usage and its mean temperature are present.
    """
    if usage_kwh.empty:
        return Sufficiency(False, 0, 0, 1.0, ("no usage data",))
    days = pd.date_range(usage_kwh.index.min(), usage_kwh.index.max(), freq="D")
    both = pd.DataFrame({"u": usage_kwh, "t": temp_c}).dropna()
    span = len(days)
    n = int(both.index.isin(days).sum())
    missing = 1.0 - n / max(span, baseline_days)
    reasons = []
    if span < baseline_days:
        reasons.append(f"baseline spans {span} days, CalTRACK needs {baseline_days}")
    if missing > MAX_MISSING_SHARE:
        reasons.append(f"{missing:.0%} of days missing, CalTRACK allows at most 10%")
    return Sufficiency(not reasons, span, n, missing, tuple(reasons))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One fitted candidate model."""

    kind: str  # intercept_only | hdd_only | cdd_only | hdd_cdd
    heating_bp_c: float | None
    cooling_bp_c: float | None
    intercept_kwh: float
    beta_hdd_kwh_per_cdd: float  # kWh per heating degC day
    beta_cdd_kwh_per_cdd: float  # kWh per cooling degC day
    r2: float
    adj_r2: float
    cv_rmse: float
    n: int
    p: int
    qualified: bool
    reason: str = ""

    @classmethod
    def rejected(
        cls,
        kind: str,
        heating_bp_c: float | None,
        cooling_bp_c: float | None,
        n: int,
        p: int,
        why: str,
    ) -> Candidate:
        """A candidate not fitted (too few degree days): no coefficients, not qualified."""
        nan = float("nan")
        return cls(kind, heating_bp_c, cooling_bp_c, nan, nan, nan, nan, nan, nan, n, p, False, why)


def degree_days(temp_c: np.ndarray, bp_c: float) -> tuple[np.ndarray, np.ndarray]:
    """Heating and cooling degree days [degC day] of daily mean temperatures for one bp."""
    t = np.asarray(temp_c, float)
    return np.maximum(bp_c - t, 0.0), np.maximum(t - bp_c, 0.0)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    yhat = x @ coef
    n, p = x.shape
    ss_res = float(np.sum((y - yhat) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - p) if n - p > 0 else -np.inf
    cv = float(np.sqrt(ss_res / (n - p)) / y.mean()) if n - p > 0 and y.mean() else np.inf
    return coef, r2, adj, cv


def _dd_ok(dd: np.ndarray, n_days: int) -> tuple[bool, str]:
    nonzero = int(np.count_nonzero(dd > 0))
    per_year = float(dd.sum()) * 365.0 / n_days
    if nonzero < MIN_NONZERO_DAYS:
        return False, f"{nonzero} days with non-zero degree days < {MIN_NONZERO_DAYS}"
    if per_year < MIN_DEGREE_DAYS_C_PER_YEAR:
        return False, f"{per_year:.1f} degC days/year < {MIN_DEGREE_DAYS_C_PER_YEAR:.1f}"
    return True, ""


def candidates(usage_kwh: np.ndarray, temp_c: np.ndarray) -> list[Candidate]:
    """Fit every CalTRACK candidate on the balance-point grid (qualified or not)."""
    y = np.asarray(usage_kwh, float)
    t = np.asarray(temp_c, float)
    n = y.size
    ones = np.ones(n)
    out: list[Candidate] = []
    coef, r2, adj, cv = _ols(ones[:, None], y)
    out.append(
        Candidate("intercept_only", None, None, float(coef[0]), 0.0, 0.0, r2, 0.0, cv, n, 1, True)
    )
    for bp in BALANCE_POINTS_C:
        hdd, cdd = degree_days(t, bp)
        for kind, dd in (("hdd_only", hdd), ("cdd_only", cdd)):
            ok, why = _dd_ok(dd, n)
            if not ok:
                out.append(
                    Candidate.rejected(
                        kind,
                        bp if kind == "hdd_only" else None,
                        bp if kind == "cdd_only" else None,
                        n,
                        2,
                        why,
                    )
                )
                continue
            coef, r2, adj, cv = _ols(np.column_stack([ones, dd]), y)
            beta = float(coef[1])
            qualified = beta > 0
            out.append(
                Candidate(
                    kind,
                    bp if kind == "hdd_only" else None,
                    bp if kind == "cdd_only" else None,
                    float(coef[0]),
                    beta if kind == "hdd_only" else 0.0,
                    beta if kind == "cdd_only" else 0.0,
                    r2,
                    adj,
                    cv,
                    n,
                    2,
                    qualified,
                    "" if qualified else "coefficient not positive",
                )
            )
    for i, hbp in enumerate(BALANCE_POINTS_C):
        hdd, _ = degree_days(t, hbp)
        ok_h, why_h = _dd_ok(hdd, n)
        for cbp in BALANCE_POINTS_C[i:]:
            _, cdd = degree_days(t, cbp)
            ok_c, why_c = _dd_ok(cdd, n)
            if not (ok_h and ok_c):
                out.append(Candidate.rejected("hdd_cdd", hbp, cbp, n, 3, why_h or why_c))
                continue
            coef, r2, adj, cv = _ols(np.column_stack([ones, hdd, cdd]), y)
            qualified = coef[1] > 0 and coef[2] > 0
            out.append(
                Candidate(
                    "hdd_cdd",
                    hbp,
                    cbp,
                    float(coef[0]),
                    float(coef[1]),
                    float(coef[2]),
                    r2,
                    adj,
                    cv,
                    n,
                    3,
                    bool(qualified),
                    "" if qualified else "coefficient not positive",
                )
            )
    return [
        replace(c, qualified=False, reason="CV(RMSE) > 100 %")
        if c.qualified and c.cv_rmse > MAX_CV_RMSE
        else c
        for c in out
    ]


@dataclass(frozen=True, slots=True)
class DailyModel:
    """The selected CalTRACK daily model with its sufficiency check and all candidates."""

    best: Candidate
    sufficiency: Sufficiency
    candidates: list[Candidate] = field(repr=False)

    @property
    def p(self) -> int:
        return self.best.p

    def design(self, temp_c: np.ndarray | pd.Series) -> np.ndarray:
        """Regressor matrix of the selected model (intercept, then HDD and/or CDD)."""
        t = np.asarray(temp_c, float)
        b = self.best
        cols = [np.ones(t.shape)]
        if b.heating_bp_c is not None:
            cols.append(np.maximum(b.heating_bp_c - t, 0.0))
        if b.cooling_bp_c is not None:
            cols.append(np.maximum(t - b.cooling_bp_c, 0.0))
        return np.column_stack(cols)

    def predict(self, temp_c: np.ndarray | pd.Series) -> np.ndarray:
        """Modelled daily usage [kWh] for daily mean temperatures [degC]."""
        t = np.asarray(temp_c, float)
        b = self.best
        y = np.full(t.shape, b.intercept_kwh)
        if b.heating_bp_c is not None:
            y = y + b.beta_hdd_kwh_per_cdd * np.maximum(b.heating_bp_c - t, 0.0)
        if b.cooling_bp_c is not None:
            y = y + b.beta_cdd_kwh_per_cdd * np.maximum(t - b.cooling_bp_c, 0.0)
        return y


def fit_daily(
    usage_kwh: pd.Series, temp_c: pd.Series, require_sufficiency: bool = True
) -> DailyModel:
    """Fit the CalTRACK daily model on a baseline (daily usage [kWh], daily mean temp [degC]).

    Raises
    ------
    ValueError
        If the data are insufficient and ``require_sufficiency`` is true (the reasons are in
        the message), or fewer than 3 days have both usage and temperature.
    """
    suff = data_sufficiency(usage_kwh, temp_c)
    if require_sufficiency and not suff.ok:
        raise ValueError("CalTRACK data sufficiency not met: " + "; ".join(suff.reasons))
    df = pd.DataFrame({"u": usage_kwh, "t": temp_c}).dropna()
    if len(df) < 3:
        raise ValueError(f"CalTRACK daily model needs at least 3 days with data, got {len(df)}")
    cands = candidates(df["u"].to_numpy(), df["t"].to_numpy())
    qualified = [c for c in cands if c.qualified]
    best = max(qualified, key=lambda c: (c.adj_r2 if c.kind != "intercept_only" else -np.inf, -c.p))
    intercept = next(c for c in cands if c.kind == "intercept_only")
    if best.adj_r2 <= intercept.adj_r2:
        best = intercept
    return DailyModel(best, suff, cands)
