"""Power samples to energy per bucket: trapezoid rule, gaps, quality, one pass.

The kernel reads each sample once and keeps only per-bucket outputs (no temporaries the size
of the input). Rules, shared with the plain NumPy/pandas reference
(:func:`energy.kernels.reference.power_to_buckets_ref`):

* **Duplicates** (equal timestamps): the last sample of a run wins, as in
  :class:`energy.samples.SampleStore` (last write wins); the others are counted in
  ``duplicate_count``.
* **Order**: timestamps must not decrease. Out-of-order input raises :class:`ValueError`
  naming the first offending index, or is sorted first (stable, so "last wins" means last in
  input order) with ``unsorted="sort"``.
* **Validity**: a sample is valid when its quality is 0 (:attr:`Quality.GOOD`) and its value
  finite. NaN, infinite and flagged samples are excluded and counted per bucket
  (``invalid_count``); integration bridges them like any missing sample.
* **Integration**: power is linear between consecutive valid samples (trapezoid rule); a sample
  interval crossing a bucket edge is split at the edge with the interpolated power there. An
  interval longer than ``max_gap_ns`` is not integrated; it is reported in ``gaps_ns``
  (emoncms skips integration across gaps of 2 h or more; the limit is configurable).
* **Statistics**: ``count``, ``min_w``, ``max_w`` over valid samples whose timestamp lies in
  the bucket; ``mean_w`` is the *time-weighted* mean power over the covered part of the bucket
  (integrated energy / covered time), NaN when nothing is covered; ``coverage`` is the covered
  share of the bucket (0..1).

Energy is conserved: the bucket energies sum to the trapezoid integral of the whole series
minus the reported gaps.

A long channel is split into chunks at bucket edges, run in parallel (the kernel releases the
GIL), and stitched at the seams: the sample interval that crosses a seam is integrated by the
later chunk and its piece in the last bucket of the earlier chunk is added after both finish,
in the same order of floating-point additions as one sequential pass, so chunked and
sequential results are bit-identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numba as nb
import numpy as np
import pandas as pd
from llvmlite import ir
from numba.extending import intrinsic

from energy.kernels.calendar import check_edges, fixed_edges
from energy.timegrid import ISP_NS

DEFAULT_MAX_GAP_NS = 2 * 3600 * 1_000_000_000
"""Longest sample interval still integrated [ns] (2 h, as emoncms)."""

WNS2_PER_WH = 7.2e12
"""The kernel accumulates ``(p0 + p1) * dt`` [W*ns]; divide by 2 * 3.6e12 for [Wh]."""

CHUNK_MIN = 2_000_000
"""A channel is split over threads only from this many samples on."""

CHUNKS_PER_THREAD = 4
"""A long channel is cut into up to this many chunks per thread, taken in turn, so that the
threads stay balanced when the machine is shared (each seam costs microseconds)."""

_ERR_UNSORTED = -1
_ERR_RANGE = -2

_POOL: ThreadPoolExecutor | None = None


def n_workers() -> int:
    """Worker threads for the kernels: ``NOABER_KERNEL_THREADS`` or the number of CPUs."""
    env = os.environ.get("NOABER_KERNEL_THREADS")
    if env:
        return max(1, int(env))
    return os.cpu_count() or 1


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=n_workers(), thread_name_prefix="noaber-kernel")
    return _POOL


# The kernels take their inputs and outputs grouped in plain tuples: Numba dispatches a
# tuple of arrays as fast as separate arguments (a NamedTuple would cost microseconds of
# typing per call), and the njit functions unpack them on entry.

Samples = tuple[np.ndarray, np.ndarray, np.ndarray, bool]
"""One channel's samples ``(ts, values, q, has_q)``: int64 timestamps [ns since epoch, UTC],
float64 values (power [W], a counter [Wh]), uint8 quality flags (empty when ``has_q`` is
False)."""

Chunk = tuple[int, int, bool, int, float, int]
"""What one power-kernel call integrates: ``(lo, hi, have_prev, tp, pp, carry_b)``, the samples
``[lo, hi)`` and, at a chunk seam, the last valid sample ``(tp [ns], pp [W])`` before ``lo``
(when ``have_prev``) in bucket ``carry_b``, whose energy/coverage piece the kernel returns
instead of writing it (-1 without one)."""

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""The per-bucket arrays the power kernel writes, shared by a channel's chunks: ``(energy,
covered, count, min_w, max_w, invalid, sfl)`` — ``2 * energy`` [W*ns] (see
:data:`WNS2_PER_WH`), covered time [ns] int64, valid and invalid sample counts int64, min and
max valid value [W] (NaN where none), and ``sfl`` ``[3, n]``: sum, first and last valid
value [W]."""


