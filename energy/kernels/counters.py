"""Energy-counter registers (kWh import/export totals) to energy per bucket.

Rules (docs/SOURCES.md, Time and metering), shared with the reference
(:func:`energy.kernels.reference.counter_to_buckets_ref`):

* The energy between consecutive valid samples is the counter increase ``c1 - c0`` [Wh],
  spread evenly over the time between them and split at bucket edges.
* **Wrap-around**: an N-bit register rolls over at ``wrap_wh`` (``2**32`` counts times the
  register scale for a uint32). A drop counts as a wrap when ``c1 - c0 + wrap_wh`` is at most
  ``wrap_tolerance * wrap_wh`` (the register advanced by less than that share of its range);
  its energy is ``c1 - c0 + wrap_wh``.
* **Reset**: any other drop. The register is taken to have restarted from 0, so the energy of
  that interval is ``c1`` (Home Assistant's ``total_increasing`` does the same).
* Wraps and resets are both reported (timestamp of the sample after the drop).
* **Gaps**: an interval longer than ``max_gap_ns`` is not spread over buckets (when the energy
  flowed is unknown); it is reported in ``gaps_ns`` with its energy in ``gap_energy_wh``, so
  nothing is lost: ``energy_wh.sum() + gap_energy_wh.sum()`` is the total counter advance.
* Duplicates (last wins), order, NaN and flagged samples: as for power
  (:mod:`energy.kernels.power`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
import pandas as pd

from energy.kernels.calendar import fixed_edges
from energy.kernels.power import (
    DEFAULT_MAX_GAP_NS,
    Samples,
    _as_inputs,
    _check_gap,
    _first_drop,
    _unsorted_error,
    frozen_samples,
    sort_samples,
)
from energy.timegrid import ISP_NS


@nb.njit(cache=True, nogil=True)
def _counter_kernel(
    s: Samples,
    edges: np.ndarray,
    limits: tuple[int, float, float],
    out: tuple[np.ndarray, ...],
    events: tuple[np.ndarray, ...],
) -> tuple[int, int, int, int, int, int]:
    """One pass over the samples ``s`` into buckets ``edges``.

    ``limits`` is ``(max_gap_ns, wrap_wh, wrap_tolerance)`` (``wrap_wh`` 0: no wraps);
    ``out`` the per-bucket ``(energy [Wh], covered [ns], count, first, last, invalid)``;
    ``events`` the buffers ``(wraps, resets, gaps, gap_energy)``, filled as far as they hold.
    Returns ``(status, bad_index, n_dup, n_wraps, n_resets, n_gaps)``.
    """
    ts, c, q, has_q = s
    max_gap_ns, wrap_wh, wrap_tolerance = limits
    out_e, out_cov, out_cnt, out_first, out_last, out_inv = out
    wraps, resets, gaps, gap_e = events
    n = ts.shape[0]
    nbk = edges.shape[0] - 1
    n_dup = 0
    n_wraps = 0
    n_resets = 0
    n_gaps = 0
    if n == 0:
        return 0, -1, 0, 0, 0, 0
    b = 0
    pb = 0
    have_prev = False
    t0 = 0
    c0 = 0.0
    tlast = ts[0]
    for i in range(n):
        t = ts[i]
        if t < tlast:
            return -1, i, n_dup, n_wraps, n_resets, n_gaps
        tlast = t
        while b < nbk and t >= edges[b + 1]:
            b += 1
        if b >= nbk:
            return -2, i, n_dup, n_wraps, n_resets, n_gaps
        if i + 1 < n and ts[i + 1] == t:
            n_dup += 1
            continue
        v = c[i]
        if (has_q and q[i] != 0) or v - v != 0.0:
            out_inv[b] += 1
            continue
        if have_prev:
            d = v - c0
            if d < 0.0:
                if wrap_wh > 0.0 and d + wrap_wh <= wrap_tolerance * wrap_wh:
                    d = d + wrap_wh
                    if n_wraps < wraps.shape[0]:
                        wraps[n_wraps] = t
                    n_wraps += 1
                else:
                    d = v
                    if n_resets < resets.shape[0]:
                        resets[n_resets] = t
                    n_resets += 1
            dt = t - t0
            if dt > max_gap_ns:
                if n_gaps < gaps.shape[0]:
                    gaps[n_gaps, 0] = t0
                    gaps[n_gaps, 1] = t
                    gap_e[n_gaps] = d
                n_gaps += 1
            elif dt > 0:
                # Spread d evenly over [t0, t): piece per bucket from the bucket of t0 on.
                k = pb
                a = t0
                while True:
                    e = edges[k + 1]
                    if e >= t:
                        out_e[k] += d * ((t - a) / dt)
                        out_cov[k] += t - a
                        break
                    out_e[k] += d * ((e - a) / dt)
                    out_cov[k] += e - a
                    a = e
                    k += 1
        if out_cnt[b] == 0:
            out_first[b] = v
        out_last[b] = v
        out_cnt[b] += 1
        have_prev = True
        t0 = t
        c0 = v
        pb = b
    return 0, -1, n_dup, n_wraps, n_resets, n_gaps


@dataclass(frozen=True)
class CounterResult:
    """Per-bucket energy from a counter register.

    Attributes
    ----------
    start_ns, end_ns : numpy.ndarray
        int64 bucket bounds [ns since epoch, UTC].
    energy_wh : numpy.ndarray
        Energy in the bucket [Wh].
    count : numpy.ndarray
        int64 valid samples in the bucket.
    coverage : numpy.ndarray
        Share of the bucket between valid samples less than ``max_gap_ns`` apart (0..1).
    first_wh, last_wh : numpy.ndarray
        First and last valid register value in the bucket [Wh] (NaN if none).
    invalid_count : numpy.ndarray
        int64 NaN/flagged samples in the bucket.
    wraps_ns, resets_ns : numpy.ndarray
        int64 timestamps of the samples after a wrap-around / a reset.
    gaps_ns : numpy.ndarray
        int64 ``[k, 2]`` intervals not spread over buckets.
    gap_energy_wh : numpy.ndarray
        Counter advance over each gap [Wh].
    duplicate_count : int
        Samples superseded by a later one with the same timestamp.
    """

    start_ns: np.ndarray
    end_ns: np.ndarray
    energy_wh: np.ndarray
    count: np.ndarray
    coverage: np.ndarray
    first_wh: np.ndarray
    last_wh: np.ndarray
    invalid_count: np.ndarray
    wraps_ns: np.ndarray
    resets_ns: np.ndarray
    gaps_ns: np.ndarray
    gap_energy_wh: np.ndarray
    duplicate_count: int = 0

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    @property
    def wraps(self) -> int:
        """Number of wrap-arounds."""
        return int(self.wraps_ns.shape[0])

    @property
    def resets(self) -> int:
        """Number of resets."""
        return int(self.resets_ns.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """Buckets as the columns of :func:`energy.readings.upsert_readings`.

        ``power_mean_w`` is the mean power over the covered part [W]; min and max power are
        not known from a counter (NaN).
        """
        cov_ns = self.coverage * (self.end_ns - self.start_ns)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cov_ns > 0, self.energy_wh * 3.6e12 / cov_ns, np.nan)
        index = pd.DatetimeIndex(
            pd.to_datetime(self.start_ns, unit="ns", utc=True), name="isp_start"
        ).as_unit("ns")
        nan = np.full(len(self), np.nan)
        return pd.DataFrame(
            {
                "energy_wh": self.energy_wh,
                "power_mean_w": mean,
                "power_min_w": nan,
                "power_max_w": nan.copy(),
                "sample_count": self.count,
                "coverage": self.coverage,
            },
            index=index,
        )


def counter_to_buckets(
    ts_ns: Any,
    counter_wh: Any,
    bucket_ns: int = ISP_NS,
    origin_ns: int = 0,
    wrap_wh: float | None = None,
    max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    quality: Any = None,
    *,
    wrap_tolerance: float = 0.1,
    unsorted: str = "raise",
) -> CounterResult:
    """Energy per fixed UTC bucket from an energy-counter register.

    Parameters
    ----------
    ts_ns : array_like
        Sample timestamps [ns since epoch, UTC], non-decreasing.
    counter_wh : array_like
        Register values [Wh] (scale a kWh register by 1000 first).
    bucket_ns, origin_ns : int
        Bucket width [ns] (1 s to 1 day; default one ISP) and grid origin [ns].
    wrap_wh : float, optional
        Register range [Wh]: ``2**32 * scale_wh`` for a uint32 register. None: no wraps,
        every drop is a reset.
    max_gap_ns : int
        Longest interval spread over buckets [ns]; longer ones are reported as gaps.
    quality : array_like of uint8, optional
        Quality flags; only 0 is valid.
    wrap_tolerance : float
        Largest share of the register range a wrapped interval may advance (0 < x <= 1).
    unsorted : {"raise", "sort"}
        Out-of-order input: raise :class:`ValueError` or sort a copy.

    Returns
    -------
    CounterResult

    References
    ----------
    Wrap ``new - old + 2**N`` and reset detection as in docs/SOURCES.md (Home Assistant
    ``total_increasing``); gap limit after emoncms.
    """
    if wrap_wh is not None and not wrap_wh > 0:
        raise ValueError(f"wrap_wh must be > 0 [Wh] or None, got {wrap_wh!r}")
    if not 0 < wrap_tolerance <= 1:
        raise ValueError(f"wrap_tolerance must lie in (0, 1], got {wrap_tolerance!r}")
    ts, c, q, has_q = _as_inputs(ts_ns, counter_wh, quality)
    max_gap_ns = _check_gap(max_gap_ns)
    n = ts.shape[0]
    if unsorted == "sort" and n and _first_drop(ts):
        ts, c, q, has_q = sort_samples((ts, c, q, has_q))
    elif unsorted not in ("raise", "sort"):
        raise ValueError(f"unsorted must be 'raise' or 'sort', got {unsorted!r}")
    if n == 0:
        e64 = np.empty(0, np.int64)
        f64 = np.empty(0, np.float64)
        return CounterResult(
            e64, e64, f64, e64, f64, f64, f64, e64, e64, e64, np.empty((0, 2), np.int64), f64
        )
    if ts[-1] < ts[0]:
        raise _unsorted_error(ts, _first_drop(ts))
    ts, c, q, has_q = frozen_samples((ts, c, q, has_q))
    edges = fixed_edges(int(ts[0]), int(ts[-1]), bucket_ns, origin_ns)
    nbk = edges.shape[0] - 1
    cap = min(n, 1024)
    limits = (max_gap_ns, float(wrap_wh or 0.0), float(wrap_tolerance))
    while True:
        out_e = np.zeros(nbk)
        out_cov = np.zeros(nbk, np.int64)
        out_cnt = np.zeros(nbk, np.int64)
        out_first = np.full(nbk, np.nan)
        out_last = np.full(nbk, np.nan)
        out_inv = np.zeros(nbk, np.int64)
        wraps = np.empty(cap, np.int64)
        resets = np.empty(cap, np.int64)
        gaps = np.empty((cap, 2), np.int64)
        gap_e = np.empty(cap)
        status, bad, n_dup, n_w, n_r, n_g = _counter_kernel(
            (ts, c, q, has_q),
            edges,
            limits,
            (out_e, out_cov, out_cnt, out_first, out_last, out_inv),
            (wraps, resets, gaps, gap_e),
        )
        if status < 0:
            raise _unsorted_error(ts, bad if status == -1 else max(_first_drop(ts), 1))
        if max(n_w, n_r, n_g) <= cap:
            break
        cap = max(n_w, n_r, n_g)  # more events than the buffers held: run again, rare
    return CounterResult(
        start_ns=edges[:-1].copy(),
        end_ns=edges[1:].copy(),
        energy_wh=out_e,
        count=out_cnt,
        coverage=np.minimum(out_cov / np.diff(edges), 1.0),
        first_wh=out_first,
        last_wh=out_last,
        invalid_count=out_inv,
        wraps_ns=wraps[:n_w].copy(),
        resets_ns=resets[:n_r].copy(),
        gaps_ns=gaps[:n_g].copy(),
        gap_energy_wh=gap_e[:n_g].copy(),
        duplicate_count=int(n_dup),
    )


def warm_up() -> None:
    """Load the counter kernel's machine code (see :func:`energy.kernels.power.warm_up`)."""
    ts = np.array([0, 1_000_000_000, 2_000_000_000], np.int64)
    counter_to_buckets(ts, np.array([0.0, 1.0, 2.0]), quality=np.zeros(3, np.uint8))
