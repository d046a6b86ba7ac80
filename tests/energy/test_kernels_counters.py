"""Energy counters to buckets: wraps, resets, gaps; kernel against reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energy.kernels import counter_to_buckets
from energy.kernels.reference import counter_to_buckets_ref

S = 1_000_000_000
T0 = 1_789_999_200 * S
WRAP = float(2**32)  # a uint32 register in Wh
HYP = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@st.composite
def counter_series(draw: st.DrawFn):
    n = draw(st.integers(0, 40))
    steps = draw(
        st.lists(
            st.sampled_from([0, S, 3 * S, 10 * S, 7 * S // 3, 200 * S]), min_size=n, max_size=n
        )
    )
    ts = T0 + draw(st.sampled_from([0, S, 5 * S])) + np.cumsum(np.asarray(steps, np.int64))
    c = []
    level = draw(st.floats(0, WRAP - 1))
    for _ in range(n):
        kind = draw(st.sampled_from(["up"] * 6 + ["wrap", "reset", "nan", "flat"]))
        if kind == "up":
            level = level + draw(st.floats(0, 5000))
            if level >= WRAP:
                level -= WRAP
            c.append(level)
        elif kind == "wrap":
            c.append(WRAP - draw(st.floats(1, 1000)))
            level = draw(st.floats(0, 1000))
            c.append(level)
        elif kind == "reset":
            level = draw(st.floats(0, 100))
            c.append(level)
        elif kind == "flat":
            c.append(level)
        else:
            c.append(np.nan)
    q = np.asarray(draw(st.lists(st.sampled_from([0] * 9 + [2]), min_size=n, max_size=n)), np.uint8)
    return ts, np.asarray(c[:n], dtype=np.float64), q


class TestCounterKernelVsReference:
    @HYP
    @given(data=counter_series(), use_q=st.booleans(), wrap=st.sampled_from([None, WRAP]))
    def test_matches_reference(self, data, use_q, wrap):
        ts, c, q = data
        quality = q if use_q else None
        res = counter_to_buckets(ts, c, 10 * S, 0, wrap, 60 * S, quality)
        if len(ts) == 0:
            assert len(res) == 0
            return
        ref = counter_to_buckets_ref(ts, c, 10 * S, 0, wrap, 60 * S, quality)
        np.testing.assert_array_equal(res.start_ns, ref["start_ns"])
        # Differences of counter readings near 2**32 Wh carry float64 rounding of that size
        # (about 1e-6 Wh); the tolerance scales with the largest reading.
        atol = 1e-6 + 1e-15 * float(np.nanmax(np.abs(c), initial=0.0)) * len(c)
        np.testing.assert_allclose(res.energy_wh, ref["energy_wh"], rtol=1e-9, atol=atol)
        np.testing.assert_allclose(res.coverage, ref["coverage"], rtol=1e-12, atol=1e-12)
        for col in ("count", "invalid_count", "first_wh", "last_wh"):
            np.testing.assert_array_equal(getattr(res, col), ref[col].to_numpy(), err_msg=col)
        np.testing.assert_array_equal(res.wraps_ns, ref.attrs["wraps_ns"])
        np.testing.assert_array_equal(res.resets_ns, ref.attrs["resets_ns"])
        np.testing.assert_array_equal(res.gaps_ns, ref.attrs["gaps_ns"])
        np.testing.assert_allclose(res.gap_energy_wh, ref.attrs["gap_energy_wh"])
        assert res.duplicate_count == ref.attrs["duplicates"]
        # Nothing is lost: buckets + gaps = the counter's total advance.
        total = ref["energy_wh"].sum() + ref.attrs["gap_energy_wh"].sum()
        assert res.energy_wh.sum() + res.gap_energy_wh.sum() == pytest.approx(
            total, abs=1e-5 + atol * len(c)
        )


def test_uint32_wrap_is_energy_not_a_reset():
    ts = T0 + np.array([0, 60, 120]) * S
    c = np.array([WRAP - 300.0, WRAP - 100.0, 150.0])
    res = counter_to_buckets(ts, c, wrap_wh=WRAP)
    assert res.energy_wh.sum() == pytest.approx(450.0)
    assert res.wraps == 1 and res.resets == 0
    assert res.wraps_ns.tolist() == [int(ts[2])]


def test_reset_counts_from_zero_and_is_reported():
    ts = T0 + np.array([0, 60, 120, 180]) * S
    c = np.array([5000.0, 5100.0, 30.0, 90.0])
    res = counter_to_buckets(ts, c, wrap_wh=WRAP)
    assert res.energy_wh.sum() == pytest.approx(100 + 30 + 60)
    assert res.resets == 1 and res.wraps == 0
    # Without a register range every drop is a reset.
    no_wrap = counter_to_buckets(ts[:2], np.array([WRAP - 10, 5.0]))
    assert no_wrap.resets == 1 and no_wrap.energy_wh.sum() == pytest.approx(5.0)


def test_energy_split_over_isps_and_gap_reported():
    # 900 Wh between 14:10 and 14:25 UTC splits 1/3 : 2/3 over two ISPs.
    ts = T0 + np.array([10, 25]) * 60 * S
    res = counter_to_buckets(ts, np.array([1000.0, 1900.0]))
    assert res.energy_wh.tolist() == pytest.approx([300.0, 600.0])
    gap = counter_to_buckets(T0 + np.array([0, 3 * 3600]) * S, np.array([0.0, 5000.0]))
    assert gap.energy_wh.sum() == 0 and gap.gap_energy_wh.tolist() == [5000.0]
    frame = res.to_frame()
    assert frame["power_mean_w"].tolist() == pytest.approx([3600.0, 3600.0])


def test_counter_validation():
    with pytest.raises(ValueError, match="wrap_wh"):
        counter_to_buckets(np.array([T0]), np.array([1.0]), wrap_wh=-1)
    with pytest.raises(ValueError, match="must not decrease"):
        counter_to_buckets(np.array([T0, T0 - S]), np.array([1.0, 2.0]))


def test_generated_series_contain_wraps_and_resets():
    """Guard for the strategy above: it does produce both kinds of drop."""
    seen = {"wraps": 0, "resets": 0}

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(data=counter_series())
    def collect(data):
        ts, c, _ = data
        if len(ts):
            res = counter_to_buckets(ts, c, 10 * S, 0, WRAP, 60 * S)
            seen["wraps"] += res.wraps
            seen["resets"] += res.resets

    collect()
    assert seen["wraps"] > 0 and seen["resets"] > 0
