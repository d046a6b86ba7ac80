"""The time grid: 15-minute imbalance settlement periods (ISPs) in UTC.

Rules (docs/ARCHITECTURE.md, Time): timestamps are stored in UTC, intervals are half-open
``[start, end)``, an ISP is labelled by its start, and local display is Europe/Amsterdam.
A local day has 96 ISPs, except the last Sunday of March (92) and of October (100); nothing
here assumes 96.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TypeVar, overload
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from energy.clock import LOCAL_TZ, UTC

ISP_S = 900
"""Length of one ISP [s]."""
ISP_NS = ISP_S * 1_000_000_000
"""Length of one ISP [ns]."""
ISP_FREQ = "15min"
"""The ISP length as a pandas frequency."""
_Times = TypeVar("_Times", pd.Timestamp, pd.DatetimeIndex)


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open UTC interval ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"Interval.{name} must be timezone-aware, got naive {value!r}")
        if self.end < self.start:
            raise ValueError(
                f"Interval end {self.end.isoformat()} is before start {self.start.isoformat()}"
            )

    def __contains__(self, t: object) -> bool:
        if not isinstance(t, dt.datetime):
            return False
        return self.start <= t < self.end

    @property
    def duration_s(self) -> float:
        """Length [s]."""
        return (self.end - self.start).total_seconds()


def ensure_utc(t: dt.datetime | pd.Timestamp | str) -> pd.Timestamp:
    """A UTC :class:`pandas.Timestamp`; naive input is refused rather than guessed."""
    ts = pd.Timestamp(t).as_unit("ns")
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {t!r} has no timezone offset; give one (e.g. +01:00 or Z)")
    return ts.tz_convert("UTC")


@overload
def floor_isp_ns(ts_ns: int) -> int: ...
@overload
def floor_isp_ns(ts_ns: np.ndarray) -> np.ndarray: ...
def floor_isp_ns(ts_ns: np.ndarray | int) -> np.ndarray | int:
    """Start of the ISP containing each UTC timestamp [ns since epoch]."""
    return ts_ns - ts_ns % ISP_NS


def floor_isp(t: _Times) -> _Times:
    """Start of the ISP containing each timestamp (timezone-aware pandas input)."""
    return t.floor(ISP_FREQ)


def ceil_isp(t: pd.Timestamp) -> pd.Timestamp:
    """The first ISP start at or after ``t``."""
    return t.ceil(ISP_FREQ)


def isp_range(start: dt.datetime | str, end: dt.datetime | str) -> pd.DatetimeIndex:
    """ISP starts in ``[start, end)`` (UTC). ``start`` and ``end`` must lie on the ISP grid."""
    s, e = ensure_utc(start), ensure_utc(end)
    for name, t in (("start", s), ("end", e)):
        if t.value % ISP_NS:
            raise ValueError(f"{name} {t.isoformat()} is not on the 15-minute ISP grid")
    if e < s:
        raise ValueError(f"end {e.isoformat()} is before start {s.isoformat()}")
    return pd.date_range(s, e, freq=ISP_FREQ, inclusive="left", tz="UTC").as_unit("ns")


def local_day_bounds(day: dt.date, tz: str = LOCAL_TZ) -> Interval:
    """The UTC interval of one local calendar day (23, 24 or 25 hours long)."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(UTC)
    return Interval(start, end)


def local_day_isps(day: dt.date, tz: str = LOCAL_TZ) -> pd.DatetimeIndex:
    """ISP starts (UTC) of one local day: 92, 96 or 100 of them."""
    b = local_day_bounds(day, tz)
    return isp_range(b.start, b.end)


def isps_in_local_day(day: dt.date, tz: str = LOCAL_TZ) -> int:
    """Number of ISPs in a local day (92 on spring-forward, 100 on fall-back, else 96)."""
    return int(local_day_bounds(day, tz).duration_s // ISP_S)


def next_month(day: dt.date) -> dt.date:
    """The first day of the month after the month of ``day``."""
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def month_bounds(period: str) -> tuple[dt.date, dt.date]:
    """First day of a month ``YYYY-MM`` and first day of the next: ``[first, next)``."""
    if len(period) != 7:
        raise ValueError(f"month must be YYYY-MM, got {period!r}")
    first = dt.date.fromisoformat(period + "-01")
    return first, next_month(first)


def months_touched(start: dt.datetime, end: dt.datetime, tz: str = LOCAL_TZ) -> list[str]:
    """Local calendar months ``YYYY-MM`` that the UTC interval ``[start, end)`` touches."""
    if end <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
    zone = ZoneInfo(tz)
    month = start.astimezone(zone).date().replace(day=1)
    last = (end - dt.timedelta(microseconds=1)).astimezone(zone).date()
    months = []
    while month <= last:
        months.append(f"{month.year:04d}-{month.month:02d}")
        month = next_month(month)
    return months


def local_period_bounds(period: str, tz: str = LOCAL_TZ) -> Interval:
    """The UTC interval of a local calendar month ``YYYY-MM`` or day ``YYYY-MM-DD``."""
    try:
        if len(period) == 7:
            first, nxt = month_bounds(period)
        else:
            first = dt.date.fromisoformat(period)
            nxt = first + dt.timedelta(days=1)
    except ValueError:
        raise ValueError(f"period must be YYYY-MM or YYYY-MM-DD, got {period!r}") from None
    zone = ZoneInfo(tz)
    return Interval(
        dt.datetime.combine(first, dt.time(0), tzinfo=zone).astimezone(UTC),
        dt.datetime.combine(nxt, dt.time(0), tzinfo=zone).astimezone(UTC),
    )


def to_local(
    index: pd.DatetimeIndex | pd.Series, tz: str = LOCAL_TZ
) -> pd.DatetimeIndex | pd.Series:
    """UTC timestamps shown in local time (for display only; never store the result)."""
    if isinstance(index, pd.Series):
        return index.dt.tz_convert(tz)
    return index.tz_convert(tz)


def local_date_of(ts: pd.DatetimeIndex, tz: str = LOCAL_TZ) -> np.ndarray:
    """Local calendar date of each UTC timestamp (objects of :class:`datetime.date`)."""
    return np.asarray(ts.tz_convert(tz).date)
