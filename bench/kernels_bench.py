"""Benchmark of the Numba kernels: the full statistics of 1 Hz power samples per 15-min ISP.

Usage::

    python bench/kernels_bench.py                  # 10 M and 50 M samples; 100 x 500,000 channels
    python bench/kernels_bench.py --quick          # 200,000 and 1 M samples: the suite's smoke run
    python bench/kernels_bench.py --sizes 1e7 5e7 1e8
    python bench/kernels_bench.py --quality        # with a quality flag per sample (all GOOD)

For each size, one long channel (int64 ns timestamps, float64 watts, one sample per second)
goes through :func:`energy.kernels.power_to_buckets` (energy, min, max, time-weighted mean,
count, coverage, invalid count, sum, first and last per ISP: the full statistics the pipeline
stores) on 1 thread and on all CPUs, and is compared with:

* **the memory floor** per thread count: the time to stream the same input bytes once, a
  Numba loop summing the arrays the kernel reads in one pass: the int64 timestamps and the
  float64 values (16 bytes per sample) and, with ``--quality``, the uint8 quality flags too
  (17 bytes), split into as many contiguous parts as there are threads (the same split as
  the kernel's chunks), run on a thread pool; for 1 thread the faster of that and NumPy's
  ``ts.sum(); p.sum()`` (``+ q.sum()``). Floor and kernel runs alternate, and each figure is
  the best of a few, so both see the same load (targets: 1 thread <= 1.5x the floor, all
  CPUs <= 1.2x);
* **memory above the input** during the 1-thread run: the tracemalloc peak (NumPy
  allocations) and the RSS high-water mark (everything, also Numba's own), as a share of the
  input bytes (target <= 10 %);
* **the serial part**: the CPU time of allocating the per-bucket outputs and assembling the
  result on the calling thread, which no thread count shortens, as a share of each run;
* polars ``group_by_dynamic`` and pandas ``resample`` computing the same buckets (smallest
  size only), after checking that all three agree.

Then many channels: 100 x 500,000 samples with :func:`power_to_buckets_many` against one by
one on one core. The machine may be shared: the load average is printed before and after;
figures on a loaded machine are noisy, the ratios less so than the absolute times.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba as nb
import numpy as np
import pandas as pd
import polars as pl

from energy.kernels import BucketResult, power_to_buckets, power_to_buckets_many
from energy.timegrid import ISP_NS

T0_NS = 1_782_864_000 * 1_000_000_000  # 2026-07-01T00:00:00Z
COLUMNS = ("energy_wh", "mean_w", "min_w", "max_w", "count", "coverage")
TARGET_1T = 1.5
TARGET_ALL = 1.2
TARGET_MEM_PCT = 10.0


def load() -> str:
    """The load average (1, 5, 15 min) and the number of CPUs, as ``uptime`` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


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
    """``n`` samples at 1 Hz from 2026-07-01 UTC: a noisy daily load profile [W]."""
    rng = np.random.default_rng(seed)
    ts = T0_NS + np.arange(n, dtype=np.int64) * 1_000_000_000
    p = 2000.0 + 800.0 * np.sin(np.arange(n) * (2 * np.pi / 86_400)) + rng.normal(0, 150, n)
    return ts, p


@nb.njit(nogil=True, fastmath=True, cache=True)
def _stream(ts: np.ndarray, p: np.ndarray) -> float:
    """Read every byte of both arrays once (vectorised sums)."""
    a = 0
    b = 0.0
    for i in range(ts.shape[0]):
        a += ts[i]
        b += p[i]
    return float(a) + b


