"""Numba time-series kernels: raw samples to buckets (15-minute ISPs, local days, ...).

Every kernel has a plain NumPy/pandas reference in :mod:`energy.kernels.reference` that the
tests compare it with (docs/SOURCES.md, Patterns: pvlib).
"""

from energy.kernels import counters as _counters
from energy.kernels import power as _power
from energy.kernels.calendar import fixed_edges, local_calendar_edges, utc_bucket_starts
from energy.kernels.counters import CounterResult, counter_to_buckets
from energy.kernels.derived import bucket_percentiles, load_duration_curve, peak_demand
from energy.kernels.power import (
    DEFAULT_MAX_GAP_NS,
    BucketResult,
    power_to_buckets,
    power_to_buckets_many,
    power_to_edges,
)
from energy.kernels.stats import StatsResult, bucket_stats


def warm_up() -> None:
    """Load, or compile into the cache, the kernels of the interval pipeline (power and
    counter): ``make .venv/.installed`` runs it, so the first aggregation after a fresh clone
    does not compile them (seconds each; Numba caches them in ``__pycache__`` beside the
    source, valid until the source changes)."""
    _power.warm_up()
    _counters.warm_up()


__all__ = [
    "DEFAULT_MAX_GAP_NS",
    "BucketResult",
    "CounterResult",
    "StatsResult",
    "bucket_percentiles",
    "bucket_stats",
    "counter_to_buckets",
    "fixed_edges",
    "load_duration_curve",
    "local_calendar_edges",
    "peak_demand",
    "power_to_buckets",
    "power_to_buckets_many",
    "power_to_edges",
    "utc_bucket_starts",
    "warm_up",
]