def _zero_outputs(n_buckets: int) -> Outputs:
    sfl = np.full((3, n_buckets), np.nan)
    sfl[0] = 0.0
    return (
        np.zeros(n_buckets, np.float64),
        np.zeros(n_buckets, np.int64),
        np.zeros(n_buckets, np.int64),
        np.full(n_buckets, np.nan),
        np.full(n_buckets, np.nan),
        np.zeros(n_buckets, np.int64),
        sfl,
    )


_NO_ACC = (0.0, 0, 0, np.inf, -np.inf, 0.0, np.nan)
"""The accumulators of an empty frontier bucket: ``(2*energy [W*ns], covered [ns], count,
min, max, sum, first)``."""


@nb.njit(cache=True, nogil=True)
def _flush(out: Outputs, fb: int, carry_b: int, acc: tuple[Any, ...], last: float) -> bool:
    """Write the accumulators ``acc`` (as :data:`_NO_ACC`) and the ``last`` valid value of the
    frontier bucket ``fb``; returns True when it was the carry bucket (not written)."""
    if fb == carry_b:
        return True
    e_acc, cov_acc, cnt, mn, mx, s_acc, first = acc
    out_e, out_cov, out_cnt, out_min, out_max, _out_inv, out_sfl = out
    out_e[fb] = e_acc
    out_cov[fb] = cov_acc
    out_cnt[fb] = cnt
    if cnt > 0:
        out_min[fb] = mn
        out_max[fb] = mx
        out_sfl[0, fb] = s_acc
        out_sfl[1, fb] = first
        out_sfl[2, fb] = last
    return False


BLOCK = 1024
"""Most samples per block of the fast path: one 15-min bucket of 1 Hz samples is one block."""
BLOCK_MIN = 16
"""Fewest samples the fast path takes as a block."""
BLOCK_RETRY = 64
"""Smallest block tried after one that was not clean (NaN, flag, duplicate, gap)."""

_FAST = {"nnan", "ninf", "nsz", "reassoc", "arcp", "contract"}


def _bitcast_f64(typingctx: Any, bits: Any) -> Any:
    """Numba intrinsic: the float64 whose bit pattern is the int64 ``bits`` (a register
    move, no memory)."""
    sig = nb.types.float64(nb.types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


_f64 = cast(Callable[[int], float], intrinsic(_bitcast_f64))


@nb.njit(cache=True, nogil=True, inline="always")
def _order_key(bits: int) -> int:
    """An int64 that orders like the float64 with these ``bits`` (IEEE 754 total order).

    Integer min/max reductions vectorise where float ones do not (LLVM keeps a float
    ``select`` reduction scalar), and the mapping is its own inverse. NaN sorts above +inf
    (or below -inf with the sign bit set), so finiteness of a block follows from its
    smallest and largest key. -0.0 sorts just below +0.0.
    """
    return bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF)


_KEY_HIGHEST = 0x7FEFFFFFFFFFFFFF
"""Order key of the largest finite float64 (its bits as they are: positive)."""
_KEY_LOWEST = -0x7FEFFFFFFFFFFFFF - 1
"""Order key of the most negative finite float64."""


@nb.njit(cache=True, nogil=True, inline="always")
def _min_total(a: float, b: float) -> float:
    """The smaller of two non-NaN floats, -0.0 below +0.0 (the order of :func:`_order_key`),
    so a bucket's min does not depend on which path or block saw its zeros."""
    if b < a or (b == a and np.signbit(b)):
        return b
    return a


@nb.njit(cache=True, nogil=True, inline="always")
def _max_total(a: float, b: float) -> float:
    """The larger of two non-NaN floats, +0.0 above -0.0 (see :func:`_min_total`)."""
    if b > a or (b == a and not np.signbit(b)):
        return b
    return a


