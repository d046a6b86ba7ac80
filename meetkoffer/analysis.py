"""Campaign analyses: plain functions over 15-minute energy series.

Every function takes ``energy_wh``: a :class:`pandas.Series` of energy per ISP [Wh] indexed by
the UTC start of each 15-minute ISP (as :func:`energy.readings.read_readings` or
``power_to_buckets(...).to_frame()["energy_wh"]`` give it). The mean power of an ISP is
``energy_wh * 4`` [W]. Missing ISPs are simply absent (or NaN) and are never filled in;
results say how many ISPs they rest on. Local time (Europe/Amsterdam by default) decides
what is a night, a weekend or a shift; a DST day has 92 or 100 ISPs and nothing here assumes 96.

References
----------
ISO 50001:2018 / ISO 50006:2014 (significant energy uses, EnPI and energy baselines);
US DOE EnPI tool documentation (regression validity: F-test p < 0.10, each variable p < 0.2
and one p < 0.10, R^2 >= 0.5).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import holidays as pyholidays
import numpy as np
import pandas as pd

from energy.errors import NoaberError
from energy.timegrid import ISP_S, LOCAL_TZ

HOURS_PER_YEAR = 8760.0
"""Hours in a (non-leap) year [h], used to annualise."""
WH_PER_ISP_TO_KW = 1.0 / 250.0
"""Energy in one ISP [Wh] times this gives its mean power [kW] (4 ISPs per hour, /1000)."""


class AnalysisUnavailable(NoaberError, ValueError):
    """One analysis cannot run on these data (says which and why); the others still can.

    A :class:`~energy.errors.NoaberError` (the CLI prints it as one line, the API as 4xx) and
    a :class:`ValueError` (callers that guard a numeric step with ``except ValueError``).
    """

    def __init__(self, analysis: str, reason: str, equipment: str | None = None):
        self.analysis = analysis
        self.reason = reason
        self.equipment = equipment
        super().__init__(f"{analysis}{f' of {equipment!r}' if equipment else ''}: {reason}")


class Shift(NamedTuple):
    """One interval of operation in local time, ``[start_min, end_min)`` minutes after the
    local midnight of the day it starts on; ``end_min <= start_min`` crosses midnight (a night
    shift 22:00-06:00 is ``Shift(1320, 360)``) and ends on the next day. ``(0, 1440)`` is a
    whole day."""

    start_min: int
    end_min: int

    @classmethod
    def parse(cls, text: str) -> Shift:
        """``"06:00-14:00"``, ``"22:00-06:00"`` (crossing midnight) or ``"00:00-24:00"``."""
        a, sep, b = str(text).partition("-")
        if not sep:
            raise ValueError(f"a shift must be HH:MM-HH:MM, got {text!r}")
        s, e = _minutes(a), _minutes(b)
        if s == 1440:
            raise ValueError(f"a shift cannot start at 24:00, got {text!r}")
        return cls(s, e if e != s else s + 1440 if s == 0 else s)

    def crosses_midnight(self) -> bool:
        return self.end_min <= self.start_min

    def __str__(self) -> str:
        return f"{_hhmm(self.start_min)}-{_hhmm(self.end_min)}"


def _minutes(text: str) -> int:
    t = text.strip()
    if t == "24:00":
        return 1440
    try:
        v = dt.time.fromisoformat(t)
    except ValueError:
        raise ValueError(f"a time must be HH:MM (00:00..24:00), got {text!r}") from None
    return v.hour * 60 + v.minute


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DEFAULT_DAY = (Shift(360, 1320),)
_DEFAULT_WEEK = (_DEFAULT_DAY,) * 5 + ((), ())


@dataclass(frozen=True, slots=True)
class OperatingHours:
    """When the firm produces, in local time: shifts per weekday, a calendar and holidays.

    ``week`` holds the shifts of each weekday (Monday first); a shift may cross midnight (it
    belongs to the day it starts on, so a Friday night shift runs into Saturday morning).
    ``calendar`` gives dates their own shifts (a shift calendar: an extra Saturday shift, a
    short day); ``closed`` dates and, with ``holidays`` a country code (``"NL"``), that
    country's public holidays (the ``holidays`` package) have no shifts of their own.
    Everything outside the shifts is *off-hours*. A plant whose every day is ``00:00-24:00``
    runs 24/7 and has no off-hours (see :func:`base_load`).
    """

    week: tuple[tuple[Shift, ...], ...] = _DEFAULT_WEEK
    tz: str = LOCAL_TZ
    holidays: str | None = "NL"
    closed: frozenset[dt.date] = frozenset()
    calendar: tuple[tuple[dt.date, tuple[Shift, ...]], ...] = ()

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError(
                f"operating_hours needs 7 weekdays (Monday first), got {len(self.week)}"
            )
        for day, shifts in [*enumerate(self.week), *self.calendar]:
            for s in shifts:
                if not (0 <= s.start_min < 1440 and 0 <= s.end_min <= 1440):
                    raise ValueError(f"operating_hours: shift {s} of {day} is outside 00:00..24:00")
        if self.holidays is not None:
            try:
                pyholidays.country_holidays(self.holidays)
            except NotImplementedError:
                raise ValueError(
                    f"operating_hours.holidays: no public holidays known for {self.holidays!r}"
                ) from None

    @classmethod
    def weekly(
        cls, weekdays: Iterable[int], start: dt.time, end: dt.time, **kw: Any
    ) -> OperatingHours:
        """The same shift ``start``-``end`` on each of ``weekdays`` (0 = Monday); ``end`` before
        ``start`` crosses midnight, ``end == start`` is the whole day from ``start``."""
        days = tuple(int(d) for d in weekdays)
        bad = [d for d in days if not 0 <= d <= 6]
        if bad:
            raise ValueError(f"operating_hours.weekdays must be 0..6 (Monday = 0), got {bad}")
        shift = Shift.parse(f"{start.strftime('%H:%M')}-{end.strftime('%H:%M')}")
        return cls(week=tuple((shift,) if d in days else () for d in range(7)), **kw)

    @classmethod
    def always(cls, tz: str = LOCAL_TZ) -> OperatingHours:
        """A plant that runs 24/7, holidays included: no off-hours."""
        return cls(week=((Shift(0, 1440),),) * 7, tz=tz, holidays=None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatingHours:
        """Build from a campaign file's ``operating_hours``.

        Either the simple form ``{"weekdays": [0, 1, ...], "start": "06:00", "end": "22:00"}``
        (``end`` before ``start`` crosses midnight) or ``{"shifts": {"mon-fri": ["06:00-14:00",
        "22:00-06:00"], "sat": [...]}}`` (keys ``mon``..``sun``, ranges ``mon-fri``, ``daily``;
        a day not named has no shifts), or ``{"always": true}`` (24/7). Both take ``holidays``
        (a country code, default ``NL``; ``none`` for none), ``closed`` (dates without
        production), ``calendar`` (``{date: [shifts]}``, which wins over a holiday) and ``tz``.

        The NL holidays are the Algemene termijnenwet's (art. 3: Nieuwjaarsdag, Goede
        Vrijdag, Pasen, Koningsdag, 5 mei in lustrum years as the ``holidays`` package has
        it, Hemelvaart, Pinksteren, Kerst); whether a plant stops on them is a matter of its
        CAO, so a holiday it works gets its shifts in ``calendar``.
        """
        unknown = set(data) - {"weekdays", "start", "end", "tz", "shifts", "always",
                               "holidays", "closed", "calendar"}  # fmt: skip
        if unknown:
            raise ValueError(f"operating_hours: unknown keys {sorted(unknown)}")
        hol = data.get("holidays", "NL")
        kw: dict[str, Any] = {
            "tz": str(data.get("tz", LOCAL_TZ)),
            "holidays": None if hol in (None, False, "none", "") else str(hol).upper(),
            "closed": frozenset(_date(d, "closed") for d in data.get("closed") or ()),
            "calendar": tuple(
                sorted((_date(d, "calendar"), _shifts(v, f"calendar.{d}"))
                       for d, v in (data.get("calendar") or {}).items())
            ),
        }  # fmt: skip
        if data.get("always"):
            return cls(week=((Shift(0, 1440),),) * 7, **kw)
        if "shifts" in data:
            return cls(week=_week(data["shifts"]), **kw)
        wd = cast(Iterable[int], data.get("weekdays", (0, 1, 2, 3, 4)))
        start, end = data.get("start", "06:00"), data.get("end", "22:00")
        return cls.weekly(wd, _time(start), _time(end), **kw)

    def to_dict(self) -> dict[str, Any]:
        """The ``shifts`` form of :meth:`from_dict` (round-trips)."""
        return {
            "shifts": {
                WEEKDAY_KEYS[d]: [str(s) for s in shifts] for d, shifts in enumerate(self.week)
            },
            "holidays": self.holidays or "none",
            "closed": sorted(d.isoformat() for d in self.closed),
            "calendar": {d.isoformat(): [str(s) for s in v] for d, v in self.calendar},
            "tz": self.tz,
        }

    def runs_always(self) -> bool:
        """True for a 24/7 plant (every weekday 00:00-24:00, no closed days or holidays)."""
        whole = (Shift(0, 1440),)
        return (
            all(d == whole for d in self.week)
            and not self.closed
            and self.holidays is None
            and all(v == whole for _, v in self.calendar)
        )

    def holiday_names(
        self, years: Iterable[int], language: str | None = None
    ) -> dict[dt.date, str]:
        """The public holidays of ``years`` and the closed dates (named ``"closed"``).

        Names are in ``language`` where the ``holidays`` package has it (``nl``, ``en_US``
        for NL; Dutch by default for NL), else in the package's default.
        """
        out: dict[dt.date, str] = {}
        if self.holidays is not None:
            cal = pyholidays.country_holidays(self.holidays)
            lang = language or ("nl" if self.holidays == "NL" else None)
            lang = lang if lang in cal.supported_languages else None
            out.update(pyholidays.country_holidays(self.holidays, years=list(years), language=lang))
        for d in self.closed:
            out.setdefault(d, "closed")
        return out

    def shifts_on(
        self, day: dt.date, holidays: Mapping[dt.date, str] | None = None
    ) -> tuple[Shift, ...]:
        """The shifts starting on local date ``day`` (calendar, then closed/holiday, then week)."""
        for d, v in self.calendar:
            if d == day:
                return v
        hol = holidays if holidays is not None else self.holiday_names([day.year])
        if day in hol:
            return ()
        return self.week[day.weekday()]

    def _day_table(self, dates: list[dt.date]) -> np.ndarray:
        """Per date a 1440-minute mask of operation: its own shifts and the part after
        midnight of the previous day's crossing shifts."""
        years = {d.year for d in dates} | {(d - dt.timedelta(days=1)).year for d in dates}
        hol = self.holiday_names(sorted(years))
        table = np.zeros((len(dates), 1440), bool)
        for i, day in enumerate(dates):
            for s in self.shifts_on(day, hol):
                table[i, s.start_min : (1440 if s.crosses_midnight() else s.end_min)] = True
            for s in self.shifts_on(day - dt.timedelta(days=1), hol):
                if s.crosses_midnight():
                    table[i, : s.end_min] = True
        return table

    def producing(self, index: pd.DatetimeIndex) -> np.ndarray:
        """Boolean mask: True where the ISP (UTC start) falls inside a shift (local time)."""
        if len(index) == 0:
            return np.zeros(0, bool)
        local = index.tz_convert(self.tz)
        codes, dates = pd.factorize(local.date)
        table = self._day_table(list(dates))
        return np.asarray(table[codes, local.hour * 60 + local.minute])

    def working_day(self, index: pd.DatetimeIndex) -> np.ndarray:
        """Boolean mask: True where the ISP's local date has shifts of its own (not a weekend,
        holiday or closed day)."""
        if len(index) == 0:
            return np.zeros(0, bool)
        local = index.tz_convert(self.tz)
        codes, dates = pd.factorize(local.date)
        years = sorted({d.year for d in dates})
        hol = self.holiday_names(years)
        has = np.array([bool(self.shifts_on(d, hol)) for d in dates], bool)
        return np.asarray(has[codes])


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"operating_hours.{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    m = _minutes(str(value))
    return dt.time(0) if m == 1440 else dt.time(m // 60, m % 60)


def _shifts(value: Any, where: str) -> tuple[Shift, ...]:
    if isinstance(value, str):
        value = [value]
    try:
        return tuple(Shift.parse(v) for v in value or ())
    except ValueError as exc:
        raise ValueError(f"operating_hours.{where}: {exc}") from None


def _week(shifts: Mapping[str, Any]) -> tuple[tuple[Shift, ...], ...]:
    """Shifts per weekday from ``{"mon-fri": [...], "sat": [...], "daily": [...]}``."""
    if not isinstance(shifts, Mapping):
        raise ValueError("operating_hours.shifts must map weekdays to shift lists")
    week: list[tuple[Shift, ...]] = [()] * 7
    for key, value in shifts.items():
        k = str(key).lower().strip()
        if k == "daily":
            days = list(range(7))
        elif "-" in k:
            a, _, b = k.partition("-")
            if a not in WEEKDAY_KEYS or b not in WEEKDAY_KEYS:
                raise ValueError(f"operating_hours.shifts: unknown weekday range {key!r}")
            days = list(range(WEEKDAY_KEYS.index(a), WEEKDAY_KEYS.index(b) + 1))
        elif k in WEEKDAY_KEYS:
            days = [WEEKDAY_KEYS.index(k)]
        else:
            raise ValueError(
                f"operating_hours.shifts: unknown weekday {key!r} (use mon..sun, mon-fri, daily)"
            )
        for d in days:
            week[d] = week[d] + _shifts(value, f"shifts.{key}")
    return tuple(week)


def _clean(energy_wh: pd.Series, name: str = "energy_wh") -> pd.Series:
    if not isinstance(energy_wh.index, pd.DatetimeIndex) or energy_wh.index.tz is None:
        raise ValueError(f"{name} needs a timezone-aware DatetimeIndex of ISP starts")
    return energy_wh.astype(float).dropna().sort_index()


def power_kw(energy_wh: pd.Series) -> pd.Series:
    """Mean power per ISP [kW] from energy per ISP [Wh]."""
    return _clean(energy_wh) * WH_PER_ISP_TO_KW


def daily_energy_kwh(energy_wh: pd.Series, tz: str = LOCAL_TZ) -> pd.DataFrame:
    """Energy per local calendar day.

    Returns
    -------
    DataFrame indexed by local date with ``energy_kwh`` and ``isp_count`` (92, 96 or 100 on a
    complete day; fewer where data are missing).
    """
    e = _clean(energy_wh)
    day = pd.Index(e.index.tz_convert(tz).date, name="date")
    g = e.groupby(day)
    return pd.DataFrame({"energy_kwh": g.sum() / 1000.0, "isp_count": g.count()})


def profile_15min(energy_wh: pd.Series, tz: str = LOCAL_TZ) -> pd.DataFrame:
    """Average day profile: mean power [kW] per local time of day for weekdays, Sat and Sun."""
    p = power_kw(energy_wh)
    local = p.index.tz_convert(tz)
    tod = pd.Index([f"{h:02d}:{m:02d}" for h, m in zip(local.hour, local.minute)], name="time")
    daytype = np.where(
        local.day_of_week < 5, "weekday", np.where(local.day_of_week == 5, "saturday", "sunday")
    )
    df = pd.DataFrame({"power_kw": p.to_numpy(), "time": tod, "day_type": daytype})
    out = df.pivot_table(index="time", columns="day_type", values="power_kw", aggfunc="mean")
    return out.reindex(columns=[c for c in ("weekday", "saturday", "sunday") if c in out.columns])


@dataclass(frozen=True, slots=True)
class BaseLoad:
    """Base load: a low percentile of the off-hours (night and weekend) mean power, or of all
    ISPs (the load floor) for a plant without off-hours."""

    base_load_kw: float
    percentile: float
    isp_count: int
    energy_kwh_per_year: float
    cost_eur_per_year: float
    method: str = "off_hours"  # "off_hours" or "load_floor" (24/7: no off-hours ISPs)


def base_load(
    energy_wh: pd.Series,
    hours: OperatingHours,
    price_eur_per_kwh: float,
    percentile: float = 10.0,
) -> BaseLoad:
    """Base load [kW] and what it costs per year [EUR].

    The base load is the ``percentile`` of the 15-minute mean power over off-hours ISPs
    (nights, weekends, between shifts). A plant that runs 24/7 has no off-hours: its base
    load is then its *load floor*, the same percentile over all ISPs (``method``
    ``"load_floor"``). It runs all year: its energy is ``base_load_kw * 8760 h`` and its
    cost that times ``price_eur_per_kwh``.

    Raises
    ------
    AnalysisUnavailable
        If the series is empty.
    ValueError
        If the percentile is outside 0..100.
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in 0..100, got {percentile}")
    p = power_kw(energy_wh)
    if p.empty:
        raise AnalysisUnavailable("base load", "no interval data")
    off = p[~hours.producing(pd.DatetimeIndex(p.index))]
    method = "off_hours"
    if off.empty:
        off, method = p, "load_floor"
    kw = float(np.percentile(off.to_numpy(), percentile))
    e = kw * HOURS_PER_YEAR
    return BaseLoad(kw, percentile, int(off.size), e, e * price_eur_per_kwh, method)


@dataclass(frozen=True, slots=True)
class OffHours:
    """Energy used outside operating hours and its share of the total."""

    off_hours_kwh: float
    total_kwh: float
    share: float  # 0..1
    off_hours_isp_share: float  # share of the ISPs that are off-hours (0..1)


def off_hours_share(energy_wh: pd.Series, hours: OperatingHours) -> OffHours:
    """Share of the energy consumed outside operating hours (0..1)."""
    e = _clean(energy_wh)
    prod = hours.producing(e.index)
    total = float(e.sum()) / 1000.0
    off = float(e[~prod].sum()) / 1000.0
    return OffHours(
        off, total, off / total if total else 0.0, float((~prod).mean()) if e.size else 0.0
    )


@dataclass(frozen=True, slots=True)
class Peak:
    """The highest 15-minute mean power and when it occurred (UTC ISP start)."""

    peak_kw: float
    at: pd.Timestamp
    p99_kw: float
    p95_kw: float
    top: pd.Series  # the N highest ISPs [kW], UTC index


def peak_demand(energy_wh: pd.Series, top_n: int = 10) -> Peak:
    """Peak 15-minute demand [kW], its time, the 95th/99th percentiles and the top N ISPs."""
    p = power_kw(energy_wh)
    if p.empty:
        raise AnalysisUnavailable("peak demand", "no interval data")
    at = p.idxmax()
    return Peak(
        float(p.max()),
        pd.Timestamp(at),
        float(np.percentile(p, 99)),
        float(np.percentile(p, 95)),
        p.nlargest(top_n),
    )


def load_duration_curve(energy_wh: pd.Series) -> pd.DataFrame:
    """Load duration curve: 15-minute mean power [kW] sorted high to low.

    Returns ``hours`` (cumulative duration [h] at or above that power) and ``power_kw``.
    """
    p = np.sort(power_kw(energy_wh).to_numpy())[::-1]
    hours = np.arange(1, p.size + 1) * (ISP_S / 3600.0)
    return pd.DataFrame({"hours": hours, "power_kw": p})


def carpet(energy_wh: pd.Series, tz: str = LOCAL_TZ) -> pd.DataFrame:
    """Carpet plot matrix: local date (rows) x local time of day (columns), mean power [kW].

    The repeated hour of the autumn DST day is averaged; the skipped spring hour is NaN.
    """
    p = power_kw(energy_wh)
    local = p.index.tz_convert(tz)
    df = pd.DataFrame(
        {
            "date": local.date,
            "time": [f"{h:02d}:{m:02d}" for h, m in zip(local.hour, local.minute)],
            "power_kw": p.to_numpy(),
        }
    )
    out = df.pivot_table(index="date", columns="time", values="power_kw", aggfunc="mean")
    cols = [f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 15, 30, 45)]
    return out.reindex(columns=cols)


def equipment_breakdown(
    equipment_wh: Mapping[str, pd.Series],
    incomer_wh: pd.Series | None = None,
    significant_share: float = 0.8,
    min_share: float = 0.05,
) -> pd.DataFrame:
    """Energy per equipment, sorted, with a Pareto of significant energy uses (SEUs).

    Parameters
    ----------
    equipment_wh
        Energy per ISP [Wh] of each sub-metered equipment, by name.
    incomer_wh
        Energy per ISP [Wh] of the main incomer (the total). If given, the row
        ``unmetered`` holds incomer minus the sum of the sub-meters over the ISPs where the
        incomer has data (negative if the sub-meters add up to more: a mapping error).
    significant_share
        Equipment is *significant* while the cumulative share before it is below this (the
        Pareto cut, ISO 50001 SEU) and its own share is at least ``min_share``. The
        unmetered remainder is never marked significant.

    Returns
    -------
    DataFrame indexed by name with ``energy_kwh``, ``share`` and ``cumulative_share`` (of the
    incomer total if given, else of the sum), and ``significant`` (bool).
    """
    rows: dict[str, float] = {}
    idx: pd.DatetimeIndex | None = None
    if incomer_wh is not None:
        inc = _clean(incomer_wh, "incomer_wh")
        idx = pd.DatetimeIndex(inc.index)
    for name, s in equipment_wh.items():
        s = _clean(s, f"equipment {name!r}")
        if idx is not None:
            s = s[s.index.isin(idx)]
        rows[name] = float(s.sum()) / 1000.0
    df = pd.DataFrame({"energy_kwh": pd.Series(rows, dtype=float)}).sort_values(
        "energy_kwh", ascending=False
    )
    metered = float(df["energy_kwh"].sum())
    total = metered
    if incomer_wh is not None:
        total = float(inc.sum()) / 1000.0
        df.loc["unmetered", "energy_kwh"] = total - metered
    df["share"] = df["energy_kwh"] / total if total else 0.0
    df["cumulative_share"] = np.nan
    df["significant"] = False
    cum = 0.0
    for name in df.index:
        if name == "unmetered":
            continue
        share = float(df.at[name, "share"])
        df.at[name, "significant"] = cum < significant_share and share >= min_share
        cum += share
        df.at[name, "cumulative_share"] = cum
    df.index.name = "equipment"
    return df


@dataclass(frozen=True, slots=True)
class EnpiRegression:
    """Energy = intercept + slope * production over periods (days), with its statistics.

    ``valid`` applies the DOE EnPI rules: model F-test p < 0.10, slope p < 0.10, R^2 >= 0.5.
    """

    intercept_kwh: float
    slope_kwh_per_unit: float
    r2: float
    p_value_model: float
    p_value_slope: float
    n: int
    enpi_kwh_per_unit: float  # total energy / total production
    valid: bool
    data: pd.DataFrame = field(repr=False)  # energy_kwh, production, fitted_kwh, enpi


def enpi_regression(energy_kwh: pd.Series, production: pd.Series) -> EnpiRegression:
    """Regress energy per period [kWh] on production per period [units] (ordinary least squares).

    Periods where either is missing are left out; at least 3 are needed.

    References
    ----------
    ISO 50006:2014 clause 4.4 (EnPI normalised for relevant variables); US DOE EnPI Lite
    regression validity criteria.
    """
    from scipy import stats

    df = pd.DataFrame({"energy_kwh": energy_kwh, "production": production}).dropna()
    n = len(df)
    if n < 3:
        raise ValueError(f"EnPI regression needs at least 3 periods with production, got {n}")
    x = df["production"].to_numpy(float)
    y = df["energy_kwh"].to_numpy(float)
    if np.ptp(x) == 0:
        raise ValueError("production is constant over all periods: no regression possible")
    res = stats.linregress(x, y)
    fitted = res.intercept + res.slope * x
    r2 = float(res.rvalue**2)
    p_slope = float(res.pvalue)
    df = df.assign(
        fitted_kwh=fitted,
        enpi=np.where(x > 0, y / np.where(x > 0, x, 1.0), np.nan),
    )
    total_prod = float(x.sum())
    return EnpiRegression(
        float(res.intercept),
        float(res.slope),
        r2,
        p_slope,  # single regressor: the model F-test p equals the slope t-test p
        p_slope,
        n,
        float(y.sum() / total_prod) if total_prod else float("nan"),
        bool(p_slope < 0.10 and r2 >= 0.5),
        df,
    )


def channel_summary(
    energy_wh: Mapping[str, pd.Series],
    hours: OperatingHours,
    price_eur_per_kwh: float,
    coverage: Mapping[str, float] | None = None,
    percentile: float = 10.0,
) -> pd.DataFrame:
    """Per channel: energy, mean power, base load and its yearly cost, off-hours share, peak.

    Returns one row per channel name with ``energy_kwh``, ``mean_kw``, ``base_load_kw``,
    ``base_load_cost_eur_per_year``, ``off_hours_share``, ``peak_kw``, ``peak_at_utc`` and,
    if given, ``coverage`` (mean covered share of its ISPs, 0..1). A channel without off-hours
    data has NaN base load; a channel without any data is listed with NaN figures.
    """
    rows = []
    for name, s in energy_wh.items():
        e = _clean(s, f"channel {name!r}")
        if e.empty:  # a clamp that delivered nothing is shown, not hidden
            rows.append(
                {
                    "channel": name,
                    "energy_kwh": 0.0,
                    **dict.fromkeys(
                        ("mean_kw", "base_load_kw", "base_load_cost_eur_per_year"), np.nan
                    ),
                    "off_hours_share": np.nan,
                    "peak_kw": np.nan,
                    "peak_at_utc": "",
                    **({"coverage": float(coverage.get(name, 0.0))} if coverage else {}),
                }
            )
            continue
        bl = base_load(e, hours, price_eur_per_kwh, percentile)
        bl_kw, bl_eur = bl.base_load_kw, bl.cost_eur_per_year
        oh = off_hours_share(e, hours)
        pk = peak_demand(e, top_n=1)
        rows.append(
            {
                "channel": name,
                "energy_kwh": oh.total_kwh,
                "mean_kw": float(e.mean()) * WH_PER_ISP_TO_KW,
                "base_load_kw": bl_kw,
                "base_load_cost_eur_per_year": bl_eur,
                "off_hours_share": oh.share,
                "peak_kw": pk.peak_kw,
                "peak_at_utc": pk.at.isoformat(),
                **({"coverage": float(coverage.get(name, np.nan))} if coverage else {}),
            }
        )
    return pd.DataFrame(rows).set_index("channel") if rows else pd.DataFrame()
