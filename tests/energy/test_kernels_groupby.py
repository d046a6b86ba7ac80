"""The full statistics per bucket against a second method: a plain pandas group-by.

:mod:`energy.kernels.reference` integrates by differencing one cumulative integral at the
edges; this test splits every sample interval at the bucket edges it crosses into pieces,
integrates each piece on its own and groups the pieces and the samples by bucket with
pandas. Random data with duplicates, gaps, NaN/inf, flagged samples, extreme finite values,
signed zeros (and, for min/max, the largest finite values), the October DST change (100 ISPs on the local day) and local-day buckets;
sequential and chunked over threads.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energy.kernels import BucketResult, local_calendar_edges, power_to_buckets, power_to_edges
from energy.kernels.calendar import fixed_edges

S = 1_000_000_000
ISP = 900 * S
TZ = "Europe/Amsterdam"
DST_END = pd.Timestamp("2026-10-25", tz=TZ).as_unit("ns").value  # a 25-hour local day
HUGE = sys.float_info.max
HYP = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def groupby_stats(
    ts: np.ndarray, p: np.ndarray, q: np.ndarray | None, edges: np.ndarray, max_gap_ns: int
) -> pd.DataFrame:
    """Per bucket ``[edges[k], edges[k+1])``: the statistics by splitting and grouping."""
    frame = pd.DataFrame({"t": ts, "p": p, "q": 0 if q is None else q})
    frame = frame[~frame.duplicated("t", keep="last")]  # last write wins
    frame["valid"] = np.isfinite(frame.p) & (frame.q == 0)
    frame["b"] = np.searchsorted(edges, frame.t, side="right") - 1
    nbk = edges.size - 1
    inside = frame[(frame.b >= 0) & (frame.b < nbk)]
    good = inside[inside.valid].groupby("b")["p"]
    stats = pd.DataFrame(
        {
            "count": good.size(),
            "min_w": good.min(),
            "max_w": good.max(),
            "sum_w": good.sum(),
            "first_w": good.first(),
            "last_w": good.last(),
        }
    ).reindex(range(nbk))
    stats["count"] = stats["count"].fillna(0).astype(np.int64)
    stats["sum_w"] = stats["sum_w"].fillna(0.0)
    stats["invalid_count"] = inside[~inside.valid].groupby("b").size().reindex(range(nbk))
    stats["invalid_count"] = stats["invalid_count"].fillna(0).astype(np.int64)
    pieces = split_pieces(frame[frame.valid], edges, max_gap_ns)
    per = pieces.groupby("b")[["wns", "ns"]].sum().reindex(range(nbk), fill_value=0.0)
    width = np.diff(edges).astype(np.float64)
    stats["energy_wh"] = per["wns"].to_numpy() / 3.6e12
    stats["coverage"] = per["ns"].to_numpy() / width
    with np.errstate(invalid="ignore", divide="ignore"):
        stats["mean_w"] = np.where(per["ns"] > 0, per["wns"] / per["ns"], np.nan)
    return stats


def split_pieces(valid: pd.DataFrame, edges: np.ndarray, max_gap_ns: int) -> pd.DataFrame:
    """Each interval between consecutive valid samples, cut at the bucket edges it crosses.

    A piece ``[a, b)`` of bucket ``k`` carries its trapezoid energy [W*ns] with the power
    interpolated linearly at ``a`` and ``b``, and its length [ns]. Intervals longer than
    ``max_gap_ns`` are gaps: no pieces.
    """
    t = valid.t.to_numpy()
    v = valid.p.to_numpy()
    t0, t1, v0, v1 = t[:-1], t[1:], v[:-1], v[1:]
    keep = (t1 - t0) <= max_gap_ns
    t0, t1, v0, v1 = t0[keep], t1[keep], v0[keep], v1[keep]
    first = np.searchsorted(edges, t0, side="right") - 1
    last = np.searchsorted(edges, t1, side="left") - 1  # an interval ending on an edge stops
    n_pieces = np.maximum(last - first + 1, 0)
    seg = np.repeat(np.arange(t0.size), n_pieces)
    b = first[seg] + (np.arange(seg.size) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces))
    ok = (b >= 0) & (b < edges.size - 1)
    seg, b = seg[ok], b[ok]
    a = np.maximum(t0[seg], edges[b])
    z = np.minimum(t1[seg], edges[b + 1])
    dt = (t1[seg] - t0[seg]).astype(np.float64)
    slope = (v1[seg] - v0[seg]) / dt
    pa = v0[seg] + slope * (a - t0[seg])
    pz = v0[seg] + slope * (z - t0[seg])
    length = (z - a).astype(np.float64)
    return pd.DataFrame({"b": b, "wns": 0.5 * (pa + pz) * length, "ns": length})


def assert_same(res: BucketResult, want: pd.DataFrame) -> None:
    assert len(res) == len(want)
    for col in ("count", "invalid_count", "min_w", "max_w", "first_w", "last_w"):
        np.testing.assert_array_equal(getattr(res, col), want[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(res.sum_w, want["sum_w"].to_numpy(), rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(res.coverage, want["coverage"].to_numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.energy_wh, want["energy_wh"].to_numpy(), rtol=1e-9, atol=1e-7)
    # Over a covered stretch of a few ns a mean loses digits: compare where >= 1 ms is covered.
    wide = want["coverage"].to_numpy() * (res.end_ns - res.start_ns) >= 1e6
    ours, theirs = res.mean_w, want["mean_w"].to_numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg="mean_w")
    np.testing.assert_allclose(ours[wide], theirs[wide], rtol=1e-7, atol=1e-6)


@st.composite
def samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """About the October DST night: steps of ns to hours (duplicates, gaps), odd values."""
    n = draw(st.integers(1, 1500))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.choice([0, S // 7, S, S, S, 3 * S, 61 * S, 901 * S, 3 * 3600 * S], n)
    start = DST_END + draw(st.sampled_from([0, 1, 1800 * S, -7 * 3600 * S + 13 * S]))
    ts = start + np.cumsum(steps).astype(np.int64)
    p = rng.normal(1500.0, 900.0, n)
    odd = rng.random(n) < draw(st.sampled_from([0.0, 0.002, 0.05]))
    p[odd] = rng.choice([np.nan, np.inf, -np.inf, 1e7, -1e7, 0.0, -0.0], int(odd.sum()))
    if draw(st.booleans()):
        p = np.round(p, -2)  # ties for min, max, first and last
    q = (rng.random(n) < 0.01).astype(np.uint8) if draw(st.booleans()) else None
    return ts, p, q


class TestAgainstPandasGroupby:
    @HYP
    @given(
        data=samples(), max_gap_s=st.sampled_from([2, 120, 7200]), threads=st.sampled_from([1, 3])
    )
    def test_isps(self, data, max_gap_s, threads):
        ts, p, q = data
        with np.errstate(over="ignore", invalid="ignore"):
            res = power_to_buckets(
                ts, p, ISP, 0, max_gap_s * S, q, n_threads=threads, chunk_min=200
            )
            want = groupby_stats(
                ts, p, q, fixed_edges(int(ts[0]), int(ts[-1]), ISP, 0), max_gap_s * S
            )
        assert_same(res, want)

    @HYP
    @given(data=samples())
    def test_local_days(self, data):
        ts, p, q = data
        edges = local_calendar_edges(int(ts[0]) - 86_400 * S, int(ts[-1]) + 86_400 * S, "day")
        with np.errstate(over="ignore", invalid="ignore"):
            res = power_to_edges(ts, p, edges, 7200 * S, q, n_threads=2, chunk_min=100)
            want = groupby_stats(ts, p, q, edges, 7200 * S)
        assert_same(res, want)


def test_dst_day_at_1hz_has_100_isps_and_matches_groupby():
    """2026-10-25 in Amsterdam at 1 Hz with NaNs, flags and a gap: 100 ISPs, all agree."""
    rng = np.random.default_rng(18)
    end = pd.Timestamp("2026-10-26", tz=TZ).as_unit("ns").value
    ts = np.arange(DST_END, end, S, dtype=np.int64)
    keep = np.ones(ts.size, bool)
    keep[30_000:42_000] = False  # a gap of 3 h 20 min
    ts = ts[keep]
    p = 2000 + 800 * np.sin(np.arange(ts.size) / 9000) + rng.normal(0, 150, ts.size)
    p[rng.random(ts.size) < 0.001] = np.nan
    q = (rng.random(ts.size) < 0.001).astype(np.uint8)
    edges = fixed_edges(int(ts[0]), int(ts[-1]), ISP, 0)
    want = groupby_stats(ts, p, q, edges, 7200 * S)
    for threads in (1, 2):
        res = power_to_buckets(ts, p, quality=q, n_threads=threads, chunk_min=10_000)
        assert len(res) == 100
        assert_same(res, want)
    assert (res.coverage[35:46] < 1).all() and res.coverage[:30].min() > 0.99


@pytest.mark.parametrize("odd", [np.inf, -np.inf, np.nan, HUGE, -HUGE, -0.0])
def test_one_odd_value_in_a_long_clean_run(odd):
    """The vectorised fast path must see a single odd value anywhere in a block."""
    n = 5000
    ts = DST_END + np.arange(n, dtype=np.int64) * S
    p = np.full(n, 1000.0)
    for where in (0, 1, 517, 899, 900, 2047, n - 1):
        x = p.copy()
        x[where] = odd
        with np.errstate(over="ignore", invalid="ignore"):
            res = power_to_buckets(ts, x, n_threads=1)
            want = groupby_stats(
                ts, x, None, fixed_edges(int(ts[0]), int(ts[-1]), ISP, 0), 7200 * S
            )
        np.testing.assert_array_equal(res.min_w, want["min_w"].to_numpy())
        np.testing.assert_array_equal(res.max_w, want["max_w"].to_numpy())
        np.testing.assert_array_equal(res.count, want["count"].to_numpy())
        np.testing.assert_array_equal(res.invalid_count, want["invalid_count"].to_numpy())
        if np.isfinite(odd) and abs(odd) < HUGE:
            assert_same(res, want)
