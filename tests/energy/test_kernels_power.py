"""Power samples to buckets: the Numba kernel against the NumPy/pandas reference."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energy.kernels import (
    BucketResult,
    local_calendar_edges,
    power_to_buckets,
    power_to_buckets_many,
    power_to_edges,
)
from energy.kernels.reference import power_to_buckets_ref, power_to_edges_ref
from energy.readings import READING_COLUMNS
from energy.timegrid import ISP_NS

S = 1_000_000_000
T0 = 1_789_999_200 * S  # 2026-09-21T14:00Z, on the ISP grid

COLUMNS = (
    "energy_wh", "mean_w", "min_w", "max_w", "count", "coverage", "invalid_count",
    "sum_w", "first_w", "last_w",
)  # fmt: skip
HYP = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def assert_matches_ref(res: BucketResult, ref: pd.DataFrame) -> None:
    assert len(res) == len(ref)
    np.testing.assert_array_equal(res.start_ns, ref["start_ns"].to_numpy())
    for col in COLUMNS:
        ours, theirs = getattr(res, col), ref[col].to_numpy()
        if col in ("count", "invalid_count", "min_w", "max_w", "first_w", "last_w"):
            np.testing.assert_array_equal(ours, theirs, err_msg=col)
        elif col == "mean_w":
            # The reference differences cumulative integrals: over a covered stretch of a few
            # ns its mean loses digits, so compare where at least 1 ms is covered.
            wide = ref["coverage"].to_numpy() * (res.end_ns - res.start_ns) >= 1e6
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=col)
            np.testing.assert_allclose(ours[wide], theirs[wide], rtol=1e-7, atol=1e-6)
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-7, err_msg=col)
    np.testing.assert_array_equal(res.gaps_ns, ref.attrs["gaps_ns"])
    assert res.duplicate_count == ref.attrs["duplicates"]


def assert_identical(a: BucketResult, b: BucketResult) -> None:
    for col in ("start_ns", *COLUMNS, "gaps_ns"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)
    assert a.duplicate_count == b.duplicate_count


@st.composite
def series(draw: st.DrawFn, dense: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted samples with duplicates, gaps, NaN/inf, flagged samples and edge hits."""
    n = draw(st.integers(0, 400 if dense else 40))
    if dense:
        steps = draw(
            st.lists(st.sampled_from([S] * 30 + [0, 2 * S, S // 3, 50 * S]), min_size=n, max_size=n)
        )
    else:
        steps = draw(
            st.lists(
                st.sampled_from([0, S, 2 * S, 5 * S, 10 * S, 30 * S, 7 * S // 3, 100 * S]),
                min_size=n,
                max_size=n,
            )
        )
    start = T0 + draw(st.sampled_from([0, S, 9 * S, S // 2]))
    ts = start + np.cumsum(np.asarray(steps, dtype=np.int64))
    special = st.sampled_from([np.nan, np.inf, -np.inf])
    value = st.one_of(
        st.floats(-5000, 5000, allow_nan=False),
        st.just(0.0),
        special if not dense else st.just(1.0),
    )
    p = np.asarray(draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64)
    if dense and n:
        bad = draw(st.lists(st.integers(0, n - 1), max_size=3))
        p[bad] = np.nan
    q = np.asarray(
        draw(st.lists(st.sampled_from([0] * 8 + [1, 2]), min_size=n, max_size=n)), dtype=np.uint8
    )
    return ts, p, q


class TestPowerKernelVsReference:
    @HYP
    @given(
        data=series(),
        use_q=st.booleans(),
        bucket_s=st.sampled_from([1, 10, 60]),
        origin=st.sampled_from([0, 3 * S, S // 2]),
    )
    def test_irregular(self, data, use_q, bucket_s, origin):
        ts, p, q = data
        quality = q if use_q else None
        res = power_to_buckets(ts, p, bucket_s * S, origin, 25 * S, quality, n_threads=1)
        if len(ts) == 0:
            assert len(res) == 0 and res.gaps_ns.shape == (0, 2)
            return
        ref = power_to_buckets_ref(ts, p, bucket_s * S, origin, 25 * S, quality)
        assert_matches_ref(res, ref)
        # Chunked over threads, stitched at the seams: bit-identical.
        chunked = power_to_buckets(
            ts, p, bucket_s * S, origin, 25 * S, quality, n_threads=3, chunk_min=1
        )
        assert_identical(res, chunked)

    @HYP
    @given(data=series(dense=True), use_q=st.booleans(), max_gap_s=st.sampled_from([3, 60]))
    def test_dense_fast_path(self, data, use_q, max_gap_s):
        ts, p, q = data
        quality = q if use_q else None
        res = power_to_buckets(ts, p, 60 * S, 0, max_gap_s * S, quality, n_threads=1)
        if len(ts) == 0:
            return
        ref = power_to_buckets_ref(ts, p, 60 * S, 0, max_gap_s * S, quality)
        assert_matches_ref(res, ref)
        chunked = power_to_buckets(
            ts, p, 60 * S, 0, max_gap_s * S, quality, n_threads=4, chunk_min=20
        )
        assert_identical(res, chunked)

    @HYP
    @given(data=series())
    def test_energy_is_conserved(self, data):
        """Sum of bucket energies = trapezoid integral of the series minus the gaps."""
        ts, p, _ = data
        res = power_to_buckets(ts, p, 10 * S, 0, 25 * S, n_threads=1)
        keep = ~pd.Index(ts).duplicated(keep="last")
        t, v = ts[keep], p[keep]
        t, v = t[np.isfinite(v)], v[np.isfinite(v)]
        whole = np.trapezoid(v, (t - T0).astype(float)) / 3.6e12 if len(t) > 1 else 0.0
        in_gaps = sum(
            (v[np.searchsorted(t, a)] + v[np.searchsorted(t, b)]) / 2 * (b - a) / 3.6e12
            for a, b in res.gaps_ns
        )
        assert res.energy_wh.sum() == pytest.approx(whole - in_gaps, rel=1e-9, abs=1e-7)
        covered = res.covered_ns.sum()
        span = (t[-1] - t[0]) if len(t) > 1 else 0
        assert covered == pytest.approx(span - res.gap_ns_total, abs=1e-3)


def test_constant_power_one_isp():
    ts = T0 + np.arange(0, 901) * S  # 15 min and one sample on the next edge
    res = power_to_buckets(ts, np.full(901, 4000.0))
    assert len(res) == 2
    assert res.energy_wh[0] == pytest.approx(1000.0)  # 4 kW for 15 min
    assert res.mean_w[0] == pytest.approx(4000.0)
    assert res.count.tolist() == [900, 1]
    assert res.coverage[0] == pytest.approx(899 / 900 + 1 / 900)
    assert res.coverage[1] == 0.0 and np.isnan(res.mean_w[1])


def test_interval_split_at_edge_uses_interpolated_power():
    # 0 W at 14 min, 1200 W at 16 min: 600 W at the edge; ramp energy 1 min each side.
    ts = np.array([T0 + 14 * 60 * S, T0 + 16 * 60 * S])
    res = power_to_buckets(ts, np.array([0.0, 1200.0]))
    assert res.energy_wh == pytest.approx([300 * 60 / 3600, 900 * 60 / 3600])
    assert res.mean_w == pytest.approx([300.0, 900.0])


def test_gap_is_reported_not_integrated():
    ts = np.array([T0, T0 + 60 * S, T0 + 3 * 3600 * S, T0 + 3 * 3600 * S + 60 * S])
    res = power_to_buckets(ts, np.full(4, 1000.0))
    assert res.gaps_ns.tolist() == [[int(ts[1]), int(ts[2])]]
    assert res.energy_wh.sum() == pytest.approx(2 * 1000 / 60)
    assert len(res) == 13 and res.coverage[1:12].sum() == 0


def test_duplicates_last_wins_and_invalid_are_counted():
    ts = np.array([T0, T0 + S, T0 + S, T0 + 2 * S, T0 + 3 * S])
    p = np.array([10.0, 999.0, 20.0, np.nan, 30.0])
    res = power_to_buckets(ts, p)
    assert res.duplicate_count == 1
    assert res.invalid_count.tolist() == [1]
    assert res.count.tolist() == [3]
    assert res.max_w[0] == 30.0
    assert res.energy_wh[0] == pytest.approx((15 + 25 * 2) / 3600)


def test_out_of_order_raises_or_sorts():
    ts = np.array([T0, T0 + 2 * S, T0 + S, T0 + 3 * S])
    p = np.array([1.0, 3.0, 2.0, 4.0])
    with pytest.raises(ValueError, match=r"ts_ns\[2\]"):
        power_to_buckets(ts, p)
    sorted_res = power_to_buckets(ts, p, unsorted="sort")
    assert sorted_res.energy_wh[0] == pytest.approx(7.5 / 3600)
    # A drop that lands before the first bucket is caught too.
    with pytest.raises(ValueError, match="must not decrease"):
        power_to_buckets(np.array([T0, T0 - 3600 * S, T0 + S]), np.ones(3))


def test_validation_messages():
    with pytest.raises(ValueError, match="bucket_ns"):
        power_to_buckets(np.array([T0]), np.array([1.0]), bucket_ns=10)
    with pytest.raises(ValueError, match="equal length"):
        power_to_buckets(np.array([T0, T0 + S]), np.array([1.0]))
    with pytest.raises(ValueError, match="max_gap_ns"):
        power_to_buckets(np.array([T0]), np.array([1.0]), max_gap_ns=-1)


def test_empty_and_single_sample():
    empty = power_to_buckets(np.array([], np.int64), np.array([]))
    assert len(empty) == 0 and empty.to_frame().empty
    one = power_to_buckets(np.array([T0 + 5 * S]), np.array([7.0]))
    assert len(one) == 1 and one.count[0] == 1 and one.energy_wh[0] == 0
    assert one.min_w[0] == one.max_w[0] == 7.0 and np.isnan(one.mean_w[0])


def test_to_frame_has_reading_columns():
    ts = T0 + np.arange(0, 3600) * S
    frame = power_to_buckets(ts, np.full(3600, 100.0)).to_frame()
    assert tuple(frame.columns) == READING_COLUMNS
    assert str(frame.index.tz) == "UTC" and frame.index.unit == "ns"
    assert (frame.index.asi8 % ISP_NS == 0).all() and len(frame) == 4


def test_many_channels_equal_one_by_one():
    rng = np.random.default_rng(5)
    chans = []
    for k in range(7):
        n = 3000 + 100 * k
        ts = T0 + np.cumsum(rng.integers(1, 4, n)) * S
        p = rng.normal(500, 100, n)
        p[rng.random(n) < 0.01] = np.nan
        chans.append((ts, p) if k % 2 else (ts, p, (rng.random(n) < 0.02).astype(np.uint8)))
    many = power_to_buckets_many(chans, bucket_ns=60 * S)
    for item, res in zip(chans, many):
        q = item[2] if len(item) == 3 else None
        assert_identical(res, power_to_buckets(item[0], item[1], 60 * S, quality=q, n_threads=1))


def test_long_channel_chunks_are_bit_identical():
    rng = np.random.default_rng(7)
    n = 300_000
    ts = T0 + np.cumsum(
        rng.choice([S, S, S, 2 * S, 0, 4000 * S], n, p=[0.5, 0.3, 0.1, 0.05, 0.04, 0.01])
    )
    p = rng.normal(1500, 400, n)
    p[rng.random(n) < 0.001] = np.nan
    one = power_to_buckets(ts, p, n_threads=1)
    for threads in (2, 5):
        assert_identical(one, power_to_buckets(ts, p, n_threads=threads, chunk_min=10_000))
    ref = power_to_buckets_ref(ts, p, ISP_NS, 0, 2 * 3600 * S)
    assert_matches_ref(one, ref)


class TestLocalCalendarBuckets:
    def test_dst_week_has_seven_days_one_of_25_hours(self):
        # Monday 2026-10-19 .. Sunday 2026-10-25 (last Sunday of October: 25 hours).
        start = pd.Timestamp("2026-10-19", tz="Europe/Amsterdam").as_unit("ns").value
        end = pd.Timestamp("2026-10-26", tz="Europe/Amsterdam").as_unit("ns").value
        edges = local_calendar_edges(start, end, "day")
        hours = np.diff(edges) / 3600 / S
        assert hours.tolist() == [24] * 6 + [25]
        ts = np.arange(start, end + 1, 60 * S)
        res = power_to_edges(ts, np.full(ts.size, 1000.0), edges)
        assert len(res) == 7
        assert res.energy_wh == pytest.approx([24_000.0] * 6 + [25_000.0])
        assert res.coverage == pytest.approx(np.ones(7))
        ref = power_to_edges_ref(ts, np.full(ts.size, 1000.0), edges, 2 * 3600 * S)
        assert_matches_ref(res, ref)
        weeks = local_calendar_edges(start, end, "week")
        assert np.diff(weeks).tolist() == [(7 * 24 + 1) * 3600 * S]

    def test_spring_day_and_months(self):
        day = pd.Timestamp("2026-03-29", tz="Europe/Amsterdam").as_unit("ns").value
        edges = local_calendar_edges(day, day + 1, "day")
        assert np.diff(edges).tolist() == [23 * 3600 * S]
        months = local_calendar_edges(day, day + 40 * 86_400 * S, "month")
        first = pd.Timestamp(int(months[0]), unit="ns", tz="UTC").tz_convert("Europe/Amsterdam")
        assert first.to_pydatetime().replace(tzinfo=None) == dt.datetime(2026, 3, 1)
        # March 2026 has 31 days minus one hour (spring forward); April 30 days.
        assert np.diff(months).tolist() == [
            (31 * 24 - 1) * 3600 * S,
            30 * 24 * 3600 * S,
            31 * 24 * 3600 * S,
        ]

    @HYP
    @given(data=series())
    def test_edges_kernel_matches_reference(self, data):
        ts, p, q = data
        if len(ts) == 0:
            return
        edges = np.array([T0 + 3 * S, T0 + 20 * S, T0 + 21 * S, T0 + 300 * S], dtype=np.int64)
        res = power_to_edges(ts, p, edges, 25 * S, q)
        assert_matches_ref(res, power_to_edges_ref(ts, p, edges, 25 * S, q))


@pytest.mark.parametrize("where", [0.25, 0.5, 0.999])
def test_out_of_order_found_in_any_chunk(where):
    n = 40_000
    ts = T0 + np.arange(n, dtype=np.int64) * S
    i = int(n * where)
    ts[i] = ts[i - 2]  # one sample steps back in time
    with pytest.raises(ValueError, match=rf"ts_ns\[{i}\]"):
        power_to_buckets(ts, np.ones(n), n_threads=4, chunk_min=1000)
    res = power_to_buckets(ts, np.ones(n), n_threads=4, chunk_min=1000, unsorted="sort")
    assert res.count.sum() == n - 1 and res.duplicate_count == 1


def test_datetime64_input_is_accepted():
    idx = pd.date_range("2026-06-01", periods=1800, freq="1s", tz="UTC")
    for ts in (idx, idx.to_numpy(), idx.tz_localize(None).to_numpy(), pd.Series(idx)):
        res = power_to_buckets(ts, np.full(1800, 3600.0))
        assert res.start_ns[0] == pd.Timestamp("2026-06-01", tz="UTC").as_unit("ns").value
        assert res.energy_wh.sum() == pytest.approx(1799 / 3600 * 3600.0)
    with pytest.raises(ValueError, match="no time zone"):
        power_to_buckets(idx.tz_localize(None), np.ones(1800))


@pytest.mark.parametrize("use_q", [False, True])
def test_regular_and_jittered_blocks_match_reference(use_q):
    """Long clean 1 Hz stretches take the one-pass block (regular: energy from the sum;
    jittered: per-step conversion), broken by NaN, flags, duplicates and a gap."""
    rng = np.random.default_rng(11)
    n = 60_000
    steps = np.full(n, S)
    steps[20_000:40_000] = S + rng.integers(-3_000_000, 3_000_000, 20_000)  # jitter
    steps[45_000] = 3 * 3600 * S  # one gap
    steps[50_000:50_010] = 0  # a run of duplicates
    ts = T0 + np.cumsum(steps)
    p = rng.normal(1500, 400, n)
    p[rng.integers(0, n, 30)] = np.nan
    p[rng.integers(0, n, 5)] = np.inf
    q = (rng.random(n) < 0.0005).astype(np.uint8) if use_q else None
    one = power_to_buckets(ts, p, quality=q, n_threads=1)
    assert_matches_ref(one, power_to_buckets_ref(ts, p, ISP_NS, 0, 2 * 3600 * S, q))
    for threads in (2, 3):
        assert_identical(
            one, power_to_buckets(ts, p, quality=q, n_threads=threads, chunk_min=5_000)
        )


def test_min_max_of_signed_zeros_do_not_depend_on_the_path():
    """-0.0 counts below +0.0 in min and max, in the block and in the scalar path alike."""
    n = 900
    ts = T0 + np.arange(n, dtype=np.int64) * S
    for order in ((0.0, -0.0), (-0.0, 0.0)):
        p = np.full(n, order[0])
        p[n // 2 :] = order[1]
        for quality in (None, np.r_[np.zeros(n - 1, np.uint8), 1]):  # the flag spoils blocks
            for gap in (2 * 3600 * S, S // 2):  # 0.5 s: every step is a gap, all scalar
                res = power_to_buckets(ts, p, max_gap_ns=gap, quality=quality, n_threads=1)
                assert np.signbit(res.min_w[0]) and not np.signbit(res.max_w[0])
