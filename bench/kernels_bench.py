"""Benchmark of the Numba kernels: 1 Hz power samples to 15-minute buckets.

Usage::

    python bench/kernels_bench.py            # 50 million samples, 100 x 500,000 channels
    python bench/kernels_bench.py --quick    # a small smoke version

Prints, for one long channel (int64 ns timestamps, float64 watts, one sample per second):

* the floor: NumPy reading both arrays once (``ts.sum(); p.sum()``);
* Noaber (:func:`energy.kernels.power_to_buckets`: energy + min/max/mean/count/coverage) as a
  ratio to the floor, on one thread and chunked over all CPUs (target <= 1.5);
* polars ``group_by_dynamic`` and pandas ``resample`` computing the same buckets, as ratios to
  Noaber (targets >= 2 and >= 5), after checking that all three agree;
* peak memory above the input arrays while Noaber runs (RSS high-water mark; target <= 10 %
  of the input size);

and for many channels: 100 x 500,000 samples with :func:`power_to_buckets_many` against one
by one on one core. All times are the best of a few runs; the machine may be shared, so
figures are noisy.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import polars as pl

from energy.kernels import BucketResult, power_to_buckets, power_to_buckets_many
from energy.timegrid import ISP_NS

T0_NS = 1_782_864_000 * 1_000_000_000  # 2026-07-01T00:00:00Z


CPU_TIMES: dict[int, float] = {}
"""Best thread CPU time [s] of the last :func:`best_of` per function id (less sensitive to
other processes on a shared machine than wall time)."""


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time [s] of ``repeat`` runs and the last result."""
    best = np.inf
    best_cpu = np.inf
    out = None
    for _ in range(repeat):
        gc.collect()
        c = time.thread_time()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.thread_time() - c)
    CPU_TIMES[id(fn)] = best_cpu
    return best, out


def rss_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status [kB]."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_series(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples at 1 Hz from 2026-07-01 UTC: a noisy load profile [W]."""
    rng = np.random.default_rng(seed)
    ts = T0_NS + np.arange(n, dtype=np.int64) * 1_000_000_000
    p = 2000.0 + 800.0 * np.sin(np.arange(n) * (2 * np.pi / 86_400)) + rng.normal(0, 150, n)
    return ts, p


def floor(ts: np.ndarray, p: np.ndarray) -> float:
    return float(ts.sum()) + float(p.sum())


