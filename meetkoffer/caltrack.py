"""CalTRACK 2.0 change-point models: daily usage and monthly bills, on the local calendar.

Implements the daily and billing methods of CalTRACK 2.0 (https://docs.caltrack.org) so that
results can be compared with OpenEEmeter / OpenDSM:

- candidate models: intercept only, heating only (HDD), cooling only (CDD), heating and
  cooling (HDD + CDD), fitted by least squares (the billing method weights each period by its
  length in days);
- balance points on a grid from 30 to 90 degF in steps of 1 degF (CalTRACK allows steps of at
  most 3 degF; OpenDSM optimises the balance points continuously: on the generated two years
  of ``tests/meetkoffer/test_caltrack_opendsm.py`` the 3 degF grid is 1.0 % off OpenDSM's
  savings, the 1 degF grid 0.35 %), as degC here, with the cooling balance point >= the
  heating balance point;
- a candidate qualifies only with enough degree days for each of its terms (daily: at least 10
  days with non-zero degree days and at least 20 degF days per year; billing: at least 20 degF
  days per year), strictly positive heating and cooling coefficients *and* a p-value below 0.1
  for each of them (two-sided t-test of the coefficient);
- the qualifying model with the highest adjusted R^2 wins; a model with CV(RMSE) > 100 % is
  disqualified;
- data sufficiency: a 365-day baseline with at most 10 % of days missing, counted in *local*
  days (Europe/Amsterdam): a day is the calendar day of the plant, 23, 24 or 25 hours long.

Calendar-true exposure: a local day of 25 hours (the end of summer time) uses 25/24 of the
energy of a 24-hour day at the same temperature. The daily models are therefore fitted on
usage *per 24 hours*: each regressor is multiplied by the day's exposure ``hours / 24`` so that
``usage = hours/24 * (intercept + beta_hdd * HDD + beta_cdd * CDD)``; a prediction for a
25-hour day is 25/24 of that of an ordinary day. Bills use the same exposure: a period's
length in days is its length in hours / 24 (a March bill has 30 23/24 days).

Temperatures are degC, usage kWh. Degree days use the daily mean temperature:
``HDD = max(0, bp - T)``, ``CDD = max(0, T - bp)`` [degC day].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import special

from energy.timegrid import LOCAL_TZ

#: Balance-point grid: 30..90 degF in 1 degF steps, as degC.
BALANCE_POINTS_F = np.arange(30.0, 90.0 + 1e-9, 1.0)
BALANCE_POINTS_C = (BALANCE_POINTS_F - 32.0) * 5.0 / 9.0
MIN_NONZERO_DAYS = 10
MIN_DEGREE_DAYS_F_PER_YEAR = 20.0
MIN_DEGREE_DAYS_C_PER_YEAR = MIN_DEGREE_DAYS_F_PER_YEAR * 5.0 / 9.0
MAX_P_VALUE = 0.1
BASELINE_DAYS = 365
MAX_MISSING_SHARE = 0.10
MAX_CV_RMSE = 1.0
#: Monthly bills: periods outside 25..35 days are left out (CalTRACK billing data rules).
BILL_MIN_DAYS = 25.0
BILL_MAX_DAYS = 35.0
#: A bill needs outdoor temperatures on at least this share of its days.
BILL_MIN_TEMP_COVERAGE = 0.9


@dataclass(frozen=True, slots=True)
class Sufficiency:
    """CalTRACK data sufficiency of a baseline: ``ok`` with the reasons where it fails."""

    ok: bool
    days_in_period: int
    days_with_data: int
    missing_share: float
    reasons: tuple[str, ...]


def local_dates(index: pd.Index, tz: str = LOCAL_TZ) -> pd.DatetimeIndex:
    """The local calendar day (tz-naive midnight) of each timestamp of ``index``.

    A tz-naive index is taken as local already. UTC instants of local midnights (the index of
    :func:`meetkoffer.mv.daily_frame`) lie at 23:00 UTC in winter and 22:00 UTC in summer;
    counting them on a UTC day grid is what reported every full Dutch year as "59 % of days
    missing" (the 214 summer-time days fell between the grid points).
    """
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_convert(tz).tz_localize(None)
    return idx.normalize()


def data_sufficiency(
    usage_kwh: pd.Series,
    temp_c: pd.Series,
    baseline_days: int = BASELINE_DAYS,
    tz: str = LOCAL_TZ,
) -> Sufficiency:
    """Check CalTRACK 2.0 daily sufficiency: ``baseline_days`` local days, <= 10 % missing.

    A local day counts when both its usage and its mean temperature are present.
    """
    if usage_kwh.empty:
        return Sufficiency(False, 0, 0, 1.0, ("no usage data",))
    both = pd.DataFrame({"u": usage_kwh, "t": temp_c}).dropna()
    first, last = local_dates(usage_kwh.index[[0, -1]], tz)
    span = int((last - first).days) + 1
    n = int(local_dates(both.index, tz).nunique())
    missing = 1.0 - n / max(span, baseline_days)
    reasons = []
    if span < baseline_days:
        reasons.append(f"baseline spans {span} days, CalTRACK needs {baseline_days}")
    if missing > MAX_MISSING_SHARE:
        reasons.append(f"{missing:.0%} of days missing, CalTRACK allows at most 10%")
    return Sufficiency(not reasons, span, n, missing, tuple(reasons))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One fitted candidate model; coefficients are per 24 hours (daily) or per day (bills)."""

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
    se: tuple[float, ...] = ()  # standard errors: intercept, then HDD and/or CDD
    p_values: tuple[float, ...] = ()

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

    @property
    def p_hdd(self) -> float:
        """p-value of the heating coefficient (NaN without a heating term)."""
        return self.p_values[1] if self.heating_bp_c is not None and self.p_values else np.nan

    @property
    def p_cdd(self) -> float:
        """p-value of the cooling coefficient (NaN without a cooling term)."""
        return self.p_values[-1] if self.cooling_bp_c is not None and self.p_values else np.nan


