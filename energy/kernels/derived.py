"""Derived series used by the analyses: load duration curve, percentiles per bucket, peaks.

* :func:`load_duration_curve`: values sorted from high to low against the time they are
  reached or exceeded (the classic load duration curve of power system planning).
* :func:`bucket_percentiles`: percentiles of the valid samples per bucket (Numba; e.g. the
  5th percentile of power per local day as the base load). Linear interpolation between
  order statistics, as :func:`numpy.percentile` (method "linear", Hyndman & Fan type 7).
* :func:`peak_demand`: the highest 15-minute mean demand, from ISP energies.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
import pandas as pd

from energy.kernels.calendar import check_edges, fixed_edges
from energy.kernels.power import _as_inputs, _first_drop, _unsorted_error, frozen_samples
from energy.timegrid import ISP_NS


def load_duration_curve(values: Any, interval_h: float = 0.25) -> pd.DataFrame:
    """Load duration curve of a series of equal-length intervals.

    Parameters
    ----------
    values : array_like
        Mean power per interval [W] (or any quantity); NaN is left out.
    interval_h : float
        Length of one interval [h] (0.25 for ISPs).

    Returns
    -------
    pandas.DataFrame
        ``value`` sorted descending, ``duration_h`` the time the value is reached or
        exceeded [h] and ``share`` that time as a share of all valid intervals (0..1].
    """
    if not interval_h > 0:
        raise ValueError(f"interval_h must be > 0 [h], got {interval_h!r}")
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    order = np.sort(v)[::-1]
    rank = np.arange(1, order.size + 1)
    return pd.DataFrame(
        {
            "value": order,
            "duration_h": rank * interval_h,
            "share": rank / max(order.size, 1),
        }
    )


@nb.njit(cache=True, nogil=True)
def _percentile_kernel(
    ts: np.ndarray,
    v: np.ndarray,
    q: np.ndarray,
    has_q: bool,
    edges: np.ndarray,
    pcts: np.ndarray,
    out: np.ndarray,
    counts: np.ndarray,
    buf: np.ndarray,
) -> int:
    """Percentiles of the valid, deduplicated samples per bucket; < 0 if unsorted.

    ``buf`` holds the samples of one bucket (sized for the fullest bucket).
    """
    n = ts.shape[0]
    nbk = edges.shape[0] - 1
    i = 0
    # Skip samples before the first edge.
    while i < n and ts[i] < edges[0]:
        if i > 0 and ts[i] < ts[i - 1]:
            return -1 - i
        i += 1
    for b in range(nbk):
        m = 0
        end = edges[b + 1]
        while i < n and ts[i] < end:
            if i > 0 and ts[i] < ts[i - 1]:
                return -1 - i
            x = v[i]
            superseded = i + 1 < n and ts[i + 1] == ts[i]
            if not superseded and not (has_q and q[i] != 0) and x - x == 0.0:
                if m >= buf.shape[0]:
                    return -1 - i
                buf[m] = x
                m += 1
            i += 1
        counts[b] = m
        if m == 0:
            continue
        s = np.sort(buf[:m])
        for k in range(pcts.shape[0]):
            pos = pcts[k] / 100.0 * (m - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, m - 1)
            out[b, k] = s[lo] + (s[hi] - s[lo]) * (pos - lo)
    while i + 1 < n:
        if ts[i + 1] < ts[i]:
            return -2 - i
        i += 1
    return 0


def bucket_percentiles(
    ts_ns: Any,
    values: Any,
    percentiles: Any = (5.0, 50.0, 95.0),
    bucket_ns: int = ISP_NS,
    origin_ns: int = 0,
    quality: Any = None,
    *,
    edges: Any = None,
) -> pd.DataFrame:
    """Percentiles of the valid samples per bucket.

    Parameters
    ----------
    ts_ns : array_like
        Timestamps [ns since epoch, UTC], non-decreasing.
    values : array_like
        Sample values; NaN, infinite and flagged samples are left out, duplicates resolved
        (last wins).
    percentiles : sequence of float
        Percentiles in [0, 100].
    bucket_ns, origin_ns : int
        Fixed UTC buckets when ``edges`` is not given.
    quality : array_like of uint8, optional
    edges : array_like of int64, optional
        Bucket edges [ns], e.g. local days for a daily base load.

    Returns
    -------
    pandas.DataFrame
        Indexed by bucket start (UTC), one column ``p<pct>`` per percentile (NaN where a bucket
        has no valid samples) and ``count``.

    References
    ----------
    Hyndman, R. J. & Fan, Y. (1996), Sample quantiles in statistical packages, type 7.
    """
    pcts = np.asarray(percentiles, dtype=np.float64).ravel()
    if pcts.size == 0 or np.any((pcts < 0) | (pcts > 100) | np.isnan(pcts)):
        raise ValueError(f"percentiles must lie in [0, 100], got {list(pcts)}")
    ts, v, q, has_q = frozen_samples(_as_inputs(ts_ns, values, quality))
    if edges is not None:
        e = check_edges(edges)
    elif ts.shape[0]:
        if ts[-1] < ts[0]:
            raise _unsorted_error(ts, _first_drop(ts))
        e = fixed_edges(int(ts[0]), int(ts[-1]), bucket_ns, origin_ns)
    else:
        e = np.empty(1, np.int64)
    nbk = max(e.shape[0] - 1, 0)
    out = np.full((nbk, pcts.size), np.nan)
    counts = np.zeros(nbk, np.int64)
    if nbk and ts.shape[0]:
        per_bucket = np.diff(np.searchsorted(ts, e))
        buf = np.empty(max(int(per_bucket.max()), 1), np.float64)
        status = _percentile_kernel(ts, v, q, has_q, e, pcts, out, counts, buf)
        if status < 0:
            raise _unsorted_error(ts, _first_drop(ts))
    index = pd.DatetimeIndex(pd.to_datetime(e[:-1], unit="ns", utc=True)).as_unit("ns")
    frame = pd.DataFrame(out, index=index, columns=[f"p{p:g}" for p in pcts])
    frame["count"] = counts
    return frame


def peak_demand(
    start_ns: Any, energy_wh: Any, interval_ns: int = ISP_NS, top: int = 1
) -> pd.DataFrame:
    """The highest mean demands from interval energies (peak 15-minute demand).

    Parameters
    ----------
    start_ns : array_like
        Interval starts [ns since epoch, UTC].
    energy_wh : array_like
        Energy per interval [Wh]; NaN is left out.
    interval_ns : int
        Interval length [ns] (one ISP).
    top : int
        How many peaks, highest first; ties keep time order.

    Returns
    -------
    pandas.DataFrame
        ``start`` (UTC), ``energy_wh`` and ``power_w`` (mean demand over the interval [W]).
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    t = np.asarray(start_ns, dtype=np.int64)
    e = np.asarray(energy_wh, dtype=np.float64)
    if t.shape != e.shape:
        raise ValueError(f"start_ns and energy_wh differ in shape: {t.shape} vs {e.shape}")
    ok = ~np.isnan(e)
    t, e = t[ok], e[ok]
    order = np.lexsort((t, -e))[:top]
    return pd.DataFrame(
        {
            "start": pd.to_datetime(t[order], unit="ns", utc=True).as_unit("ns"),
            "energy_wh": e[order],
            "power_w": e[order] * 3.6e12 / interval_ns,
        }
    )