def with_polars(ts: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """The same buckets with polars ``group_by_dynamic`` (edges fall on samples here)."""
    df = pl.DataFrame({"ts": pl.Series(ts).cast(pl.Datetime("ns", "UTC")), "p": p})
    dt = (pl.col("ts").shift(-1) - pl.col("ts")).dt.total_nanoseconds().cast(pl.Float64)
    df = df.with_columns(
        seg=(pl.col("p") + pl.col("p").shift(-1)) * dt,
        dt=dt,
    )
    out = df.group_by_dynamic("ts", every="15m", closed="left", label="left").agg(
        pl.col("seg").sum().alias("e"),
        pl.col("dt").sum().alias("cov"),
        pl.col("p").min().alias("min_w"),
        pl.col("p").max().alias("max_w"),
        pl.col("p").count().alias("count"),
    )
    res = out.with_columns(
        energy_wh=pl.col("e") / 7.2e12,
        mean_w=pl.col("e") / pl.col("cov") * 0.5,
        coverage=pl.col("cov") / ISP_NS,
    ).select("energy_wh", "mean_w", "min_w", "max_w", "count", "coverage")
    return res.to_pandas()


def with_pandas(ts: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """The same buckets with pandas ``resample``."""
    idx = pd.DatetimeIndex(pd.to_datetime(ts, unit="ns", utc=True))
    s = pd.Series(p, index=idx)
    dt = np.empty(len(ts))
    dt[:-1] = np.diff(ts)
    dt[-1] = np.nan
    seg = (s + s.shift(-1)) * dt
    frame = pd.DataFrame({"seg": seg, "dt": dt, "p": s})
    r = frame.resample("15min", closed="left", label="left")
    e = r["seg"].sum()
    cov = r["dt"].sum()
    return pd.DataFrame(
        {
            "energy_wh": e / 7.2e12,
            "mean_w": e / cov * 0.5,
            "min_w": r["p"].min(),
            "max_w": r["p"].max(),
            "count": r["p"].count(),
            "coverage": cov / ISP_NS,
        }
    ).reset_index(drop=True)


def agree(res: BucketResult, other: pd.DataFrame, name: str) -> None:
    """Raise unless ``other`` has Noaber's buckets (the last bucket ends at the last sample)."""
    if len(other) != len(res):
        raise SystemExit(f"{name}: {len(other)} buckets, Noaber {len(res)}")
    for col in ("energy_wh", "mean_w", "min_w", "max_w", "count", "coverage"):
        ours = getattr(res, {"count": "count"}.get(col, col))
        if not np.allclose(other[col].to_numpy(float), ours, rtol=1e-9, atol=1e-9, equal_nan=True):
            worst = np.nanmax(np.abs(other[col].to_numpy(float) - ours))
            raise SystemExit(f"{name}: column {col} disagrees with Noaber (max diff {worst})")


def run_one(n: int, repeat: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    ts, p = make_series(n, seed=1)
    input_bytes = ts.nbytes + p.nbytes
    print(f"one channel: {n:,} samples at 1 Hz ({input_bytes / 1e6:,.0f} MB), 15-min buckets")
    power_to_buckets(ts[:10_000], p[:10_000], n_threads=1)  # compile / load the cache

    floor_fn = lambda: floor(ts, p)  # noqa: E731
    t_floor, _ = best_of(floor_fn, repeat)
    cpu_floor = CPU_TIMES[id(floor_fn)]
    print(f"  floor  numpy ts.sum(); p.sum()        {t_floor * 1e3:9.1f} ms")

    gc.collect()
    base_rss = rss_kb("VmRSS")
    can_reset = reset_peak_rss()
    one_fn = lambda: power_to_buckets(ts, p, n_threads=1)  # noqa: E731
    t_one, res = best_of(one_fn, repeat)
    cpu_one = CPU_TIMES[id(one_fn)]
    peak_extra_kb = rss_kb("VmHWM") - base_rss if can_reset else float("nan")
    threads = os.cpu_count() or 1
    t_par, res_par = best_of(lambda: power_to_buckets(ts, p, n_threads=threads), repeat)
    for col in ("energy_wh", "mean_w", "min_w", "max_w", "count", "coverage"):
        if not np.array_equal(getattr(res, col), getattr(res_par, col), equal_nan=True):
            raise SystemExit(f"chunked result differs from the sequential one in {col}")
    print(
        f"  Noaber 1 thread                        {t_one * 1e3:9.1f} ms   "
        f"ratio to floor {t_one / t_floor:5.2f}  (target <= 1.5)"
    )
    print(
        f"  Noaber 1 thread, CPU time              {cpu_one * 1e3:9.1f} ms   "
        f"ratio to floor's CPU time ({cpu_floor * 1e3:.1f} ms) {cpu_one / cpu_floor:5.2f}"
    )
    print(
        f"  Noaber {threads} threads (chunks, bit-identical)  {t_par * 1e3:6.1f} ms   "
        f"ratio to floor {t_par / t_floor:5.2f}"
    )
    t_noaber = min(t_one, t_par)
    t_pl, out_pl = best_of(lambda: with_polars(ts, p), max(1, repeat - 1))
    agree(res, out_pl, "polars")
    t_pd, out_pd = best_of(lambda: with_pandas(ts, p), 1)
    agree(res, out_pd, "pandas")
    print(
        f"  polars group_by_dynamic                {t_pl * 1e3:9.1f} ms   "
        f"ratio to Noaber {t_pl / t_noaber:6.1f}  (target >= 2; agrees)"
    )
    print(
        f"  pandas resample                        {t_pd * 1e3:9.1f} ms   "
        f"ratio to Noaber {t_pd / t_noaber:6.1f}  (target >= 5; agrees)"
    )
    print(
        f"  peak memory above input (RSS, 1 thread) {peak_extra_kb / 1e3:8.1f} MB = "
        f"{100 * peak_extra_kb * 1e3 / input_bytes:5.2f} % of input (target <= 10 %)"
    )
    figures.update(
        floor_s=t_floor,
        noaber_1t_s=t_one,
        noaber_par_s=t_par,
        ratio_floor_1t=t_one / t_floor,
        ratio_floor_1t_cpu=cpu_one / cpu_floor,
        ratio_floor_par=t_par / t_floor,
        ratio_polars=t_pl / t_noaber,
        ratio_pandas=t_pd / t_noaber,
        peak_extra_pct=100 * peak_extra_kb * 1e3 / input_bytes,
    )
    return figures


def run_many(n_ch: int, n_per_ch: int, repeat: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    threads = os.cpu_count() or 1
    series = [make_series(n_per_ch, seed=10 + k) for k in range(n_ch)]
    print(f"many channels: {n_ch} x {n_per_ch:,} samples")
    power_to_buckets_many(series[:2], n_threads=2)
    t_seq, seq = best_of(lambda: power_to_buckets_many(series, n_threads=1), repeat)
    t_many, many = best_of(lambda: power_to_buckets_many(series), repeat)
    for a, b in zip(seq, many):
        if not np.array_equal(a.energy_wh, b.energy_wh):
            raise SystemExit("parallel channels differ from one by one")
    print(f"  one by one, one core                   {t_seq * 1e3:9.1f} ms")
    print(
        f"  power_to_buckets_many, {threads} threads       {t_many * 1e3:9.1f} ms   "
        f"speed-up {t_seq / t_many:5.2f}x"
    )
    figures.update(many_seq_s=t_seq, many_par_s=t_many, many_speedup=t_seq / t_many)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke version")
    ap.add_argument("--samples", type=int, default=None, help="samples of the long channel")
    args = ap.parse_args(argv)
    if args.quick:
        n, n_ch, n_per, repeat = args.samples or 200_000, 8, 20_000, 2
    else:
        n, n_ch, n_per, repeat = args.samples or 50_000_000, 100, 500_000, 3
    figures = run_one(n, repeat)
    gc.collect()
    figures.update(run_many(n_ch, n_per, repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
