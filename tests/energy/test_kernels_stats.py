"""One-pass bucket statistics and derived series against NumPy/pandas references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energy.kernels import (
    bucket_percentiles,
    bucket_stats,
    fixed_edges,
    load_duration_curve,
    local_calendar_edges,
    peak_demand,
    power_to_buckets,
)
from energy.kernels.reference import bucket_percentiles_ref, power_to_buckets_ref
from energy.timegrid import ISP_NS

S = 1_000_000_000
T0 = 1_789_999_200 * S
HYP = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@st.composite
def samples(draw: st.DrawFn):
    n = draw(st.integers(0, 60))
    steps = draw(
        st.lists(st.sampled_from([0, S, S, 3 * S, 10 * S, 45 * S]), min_size=n, max_size=n)
    )
    ts = T0 + draw(st.sampled_from([0, S, 10 * S])) + np.cumsum(np.asarray(steps, np.int64))
    val = st.one_of(st.floats(-1e4, 1e4, allow_nan=False), st.just(np.nan), st.just(2.5))
    v = np.asarray(draw(st.lists(val, min_size=n, max_size=n)), np.float64)
    q = np.asarray(draw(st.lists(st.sampled_from([0] * 9 + [2]), min_size=n, max_size=n)), np.uint8)
    return ts, v, q


class TestBucketStats:
    @HYP
    @given(data=samples(), use_q=st.booleans())
    def test_matches_reference(self, data, use_q):
        ts, v, q = data
        quality = q if use_q else None
        res = bucket_stats(ts, v, 20 * S, 0, 30 * S, quality)
        if len(ts) == 0:
            assert len(res) == 0
            return
        ref = power_to_buckets_ref(ts, v, 20 * S, 0, 30 * S, quality)
        np.testing.assert_array_equal(res.count, ref["count"])
        np.testing.assert_allclose(res.sum, ref["sum_w"], rtol=1e-12, atol=1e-9)
        with np.errstate(invalid="ignore"):
            mean = ref["sum_w"] / ref["count"].replace(0, np.nan)
        np.testing.assert_allclose(res.mean, mean, rtol=1e-12, atol=1e-9)
        for ours, col in (
            (res.min, "min_w"),
            (res.max, "max_w"),
            (res.first, "first_w"),
            (res.last, "last_w"),
        ):
            np.testing.assert_array_equal(ours, ref[col].to_numpy(), err_msg=col)
        np.testing.assert_allclose(res.coverage, ref["coverage"], atol=1e-12)
        np.testing.assert_array_equal(np.isnan(res.twa), np.isnan(ref["mean_w"].to_numpy()))

    def test_time_weighted_mean_differs_from_sample_mean(self):
        # 0 W sampled every minute from 0 to 9 min, then 1000 W every second from 10:01.
        t_slow = T0 + np.arange(0, 10) * 60 * S
        t_fast = T0 + 600 * S + np.arange(1, 300) * S
        ts = np.concatenate((t_slow, t_fast))
        v = np.concatenate((np.zeros(10), np.full(299, 1000.0)))
        res = bucket_stats(ts, v)
        assert res.count[0] == 309
        assert res.mean[0] == pytest.approx(299_000 / 309)
        # Flat 0 W to 9:00, a ramp to 1000 W until 10:01 (61 s), then flat to 14:59.
        covered = 899.0
        assert res.twa[0] == pytest.approx((500 * 61 + 1000 * 298) / covered)
        assert res.first[0] == 0.0 and res.last[0] == 1000.0

    def test_local_day_buckets(self):
        start = pd.Timestamp("2026-10-24", tz="Europe/Amsterdam").as_unit("ns").value
        edges = local_calendar_edges(start, start + 3 * 86_400 * S, "day")
        ts = np.arange(edges[0], edges[-1], 60 * S)
        res = bucket_stats(ts, np.ones(ts.size), edges=edges)
        assert res.count.tolist() == [1440, 1500, 1440]


class TestDerived:
    @HYP
    @given(data=samples(), use_q=st.booleans())
    def test_percentiles_match_pandas(self, data, use_q):
        ts, v, q = data
        quality = q if use_q else None
        pcts = (0.0, 5.0, 50.0, 95.0, 100.0)
        got = bucket_percentiles(ts, v, pcts, 30 * S, 0, quality)
        if len(ts) == 0:
            assert got.empty
            return
        edges = fixed_edges(int(ts[0]), int(ts[-1]), 30 * S)
        ref = bucket_percentiles_ref(ts, v, pcts, edges, quality)
        np.testing.assert_array_equal(got["count"].to_numpy(), ref["count"].to_numpy())
        for c in ref.columns.drop("count"):
            np.testing.assert_allclose(got[c].to_numpy(), ref[c].to_numpy(), rtol=1e-12, atol=1e-9)

    def test_daily_base_load_over_dst_day(self):
        start = pd.Timestamp("2026-10-25", tz="Europe/Amsterdam").as_unit("ns").value
        edges = local_calendar_edges(start, start + 1, "day")
        ts = np.arange(edges[0], edges[-1], 60 * S)
        v = np.where(np.arange(ts.size) % 10 == 0, 5000.0, 300.0)
        got = bucket_percentiles(ts, v, (5, 50), edges=edges)
        assert got["count"].tolist() == [1500]
        assert got["p5"].iloc[0] == 300.0 and got["p50"].iloc[0] == 300.0

    def test_percentiles_reject_unsorted_and_bad_levels(self):
        with pytest.raises(ValueError, match="must not decrease"):
            bucket_percentiles(np.array([T0 + S, T0]), np.ones(2))
        with pytest.raises(ValueError, match="percentiles"):
            bucket_percentiles(np.array([T0]), np.ones(1), (101,))

    def test_load_duration_curve(self):
        ldc = load_duration_curve([100.0, np.nan, 300.0, 200.0, 300.0])
        assert ldc["value"].tolist() == [300.0, 300.0, 200.0, 100.0]
        assert ldc["duration_h"].tolist() == [0.25, 0.5, 0.75, 1.0]
        assert ldc["share"].iloc[-1] == 1.0
        ref = pd.Series([100.0, 300.0, 200.0, 300.0]).sort_values(ascending=False)
        np.testing.assert_array_equal(ldc["value"], ref.to_numpy())

    def test_peak_demand_from_isps(self):
        ts = T0 + np.arange(0, 4 * 3600) * S
        p = np.full(ts.size, 1000.0)
        p[3600:4500] = 9000.0  # one ISP at 9 kW
        res = power_to_buckets(ts, p)
        peaks = peak_demand(res.start_ns, res.energy_wh, top=2)
        assert peaks["start"].iloc[0].value == T0 + 3600 * S
        assert peaks["power_w"].iloc[0] == pytest.approx(9000.0, rel=1e-3)
        assert len(peaks) == 2 and peaks["power_w"].iloc[1] < 9000.0
        assert peak_demand([T0, T0 + ISP_NS], [np.nan, 10.0])["power_w"].tolist() == [40.0]