_TWO52_BITS = 0x4330000000000000
"""Bits of 2**52: ``f64(d | these bits) - 2**52`` is ``float(d)`` for ``0 <= d < 2**52``,
exact, in two vector instructions (AVX2 has no int64 to float64 conversion)."""
_TWO52 = 4503599627370496.0
FAST_STEP_MAX = (1 << 52) - 1
"""Longest time step the fast path converts [ns] (52 days); longer ones go the scalar way."""


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def _block(
    ts: np.ndarray,
    p: np.ndarray,
    pbits: np.ndarray,
    q: np.ndarray,
    has_q: bool,
    i: int,
    k: int,
    tp: int,
    pp: float,
) -> tuple[float, int, int, float, float, float, bool]:
    """Fast path over samples ``[i, i+k)`` (``k >= 2``) that follow the valid sample ``(tp,
    pp)``: ONE pass over timestamps, values and quality flags, every reduction in registers.

    Vectorised (fast-math reductions; only float sums, whose order it may change). The pass
    checks that the time steps inside the block all equal the first one, ``D`` (an integer
    OR of ``step ^ D``), and sums the values, so for regular sampling the trapezoid energy
    is ``(pp + p_0) * d_0 + D * (2 * sum - p_0 - p_last)`` without converting a time step per
    sample. Only irregular blocks take a second loop over the block (from L1 cache) for
    ``sum (p_j + p_j+1) * d_j``, each step converted to float exactly with the 2**52 trick
    (:data:`_TWO52_BITS`), and the signed min and max of the steps. The caller requires ``1
    <= min step`` and ``max step <= min(max_gap_ns, FAST_STEP_MAX)``; a zero, negative or
    too long step sends the block the exact scalar way. Min and max run on order keys
    (:func:`_order_key`) of the loaded values: integer min/max reductions vectorise where
    float ones do not, and NaN/inf show in them, bit patterns that fast-math cannot optimise
    away. When ``bad`` is set the float results are meaningless and the caller takes the
    exact scalar path instead. Returns ``(2*energy [W*ns], min step, max step, p_min, p_max,
    p_sum, bad)``.
    """
    a = ts[i : i + k]
    b = p[i : i + k]
    bits = pbits[i : i + k]
    d0 = a[0] - tp
    step = a[1] - a[0]
    irregular = 0
    sm = b[0]
    kmin = _order_key(bits[0])
    kmax = kmin
    qb = 0
    if has_q:
        qq = q[i : i + k]
        qb = qq[0]
        for j in range(k - 1):
            irregular |= (a[j + 1] - a[j]) ^ step
            sm += b[j + 1]
            kj = _order_key(bits[j + 1])
            kmin = min(kmin, kj)
            kmax = max(kmax, kj)
            qb |= qq[j + 1]
    else:
        for j in range(k - 1):
            irregular |= (a[j + 1] - a[j]) ^ step
            sm += b[j + 1]
            kj = _order_key(bits[j + 1])
            kmin = min(kmin, kj)
            kmax = max(kmax, kj)
    bad = (kmin < _KEY_LOWEST) | (kmax > _KEY_HIGHEST) | (qb != 0)
    mn = _f64(_order_key(kmin))
    mx = _f64(_order_key(kmax))
    e = (pp + b[0]) * d0
    if irregular == 0:
        e += (2.0 * sm - b[0] - b[k - 1]) * step
        return e, min(d0, step), max(d0, step), mn, mx, sm, bad
    dmin = d0
    dmax = d0
    if not bad:
        for j in range(k - 1):
            d = a[j + 1] - a[j]
            e += (b[j] + b[j + 1]) * (_f64(d | _TWO52_BITS) - _TWO52)
            dmin = min(dmin, d)
            dmax = max(dmax, d)
    return e, dmin, dmax, mn, mx, sm, bad


@nb.njit(cache=True, nogil=True)
def _run_end(ts: np.ndarray, i: int, lim: int, fend: int, step: int) -> int:
    """The first index in ``(i, lim]`` whose timestamp is not below ``fend`` (``lim`` when
    none), given ``ts[i] < fend``; sorted ``ts[i:lim]`` assumed (the block checks it).

    Regular sampling fast path: with the previous ``step`` the end is computed, then checked
    with the two timestamps around it; a binary search only when that guess is wrong.
    """
    if step > 0:
        j = i + (fend - 1 - ts[i]) // step + 1
        if j >= lim:
            if ts[lim - 1] < fend:
                return lim
        elif ts[j - 1] < fend <= ts[j]:
            return j
    return i + int(np.searchsorted(ts[i:lim], fend, side="left"))