@nb.njit(nogil=True, fastmath=True, cache=True)
def _stream_q(ts: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """Read every byte of the three arrays once (vectorised sums)."""
    a = 0
    b = 0.0
    c = 0
    for i in range(ts.shape[0]):
        a += ts[i]
        b += p[i]
        c |= q[i]
    return float(a) + b + c


class Floor:
    """The memory floor on ``threads`` threads: :func:`_stream` (:func:`_stream_q` with
    quality flags) over contiguous parts."""

    def __init__(
        self, ts: np.ndarray, p: np.ndarray, threads: int, q: np.ndarray | None = None
    ) -> None:
        n = ts.shape[0]
        cuts = [n * k // threads for k in range(threads + 1)]
        self.parts: list[tuple[np.ndarray, ...]] = [
            (ts[a:b], p[a:b]) if q is None else (ts[a:b], p[a:b], q[a:b])
            for a, b in itertools.pairwise(cuts)
        ]
        self.fn: Callable[..., float] = _stream if q is None else _stream_q
        self.pool = ThreadPoolExecutor(max_workers=threads - 1) if threads > 1 else None

    def __call__(self) -> float:
        """Part 0 on the calling thread, the others on the pool (as the kernel does)."""
        futs = [self.pool.submit(self.fn, *pt) for pt in self.parts[1:]] if self.pool else []
        return self.fn(*self.parts[0]) + sum(f.result() for f in futs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def numpy_floor(ts: np.ndarray, p: np.ndarray, q: np.ndarray | None = None) -> float:
    return float(ts.sum()) + float(p.sum()) + (0.0 if q is None else float(q.sum()))


CPU_S: dict[str, float] = {}
"""Best CPU time [s] of the calling thread in the last :func:`best_alternating`, per name:
less sensitive to other processes than wall time, and the whole work on 1 thread."""


def best_alternating(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best wall time [s] of each function, the functions run in turn ``repeat`` times."""
    best = dict.fromkeys(fns, np.inf)
    CPU_S.clear()
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            c = time.thread_time()
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
            CPU_S[name] = min(CPU_S.get(name, np.inf), time.thread_time() - c)
    return best


def with_polars(ts: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """The same buckets with polars ``group_by_dynamic`` (edges fall on samples here)."""
    df = pl.DataFrame({"ts": pl.Series(ts).cast(pl.Datetime("ns", "UTC")), "p": p})
    dt = (pl.col("ts").shift(-1) - pl.col("ts")).dt.total_nanoseconds().cast(pl.Float64)
    df = df.with_columns(seg=(pl.col("p") + pl.col("p").shift(-1)) * dt, dt=dt)
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
    ).select(*COLUMNS)
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
    for col in COLUMNS:
        ours = getattr(res, col)
        theirs = other[col].to_numpy(float)
        if not np.allclose(theirs, ours, rtol=1e-9, atol=1e-9, equal_nan=True):
            worst = np.nanmax(np.abs(theirs - ours))
            raise SystemExit(f"{name}: column {col} disagrees with Noaber (max diff {worst})")


def serial_part(ts: np.ndarray, rows: list[dict[str, float]]) -> None:
    """Print the fixed cost around the kernel that no thread count shortens: allocating the
    per-bucket outputs (``_zero_outputs``, first touch of fresh pages) and assembling the
    :class:`BucketResult` (``_result``), both on the calling thread, as CPU time and as a share
    of each kernel figure of this run (an upper bound on what overlapping them could save)."""
    from energy.kernels import power as kp

    edges = kp.fixed_edges(int(ts[0]), int(ts[-1]), ISP_NS, 0)
    n_b = edges.shape[0] - 1
    out = kp._zero_outputs(n_b)
    gaps = np.empty((0, 2), np.int64)
    best_alternating(
        {
            "alloc": lambda: kp._zero_outputs(n_b),
            "assemble": lambda: kp._result(edges, out, gaps, 0),
        },
        7,
    )
    serial = CPU_S["alloc"] + CPU_S["assemble"]
    shares = ", ".join(
        f"{100 * serial / r['noaber_s']:.0f} % of the {int(r['threads'])}-thread run" for r in rows
    )
    print(
        f"  serial part ({n_b:,} buckets, CPU time): outputs allocated {CPU_S['alloc'] * 1e3:6.2f} ms,"
        f" result assembled {CPU_S['assemble'] * 1e3:6.2f} ms = {serial * 1e3:6.2f} ms ({shares})"
    )


def memory_above_input(
    ts: np.ndarray, p: np.ndarray, q: np.ndarray | None = None
) -> tuple[float, float]:
    """Peak memory above the input during one 1-thread run [bytes]: tracemalloc and RSS."""
    gc.collect()
    base_rss = rss_kb("VmRSS")
    can_reset = reset_peak_rss()
    tracemalloc.start()
    power_to_buckets(ts, p, quality=q, n_threads=1)
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = (rss_kb("VmHWM") - base_rss) * 1024.0 if can_reset else float("nan")
    return float(peak_traced), peak_rss


def run_size(
    n: int, repeat: int, compare: bool, with_quality: bool = False
) -> list[dict[str, float]]:
    """All figures for one channel of ``n`` samples; one row per thread count."""
    ts, p = make_series(n, seed=1)
    q = np.zeros(n, np.uint8) if with_quality else None
    input_bytes = ts.nbytes + p.nbytes + (0 if q is None else q.nbytes)
    cpus = os.cpu_count() or 1
    print(
        f"one channel: {n:,} samples at 1 Hz ({input_bytes / 1e6:,.0f} MB"
        f"{', with quality flags' if q is not None else ''}), 15-min ISPs"
    )
    power_to_buckets(ts[:10_000], p[:10_000], n_threads=1)  # compile / load the cache
    if q is not None:
        power_to_buckets(ts[:10_000], p[:10_000], quality=q[:10_000], n_threads=1)
    rows = []
    ref: BucketResult | None = None
    for threads in sorted({1, cpus}):
        floor = Floor(ts, p, threads, q)
        floor()
        fns: dict[str, Callable[[], Any]] = {"floor": floor}
        if threads == 1:
            fns["numpy"] = lambda: numpy_floor(ts, p, q)
        fns["noaber"] = lambda: power_to_buckets(ts, p, quality=q, n_threads=threads)  # noqa: B023
        best = best_alternating(fns, repeat)
        floor.close()
        t_floor = min(best["floor"], best.get("numpy", np.inf))
        res = power_to_buckets(ts, p, quality=q, n_threads=threads)
        if ref is None:
            ref = res
        for col in (*COLUMNS, "invalid_count", "sum_w", "first_w", "last_w"):
            if not np.array_equal(getattr(ref, col), getattr(res, col), equal_nan=True):
                raise SystemExit(f"{threads} threads differ from 1 thread in {col}")
        target = TARGET_1T if threads == 1 else TARGET_ALL
        ratio = best["noaber"] / t_floor
        print(
            f"  {threads} thread{'s' if threads > 1 else ' '}  floor {t_floor * 1e3:8.1f} ms"
            f"   Noaber {best['noaber'] * 1e3:8.1f} ms   ratio to floor {ratio:5.2f}"
            f"  (target <= {target})"
            + (f"   [numpy sums {best['numpy'] * 1e3:.1f} ms]" if "numpy" in best else "")
        )
        if threads == 1:
            cpu_floor = min(CPU_S["floor"], CPU_S["numpy"])
            print(
                f"  1 thread, CPU time: floor {cpu_floor * 1e3:8.1f} ms   Noaber"
                f" {CPU_S['noaber'] * 1e3:8.1f} ms   ratio to floor"
                f" {CPU_S['noaber'] / cpu_floor:5.2f}  (less sensitive to other processes)"
            )
        rows.append(
            {"samples": n, "threads": threads, "floor_s": t_floor, "noaber_s": best["noaber"]}
        )
    serial_part(ts, rows)
    traced, peak_rss = memory_above_input(ts, p, q)
    print(
        f"  memory above input (1 thread): tracemalloc peak {traced / 1e6:6.2f} MB ="
        f" {100 * traced / input_bytes:5.2f} %, RSS high-water {peak_rss / 1e6:6.2f} MB ="
        f" {100 * peak_rss / input_bytes:5.2f} % of input (target <= {TARGET_MEM_PCT:g} %)"
    )
    for row in rows:
        row.update(
            mem_traced_pct=100 * traced / input_bytes, mem_rss_pct=100 * peak_rss / input_bytes
        )
    if compare and ref is not None:
        compare_libraries(ts, p, ref, min(r["noaber_s"] for r in rows), repeat)
    return rows


def compare_libraries(
    ts: np.ndarray, p: np.ndarray, res: BucketResult, t_noaber: float, repeat: int
) -> None:
    t_pl = best_alternating({"pl": lambda: with_polars(ts, p)}, max(1, repeat - 1))["pl"]
    agree(res, with_polars(ts, p), "polars")
    t_pd = best_alternating({"pd": lambda: with_pandas(ts, p)}, 1)["pd"]
    agree(res, with_pandas(ts, p), "pandas")
    print(
        f"  polars group_by_dynamic {t_pl * 1e3:9.1f} ms   ratio to Noaber"
        f" {t_pl / t_noaber:6.1f}  (target >= 2; agrees)"
    )
    print(
        f"  pandas resample         {t_pd * 1e3:9.1f} ms   ratio to Noaber"
        f" {t_pd / t_noaber:6.1f}  (target >= 5; agrees)"
    )


def run_many(n_ch: int, n_per_ch: int, repeat: int) -> None:
    threads = os.cpu_count() or 1
    series = [make_series(n_per_ch, seed=10 + k) for k in range(n_ch)]
    print(f"many channels: {n_ch} x {n_per_ch:,} samples")
    power_to_buckets_many(series[:2], n_threads=2)
    best = best_alternating(
        {
            "seq": lambda: power_to_buckets_many(series, n_threads=1),
            "many": lambda: power_to_buckets_many(series),
        },
        repeat,
    )
    seq = power_to_buckets_many(series, n_threads=1)
    many = power_to_buckets_many(series)
    for a, b in zip(seq, many):
        if not np.array_equal(a.energy_wh, b.energy_wh):
            raise SystemExit("parallel channels differ from one by one")
    print(f"  one by one, one core              {best['seq'] * 1e3:9.1f} ms")
    print(
        f"  power_to_buckets_many, {threads} threads  {best['many'] * 1e3:9.1f} ms   "
        f"speed-up {best['seq'] / best['many']:5.2f}x"
    )


def summary(rows: list[dict[str, float]]) -> None:
    """The figure of issue 18 at every size: ratio to the floor per thread count."""
    print("summary: full statistics per ISP, ratio to the memory floor of the same run")
    print("  samples       threads  floor [ms]  Noaber [ms]  ratio  target  memory above input")
    for r in rows:
        target = TARGET_1T if r["threads"] == 1 else TARGET_ALL
        ratio = r["noaber_s"] / r["floor_s"]
        print(
            f"  {int(r['samples']):>12,}  {int(r['threads']):>7}  {r['floor_s'] * 1e3:10.1f}"
            f"  {r['noaber_s'] * 1e3:11.1f}  {ratio:5.2f}  {target:6.1f}"
            f"  {r['mem_rss_pct']:5.2f} % RSS, {r['mem_traced_pct']:5.2f} % traced"
            f"  {'met' if ratio <= target else 'NOT met'}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke version")
    ap.add_argument("--sizes", type=float, nargs="+", help="samples of the long channel")
    ap.add_argument(
        "--quality", action="store_true", help="give the channel quality flags (all GOOD)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        sizes, n_ch, n_per, repeat = [200_000, 1_000_000], 8, 20_000, 3
    else:
        sizes, n_ch, n_per, repeat = [10_000_000, 50_000_000], 100, 500_000, 7
    if args.sizes:
        sizes = [int(s) for s in args.sizes]
    if len(sizes) < 1 or min(sizes) < 20_000:
        raise SystemExit(f"--sizes must be at least 20,000 samples each, got {sizes}")
    print(f"before: {load()}")
    rows: list[dict[str, float]] = []
    for k, n in enumerate(sorted(sizes)):
        rows += run_size(n, repeat, compare=k == 0, with_quality=args.quality)
        gc.collect()
    run_many(n_ch, n_per, repeat)
    summary(rows)
    print(f"after: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
