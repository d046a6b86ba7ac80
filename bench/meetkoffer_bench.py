"""Meetkoffer benchmark: a campaign of 30 channels x 28 days at 1 Hz, raw samples -> HTML report.

    python bench/meetkoffer_bench.py            # 30 channels x 28 days x 86 400 s = 72.6 M samples
    python bench/meetkoffer_bench.py --quick    # 4 channels x 3 days (smoke version)

Setup (not timed as part of the pipeline, but reported): generate 1 Hz power samples (one
main incomer = the sum of 29 machines plus a base load, with on/off schedules, noise and a
few dropped samples) and write them to the Parquet :class:`energy.samples.SampleStore`.

Pipeline stages (timed; target total <= 60 s, peak memory <= 4 GB on this machine):

1. ``aggregate``: read every channel's samples from Parquet and integrate them into 15-minute
   ISPs with the interval pipeline (:func:`energy.pipeline.update_many`, whose power channels
   go through the Numba kernel :func:`energy.kernels.power_to_buckets_many`), written to SQL;
2. ``load``: read the interval readings back as pandas series;
3. ``findings``: base load, off-hours, peaks, per-equipment off-hours running, ranked;
4. ``report``: the campaign HTML report (plotly inline) and a CSV per table.

Ratios: the aggregation throughput against a baseline measured in the same run, pandas
``resample("15min").mean()`` of one channel (which is *less* work: no trapezoid, gaps or
coverage), and each stage as a share of the total. Peak memory is the process's maximum
resident set size (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from energy.db import make_engine, session_factory, upgrade
from energy.samples import SampleStore
from energy.timegrid import ISP_NS, LOCAL_TZ
from meetkoffer import campaign as cp
from meetkoffer.emissions import load_emission_factors
from meetkoffer.report import campaign_report

TZ = LOCAL_TZ
START = "2026-02-02T00:00:00+01:00"  # a Monday; 28 days stay clear of DST


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def campaign_cfg(n_channels: int, days: int) -> dict:
    start = pd.Timestamp(START)
    eq = [{"name": "main incomer", "role": "incomer"}] + [
        {"name": f"machine {i:02d}"} for i in range(1, n_channels)
    ]
    return {
        "name": "bench",
        "display_name": "Bench campaign",
        "firm": {"ref": "m-bench", "name": "Bench BV"},
        "site": {"name": "bench-site", "ean": "871000000000000099", "grid_import_limit_kw": 2000},
        "start": start.isoformat(),
        "end": (start + pd.DateOffset(days=days)).isoformat(),
        "price_eur_per_kwh": 0.18,
        "operating_hours": {"weekdays": [0, 1, 2, 3, 4], "start": "06:00", "end": "22:00"},
        "equipment": eq,
    }


def generate(
    store: SampleStore, ids: dict[str, int], n_channels: int, days: int, seed: int = 5
) -> int:
    """1 Hz samples for every channel (the incomer is the sum); returns the sample count."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(START).tz_convert("UTC").value
    n = days * 86_400
    ts = t0 + np.arange(n, dtype=np.int64) * 1_000_000_000
    local = pd.DatetimeIndex(ts).tz_localize("UTC").tz_convert(TZ)
    hour = local.hour.to_numpy()
    weekday = local.day_of_week.to_numpy()
    producing = (weekday < 5) & (hour >= 6) & (hour < 22)
    del local
    total = np.full(n, 40_000.0)  # base load [W]
    written = 0
    for i in range(1, n_channels):
        rated = rng.uniform(5_000, 60_000)
        weekend_runner = i % 7 == 0
        on = producing | ((weekday >= 5) if weekend_runner else False)
        # Cycling: each machine switches with a period of a few minutes while on.
        period = int(rng.integers(120, 900))
        duty = rng.uniform(0.5, 0.95)
        cyc = ((np.arange(n) + int(rng.integers(0, period))) % period) < duty * period
        p = np.where(on & cyc, rated, 0.02 * rated) + rng.normal(0, 0.01 * rated, n)
        total += p
        keep = rng.random(n) > 0.001  # 0.1 % dropped samples
        written += store.append(ids[f"machine {i:02d}"], ts[keep], p[keep])
    keep = rng.random(n) > 0.001
    written += store.append(ids["main incomer"], ts[keep], total[keep])
    return written


