"""One-pass bucket statistics of any sampled quantity.

:func:`bucket_stats` gives, per bucket, the sum, sample mean, min, max, count, first and last
valid sample, the time-weighted mean (linear between valid samples, as the trapezoid rule)
and the coverage, from the same single pass as :func:`energy.kernels.power_to_buckets`
(duplicates, order, NaN/flagged samples and gaps handled as described there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from energy.kernels.power import (
    CHUNK_MIN,
    DEFAULT_MAX_GAP_NS,
    BucketResult,
    power_to_buckets,
    power_to_edges,
)
from energy.timegrid import ISP_NS


@dataclass(frozen=True)
class StatsResult:
    """Per-bucket statistics of a quantity (in the unit of the samples).

    Attributes
    ----------
    start_ns, end_ns : numpy.ndarray
        int64 bucket bounds [ns since epoch, UTC].
    sum, mean, min, max, first, last : numpy.ndarray
        Of the valid samples in the bucket (sum 0, the others NaN where there are none).
    count, invalid_count : numpy.ndarray
        int64 valid and invalid (NaN, infinite, flagged) samples in the bucket.
    twa : numpy.ndarray
        Time-weighted mean over the covered part of the bucket (NaN where nothing is covered).
    coverage : numpy.ndarray
        Covered share of the bucket, 0..1.
    duplicate_count : int
    gaps_ns : numpy.ndarray
        int64 ``[k, 2]`` intervals longer than the gap limit.
    """

    start_ns: np.ndarray
    end_ns: np.ndarray
    sum: np.ndarray
    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray
    count: np.ndarray
    first: np.ndarray
    last: np.ndarray
    twa: np.ndarray
    coverage: np.ndarray
    invalid_count: np.ndarray
    duplicate_count: int
    gaps_ns: np.ndarray

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    @classmethod
    def from_buckets(cls, res: BucketResult) -> StatsResult:
        n = len(res)
        total = res.sum_w if res.sum_w is not None else np.zeros(n)
        first = res.first_w if res.first_w is not None else np.full(n, np.nan)
        last = res.last_w if res.last_w is not None else np.full(n, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(res.count > 0, total / np.maximum(res.count, 1), np.nan)
        return cls(
            res.start_ns, res.end_ns, total, mean, res.min_w, res.max_w, res.count, first, last,
            res.mean_w, res.coverage, res.invalid_count, res.duplicate_count, res.gaps_ns,
        )  # fmt: skip


def bucket_stats(
    ts_ns: Any,
    values: Any,
    bucket_ns: int = ISP_NS,
    origin_ns: int = 0,
    max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    quality: Any = None,
    *,
    edges: Any = None,
    unsorted: str = "raise",
    n_threads: int | None = None,
    chunk_min: int = CHUNK_MIN,
) -> StatsResult:
    """Sum, mean, min, max, count, first, last, time-weighted mean and coverage per bucket.

    Parameters
    ----------
    ts_ns : array_like
        Timestamps [ns since epoch, UTC], non-decreasing.
    values : array_like
        Sample values (any unit; results are in the same unit).
    bucket_ns, origin_ns : int
        Fixed UTC buckets (1 s to 1 day) when ``edges`` is not given.
    max_gap_ns : int
        Longest sample interval that counts as covered [ns].
    quality : array_like of uint8, optional
        Only quality 0 is valid.
    edges : array_like of int64, optional
        Arbitrary bucket edges [ns], e.g. local days from
        :func:`energy.kernels.calendar.local_calendar_edges`.

    Returns
    -------
    StatsResult
    """
    if edges is not None:
        res = power_to_edges(
            ts_ns, values, edges, max_gap_ns, quality, unsorted=unsorted, n_threads=n_threads,
            chunk_min=chunk_min,
        )  # fmt: skip
    else:
        res = power_to_buckets(
            ts_ns, values, bucket_ns, origin_ns, max_gap_ns, quality, unsorted=unsorted,
            n_threads=n_threads, chunk_min=chunk_min,
        )  # fmt: skip
    return StatsResult.from_buckets(res)