@nb.njit(cache=True, nogil=True)
def _power_kernel(
    s: Samples, chunk: Chunk, edges: np.ndarray, max_gap_ns: int, out: Outputs, gaps: np.ndarray
) -> tuple[int, int, int, float, int, int]:
    """One pass over the samples of ``chunk`` into buckets ``edges`` (see module docstring).

    Writes ``out`` except the carry bucket (see :data:`Chunk`), whose energy/coverage piece
    is returned; gaps go to ``gaps`` (``[k, 2]``, as many as fit). Returns ``(status, n_gaps,
    n_dup, carry_e, carry_cov, bad_index)``; status < 0 is an error.
    """
    ts, p, q, has_q = s
    lo, hi, have_prev, tp, pp, carry_b = chunk
    out_inv = out[5]
    n = ts.shape[0]
    nbk = edges.shape[0] - 1
    n_gaps = 0
    n_dup = 0
    carry_e = 0.0
    carry_cov = 0
    if hi <= lo:
        return 0, 0, 0, 0.0, 0, -1
    # Bucket of the first sample (binary search once per call).
    t0 = ts[lo]
    if t0 < edges[0] or t0 >= edges[nbk]:
        return _ERR_RANGE, 0, 0, 0.0, 0, lo
    sb = int(np.searchsorted(edges, t0, side="right")) - 1
    sb_end = edges[sb + 1]
    tlast = ts[lo - 1] if lo > 0 else t0
    # Frontier: the bucket being integrated, with its accumulators.
    fb = carry_b if have_prev else -1
    fend = edges[fb + 1] if have_prev else 0
    e_acc, cov_acc, cnt, mn, mx, s_acc, first = _NO_ACC
    pbits = p.view(np.int64)
    step_max = min(max_gap_ns, FAST_STEP_MAX)
    last_ok = lo - 1 if (have_prev and lo > 0 and ts[lo - 1] == tp) else -2
    scalar_until = lo
    blim = BLOCK
    blim_b = -3
    i = lo - 1
    while True:
        i += 1
        if i >= hi:
            break
        if have_prev and last_ok == i - 1 and i >= scalar_until and ts[i] < fend:
            # Fast path: a block of clean samples inside the frontier bucket. The block size
            # adapts within a bucket (a quarter after a block that was not clean, doubled
            # after a clean one) and starts at BLOCK in every bucket, so the blocks of a
            # bucket do not depend on where a chunk starts.
            if blim_b != fb:
                blim_b = fb
                blim = BLOCK
            k = _run_end(ts, i, min(blim + i, hi), fend, ts[i] - tp) - i
            if k >= BLOCK_MIN and not (i + k < n and ts[i + k] == ts[i + k - 1]):
                be, dmin, dmax, bmn, bmx, bs, bad = _block(ts, p, pbits, q, has_q, i, k, tp, pp)
                if not bad and dmin >= 1 and dmax <= step_max:
                    e_acc += be
                    cov_acc += ts[i + k - 1] - tp
                    if cnt == 0:
                        first = p[i]
                    cnt += k
                    s_acc += bs
                    mn = _min_total(mn, bmn)
                    mx = _max_total(mx, bmx)
                    i += k - 1
                    tp = ts[i]
                    pp = p[i]
                    tlast = tp
                    last_ok = i
                    blim = min(2 * blim, BLOCK)
                    continue
                # Not clean: these samples go the exact scalar way, and the next block of the
                # bucket is a quarter of this one (so that dirty data pays less for trying).
                blim = max(k // 4, BLOCK_RETRY)
            scalar_until = i + k
        t = ts[i]
        if t < tlast:
            return _ERR_UNSORTED, n_gaps, n_dup, carry_e, carry_cov, i
        tlast = t
        if t >= sb_end:
            while sb < nbk and t >= edges[sb + 1]:
                sb += 1
            if sb >= nbk:
                return _ERR_RANGE, n_gaps, n_dup, carry_e, carry_cov, i
            sb_end = edges[sb + 1]
        if i + 1 < n and ts[i + 1] == t:
            n_dup += 1
            continue
        v = p[i]
        if (has_q and q[i] != 0) or v - v != 0.0:  # NaN and +-inf fail v - v == 0
            out_inv[sb] += 1
            continue
        if have_prev:
            dt = t - tp
            if dt > max_gap_ns:
                if n_gaps < gaps.shape[0]:
                    gaps[n_gaps, 0] = tp
                    gaps[n_gaps, 1] = t
                n_gaps += 1
                if sb != fb:
                    if _flush(out, fb, carry_b, (e_acc, cov_acc, cnt, mn, mx, s_acc, first), pp):
                        carry_e = e_acc
                        carry_cov = cov_acc
                    fb = sb
                    fend = sb_end
                    e_acc, cov_acc, cnt, mn, mx, s_acc, first = _NO_ACC
            elif t < fend:
                e_acc += (pp + v) * dt
                cov_acc += dt
            else:
                # Split the interval at every bucket edge it crosses.
                slope = (v - pp) / dt
                a = tp
                pa = pp
                while True:
                    e = fend
                    pe = pp + slope * (e - tp)
                    e_acc += (pa + pe) * (e - a)
                    cov_acc += e - a
                    if _flush(out, fb, carry_b, (e_acc, cov_acc, cnt, mn, mx, s_acc, first), pp):
                        carry_e = e_acc
                        carry_cov = cov_acc
                    fb += 1
                    fend = edges[fb + 1]
                    e_acc, cov_acc, cnt, mn, mx, s_acc, first = _NO_ACC
                    a = e
                    pa = pe
                    if t < fend:
                        break
                e_acc += (pa + v) * (t - a)
                cov_acc += t - a
        else:
            have_prev = True
            fb = sb
            fend = sb_end
        if cnt == 0:
            first = v
        cnt += 1
        s_acc += v
        # -0.0 below +0.0, as in _min_total/_max_total (ties are rare: predicted branches).
        if v < mn or (v == mn and pbits[i] < 0):
            mn = v
        if v > mx or (v == mx and pbits[i] >= 0):
            mx = v
        tp = t
        pp = v
        last_ok = i
    if fb >= 0 and _flush(out, fb, carry_b, (e_acc, cov_acc, cnt, mn, mx, s_acc, first), pp):
        carry_e = e_acc
        carry_cov = cov_acc
    return 0, n_gaps, n_dup, carry_e, carry_cov, -1


@nb.njit(cache=True, nogil=True)
def _prev_valid(s: Samples, lo: int) -> tuple[bool, int, float]:
    """The last valid, not superseded sample before index ``lo``."""
    ts, p, q, has_q = s
    n = ts.shape[0]
    j = lo - 1
    while j >= 0:
        superseded = j + 1 < n and ts[j + 1] == ts[j]
        v = p[j]
        if not superseded and not (has_q and q[j] != 0) and v - v == 0.0:
            return True, ts[j], v
        j -= 1
    return False, 0, 0.0


@dataclass(frozen=True)
class BucketResult:
    """Per-bucket energy and power statistics of one channel.

    Attributes
    ----------
    start_ns : numpy.ndarray
        int64 bucket starts [ns since epoch, UTC], contiguous.
    end_ns : numpy.ndarray
        int64 bucket ends [ns] (``start_ns`` shifted by one bucket).
    energy_wh : numpy.ndarray
        Energy in the bucket [Wh] (0 where nothing was integrated).
    mean_w, min_w, max_w : numpy.ndarray
        Time-weighted mean power over the covered part, min and max of the valid samples [W];
        NaN where undefined.
    count : numpy.ndarray
        int64 valid samples in the bucket.
    coverage : numpy.ndarray
        Covered share of the bucket, 0..1.
    invalid_count : numpy.ndarray
        int64 NaN/infinite/flagged samples in the bucket.
    duplicate_count : int
        Samples superseded by a later one with the same timestamp.
    gaps_ns : numpy.ndarray
        int64 ``[k, 2]``: ``[start, end)`` of sample intervals not integrated [ns].
    sum_w, first_w, last_w : numpy.ndarray
        Sum, first and last of the valid sample values in the bucket [W] (sum 0 and first/last
        NaN where there are none); see :func:`energy.kernels.stats.bucket_stats`.
    """

    start_ns: np.ndarray
    end_ns: np.ndarray
    energy_wh: np.ndarray
    mean_w: np.ndarray
    min_w: np.ndarray
    max_w: np.ndarray
    count: np.ndarray
    coverage: np.ndarray
    invalid_count: np.ndarray
    duplicate_count: int = 0
    gaps_ns: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))
    sum_w: np.ndarray | None = None
    first_w: np.ndarray | None = None
    last_w: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    @property
    def covered_ns(self) -> np.ndarray:
        """Covered time per bucket [ns] (float64)."""
        return self.coverage * (self.end_ns - self.start_ns)

    @property
    def gap_ns_total(self) -> int:
        """Total length of the reported gaps [ns]."""
        return int((self.gaps_ns[:, 1] - self.gaps_ns[:, 0]).sum()) if len(self.gaps_ns) else 0

    def to_frame(self) -> pd.DataFrame:
        """The buckets as a DataFrame indexed by bucket start (UTC, ns).

        Columns are those :func:`energy.readings.upsert_readings` takes: ``energy_wh,
        power_mean_w, power_min_w, power_max_w, sample_count, coverage, value_last``.
        """
        index = pd.DatetimeIndex(
            pd.to_datetime(self.start_ns, unit="ns", utc=True), name="isp_start"
        ).as_unit("ns")
        return pd.DataFrame(
            {
                "energy_wh": self.energy_wh,
                "power_mean_w": self.mean_w,
                "power_min_w": self.min_w,
                "power_max_w": self.max_w,
                "sample_count": self.count,
                "coverage": self.coverage,
                "value_last": (np.full(len(self), np.nan) if self.last_w is None else self.last_w),
            },
            index=index,
        )

    def select(self, mask: np.ndarray) -> BucketResult:
        """The buckets where ``mask`` holds (gaps and duplicate count are kept as they are)."""
        return BucketResult(
            self.start_ns[mask],
            self.end_ns[mask],
            self.energy_wh[mask],
            self.mean_w[mask],
            self.min_w[mask],
            self.max_w[mask],
            self.count[mask],
            self.coverage[mask],
            self.invalid_count[mask],
            self.duplicate_count,
            self.gaps_ns,
            None if self.sum_w is None else self.sum_w[mask],
            None if self.first_w is None else self.first_w[mask],
            None if self.last_w is None else self.last_w[mask],
        )

    @classmethod
    def empty(cls) -> BucketResult:
        f = np.empty(0, np.float64)
        i = np.empty(0, np.int64)
        return cls(i, i.copy(), f, f.copy(), f.copy(), f.copy(), i.copy(), f.copy(), i.copy())