def kernel_vs_baselines(store: SampleStore, channel_id: int) -> dict[str, float]:
    """One channel in memory: the Numba kernel against two baselines measured now.

    ``reference``: the plain NumPy/pandas reference of the same rules
    (:func:`energy.kernels.reference.power_to_buckets_ref`); ``pandas``: ``resample("15min")
    .mean()``, which does less (no trapezoid, gaps or coverage). Seconds for each.
    """
    from energy.kernels import DEFAULT_MAX_GAP_NS, power_to_buckets
    from energy.kernels.reference import power_to_buckets_ref

    s = store.read(channel_id)
    out = {"samples": float(len(s))}
    power_to_buckets(s.ts[:1000], s.value[:1000])  # compiled already; keep the timing clean
    t = time.perf_counter()
    power_to_buckets(s.ts, s.value, quality=s.quality)
    out["kernel_s"] = time.perf_counter() - t
    t = time.perf_counter()
    power_to_buckets_ref(s.ts, s.value, ISP_NS, 0, DEFAULT_MAX_GAP_NS, quality=s.quality)
    out["reference_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pd.Series(s.value, index=pd.to_datetime(s.ts, unit="ns", utc=True)).resample("15min").mean()
    out["pandas_s"] = time.perf_counter() - t
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="4 channels x 3 days smoke version")
    ap.add_argument("--channels", type=int, default=None)
    ap.add_argument("--days", type=int, default=None)
    args = ap.parse_args(argv)
    n_channels = args.channels or (4 if args.quick else 30)
    days = args.days or (3 if args.quick else 28)
    if n_channels < 2 or days < 1:
        ap.error("need at least 2 channels and 1 day")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="meetkoffer-bench-") as tmp:
        root = Path(tmp)
        engine = make_engine(f"sqlite:///{root / 'noaber.db'}")
        upgrade(engine)
        sessions = session_factory(engine)
        store = SampleStore(root / "samples")
        with sessions.begin() as s:
            c = cp.create_campaign(s, campaign_cfg(n_channels, days))
            ids = {e.name: e.channel_id for e in c.equipment}
        t = time.perf_counter()
        n_samples = generate(store, ids, n_channels, days)
        figures["setup_generate_store_s"] = time.perf_counter() - t
        figures["samples"] = n_samples
        rss_setup = peak_rss_mb()

        stages: dict[str, float] = {}
        t_all = time.perf_counter()
        with sessions.begin() as s:
            c = cp.get_campaign(s, "bench")
            t = time.perf_counter()
            agg_parts: dict[str, float] = {}
            written = cp.aggregate(s, store, c, timings=agg_parts)
            stages["aggregate"] = time.perf_counter() - t
        with sessions.begin() as s:
            c = cp.get_campaign(s, "bench")
            t = time.perf_counter()
            series = cp.load_series(s, c)
            stages["load"] = time.perf_counter() - t
            t = time.perf_counter()
            factors = load_emission_factors()
            _, found = cp.analyze(s, c, factors, series)
            stages["findings"] = time.perf_counter() - t
            t = time.perf_counter()
            kg, note = cp.campaign_factor(c, factors)
            meta = {
                "name": c.name,
                "display_name": c.display_name,
                "site": "bench-site",
                "start": c.start_at,
                "end": c.end_at,
            }
            rep = campaign_report(
                meta,
                series.energy_wh,
                series.incomer,
                found,
                cp.hours_of(c),
                cp.params_of(c, kg),
                None,
                "nl",
                note,
                coverage=series.coverage,
            )
            paths = rep.write(root / "report", stem="campaign")
            stages["report"] = time.perf_counter() - t
        total = time.perf_counter() - t_all
        html_mb = paths["html"].stat().st_size / 1e6
        kb = kernel_vs_baselines(store, ids["main incomer"])

    agg_rate = n_samples / stages["aggregate"]
    print(f"meetkoffer bench: {n_channels} channels x {days} days at 1 Hz = {n_samples:,} samples")
    print(
        f"  setup (generate + write Parquet): {figures['setup_generate_store_s']:.1f} s (not in total)"
    )
    for k, v in stages.items():
        print(f"  {k:10s} {v:8.2f} s  ({v / total:5.1%} of total)")
    print(f"  total      {total:8.2f} s  (target <= 60 s)  -> {'OK' if total <= 60 else 'OVER'}")
    print(
        f"  ISPs written: {sum(written.values()):,}; findings: {len(found)}; HTML {html_mb:.1f} MB"
    )
    print(
        f"  aggregate stage: {agg_rate / 1e6:.1f} M samples/s; of which Parquet read "
        f"{agg_parts['read']:.2f} s, kernels {agg_parts['kernel']:.2f} s, "
        f"SQL upsert of readings {agg_parts['write']:.2f} s"
    )
    print(
        f"  one channel in memory ({kb['samples']:,.0f} samples): kernel {kb['kernel_s'] * 1e3:.1f} ms; "
        f"reference {kb['reference_s'] * 1e3:.0f} ms -> kernel {kb['reference_s'] / kb['kernel_s']:.1f}x faster; "
        f"pandas resample-mean {kb['pandas_s'] * 1e3:.0f} ms -> kernel {kb['pandas_s'] / kb['kernel_s']:.1f}x faster"
    )
    peak = peak_rss_mb()
    print(
        f"  peak memory (max RSS) {peak:,.0f} MB (after setup {rss_setup:,.0f} MB; target <= 4096 MB) -> {'OK' if peak <= 4096 else 'OVER'}"
    )
    figures |= {f"{k}_s": v for k, v in stages.items()} | {
        "total_s": total,
        "peak_rss_mb": peak,
        "kernel_vs_reference": kb["reference_s"] / kb["kernel_s"],
        **{f"aggregate_{k}_s": v for k, v in agg_parts.items()},
        "kernel_vs_pandas": kb["pandas_s"] / kb["kernel_s"],
        "findings": float(len(found)),
    }
    return figures


if __name__ == "__main__":
    main()
