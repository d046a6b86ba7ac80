"""The time grid of the kernels: bucket edges in UTC nanoseconds.

Every kernel in :mod:`energy.kernels` aggregates into buckets given by a strictly increasing
array of edges ``edges[0] < edges[1] < ...`` (int64, ns since the epoch, UTC); bucket ``k`` is
the half-open interval ``[edges[k], edges[k + 1])``. Two kinds of grid are built here:

* fixed-width buckets aligned to UTC (``origin_ns + k * bucket_ns``), 1 s to 1 day wide, the
  15-minute ISP being the common case;
* local calendar buckets (day, week starting Monday, month) in Europe/Amsterdam, which are
  23, 24 or 25 hours long around DST changes (docs/ARCHITECTURE.md, Time).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from energy.timegrid import LOCAL_TZ

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
BUCKET_NS_MIN = SECOND_NS
BUCKET_NS_MAX = DAY_NS
CALENDAR_UNITS = ("day", "week", "month")


def check_bucket_ns(bucket_ns: int) -> int:
    """Validate a fixed bucket width [ns]: an integer from 1 s to 1 day."""
    if int(bucket_ns) != bucket_ns or not BUCKET_NS_MIN <= bucket_ns <= BUCKET_NS_MAX:
        raise ValueError(
            f"bucket_ns must be an integer from {BUCKET_NS_MIN} (1 s) to {BUCKET_NS_MAX} "
            f"(1 day), got {bucket_ns!r}"
        )
    return int(bucket_ns)


def bucket_index(t_ns: int, bucket_ns: int, origin_ns: int = 0) -> int:
    """Index ``k`` of the fixed bucket ``[origin + k*b, origin + (k+1)*b)`` holding ``t_ns``."""
    return (int(t_ns) - int(origin_ns)) // int(bucket_ns)


def fixed_edges(first_ns: int, last_ns: int, bucket_ns: int, origin_ns: int = 0) -> np.ndarray:
    """Edges of the fixed buckets from the one holding ``first_ns`` to the one holding ``last_ns``.

    Parameters
    ----------
    first_ns, last_ns : int
        First and last timestamp to cover [ns since epoch, UTC]; ``last_ns >= first_ns``.
    bucket_ns : int
        Bucket width [ns], 1 s to 1 day.
    origin_ns : int
        An instant on the grid [ns]; 0 aligns buckets to the UTC epoch (and so to whole UTC
        quarter hours, hours and days).

    Returns
    -------
    numpy.ndarray
        int64 edges, ``n_buckets + 1`` of them.
    """
    bucket_ns = check_bucket_ns(bucket_ns)
    if last_ns < first_ns:
        raise ValueError(f"last_ns {last_ns} is before first_ns {first_ns}")
    k0 = bucket_index(first_ns, bucket_ns, origin_ns)
    k1 = bucket_index(last_ns, bucket_ns, origin_ns)
    ks = np.arange(k0, k1 + 2, dtype=np.int64)
    return np.int64(origin_ns) + ks * np.int64(bucket_ns)


def utc_bucket_starts(start_ns: int, end_ns: int, bucket_ns: int, origin_ns: int = 0) -> np.ndarray:
    """Starts [ns] of the fixed buckets that overlap ``[start_ns, end_ns)``."""
    if end_ns <= start_ns:
        return np.empty(0, np.int64)
    return fixed_edges(start_ns, end_ns - 1, bucket_ns, origin_ns)[:-1]


def local_calendar_edges(
    start_ns: int, end_ns: int, unit: str = "day", tz: str = LOCAL_TZ
) -> np.ndarray:
    """Edges [ns, UTC] of local calendar buckets covering ``[start_ns, end_ns)``.

    The first edge is the start of the local day/week/month holding ``start_ns``, the last the
    end of the one holding ``end_ns - 1``. Days across a DST change are 23 or 25 hours long;
    weeks start on Monday (ISO 8601).

    Parameters
    ----------
    start_ns, end_ns : int
        Interval to cover [ns since epoch, UTC], half-open, ``end_ns > start_ns``.
    unit : {"day", "week", "month"}
        Calendar unit.
    tz : str
        IANA time zone of the calendar (Europe/Amsterdam).

    Returns
    -------
    numpy.ndarray
        int64 edges, strictly increasing.
    """
    if unit not in CALENDAR_UNITS:
        raise ValueError(f"unit must be one of {', '.join(CALENDAR_UNITS)}, got {unit!r}")
    if end_ns <= start_ns:
        raise ValueError(f"end_ns {end_ns} must be after start_ns {start_ns}")
    first = pd.Timestamp(int(start_ns), unit="ns", tz="UTC").tz_convert(tz)
    last = pd.Timestamp(int(end_ns) - 1, unit="ns", tz="UTC").tz_convert(tz)
    d0 = first.normalize().tz_localize(None)
    d1 = last.normalize().tz_localize(None)
    if unit == "day":
        days = pd.date_range(d0, d1 + pd.Timedelta(days=1), freq="D")
    elif unit == "week":
        w0 = d0 - pd.Timedelta(days=d0.day_of_week)
        w1 = d1 - pd.Timedelta(days=d1.day_of_week) + pd.Timedelta(days=7)
        days = pd.date_range(w0, w1, freq="7D")
    else:
        m0 = d0.replace(day=1)
        m1 = (d1.replace(day=1) + pd.offsets.MonthBegin(1)).normalize()
        days = pd.date_range(m0, m1, freq="MS")
    # Local midnights exist in Europe/Amsterdam (DST changes at 02:00/03:00), so no ambiguity.
    local = days.tz_localize(tz, ambiguous="raise", nonexistent="raise")
    return np.asarray(local.tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)


def check_edges(edges: np.ndarray) -> np.ndarray:
    """Validate bucket edges: 1-D int64, at least two, strictly increasing."""
    e = np.ascontiguousarray(edges, dtype=np.int64)
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"edges must be a 1-D array of at least 2 instants, got shape {e.shape}")
    bad = np.flatnonzero(np.diff(e) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"edges must increase strictly; edges[{i + 1}]={e[i + 1]} <= {e[i]}")
    return e