def _as_inputs(ts_ns: Any, power_w: Any, quality: Any) -> Samples:
    if isinstance(ts_ns, pd.DatetimeIndex | pd.Series) or (
        isinstance(ts_ns, np.ndarray) and ts_ns.dtype == object
    ):
        idx = pd.DatetimeIndex(ts_ns)
        if idx.tz is None:
            raise ValueError("timestamps have no time zone; give UTC (int64 ns or tz-aware)")
        ts = idx.as_unit("ns").asi8
    else:
        ts = np.asarray(ts_ns)
        if ts.dtype.kind == "M":  # numpy datetime64 counts from the UTC epoch
            ts = ts.astype("datetime64[ns]").view(np.int64)
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    p = np.ascontiguousarray(power_w, dtype=np.float64)
    if ts.ndim != 1 or p.shape != ts.shape:
        raise ValueError(
            f"ts_ns and values must be 1-D arrays of equal length, got {ts.shape} and {p.shape}"
        )
    if quality is None:
        return ts, p, np.empty(0, np.uint8), False
    q = np.ascontiguousarray(quality, dtype=np.uint8)
    if q.shape != ts.shape:
        raise ValueError(f"quality must have the shape of ts_ns {ts.shape}, got {q.shape}")
    return ts, p, q, True


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def frozen_samples(s: Samples) -> Samples:
    """Read-only views of the sample arrays (no copy), as every kernel call takes them.

    Numba compiles (and caches) one machine-code version per argument type, and a read-only
    array is another type than a writable one: samples read from a single Parquet part come
    read-only (pyarrow's zero-copy buffers), concatenated or sorted ones writable. Handing the
    kernels read-only views always keeps one signature per kernel, compiled once, instead of
    a new compilation (seconds) the first time a process meets the other kind.
    """
    ts, values, q, has_q = s
    return _readonly(ts), _readonly(values), _readonly(q), has_q


