"""Meetkoffer benchmark: a campaign of 30 channels x 28 days at 1 Hz, CSV export -> HTML report.

    python bench/meetkoffer_bench.py            # 30 channels x 7 and x 28 days at 1 Hz
    python bench/meetkoffer_bench.py --quick    # 4 channels x 1 and x 2 days (smoke version)

Setup (not timed as part of the pipeline, but reported): generate 1 Hz power samples (one
main incomer = the sum of 29 machines plus a base load, with on/off schedules, noise and a
few dropped samples) and write them as the kit's CSV export (wide layout,
``timestamp,<channel> [W],...``, an empty cell for a dropped sample).

Pipeline stages (timed; target total <= 15 s for 30 x 28 days, peak memory <= 4 GB):

1. ``import``: parse and check the CSV (:func:`meetkoffer.campaign.import_samples`: units,
   campaign period, plausible range, changes to stored values) and write the samples to the
   Parquet :class:`energy.samples.SampleStore`;
2. ``aggregate``: read every channel's samples from Parquet and integrate them into 15-minute
   ISPs with the interval pipeline (:func:`energy.pipeline.update_many`, whose power channels
   go through the Numba kernel :func:`energy.kernels.power_to_buckets_many`), written to SQL;
3. ``load``: read the interval readings back as pandas series;
4. ``findings``: base load, off-hours, peaks, per-equipment off-hours running, ranked;
5. ``report``: the campaign HTML report (plotly inline) and a CSV per table.

Ratios, each against a baseline measured in the same run: the whole pipeline against reading
the same CSV with ``pyarrow.csv.read_csv`` (typed columns, nothing else), at two sizes; the
aggregation kernel against pandas ``resample("15min").mean()`` of one channel (which is *less*
work: no trapezoid, gaps or coverage) and the NumPy reference. Also: a year of hourly outdoor
temperature (8,760 rows) imported into the campaign (target < 1 s), against pyarrow reading it.
Peak memory is the process's maximum resident set size (``ru_maxrss``).
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
import pyarrow as pa
import pyarrow.csv as pcsv

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


def generate_csv(path: Path, names: list[str], days: int, seed: int = 5) -> int:
    """1 Hz samples for every channel (the incomer is the sum) as the kit's wide CSV export;
    returns the sample count."""
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
    columns: dict[str, pa.Array] = {
        "timestamp": pa.array(
            np.datetime_as_string(
                ts.astype("datetime64[ns]").astype("datetime64[s]"), timezone="UTC"
            )
        )
    }
    written = 0

    def column(p: np.ndarray) -> pa.Array:
        nonlocal written
        keep = rng.random(n) > 0.001  # 0.1 % dropped samples: empty cells
        written += int(keep.sum())
        return pa.array(np.round(p, 1), mask=~keep)

    machines = {}
    for i in range(1, len(names)):
        rated = rng.uniform(5_000, 60_000)
        weekend_runner = i % 7 == 0
        on = producing | ((weekday >= 5) if weekend_runner else False)
        # Cycling: each machine switches with a period of a few minutes while on.
        period = int(rng.integers(120, 900))
        duty = rng.uniform(0.5, 0.95)
        cyc = ((np.arange(n) + int(rng.integers(0, period))) % period) < duty * period
        p = np.where(on & cyc, rated, 0.02 * rated) + rng.normal(0, 0.01 * rated, n)
        total += p
        machines[f"{names[i]} [W]"] = column(p)
    columns[f"{names[0]} [W]"] = column(total)
    columns |= machines
    pcsv.write_csv(pa.table(columns), path, pcsv.WriteOptions(quoting_style="none"))
    return written


def pyarrow_read_s(path: Path, header: list[str]) -> tuple[float, float]:
    """Seconds (wall, CPU) pyarrow takes to read the CSV into typed columns (the baseline)."""
    types = {h: pa.float64() for h in header[1:]} | {"timestamp": pa.timestamp("ns", tz="UTC")}
    t, cpu = time.perf_counter(), time.process_time()
    pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types))
    return time.perf_counter() - t, time.process_time() - cpu


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


def run_size(root: Path, n_channels: int, days: int) -> dict[str, float]:
    """One campaign end to end: CSV -> import -> aggregate -> findings -> report; its figures."""
    engine = make_engine(f"sqlite:///{root / 'noaber.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    store = SampleStore(root / "samples")
    with sessions.begin() as s:
        c = cp.create_campaign(s, campaign_cfg(n_channels, days))
        names = [e.name for e in c.equipment]
    csv_path = root / "export.csv"
    t = time.perf_counter()
    n_samples = generate_csv(csv_path, names, days)
    figures: dict[str, float] = {
        "setup_generate_csv_s": time.perf_counter() - t,
        "samples": n_samples,
        "csv_mb": csv_path.stat().st_size / 1e6,
    }
    figures["pyarrow_read_s"], figures["pyarrow_read_cpu_s"] = pyarrow_read_s(
        csv_path, [f"{x} [W]" for x in ["ts", *names]]
    )
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    imp: dict[str, float] = {}
    agg_parts: dict[str, float] = {}
    t_all, cpu_all = time.perf_counter(), time.process_time()
    t, c0 = time.perf_counter(), time.process_time()  # each stage includes its commit

    def lap(stage: str) -> None:
        nonlocal t, c0
        stages[stage], cpu[stage] = time.perf_counter() - t, time.process_time() - c0
        t, c0 = time.perf_counter(), time.process_time()

    with sessions.begin() as s:
        c = cp.get_campaign(s, "bench")
        cp.import_samples(s, store, c, csv_path, timings=imp)
    lap("import")
    with sessions.begin() as s:
        c = cp.get_campaign(s, "bench")
        written = cp.aggregate(s, store, c, timings=agg_parts)
    lap("aggregate")
    with sessions.begin() as s:
        c = cp.get_campaign(s, "bench")
        series = cp.load_series(s, c)
        lap("load")
        factors = load_emission_factors()
        _, found = cp.analyze(s, c, factors, series)
        lap("findings")
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
    lap("report")
    total = time.perf_counter() - t_all
    figures["total_cpu_s"] = time.process_time() - cpu_all
    figures |= (
        {f"{k}_s": v for k, v in stages.items()}
        | {f"{k}_cpu_s": v for k, v in cpu.items()}
        | {
            "total_s": total,
            "isps": float(sum(written.values())),
            "findings": float(len(found)),
            "html_mb": paths["html"].stat().st_size / 1e6,
            **{f"import_{k}_s": v for k, v in imp.items()},
            **{f"aggregate_{k}_s": v for k, v in agg_parts.items()},
        }
    )
    with sessions.begin() as s:
        c = cp.get_campaign(s, "bench")
        figures |= temperature_year(root, s, c)
        incomer = next(e.channel_id for e in c.equipment if e.role == "incomer")
    figures |= {f"one_channel_{k}": v for k, v in kernel_vs_baselines(store, incomer).items()}
    engine.dispose()
    return figures


def temperature_year(root: Path, session, c) -> dict[str, float]:
    """A year of hourly outdoor temperature (8,760 rows) imported, and imported again."""
    hours = pd.date_range("2026-01-01", periods=8760, freq="h", tz=TZ)
    temp = 10 + 8 * np.sin(np.arange(8760) * 2 * np.pi / 8760) + np.sin(np.arange(8760) / 24)
    path = root / "temperature.csv"
    pd.DataFrame(
        {"timestamp": [t.isoformat() for t in hours], "value": temp.round(1), "unit": "degC"}
    ).to_csv(path, index=False)
    t = time.perf_counter()
    pcsv.read_csv(
        path,
        convert_options=pcsv.ConvertOptions(
            column_types={"timestamp": pa.timestamp("ns", tz="UTC")}
        ),
    )
    out = {"temperature_pyarrow_s": time.perf_counter() - t}
    t = time.perf_counter()
    cp.import_temperature(session, c, path)
    out["temperature_import_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cp.import_temperature(session, c, path)
    out["temperature_reimport_s"] = time.perf_counter() - t
    return out


def report_size(n_channels: int, days: int, f: dict[str, float]) -> None:
    total = f["total_s"]
    print(
        f"meetkoffer bench: {n_channels} channels x {days} days at 1 Hz = {f['samples']:,.0f} "
        f"samples, CSV {f['csv_mb']:,.0f} MB"
    )
    print(f"  setup (generate + write CSV): {f['setup_generate_csv_s']:.1f} s (not in total)")
    for k in ("import", "aggregate", "load", "findings", "report"):
        v = f[f"{k}_s"]
        print(f"  {k:10s} {v:8.2f} s  ({v / total:5.1%} of total; CPU {f[f'{k}_cpu_s']:6.2f} s)")
    target = 15.0
    print(
        f"  total      {total:8.2f} s  (target <= {target:g} s for 30 x 28 days)  -> "
        f"{'OK' if total <= target else 'OVER'}"
    )
    print(
        f"  CPU time of the process (all threads) over the pipeline: {f['total_cpu_s']:.1f} s "
        f"(wall {total:.1f} s; on a busy machine wall time is the larger)"
    )
    print(
        f"  pyarrow read_csv of the same file {f['pyarrow_read_s']:.2f} s (CPU "
        f"{f['pyarrow_read_cpu_s']:.2f} s) -> end to end is "
        f"{total / f['pyarrow_read_s']:.1f}x reading the CSV (CPU "
        f"{f['total_cpu_s'] / f['pyarrow_read_cpu_s']:.1f}x); import alone "
        f"{f['import_s'] / f['pyarrow_read_s']:.1f}x (parse {f['import_parse_s']:.2f} s, "
        f"checks {f['import_check_s']:.2f} s, Parquet {f['import_store_s']:.2f} s)"
    )
    print(
        f"  ISPs written: {f['isps']:,.0f}; findings: {f['findings']:.0f}; HTML {f['html_mb']:.1f} MB; "
        f"aggregate: Parquet read {f['aggregate_read_s']:.2f} s, kernels "
        f"{f['aggregate_kernel_s']:.2f} s, SQL upsert {f['aggregate_write_s']:.2f} s"
    )
    k = f["one_channel_kernel_s"]
    print(
        f"  one channel in memory ({f['one_channel_samples']:,.0f} samples): kernel {k * 1e3:.1f} ms; "
        f"reference {f['one_channel_reference_s'] * 1e3:.0f} ms -> kernel "
        f"{f['one_channel_reference_s'] / k:.1f}x faster; pandas resample-mean "
        f"{f['one_channel_pandas_s'] * 1e3:.0f} ms -> kernel {f['one_channel_pandas_s'] / k:.1f}x faster"
    )
    ti = f["temperature_import_s"]
    print(
        f"  a year of hourly temperature (8,760 rows): import {ti * 1e3:.0f} ms (target < 1 s) -> "
        f"{'OK' if ti < 1 else 'OVER'}; again (no change) {f['temperature_reimport_s'] * 1e3:.0f} ms; "
        f"pyarrow read {f['temperature_pyarrow_s'] * 1e3:.1f} ms"
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="4 channels x 1 and 2 days (smoke version)"
    )
    ap.add_argument("--channels", type=int, default=None)
    ap.add_argument("--days", type=int, nargs="+", default=None, help="campaign lengths to run")
    args = ap.parse_args(argv)
    n_channels = args.channels or (4 if args.quick else 30)
    sizes = args.days or ([1, 2] if args.quick else [7, 28])
    if n_channels < 2 or min(sizes) < 1:
        ap.error("need at least 2 channels and 1 day")
    figures: dict[str, float] = {}
    for days in sizes:
        with tempfile.TemporaryDirectory(prefix="meetkoffer-bench-") as tmp:
            f = run_size(Path(tmp), n_channels, days)
        report_size(n_channels, days, f)
        figures |= {f"{k}@{days}d": v for k, v in f.items()}
    last = sizes[-1]
    figures |= {k: figures[f"{k}@{last}d"] for k in f}
    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        growth = figures[f"total_s@{b}d"] / figures[f"total_s@{a}d"]
        print(f"  {b} days take {growth:.1f}x the time of {a} days ({b / a:.1f}x the data)")
    peak = peak_rss_mb()
    print(
        f"  peak memory (max RSS) {peak:,.0f} MB (target <= 4096 MB) -> {'OK' if peak <= 4096 else 'OVER'}"
    )
    figures["peak_rss_mb"] = peak
    return figures


if __name__ == "__main__":
    main()