def degree_days(temp_c: np.ndarray, bp_c: float) -> tuple[np.ndarray, np.ndarray]:
    """Heating and cooling degree days [degC day] of daily mean temperatures for one bp."""
    t = np.asarray(temp_c, float)
    return np.maximum(bp_c - t, 0.0), np.maximum(t - bp_c, 0.0)


@dataclass(frozen=True, slots=True)
class _Fit:
    coef: np.ndarray
    se: np.ndarray
    p_values: np.ndarray
    r2: float
    adj_r2: float
    cv_rmse: float


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> _Fit:
    """Weighted least squares with the coefficients' standard errors and two-sided p-values."""
    n, p = x.shape
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)
    resid = y - x @ coef
    dof = n - p
    ss_res = float(np.sum(w * resid**2))
    ybar = float(np.sum(w * y) / np.sum(w))
    ss_tot = float(np.sum(w * (y - ybar) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    if dof <= 0:
        nan = np.full(p, np.nan)
        return _Fit(coef, nan, nan, r2, -np.inf, np.inf)
    s2 = ss_res / dof
    try:
        cov = s2 * np.linalg.inv(x.T @ (x * w[:, None]))
        se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        se = np.full(p, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(coef) / se, np.inf)
    pv = 2.0 * special.stdtr(dof, -t)  # two-sided Student t (the ufunc: fast in the grid)
    adj = 1.0 - (1.0 - r2) * (n - 1) / dof
    cv = float(np.sqrt(s2) / ybar) if ybar else np.inf
    return _Fit(coef, se, pv, r2, adj, cv)


@dataclass(frozen=True, slots=True)
class _Rules:
    """Degree-day sufficiency of a candidate's term (daily days or billing periods)."""

    min_nonzero: int
    per_year: Callable[[np.ndarray], float]  # degC days per year of one term


def _dd_ok(dd: np.ndarray, rules: _Rules) -> tuple[bool, str]:
    nonzero = int(np.count_nonzero(dd > 0))
    per_year = rules.per_year(dd)
    if nonzero < rules.min_nonzero:
        return False, f"{nonzero} days with non-zero degree days < {rules.min_nonzero}"
    if per_year < MIN_DEGREE_DAYS_C_PER_YEAR:
        return False, f"{per_year:.1f} degC days/year < {MIN_DEGREE_DAYS_C_PER_YEAR:.1f}"
    return True, ""


def _candidate(
    kind: str,
    hbp: float | None,
    cbp: float | None,
    cols: list[np.ndarray],
    y: np.ndarray,
    e: np.ndarray,
    w: np.ndarray,
) -> Candidate:
    """Fit one candidate (regressors scaled by exposure ``e``) and judge its coefficients."""
    x = np.column_stack([e] + [e * c for c in cols])
    f = _wls(x, y, w)
    beta = [float(b) for b in f.coef[1:]]
    pv = [float(v) for v in f.p_values[1:]]
    reason = ""
    if any(b <= 0 for b in beta):
        reason = "coefficient not positive"
    elif any(not v < MAX_P_VALUE for v in pv):
        reason = f"coefficient p-value {max(pv):.3f} >= {MAX_P_VALUE}"
    b_h = beta[0] if hbp is not None else 0.0
    b_c = beta[-1] if cbp is not None else 0.0
    return Candidate(
        kind,
        hbp,
        cbp,
        float(f.coef[0]),
        b_h,
        b_c,
        f.r2,
        f.adj_r2 if cols else 0.0,
        f.cv_rmse,
        y.size,
        x.shape[1],
        not reason,
        reason,
        tuple(float(s) for s in f.se),
        tuple(float(v) for v in f.p_values),
    )


def _search(
    y: np.ndarray,
    e: np.ndarray,
    w: np.ndarray,
    dd_of: Callable[[float], tuple[np.ndarray, np.ndarray]],
    rules: _Rules,
) -> list[Candidate]:
    """Every candidate on the balance-point grid (qualified or not)."""
    n = y.size
    out = [_candidate("intercept_only", None, None, [], y, e, w)]
    dd = {bp: dd_of(bp) for bp in BALANCE_POINTS_C}
    ok = {bp: (_dd_ok(dd[bp][0], rules), _dd_ok(dd[bp][1], rules)) for bp in BALANCE_POINTS_C}
    for bp in BALANCE_POINTS_C:
        for kind, j in (("hdd_only", 0), ("cdd_only", 1)):
            good, why = ok[bp][j]
            hbp, cbp = (bp, None) if j == 0 else (None, bp)
            out.append(
                _candidate(kind, hbp, cbp, [dd[bp][j]], y, e, w)
                if good
                else Candidate.rejected(kind, hbp, cbp, n, 2, why)
            )
    for i, hbp in enumerate(BALANCE_POINTS_C):
        (ok_h, why_h), _ = ok[hbp]
        for cbp in BALANCE_POINTS_C[i:]:
            _, (ok_c, why_c) = ok[cbp]
            out.append(
                _candidate("hdd_cdd", hbp, cbp, [dd[hbp][0], dd[cbp][1]], y, e, w)
                if ok_h and ok_c
                else Candidate.rejected("hdd_cdd", hbp, cbp, n, 3, why_h or why_c)
            )
    return [
        replace(c, qualified=False, reason="CV(RMSE) > 100 %")
        if c.qualified and c.cv_rmse > MAX_CV_RMSE
        else c
        for c in out
    ]


def _select(cands: list[Candidate]) -> Candidate:
    """The qualified candidate with the highest adjusted R^2 (intercept only if none beats it)."""
    qualified = [c for c in cands if c.qualified and c.kind != "intercept_only"]
    intercept = next(c for c in cands if c.kind == "intercept_only")
    if not qualified:
        return intercept
    best = max(qualified, key=lambda c: (c.adj_r2, -c.p))
    return best if best.adj_r2 > intercept.adj_r2 else intercept


def _exposure(hours: np.ndarray | pd.Series | None, n: int) -> np.ndarray:
    if hours is None:
        return np.ones(n)
    e = np.asarray(hours, float) / 24.0
    if e.shape != (n,) or not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError("hours per day must be positive and given for every day")
    return e


def candidates(
    usage_kwh: np.ndarray, temp_c: np.ndarray, hours: np.ndarray | None = None
) -> list[Candidate]:
    """Fit every CalTRACK daily candidate on the balance-point grid (qualified or not).

    ``hours`` is the length of each local day [h] (23, 24 or 25; default 24).
    """
    y = np.asarray(usage_kwh, float)
    t = np.asarray(temp_c, float)
    e = _exposure(hours, y.size)
    rules = _Rules(MIN_NONZERO_DAYS, lambda dd: float(np.sum(dd)) * 365.0 / y.size)
    return _search(y, e, np.ones(y.size), lambda bp: degree_days(t, bp), rules)


@dataclass(frozen=True, slots=True)
class DailyModel:
    """The selected CalTRACK daily model with its sufficiency check and all candidates."""

    best: Candidate
    sufficiency: Sufficiency
    candidates: list[Candidate] = field(repr=False)

    @property
    def p(self) -> int:
        return self.best.p

    def design(
        self, temp_c: np.ndarray | pd.Series, hours: np.ndarray | pd.Series | None = None
    ) -> np.ndarray:
        """Regressor matrix of the selected model (intercept, then HDD and/or CDD), each
        scaled by the day's exposure ``hours / 24``."""
        t = np.asarray(temp_c, float)
        e = _exposure(hours, t.size)
        b = self.best
        cols = [np.ones(t.shape)]
        if b.heating_bp_c is not None:
            cols.append(np.maximum(b.heating_bp_c - t, 0.0))
        if b.cooling_bp_c is not None:
            cols.append(np.maximum(t - b.cooling_bp_c, 0.0))
        return np.column_stack(cols) * e[:, None]

    def predict(
        self, temp_c: np.ndarray | pd.Series, hours: np.ndarray | pd.Series | None = None
    ) -> np.ndarray:
        """Modelled usage [kWh] of local days with these mean temperatures [degC] and
        lengths [h] (24 when not given)."""
        b = self.best
        coef = [b.intercept_kwh]
        if b.heating_bp_c is not None:
            coef.append(b.beta_hdd_kwh_per_cdd)
        if b.cooling_bp_c is not None:
            coef.append(b.beta_cdd_kwh_per_cdd)
        return self.design(temp_c, hours) @ np.asarray(coef)


def fit_daily(
    usage_kwh: pd.Series,
    temp_c: pd.Series,
    require_sufficiency: bool = True,
    hours: pd.Series | None = None,
    tz: str = LOCAL_TZ,
) -> DailyModel:
    """Fit the CalTRACK daily model on a baseline of local days.

    Parameters
    ----------
    usage_kwh, temp_c
        Daily usage [kWh] and mean outdoor temperature [degC], indexed by the day (the UTC
        instant of its local midnight, or a local date).
    hours
        Length of each local day [h]; ``None`` derives it from a tz-aware index (23 and 25 on
        the days summer time starts and ends) and takes 24 for a tz-naive one.

    Raises
    ------
    ValueError
        If the data are insufficient and ``require_sufficiency`` is true (the reasons are in
        the message), or fewer than 3 days have both usage and temperature.
    """
    suff = data_sufficiency(usage_kwh, temp_c, tz=tz)
    if require_sufficiency and not suff.ok:
        raise ValueError("CalTRACK data sufficiency not met: " + "; ".join(suff.reasons))
    df = pd.DataFrame({"u": usage_kwh, "t": temp_c}).dropna()
    if len(df) < 3:
        raise ValueError(f"CalTRACK daily model needs at least 3 days with data, got {len(df)}")
    h = day_hours(df.index, tz) if hours is None else hours.reindex(df.index)
    cands = candidates(df["u"].to_numpy(), df["t"].to_numpy(), np.asarray(h, float))
    return DailyModel(_select(cands), suff, cands)


def day_hours(index: pd.Index, tz: str = LOCAL_TZ) -> np.ndarray:
    """Length [h] of the local day of each timestamp (24 for a tz-naive index)."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        return np.full(len(idx), 24.0)
    start = local_dates(idx, tz)
    a = start.tz_localize(tz)
    b = (start + pd.Timedelta(days=1)).tz_localize(tz)
    return np.asarray((b - a).total_seconds() / 3600.0, float)


# --- the CalTRACK billing method ------------------------------------------------------------


@dataclass(frozen=True)
class BillingData:
    """Billing periods with what the billing model needs.

    ``days`` is each period's length [h] / 24 (its exposure); ``day_temp_c`` holds the mean
    temperature of each local day of all periods, ``day_period`` the period it belongs to.
    """

    start: pd.DatetimeIndex  # UTC
    end: pd.DatetimeIndex  # UTC, exclusive
    kwh: np.ndarray
    days: np.ndarray
    day_temp_c: np.ndarray
    day_period: np.ndarray
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.kwh.size)

    @property
    def temp_c(self) -> np.ndarray:
        """Mean outdoor temperature of each period [degC]."""
        return self._period_mean(self.day_temp_c)

    def _period_mean(self, per_day: np.ndarray) -> np.ndarray:
        n = np.bincount(self.day_period, minlength=len(self))
        return np.bincount(self.day_period, weights=per_day, minlength=len(self)) / n

    def degree_days(self, bp_c: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean HDD and CDD per day [degC] of each period (from its daily mean temperatures)."""
        h, c = degree_days(self.day_temp_c, bp_c)
        return self._period_mean(h), self._period_mean(c)

    def frame(self) -> pd.DataFrame:
        """The periods as a table (index: period start, UTC)."""
        return pd.DataFrame(
            {"end": self.end, "energy_kwh": self.kwh, "days": self.days, "temp_c": self.temp_c},
            index=self.start,
        )


def billing_data(
    periods: pd.DataFrame, temp_c: pd.Series, tz: str = LOCAL_TZ, check_length: bool = True
) -> BillingData:
    """Billing periods ``[start, end, kwh]`` joined with daily mean temperatures.

    ``start``/``end`` are instants (tz-aware, or local wall time when naive; ``end``
    exclusive). A period is left out, with a warning naming it, when it is shorter than 25 or
    longer than 35 days (``check_length``) or has temperatures on fewer than 90 % of its days.

    Raises
    ------
    ValueError
        Naming the row of a period that is empty, reversed, overlaps the one before, or has a
        missing or negative usage; or when no period is left.
    """
    df = _billing_rows(periods, tz)
    temps = temp_c.dropna()
    daily = temps.groupby(local_dates(temps.index, tz)).mean()
    keep_t: list[np.ndarray] = []
    keep_rows: list[int] = []
    warns: list[str] = []
    for i, r in enumerate(df.itertuples(index=False)):
        days = (r.end - r.start).total_seconds() / 86400.0
        dates = pd.date_range(
            local_dates(pd.DatetimeIndex([r.start]), tz)[0],
            local_dates(pd.DatetimeIndex([r.end - pd.Timedelta(seconds=1)]), tz)[0],
            freq="D",
        )
        t = daily.reindex(dates).dropna().to_numpy(float)
        label = (
            f"period {i + 1} ({r.start.tz_convert(tz):%d-%m-%Y}..{r.end.tz_convert(tz):%d-%m-%Y})"
        )
        if check_length and not BILL_MIN_DAYS <= days <= BILL_MAX_DAYS:
            warns.append(f"{label} left out: {days:.1f} days, monthly bills need 25-35")
        elif t.size < BILL_MIN_TEMP_COVERAGE * len(dates):
            warns.append(f"{label} left out: temperatures on {t.size} of {len(dates)} days")
        else:
            keep_rows.append(i)
            keep_t.append(t)
    if not keep_rows:
        raise ValueError("no billing period is usable: " + "; ".join(warns))
    kept = df.iloc[keep_rows]
    return BillingData(
        start=pd.DatetimeIndex(kept["start"]),
        end=pd.DatetimeIndex(kept["end"]),
        kwh=kept["kwh"].to_numpy(float),
        days=((kept["end"] - kept["start"]).dt.total_seconds() / 86400.0).to_numpy(float),
        day_temp_c=np.concatenate(keep_t),
        day_period=np.concatenate([np.full(t.size, j) for j, t in enumerate(keep_t)]),
        warnings=tuple(warns),
    )


def _billing_rows(periods: pd.DataFrame, tz: str) -> pd.DataFrame:
    """``start``, ``end`` (UTC) and ``kwh`` of the bills, checked row by row."""
    missing = [c for c in ("start", "end", "kwh") if c not in periods]
    if missing:
        raise ValueError(f"billing periods need columns start, end, kwh; missing {missing}")
    out = pd.DataFrame(
        {
            "start": _utc(periods["start"], tz),
            "end": _utc(periods["end"], tz),
            "kwh": pd.to_numeric(periods["kwh"], errors="coerce").to_numpy(float),
        }
    ).sort_values("start", kind="stable")
    for i, r in enumerate(out.itertuples(index=False)):
        if not r.end > r.start:
            raise ValueError(f"billing period row {i + 1}: end {r.end} is not after {r.start}")
        if not np.isfinite(r.kwh) or r.kwh < 0:
            raise ValueError(f"billing period row {i + 1}: usage {r.kwh!r} is not a kWh >= 0")
        if i and r.start < out["end"].iloc[i - 1]:
            raise ValueError(f"billing period row {i + 1} overlaps the period before it")
    return out.reset_index(drop=True)


def _utc(col: pd.Series, tz: str) -> pd.DatetimeIndex:
    """Instants of a bill column: offsets as given (winter and summer may mix), naive values
    as local wall time; a value that is no time is refused with its row."""
    out = []
    for i, v in enumerate(col):
        try:
            t = pd.Timestamp(v)
            if pd.isna(t):
                raise ValueError("empty")
            t = t.tz_localize(tz, ambiguous="raise", nonexistent="raise") if t.tz is None else t
        except (ValueError, TypeError) as exc:
            raise ValueError(f"billing period row {i + 1}: {v!r} is not a time ({exc})") from None
        out.append(t.tz_convert("UTC"))
    return pd.DatetimeIndex(out).as_unit("ns")


def billing_candidates(data: BillingData) -> list[Candidate]:
    """Every CalTRACK billing candidate: usage per day regressed on the periods' mean degree
    days per day, each period weighted by its length in days."""
    upd = data.kwh / data.days
    total_days = float(data.days.sum())
    rules = _Rules(1, lambda dd: float(np.sum(dd * data.days)) * 365.0 / total_days)
    return _search(upd, np.ones(len(data)), data.days, data.degree_days, rules)


@dataclass(frozen=True, slots=True)
class BillingModel:
    """The selected CalTRACK billing model (coefficients per day) and all candidates."""

    best: Candidate
    candidates: list[Candidate] = field(repr=False)
    sufficiency: Sufficiency

    @property
    def p(self) -> int:
        return self.best.p

    def design(self, data: BillingData) -> np.ndarray:
        """Regressors of the selected model for each period, scaled by its days."""
        b = self.best
        cols = [np.ones(len(data))]
        if b.heating_bp_c is not None:
            cols.append(data.degree_days(b.heating_bp_c)[0])
        if b.cooling_bp_c is not None:
            cols.append(data.degree_days(b.cooling_bp_c)[1])
        return np.column_stack(cols) * data.days[:, None]

    def predict(self, data: BillingData) -> np.ndarray:
        """Modelled usage [kWh] of each billing period."""
        b = self.best
        coef = [b.intercept_kwh]
        if b.heating_bp_c is not None:
            coef.append(b.beta_hdd_kwh_per_cdd)
        if b.cooling_bp_c is not None:
            coef.append(b.beta_cdd_kwh_per_cdd)
        return self.design(data) @ np.asarray(coef)


def billing_sufficiency(data: BillingData, baseline_days: int = BASELINE_DAYS) -> Sufficiency:
    """A billing baseline covers ``baseline_days`` days with at most 10 % of them unbilled."""
    span = float((data.end[-1] - data.start[0]).total_seconds() / 86400.0)
    covered = float(data.days.sum())
    missing = 1.0 - covered / max(span, baseline_days)
    reasons = []
    if span < baseline_days - 0.5:
        reasons.append(f"bills span {span:.0f} days, CalTRACK needs {baseline_days}")
    if missing > MAX_MISSING_SHARE:
        reasons.append(f"{missing:.0%} of days not billed, CalTRACK allows at most 10%")
    return Sufficiency(not reasons, round(span), round(covered), missing, tuple(reasons))


def fit_billing(data: BillingData, require_sufficiency: bool = True) -> BillingModel:
    """Fit the CalTRACK billing model on baseline bills.

    Raises
    ------
    ValueError
        If the bills are insufficient and ``require_sufficiency`` is true, or there are fewer
        than 3 usable periods.
    """
    suff = billing_sufficiency(data)
    if require_sufficiency and not suff.ok:
        raise ValueError("CalTRACK data sufficiency not met: " + "; ".join(suff.reasons))
    if len(data) < 3:
        raise ValueError(f"the billing model needs at least 3 billing periods, got {len(data)}")
    cands = billing_candidates(data)
    return BillingModel(_select(cands), cands, suff)