def sort_samples(s: Samples) -> Samples:
    """Sort samples by time, stably (equal timestamps keep their input order)."""
    ts, values, q, has_q = s
    order = np.argsort(ts, kind="stable")
    return ts[order], values[order], (q[order] if has_q else q), has_q


def _unsorted_error(ts: np.ndarray, i: int) -> ValueError:
    return ValueError(
        f"timestamps must not decrease: ts_ns[{i}]={int(ts[i])} < ts_ns[{i - 1}]="
        f"{int(ts[i - 1])}; sort the samples or pass unsorted='sort'"
    )


def n_chunks_for(n: int, n_threads: int, chunk_min: int = CHUNK_MIN) -> int:
    """How many chunks one channel of ``n`` samples is cut into for ``n_threads`` threads.

    A whole multiple of the thread count (up to :data:`CHUNKS_PER_THREAD` per thread, each
    of at least ``chunk_min`` samples), so that the threads get equal shares: 5 chunks on 2
    threads leave one thread a chunk alone at the end. A channel too short for one chunk per
    thread is cut into as many chunks as it holds ``chunk_min`` samples (1 on one thread).
    """
    if n_threads <= 1 or n <= 0:
        return 1
    fits = n // max(chunk_min, 1)
    per_thread = min(CHUNKS_PER_THREAD, fits // n_threads)
    if per_thread >= 1:
        return per_thread * n_threads
    return max(1, min(n_threads, fits))


def _split_points(ts: np.ndarray, edges: np.ndarray, n_chunks: int) -> list[int]:
    """Chunk starts: about equal sizes, each at the first sample of a bucket."""
    n = ts.shape[0]
    cuts = [0]
    for k in range(1, n_chunks):
        i = (n * k) // n_chunks
        if i <= cuts[-1] or i >= n:
            continue
        b = int(np.searchsorted(edges, ts[i], side="right")) - 1
        if b + 1 >= edges.shape[0]:
            continue
        j = int(np.searchsorted(ts, edges[b + 1], side="left"))
        if cuts[-1] < j < n:
            cuts.append(j)
    return cuts


def _run(
    s: Samples, edges: np.ndarray, max_gap_ns: int, n_threads: int, chunk_min: int
) -> tuple[Outputs, np.ndarray, int]:
    """Run the kernel over all samples (chunked over threads when long): outputs, gaps and
    the number of duplicates."""
    s = frozen_samples(s)
    ts = s[0]
    out = _zero_outputs(edges.shape[0] - 1)
    n = ts.shape[0]
    n_chunks = n_chunks_for(n, n_threads, chunk_min)
    cuts = _split_points(ts, edges, n_chunks) if n_chunks > 1 else [0]
    bounds = list(zip(cuts, [*cuts[1:], n]))

    def one(lo: int, hi: int, gap_cap: int) -> tuple[Any, ...]:
        have_prev, tp, pp = _prev_valid(s, lo) if lo > 0 else (False, 0, 0.0)
        carry_b = int(np.searchsorted(edges, tp, side="right")) - 1 if have_prev else -1
        gaps = np.empty((gap_cap, 2), np.int64)
        chunk = (lo, hi, have_prev, tp, pp, carry_b)
        return _power_kernel(s, chunk, edges, max_gap_ns, out, gaps), carry_b, gaps

    def cap(lo: int, hi: int) -> int:
        # Gaps are disjoint and each longer than max_gap_ns: this bounds their number.
        span = int(ts[hi - 1]) - int(ts[lo - 1] if lo > 0 else ts[lo])
        return max(1, min(hi - lo + 1, span // (max_gap_ns + 1) + 1))

    # ``n_threads`` threads (the caller and n_threads - 1 of the pool) take the chunks in turn
    # from one iterator (next() on it is atomic under the GIL): a thread that another process
    # slows down takes fewer chunks instead of holding everyone up.
    todo = iter(range(len(bounds)))
    done: dict[int, tuple[Any, ...]] = {}

    def worker() -> None:
        for k in todo:
            lo, hi = bounds[k]
            done[k] = one(lo, hi, cap(lo, hi))

    helpers = min(n_threads, len(bounds)) - 1
    futs = [_pool().submit(worker) for _ in range(helpers)]
    worker()
    for f in futs:
        f.result()
    results = [done[k] for k in range(len(bounds))]
    gap_parts = []
    n_dup = 0
    for res, carry_b, gaps in results:
        status, n_gaps, dup, carry_e, carry_cov, bad = res
        if status == _ERR_UNSORTED:
            raise _unsorted_error(ts, bad)
        if status < 0:  # a sample beyond the edges: only possible when the input is unsorted
            drop = _first_drop(ts)
            if drop:
                raise _unsorted_error(ts, drop)
            raise ValueError(f"sample {bad} at {int(ts[bad])} ns lies outside the bucket edges")
        if carry_b >= 0:
            out[0][carry_b] += carry_e
            out[1][carry_b] += carry_cov
        gap_parts.append(gaps[:n_gaps])
        n_dup += dup
    gaps_all = np.concatenate(gap_parts) if gap_parts else np.empty((0, 2), np.int64)
    return out, gaps_all, n_dup


def _first_drop(ts: np.ndarray) -> int:
    bad = np.flatnonzero(ts[1:] < ts[:-1])
    return int(bad[0]) + 1 if bad.size else 0


def _result(
    edges: np.ndarray, out: Outputs, gaps: np.ndarray, n_dup: int, keep: slice = slice(None)
) -> BucketResult:
    out_e, out_cov, out_cnt, out_min, out_max, out_inv, out_sfl = out
    width = np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(out_cov > 0, out_e / np.where(out_cov > 0, out_cov, 1) * 0.5, np.nan)
    return BucketResult(
        start_ns=edges[:-1][keep].copy(),
        end_ns=edges[1:][keep].copy(),
        energy_wh=(out_e / WNS2_PER_WH)[keep],
        mean_w=mean[keep],
        min_w=out_min[keep],
        max_w=out_max[keep],
        count=out_cnt[keep],
        coverage=np.minimum(out_cov / width, 1.0)[keep],
        invalid_count=out_inv[keep],
        duplicate_count=int(n_dup),
        gaps_ns=gaps,
        sum_w=out_sfl[0][keep],
        first_w=out_sfl[1][keep],
        last_w=out_sfl[2][keep],
    )


def _threads(n_threads: int | None) -> int:
    return n_workers() if n_threads is None else max(1, int(n_threads))


def _check_gap(max_gap_ns: int) -> int:
    if int(max_gap_ns) != max_gap_ns or max_gap_ns < 0:
        raise ValueError(f"max_gap_ns must be a non-negative integer [ns], got {max_gap_ns!r}")
    return int(max_gap_ns)


def power_to_buckets(
    ts_ns: Any,
    power_w: Any,
    bucket_ns: int = ISP_NS,
    origin_ns: int = 0,
    max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    quality: Any = None,
    *,
    unsorted: str = "raise",
    n_threads: int | None = None,
    chunk_min: int = CHUNK_MIN,
) -> BucketResult:
    """Energy and power statistics per fixed UTC bucket from power samples.

    Trapezoid rule between consecutive valid samples, split at bucket edges; intervals longer
    than ``max_gap_ns`` are reported as gaps, not integrated. The mean power of a bucket is the
    time-weighted mean over its covered part (energy / covered time), not the sample mean.

    Parameters
    ----------
    ts_ns : array_like
        Sample timestamps [ns since epoch, UTC], int64 (or datetime64), non-decreasing.
    power_w : array_like
        Power [W], float64; positive = import/consumption.
    bucket_ns : int
        Bucket width [ns], 1 s to 1 day; default one ISP (15 min).
    origin_ns : int
        An instant on the bucket grid [ns]; 0 aligns to the UTC epoch.
    max_gap_ns : int
        Longest sample interval that is integrated [ns]; default 2 h.
    quality : array_like of uint8, optional
        Quality flags (:class:`energy.samples.Quality`); only 0 (GOOD) is valid.
    unsorted : {"raise", "sort"}
        What to do with decreasing timestamps: raise :class:`ValueError`, or sort (a copy).
    n_threads : int, optional
        Threads for one long channel (chunks stitched exactly); default all CPUs.
    chunk_min : int
        Minimum samples per chunk.

    Returns
    -------
    BucketResult
        Buckets from the one holding the first sample to the one holding the last.

    References
    ----------
    Trapezoid rule; gap handling after emoncms (no integration across gaps >= 2 h).
    """
    if unsorted not in ("raise", "sort"):
        raise ValueError(f"unsorted must be 'raise' or 'sort', got {unsorted!r}")
    s = _as_inputs(ts_ns, power_w, quality)
    max_gap_ns = _check_gap(max_gap_ns)
    ts = s[0]
    if ts.shape[0] == 0:
        return BucketResult.empty()
    if unsorted == "sort" and (ts[-1] < ts[0] or _first_drop(ts)):
        s = sort_samples(s)
        ts = s[0]
    if ts[-1] < ts[0]:
        raise _unsorted_error(ts, _first_drop(ts))
    edges = fixed_edges(int(ts[0]), int(ts[-1]), bucket_ns, origin_ns)
    return _result(edges, *_run(s, edges, max_gap_ns, _threads(n_threads), chunk_min))


def power_to_edges(
    ts_ns: Any,
    power_w: Any,
    edges: Any,
    max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    quality: Any = None,
    *,
    unsorted: str = "raise",
    n_threads: int | None = None,
    chunk_min: int = CHUNK_MIN,
) -> BucketResult:
    """Like :func:`power_to_buckets`, into arbitrary buckets ``[edges[k], edges[k+1])``.

    Used for local calendar buckets (:func:`energy.kernels.calendar.local_calendar_edges`).
    Samples outside the edges still bound the integration of the buckets at the ends, but
    their statistics are not reported. All ``len(edges) - 1`` buckets are returned.
    """
    e = check_edges(edges)
    s = _as_inputs(ts_ns, power_w, quality)
    max_gap_ns = _check_gap(max_gap_ns)
    ts = s[0]
    if unsorted == "sort" and ts.shape[0] and _first_drop(ts):
        s = sort_samples(s)
        ts = s[0]
    if ts.shape[0] and ts[-1] < ts[0]:
        raise _unsorted_error(ts, _first_drop(ts))
    lo_edge = min(int(ts[0]), int(e[0])) - 1 if ts.shape[0] else int(e[0]) - 1
    hi_edge = max(int(ts[-1]) + 1, int(e[-1]) + 1) if ts.shape[0] else int(e[-1]) + 1
    ext = np.concatenate(([lo_edge], e, [hi_edge])).astype(np.int64)
    if ts.shape[0] == 0:
        nbk = e.shape[0] - 1
        z = np.zeros(nbk, np.int64)
        nan = np.full(nbk, np.nan)
        return BucketResult(
            e[:-1].copy(), e[1:].copy(), np.zeros(nbk), nan, nan.copy(), nan.copy(), z,
            np.zeros(nbk), z.copy(),
        )  # fmt: skip
    return _result(ext, *_run(s, ext, max_gap_ns, _threads(n_threads), chunk_min), slice(1, -1))


def warm_up() -> None:
    """Load the power kernels' machine code (compiling it the first time, into the cache).

    The first kernel call of a process pays Numba's start-up (its target context, about a
    second) and, with an empty cache (a fresh clone), the compilation of the kernels (several
    seconds); this does it on three samples, so a caller can do it in a thread while it reads
    the real samples (:func:`energy.pipeline.update_many`).
    """
    ts = np.array([0, 1_000_000_000, 2_000_000_000], np.int64)
    s = frozen_samples((ts, np.zeros(3), np.zeros(3, np.uint8), True))
    power_to_buckets(s[0], s[1], quality=s[2], n_threads=1)
    _prev_valid(s, 1)


def power_to_buckets_many(
    series: Sequence[tuple[Any, ...]],
    bucket_ns: int = ISP_NS,
    origin_ns: int = 0,
    max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    *,
    unsorted: str = "raise",
    n_threads: int | None = None,
) -> list[BucketResult]:
    """:func:`power_to_buckets` for many channels at once, in parallel over channels.

    Parameters
    ----------
    series : sequence of tuples
        Per channel ``(ts_ns, power_w)`` or ``(ts_ns, power_w, quality)``.
    n_threads : int, optional
        Worker threads (the kernel releases the GIL); default all CPUs; 1 runs one by one.

    Returns
    -------
    list of BucketResult
        In the order of ``series``.
    """
    threads = _threads(n_threads)

    def one(item: tuple[Any, ...]) -> BucketResult:
        if len(item) not in (2, 3):
            raise ValueError("each series must be (ts_ns, power_w) or (ts_ns, power_w, quality)")
        quality = item[2] if len(item) == 3 else None
        return power_to_buckets(
            item[0], item[1], bucket_ns, origin_ns, max_gap_ns, quality,
            unsorted=unsorted, n_threads=1,
        )  # fmt: skip

    if threads == 1 or len(series) <= 1:
        return [one(s) for s in series]
    if threads == n_workers():
        return list(_pool().map(one, series))
    with ThreadPoolExecutor(max_workers=threads) as ex:
        return list(ex.map(one, series))
