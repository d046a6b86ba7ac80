"""The power kernel on 1 and 2 threads and for several chunk counts: one result, bit for bit.

A long channel is cut into chunks at bucket edges and stitched at the seams
(:mod:`energy.kernels.power`). Here every thread count and chunk count gives the same bits as
one sequential pass, and that pass agrees with the plain NumPy/pandas reference
(:func:`energy.kernels.reference.power_to_buckets_ref`: cumulative integrals differenced at
the edges, pandas group-bys), on 1 Hz data with dropped samples, duplicates, NaN/inf,
flagged samples and gaps longer than the gap limit.
"""

from __future__ import annotations

import numpy as np
import pytest

from energy.kernels import BucketResult, power_to_buckets
from energy.kernels import power as kp
from energy.kernels.reference import power_to_buckets_ref

S = 1_000_000_000
T0 = 1_782_864_000 * S  # 2026-07-01T00:00:00Z
COLUMNS = (
    "start_ns", "energy_wh", "mean_w", "min_w", "max_w", "count", "coverage",
    "invalid_count", "sum_w", "first_w", "last_w", "gaps_ns",
)  # fmt: skip


def channel(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` samples at 1 Hz with every kind of trouble the kernel handles."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * S
    ts[n // 3 :] += 3 * 3600 * S  # a gap of 3 h (> the 2 h limit)
    ts[n // 2 :] += 1800 * S  # a gap of 30 min (integrated)
    ts = np.sort(np.concatenate([ts, ts[rng.integers(0, n, 50)]]))  # duplicates
    ts = ts[rng.random(ts.size) > 0.002]  # dropped samples
    p = 2000 + 800 * np.sin(np.arange(ts.size) / 9000) + rng.normal(0, 150, ts.size)
    p[rng.integers(0, ts.size, 40)] = np.nan
    p[rng.integers(0, ts.size, 5)] = np.inf
    q = np.zeros(ts.size, np.uint8)
    q[rng.integers(0, ts.size, 30)] = 2
    return ts, p, q


def same_bits(a: BucketResult, b: BucketResult) -> list[str]:
    """The columns in which ``a`` and ``b`` differ in any bit (NaN included)."""
    differ = [c for c in COLUMNS if not np.array_equal(getattr(a, c), getattr(b, c))]
    differ = [
        c
        for c in differ
        if getattr(a, c).dtype.kind != "f" or getattr(a, c).tobytes() != getattr(b, c).tobytes()
    ]
    return differ + (["duplicate_count"] if a.duplicate_count != b.duplicate_count else [])


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return channel(60_000, seed=3)


@pytest.fixture(scope="module")
def sequential(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> BucketResult:
    ts, p, q = data
    return power_to_buckets(ts, p, quality=q, n_threads=1)


def test_sequential_pass_matches_the_reference(data, sequential):
    ts, p, q = data
    ref = power_to_buckets_ref(ts, p, kp.ISP_NS, 0, kp.DEFAULT_MAX_GAP_NS, quality=q)
    assert len(ref) == len(sequential)
    np.testing.assert_array_equal(sequential.start_ns, ref["start_ns"])
    for col in ("energy_wh", "mean_w", "min_w", "max_w", "coverage", "sum_w"):
        ours = getattr(sequential, col)
        np.testing.assert_allclose(ours, ref[col], rtol=1e-9, atol=1e-9, err_msg=col)
    for col in ("count", "invalid_count"):
        np.testing.assert_array_equal(getattr(sequential, col), ref[col], err_msg=col)
    np.testing.assert_array_equal(sequential.first_w, ref["first_w"])
    np.testing.assert_array_equal(sequential.last_w, ref["last_w"])
    np.testing.assert_array_equal(sequential.gaps_ns, ref.attrs["gaps_ns"])
    assert sequential.duplicate_count == ref.attrs["duplicates"]
    assert len(sequential.gaps_ns) == 1  # the 3 h gap; the 30 min one is integrated


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk_min", [60_000, 30_000, 15_000, 7_500, 4_000, 1_000])
def test_threads_and_chunk_counts_give_the_same_bits(data, sequential, threads, chunk_min):
    ts, p, q = data
    res = power_to_buckets(ts, p, quality=q, n_threads=threads, chunk_min=chunk_min)
    assert same_bits(sequential, res) == []


@pytest.mark.parametrize(
    ("n", "threads", "expected"),
    [
        (10_000_000, 1, 1),
        (10_000_000, 2, 4),  # 5 fit: 2 per thread, not 3 + 2
        (20_000_000, 2, 8),  # 10 fit: CHUNKS_PER_THREAD per thread
        (50_000_000, 2, 8),
        (7_000_000, 3, 3),
        (3_000_000, 2, 1),  # one chunk of 2 M fits: no seam
        (1_000_000, 2, 1),
        (0, 2, 1),
    ],
)
def test_chunk_count_is_a_whole_multiple_of_the_threads(n, threads, expected):
    assert kp.n_chunks_for(n, threads, kp.CHUNK_MIN) == expected


def test_the_run_uses_that_chunk_count(monkeypatch, data):
    ts, p, q = data
    asked: list[int] = []
    split = kp._split_points

    def spy(t: np.ndarray, edges: np.ndarray, n_chunks: int) -> list[int]:
        asked.append(n_chunks)
        return split(t, edges, n_chunks)

    monkeypatch.setattr(kp, "_split_points", spy)
    power_to_buckets(ts, p, quality=q, n_threads=2, chunk_min=ts.size // 5)
    assert asked == [4]


def test_read_only_and_writable_samples_share_one_compiled_kernel(data):
    """Samples of one Parquet part come read-only, concatenated ones writable: both go
    through the same machine code, so a process compiles the kernel once, not twice."""
    ts, p, q = data
    writable = power_to_buckets(ts.copy(), p.copy(), quality=q.copy(), n_threads=1)
    before = list(kp._power_kernel.signatures)
    ro = [a.copy() for a in (ts, p, q)]
    for a in ro:
        a.flags.writeable = False
    read_only = power_to_buckets(*ro[:2], quality=ro[2], n_threads=2, chunk_min=10_000)
    power_to_buckets(*ro[:2], n_threads=1)  # no quality flags: an empty read-only array
    assert list(kp._power_kernel.signatures) == before
    assert len(before) == 1
    assert same_bits(writable, read_only) == []
