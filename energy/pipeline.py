"""Raw samples to interval readings, incrementally: the one path from samples to readings.

:func:`update_many` turns the stored raw samples of channels
(:class:`energy.samples.SampleStore`) into interval readings per ISP (energy_wh, mean/min/max
power, sample count, coverage) in SQL (:func:`energy.readings.upsert_readings`), each channel
by its :class:`Aggregation` (:func:`aggregation_of`: power integrated, energy counters
differenced, the gap rule from :attr:`energy.models.Channel.max_gap_s`). The gateway-fed sites
(``noaber/services/ingest.py``, ``noaber intervals``) and the Meetkoffer campaigns
(:func:`meetkoffer.campaign.aggregate`, restricted to the campaign period) both call it;
:func:`update_intervals` is the same for one channel with its aggregation given.

Incremental by construction. A small JSON sidecar per channel in the sample store
(``<root>/_pipeline/channel=<id>.json``) records which Parquet part files (name, size,
modification time) have been aggregated, the newest sample seen and the aggregation used. An
update looks only at part files that are new or changed since, and recomputes only the ISPs
those samples can change:

* **New samples after everything seen** (the normal stream) extend the intervals: the
  recomputation starts at the ISP of the last valid sample before them (the interval between
  it and the first new sample is integrated now) and ends at the last new sample.
* **Late or corrected samples** change the integration of neighbouring sample intervals, but
  never further than ``max_gap_ns`` away (a longer interval is a gap, integrated by no one).
  So for new samples spanning ``[tmin, tmax]`` the ISPs from ``floor(tmin - max_gap_ns)`` to
  ``floor(tmax + max_gap_ns)`` are recomputed from the samples within one more
  ``max_gap_ns`` on each side, which gives exactly what a full recomputation would.

With the PostgreSQL store (:class:`energy.rawstore.PgSampleStore`) the "new part files" are
the channel's rows in ``raw_sample_changes`` (each write's per-channel, per-hour span, written
in the samples' transaction) and the state is its ``raw_sample_state`` row; both are advanced
in the transaction that writes the readings, so a crash leaves the changes to do again. Each
channel is updated under a transaction-level advisory lock taken with
``pg_try_advisory_xact_lock``: several ingest workers update intervals at once, a channel
another worker is updating is skipped (reported ``busy``) and left for a later round, and no
worker ever waits for another.

ISPs without data inside a recomputed range are written only where a reading existed
before (then with count and coverage 0), so stale values never survive.

The recomputation runs in chunks of at most :data:`CHUNK_NS` per channel; the power chunks of
many channels go through :func:`energy.kernels.power_to_buckets_many` ``batch`` at a time
(their samples read from Parquet in parallel threads), so memory stays bounded.

Instantaneous channels (state of charge, setpoints, status, temperature, voltage, ...) are
aggregated by the same kernel as power (kind ``instant``): per ISP the time-weighted mean
(``power_mean_w``), the minimum and maximum (``power_min_w``, ``power_max_w``) and the last
valid value (``value_last``) of the samples, in the channel's unit; ``energy_wh`` is 0.

Derived channels (:attr:`energy.models.Channel.derived`, from the site file's ``derived:``
formula) come after the measured ones (:func:`update_derived`): per ISP, ``energy_wh`` and
``power_mean_w`` are the formula over the inputs' readings, ``coverage`` and
``sample_count`` the least of the inputs'. An ISP where an input has no reading, or less
coverage than the definition's ``min_coverage``, has no derived reading (missing, not zero)
and a row in ``derived_gaps`` that says which input and why. The ISPs recomputed are those
the update recomputed for any input (incremental, per ISP); a derived channel seen for the
first time, or whose formula changed, is computed over the whole span of its inputs'
readings (its state is a sidecar ``_pipeline/derived=<id>.json``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from energy.kernels.counters import counter_to_buckets
from energy.kernels.counters import warm_up as counter_warm_up
from energy.kernels.power import DEFAULT_MAX_GAP_NS, power_to_buckets_many
from energy.kernels.power import warm_up as power_warm_up
from energy.models import Channel, DerivedGap, IntervalReading, Quantity
from energy.rawstore import AnySampleStore, PgSampleStore, RawSampleChange, RawSampleState
from energy.readings import read_readings, readings_changed, upsert_readings
from energy.samples import Samples, SampleStore
from energy.timegrid import ISP_NS, floor_isp_ns

STATE_DIR = "_pipeline"
STATE_VERSION = 1
KINDS = ("power", "counter", "instant")
INSTANT_QUANTITIES = frozenset(
    {
        Quantity.SOC,
        Quantity.STATE,
        Quantity.VOLTAGE,
        Quantity.CURRENT,
        Quantity.FREQUENCY,
        Quantity.TEMPERATURE,
    }
)
"""Quantities whose samples are values at an instant: aggregated to mean/min/max/last."""
CHUNK_NS = 31 * 86_400 * 1_000_000_000
"""Longest stretch of one channel recomputed at once: a month (a 1 Hz channel-month is about
40 MB of samples), so a month-long Meetkoffer campaign reads each channel once."""
TIMINGS = ("read", "kernel", "write")


@dataclass(frozen=True)
class Aggregation:
    """How the samples of a channel become interval readings.

    Attributes
    ----------
    kind : {"power", "counter", "instant"}
        Samples are power [W] (trapezoid rule), an energy-counter register [Wh] or an
        instantaneous value (state of charge [%], a setpoint, a status code, ...: mean, min,
        max and last per ISP, no energy).
    max_gap_ns : int
        Longest sample interval integrated [ns] (default 2 h); longer ones are gaps.
    wrap_wh : float, optional
        Register range of a counter [Wh] (see :func:`energy.kernels.counter_to_buckets`).
    """

    kind: str = "power"
    max_gap_ns: int = DEFAULT_MAX_GAP_NS
    wrap_wh: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        gap = self.max_gap_ns
        if int(gap) != gap or gap < 0:
            raise ValueError(f"max_gap_ns must be a non-negative integer [ns], got {gap!r}")
        object.__setattr__(self, "max_gap_ns", int(gap))


def aggregation_of(channel: Channel) -> Aggregation | None:
    """The aggregation of a channel's samples; None for a derived channel or a quantity
    without one (production counts).

    Power channels are integrated, energy-counter channels differenced (without a register
    range: every drop counts as a reset; call :func:`update_intervals` with ``wrap_wh`` for a
    wrapping register), instantaneous ones (:data:`INSTANT_QUANTITIES`: state of charge,
    status, temperature, ...) reduced to mean, min, max and last. The gap rule is the
    channel's ``max_gap_s`` (NULL: :data:`DEFAULT_MAX_GAP_NS`).
    """
    if channel.derived is not None:
        return None
    if channel.quantity == Quantity.POWER:
        kind = "power"
    elif channel.quantity in (Quantity.ENERGY_IMPORT, Quantity.ENERGY_EXPORT):
        kind = "counter"
    elif channel.quantity in INSTANT_QUANTITIES:
        kind = "instant"
    else:
        return None
    if channel.max_gap_s is None:
        return Aggregation(kind)
    return Aggregation(kind, int(channel.max_gap_s) * 1_000_000_000)


@dataclass
class UpdateReport:
    """What one update of a channel did.

    Attributes
    ----------
    channel_id : int
    new_parts : int
        Part files new or changed since the last update.
    samples_read : int
        Raw samples read to recompute.
    isps_written : int
        Interval readings written (inserted or replaced).
    ranges_ns : list of (int, int)
        Recomputed ISP ranges ``[start, end)`` [ns, UTC].
    full : bool
        Whether everything was recomputed (first run or changed aggregation).
    derived : bool
        A derived channel (computed from other channels' readings, not from samples).
    busy : bool
        PostgreSQL store: another worker holds this channel's pipeline lock; nothing was
        done (its pending changes stay for a later round).
    missing_isps : int
        Derived: ISPs in the recomputed ranges left without a reading (see ``derived_gaps``).
    first_missing : str, optional
        Derived: the first of them, ``"<ISP start, UTC>: <reason>"``.
    """

    channel_id: int
    new_parts: int = 0
    samples_read: int = 0
    isps_written: int = 0
    ranges_ns: list[tuple[int, int]] = field(default_factory=list)
    full: bool = False
    derived: bool = False
    missing_isps: int = 0
    first_missing: str | None = None
    busy: bool = False


@dataclass
class _Plan:
    """The update of one channel: its aggregation, its report (with the ranges to recompute)
    and the state to record once the readings are committed (None: keep the old one)."""

    aggregation: Aggregation
    report: UpdateReport
    state: dict[str, Any] | None = None


@dataclass
class _Chunk:
    """A stretch ``[w0, w1)`` of ISPs of one channel to recompute."""

    plan: _Plan
    w0: int
    w1: int


def state_path(store: AnySampleStore, channel_id: int) -> Path:
    """Sidecar file of a channel's aggregation state."""
    return store.root / STATE_DIR / f"channel={channel_id}.json"


def _load_state(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable state: recompute everything (safe)
    return state if state.get("version") == STATE_VERSION else None


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(tmp, path)


def _parts(store: SampleStore, channel_id: int) -> dict[str, list[int]]:
    base = store.root / f"channel={channel_id}"
    if not base.is_dir():
        return {}
    out = {}
    for p in sorted(base.glob("date=*/part-*.parquet")):
        st = p.stat()
        out[p.relative_to(base).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _ts_range(paths: list[Path]) -> tuple[int, int] | None:
    """First and last timestamp in the part files: from their footers (the ``ts`` column's
    statistics), read from the column only where a footer lacks them."""
    lo, hi = [], []
    for p in paths:
        meta = pq.ParquetFile(p).metadata
        stats = [meta.row_group(i).column(0).statistics for i in range(meta.num_row_groups)]
        if all(st is not None and st.has_min_max for st in stats):
            lo += [int(st.min) for st in stats]
            hi += [int(st.max) for st in stats]
            continue
        ts = pq.read_table(p, columns=["ts"]).column("ts").to_numpy()
        if ts.size:
            lo.append(int(ts.min()))
            hi.append(int(ts.max()))
    return (min(lo), max(hi)) if lo else None


def _clusters(ts: np.ndarray, join_ns: int) -> list[tuple[int, int]]:
    """``[(tmin, tmax)]`` of sorted timestamps, split where they lie more than ``join_ns`` apart."""
    if ts.size == 0:
        return []
    cut = np.flatnonzero(np.diff(ts) > join_ns)
    starts = np.concatenate(([0], cut + 1))
    ends = np.concatenate((cut, [ts.size - 1]))
    return [(int(ts[a]), int(ts[b])) for a, b in zip(starts, ends)]


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[key] += time.perf_counter() - t


def _plan(
    store: SampleStore,
    channel_id: int,
    aggregation: Aggregation,
    full: bool,
    window: tuple[int, int] | None,
) -> _Plan:
    """What to recompute for one channel (see the module docstring), and its next state.

    With a ``window`` only the ISPs starting in it are recomputed; if that leaves out any
    the samples can change, the state is not advanced (a later update does the rest).
    """
    settings = asdict(aggregation)
    path = state_path(store, channel_id)
    state = None if full else _load_state(path)
    if state is not None and state.get("settings") != settings:
        state = None
    plan = _Plan(aggregation, UpdateReport(channel_id, full=state is None))
    parts_now = _parts(store, channel_id)
    seen: dict[str, list[int]] = state["parts"] if state else {}
    new = [rel for rel, sig in parts_now.items() if seen.get(rel) != sig]
    plan.report.new_parts = len(new)
    if not new and state is not None:
        return plan

    base = store.root / f"channel={channel_id}"
    gap = aggregation.max_gap_ns
    max_seen = int(state["max_ts"]) if state and state.get("max_ts") is not None else None
    if state is None:
        bounds = _ts_range([base / rel for rel in new])
        clusters = [bounds] if bounds else []
        newest = bounds[1] if bounds else None
    else:
        all_ts = [pq.read_table(base / rel, columns=["ts"]).column("ts").to_numpy() for rel in new]
        new_ts = np.unique(np.concatenate(all_ts))
        clusters = _clusters(new_ts, 2 * gap + 2 * ISP_NS)
        newest = int(new_ts[-1]) if new_ts.size else None
        if max_seen is not None and (newest is None or max_seen > newest):
            newest = max_seen
    clipped = _set_ranges(store, plan, clusters, state is None, max_seen, window)
    if not clipped:
        plan.state = {
            "version": STATE_VERSION,
            "settings": settings,
            "parts": parts_now,
            "max_ts": newest,
        }
    return plan


def _set_ranges(
    store: AnySampleStore,
    plan: _Plan,
    clusters: list[tuple[int, int]],
    fresh: bool,
    max_seen: int | None,
    window: tuple[int, int] | None,
) -> bool:
    """The ISP ranges to recompute for new samples in ``clusters`` (see the module docstring)
    into ``plan.report.ranges_ns``; whether the ``window`` left some out."""
    channel_id, gap = plan.report.channel_id, plan.aggregation.max_gap_ns
    ranges = []
    for tmin, tmax in clusters:
        if fresh:
            a, b = floor_isp_ns(tmin), floor_isp_ns(tmax) + ISP_NS
        elif max_seen is not None and tmin > max_seen:
            # Appended: only the interval from the last valid sample before tmin is new.
            s = store.read(channel_id, tmin - gap, tmin)
            plan.report.samples_read += len(s)
            valid = (s.quality == 0) & np.isfinite(s.value)
            a = floor_isp_ns(int(s.ts[valid][-1]) if valid.any() else tmin)
            b = floor_isp_ns(tmax) + ISP_NS
        else:
            a = floor_isp_ns(tmin - gap)
            b = floor_isp_ns(tmax + gap) + ISP_NS
        ranges.append((a, b))
    clipped = False
    if window is not None:
        lo, hi = (floor_isp_ns(t + ISP_NS - 1) for t in window)
        clipped = any(a < lo or b > hi for a, b in ranges)
        ranges = [(max(a, lo), min(b, hi)) for a, b in ranges if max(a, lo) < min(b, hi)]
    plan.report.ranges_ns = ranges
    return clipped


def _merge_spans(spans: list[tuple[int, int]], join_ns: int) -> list[tuple[int, int]]:
    """Sorted, merged ``[(tmin, tmax)]`` of spans, joined where less than ``join_ns`` apart."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a - out[-1][1] <= join_ns:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _plan_pg(
    store: PgSampleStore,
    session: Session,
    channel_id: int,
    aggregation: Aggregation,
    full: bool,
    window: tuple[int, int] | None,
) -> _Plan:
    """:func:`_plan` for the PostgreSQL store: the new samples are the channel's rows in
    ``raw_sample_changes`` (read before the samples, so every change read has its samples
    visible), the state its ``raw_sample_state`` row; both are advanced in the transaction
    that writes the readings (:func:`_record_pg`)."""
    settings = asdict(aggregation)
    row = None if full else session.get(RawSampleState, channel_id)
    fresh = row is None or row.settings != settings
    plan = _Plan(aggregation, UpdateReport(channel_id, full=fresh))
    changes = session.execute(
        select(RawSampleChange.id, RawSampleChange.ts_min, RawSampleChange.ts_max).where(
            RawSampleChange.channel_id == channel_id
        )
    ).all()
    plan.report.new_parts = len(changes)
    if not changes and not fresh:
        return plan
    gap = aggregation.max_gap_ns
    max_seen = None if fresh or row is None else row.max_ts
    if fresh:
        bounds = store.ts_range(channel_id)
        clusters = [bounds] if bounds else []
        newest = bounds[1] if bounds else None
    else:
        clusters = _merge_spans([(a, b) for _i, a, b in changes], 2 * gap + 2 * ISP_NS)
        newest = max([b for _a, b in clusters] + ([max_seen] if max_seen is not None else []))
    clipped = _set_ranges(store, plan, clusters, fresh, max_seen, window)
    if not clipped:
        plan.state = {
            "settings": settings,
            "max_ts": newest,
            "change_ids": [int(i) for i, _a, _b in changes],
        }
    return plan


def _record_pg(session: Session, plans: list[_Plan]) -> None:
    """The PostgreSQL store's pipeline state of the planned channels, in the readings'
    transaction: the state rows upserted, the changes aggregated deleted."""
    done = [p for p in plans if p.state is not None]
    if not done:
        return
    ids = [i for p in done for i in p.state["change_ids"]]  # type: ignore[index]
    if ids:
        session.execute(delete(RawSampleChange).where(RawSampleChange.id.in_(ids)))
    for p in done:
        assert p.state is not None
        session.merge(
            RawSampleState(
                channel_id=p.report.channel_id,
                settings=p.state["settings"],
                max_ts=p.state["max_ts"],
                updated_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
            )
        )
    session.flush()


def _batches(plans: list[_Plan], batch: int) -> Iterator[tuple[Aggregation, list[_Chunk]]]:
    """The chunks to recompute, ``batch`` at a time, each batch of one aggregation."""
    by_aggregation: dict[Aggregation, list[_Chunk]] = {}
    for plan in plans:
        for a, b in plan.report.ranges_ns:
            for w0 in range(a, b, CHUNK_NS):
                chunk = _Chunk(plan, w0, min(w0 + CHUNK_NS, b))
                by_aggregation.setdefault(plan.aggregation, []).append(chunk)
    size = max(1, batch)
    for aggregation, chunks in by_aggregation.items():
        for i in range(0, len(chunks), size):
            yield aggregation, chunks[i : i + size]


def _read(store: AnySampleStore, chunks: list[_Chunk], gap: int) -> list[Samples]:
    """The samples each chunk is computed from, read in parallel threads.

    Samples within ``gap`` outside the chunk are read too: every sample interval that
    reaches into the chunk and is integrated (no longer than ``gap``) has both ends there,
    so the chunk's ISPs come out exactly as from a computation over all samples.
    """

    def one(ch: _Chunk) -> Samples:
        return store.read(ch.plan.report.channel_id, ch.w0 - gap, ch.w1 + gap)

    if len(chunks) == 1:
        return [one(chunks[0])]
    with ThreadPoolExecutor(max_workers=max(1, min(len(chunks), os.cpu_count() or 1))) as ex:
        return list(ex.map(one, chunks))


_KERNEL_OF = {"power": "power", "instant": "power", "counter": "counter"}
"""The kernel that aggregates each kind (see :func:`_kernel`)."""


def _warm_up(kernel: str) -> None:
    """Load a kernel's machine code (see :func:`energy.kernels.power.warm_up`)."""
    if kernel == "power":
        power_warm_up()
    else:
        counter_warm_up()


def _kernel(aggregation: Aggregation, samples: list[Samples], n_threads: int | None) -> list[Any]:
    """Bucket results (:class:`energy.kernels.BucketResult` or ``CounterResult``) per chunk."""
    if aggregation.kind in ("power", "instant"):
        return power_to_buckets_many(
            [(s.ts, s.value, s.quality) for s in samples],
            ISP_NS,
            0,
            aggregation.max_gap_ns,
            n_threads=n_threads,
        )
    return [
        counter_to_buckets(
            s.ts, s.value, ISP_NS, 0, aggregation.wrap_wh, aggregation.max_gap_ns, s.quality
        )
        for s in samples
    ]


def _write(session: Session, chunk: _Chunk, res: Any) -> int:
    """Write the ISPs of a chunk from its bucket result; returns the rows written."""
    channel_id, w0, w1 = chunk.plan.report.channel_id, chunk.w0, chunk.w1
    q = select(IntervalReading.isp_start).where(
        IntervalReading.channel_id == channel_id,
        IntervalReading.isp_start >= pd.Timestamp(w0, unit="ns", tz="UTC").to_pydatetime(),
        IntervalReading.isp_start < pd.Timestamp(w1, unit="ns", tz="UTC").to_pydatetime(),
    )
    existing = np.array(
        [pd.Timestamp(t).as_unit("ns").value for t in session.scalars(q)], dtype=np.int64
    )
    starts = res.start_ns
    has = (res.count > 0) | (res.coverage > 0) | (res.invalid_count > 0)
    keep = (starts >= w0) & (starts < w1) & (has | np.isin(starts, existing))
    frame = res.to_frame()[keep]
    if chunk.plan.aggregation.kind == "instant":
        frame = frame.assign(energy_wh=0.0)  # a state of charge has no energy
    written = upsert_readings(session, channel_id, frame)
    # Readings with no samples left around them (nothing to compute from): empty them.
    orphans = existing[~np.isin(existing, starts)]
    if orphans.size:
        empty = pd.DataFrame(
            {"energy_wh": 0.0, "sample_count": 0, "coverage": 0.0},
            index=pd.DatetimeIndex(pd.to_datetime(orphans, unit="ns", utc=True)).as_unit("ns"),
        )
        written += upsert_readings(session, channel_id, empty)
    return written


def _update(
    sample_store: AnySampleStore,
    session: Session,
    channels: list[tuple[int, Aggregation]],
    *,
    derived_channels: Sequence[Channel] = (),
    window: tuple[int, int] | None,
    full: bool,
    commit: bool,
    n_threads: int | None,
    batch: int,
    timings: dict[str, float] | None,
) -> list[UpdateReport]:
    """Plan every channel, recompute the chunks batch by batch, commit, record the states."""
    tm = timings if timings is not None else {}
    for k in TIMINGS:
        tm.setdefault(k, 0.0)
    pg = isinstance(sample_store, PgSampleStore)
    busy: list[UpdateReport] = []
    if pg:  # one worker per channel at a time; a busy channel waits for a later round
        got = set(PgSampleStore.claim(session, [cid for cid, _agg in channels]))
        busy = [UpdateReport(cid, busy=True) for cid, _agg in channels if cid not in got]
        channels = [(cid, agg) for cid, agg in channels if cid in got]
    with _timed(tm, "read"):
        if pg:
            assert isinstance(sample_store, PgSampleStore)
            plans = [
                _plan_pg(sample_store, session, cid, agg, full, window) for cid, agg in channels
            ]
        else:
            assert isinstance(sample_store, SampleStore)
            plans = [_plan(sample_store, cid, agg, full, window) for cid, agg in channels]
    batches = list(_batches(plans, batch))
    # Two helper threads: one loads the kernels (Numba's start-up, or their compilation with
    # an empty cache) while the first batch is read; one reads the next batch from Parquet
    # while this one is written to SQL (a PostgreSQL store reads on the caller's connection).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="noaber-pipeline") as helper:
        kernels = {_KERNEL_OF.get(aggregation.kind, "counter") for aggregation, _c in batches}
        warm = [helper.submit(_warm_up, kernel) for kernel in sorted(kernels)]
        ahead = None
        for n_done, (aggregation, chunks) in enumerate(batches):
            with _timed(tm, "read"):
                if ahead is None:
                    samples = _read(sample_store, chunks, aggregation.max_gap_ns)
                else:
                    samples = ahead.result()
                    ahead = None
            for ch, s in zip(chunks, samples):
                ch.plan.report.samples_read += len(s)
            with _timed(tm, "kernel"):
                for w in warm:
                    w.result()
                warm = []
                results = _kernel(aggregation, samples, n_threads)
            del samples
            if not pg and n_done + 1 < len(batches):
                nxt_agg, nxt = batches[n_done + 1]
                ahead = helper.submit(_read, sample_store, nxt, nxt_agg.max_gap_ns)
            with _timed(tm, "write"):
                for ch, res in zip(chunks, results):
                    ch.plan.report.isps_written += _write(session, ch, res)
    with _timed(tm, "write"):
        derived = _update_derived(sample_store, session, derived_channels, plans, full)
    if commit and (any(p.state is not None for p in plans) or derived):
        if pg:
            _record_pg(session, plans)
        session.commit()
        for p in plans:
            if p.state is not None and not pg:
                _save_state(state_path(sample_store, p.report.channel_id), p.state)
        for path, state, _report in derived:
            _save_state(path, state)
    elif pg and commit:
        session.commit()  # releases the channels' locks
    return [p.report for p in plans] + busy + [r for _p, _s, r in derived]


def update_intervals(
    sample_store: AnySampleStore,
    session: Session,
    channel_id: int,
    *,
    max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    kind: str = "power",
    wrap_wh: float | None = None,
    full: bool = False,
    commit: bool = True,
) -> UpdateReport:
    """Bring the interval readings of one channel up to date with its raw samples.

    Parameters
    ----------
    sample_store : SampleStore or PgSampleStore
        The raw-sample store (Parquet files, or PostgreSQL: :mod:`energy.rawstore`).
    session : Session
        SQL session; readings are written with :func:`energy.readings.upsert_readings`.
    channel_id : int
        The channel.
    max_gap_ns, kind, wrap_wh
        Its :class:`Aggregation` (given here, not read from the channel: see
        :func:`update_many` for that).
    full : bool
        Recompute all ISPs from all samples.
    commit : bool
        Commit the session, then record the new state. With ``commit=False`` the state is
        not advanced (the next call recomputes the same ranges, which is harmless).

    Returns
    -------
    UpdateReport
    """
    aggregation = Aggregation(kind, max_gap_ns, wrap_wh)
    return _update(
        sample_store,
        session,
        [(channel_id, aggregation)],
        window=None,
        full=full,
        commit=commit,
        n_threads=1,
        batch=1,
        timings=None,
    )[0]


def update_many(
    sample_store: AnySampleStore,
    session: Session,
    channel_ids: Sequence[int] | None = None,
    *,
    window: tuple[int, int] | None = None,
    full: bool = False,
    commit: bool = True,
    n_threads: int | None = None,
    batch: int = 8,
    timings: dict[str, float] | None = None,
) -> list[UpdateReport]:
    """Bring the interval readings of many channels up to date, each by :func:`aggregation_of`.

    Parameters
    ----------
    sample_store : SampleStore or PgSampleStore
        The raw-sample store (Parquet files, or PostgreSQL: :mod:`energy.rawstore`).
    session : Session
        SQL session.
    channel_ids : sequence of int, optional
        The channels (default: every channel in the store). Channels whose quantity has no
        interval energy (state of charge, temperature, ...) are skipped.
    window : (int, int), optional
        ``(start_ns, end_ns)`` [ns, UTC]: recompute only the ISPs that start in it (a
        Meetkoffer campaign period). The state of a channel is then advanced only if nothing
        outside the window was left to recompute.
    full : bool
        Recompute all ISPs from all samples.
    commit : bool
        Commit the session, then record the new states (``commit=False``: see
        :func:`update_intervals`).
    n_threads : int, optional
        Threads of the power kernel over the channels of a batch (default all CPUs).
    batch : int
        Chunks (of up to :data:`CHUNK_NS` of one channel) read and computed together.
    timings : dict, optional
        Receives the seconds spent in ``read`` (Parquet), ``kernel`` and ``write`` (SQL),
        added to what it holds.

    Returns
    -------
    list of UpdateReport
        One per channel updated, in the order of ``channel_ids``, then one per derived
        channel recomputed (``derived=True``): those with an input among the channels (or
        named themselves), see :func:`update_derived`.

    Raises
    ------
    ValueError
        If a channel is not in the database.
    """
    ids = sample_store.channels() if channel_ids is None else list(channel_ids)
    if not ids:
        return []
    rows = session.scalars(select(Channel).where(Channel.id.in_(ids))).all()
    known = {ch.id: ch for ch in rows}
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"channel(s) {', '.join(map(str, missing))} not in the database")
    channels = []
    for cid in ids:
        aggregation = aggregation_of(known[cid])
        if aggregation is not None:
            channels.append((cid, aggregation))
    return _update(
        sample_store,
        session,
        channels,
        derived_channels=derived_of(session, ids),
        window=window,
        full=full,
        commit=commit,
        n_threads=n_threads,
        batch=batch,
        timings=timings,
    )


# ---------------------------------------------------------------------------- derived


@dataclass(frozen=True)
class DerivedDef:
    """A derived channel's definition with its inputs resolved to channel ids.

    Attributes
    ----------
    channel_id : int
    formula : str
        As the site file wrote it.
    terms : tuple of (int or None, str, float)
        ``(input channel id, input key, coefficient)``; the id is None for a key that is not
        in the database (every ISP is then missing, saying so).
    min_coverage : float
        Least coverage each input needs in an ISP (0..1].
    """

    channel_id: int
    formula: str
    terms: tuple[tuple[int | None, str, float], ...]
    min_coverage: float

    @property
    def input_ids(self) -> set[int]:
        return {cid for cid, _k, _c in self.terms if cid is not None}

    def settings(self) -> dict[str, Any]:
        """What the state records: a change means a full recomputation."""
        return {
            "formula": self.formula,
            "terms": [[cid, key, coef] for cid, key, coef in self.terms],
            "min_coverage": self.min_coverage,
        }


def derived_definition(session: Session, channel: Channel) -> DerivedDef:
    """The definition of a derived channel with its input keys resolved to ids.

    Raises
    ------
    ValueError
        If the channel is not derived or its stored definition is malformed.
    """
    spec = channel.derived
    if not isinstance(spec, dict) or not isinstance(spec.get("terms"), list):
        raise ValueError(f"channel {channel.key!r} has no derived definition with terms")
    pairs = [(str(t[0]), float(t[1])) for t in spec["terms"]]
    keys = [k for k, _c in pairs]
    ids = dict(session.execute(select(Channel.key, Channel.id).where(Channel.key.in_(keys))).all())
    return DerivedDef(
        channel.id,
        str(spec.get("formula", "")),
        tuple((ids.get(k), k, c) for k, c in pairs),
        float(spec.get("min_coverage", 0.5)),
    )


def derived_of(session: Session, channel_ids: Sequence[int] | None) -> list[Channel]:
    """Derived channels with an input among ``channel_ids`` or named there (None: all)."""
    rows = session.scalars(select(Channel).where(Channel.derived.is_not(None))).all()
    if channel_ids is None:
        return list(rows)
    ids = set(channel_ids)
    keys = (
        set(session.scalars(select(Channel.key).where(Channel.id.in_(ids))).all()) if ids else set()
    )
    out = []
    for ch in rows:
        terms = (ch.derived or {}).get("terms") or []
        if ch.id in ids or any(str(t[0]) in keys for t in terms):
            out.append(ch)
    return out


def derived_state_path(store: AnySampleStore, channel_id: int) -> Path:
    """Sidecar file of a derived channel's state."""
    return store.root / STATE_DIR / f"derived={channel_id}.json"


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _input_span(session: Session, ids: set[int]) -> tuple[int, int] | None:
    """``[first ISP, last ISP + 1)`` of the inputs' readings [ns], None without readings."""
    if not ids:
        return None
    lo, hi = session.execute(
        select(func.min(IntervalReading.isp_start), func.max(IntervalReading.isp_start)).where(
            IntervalReading.channel_id.in_(ids)
        )
    ).one()
    if lo is None:
        return None
    return (
        pd.Timestamp(lo).as_unit("ns").value,
        pd.Timestamp(hi).as_unit("ns").value + ISP_NS,
    )


def _utc(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name="isp_start").as_unit("ns")


def compute_derived(
    definition: DerivedDef, readings: pd.DataFrame, isps_ns: np.ndarray
) -> tuple[pd.DataFrame, dict[int, str]]:
    """The derived readings of ``isps_ns`` from the inputs' ``readings`` (long frame of
    :func:`energy.readings.read_readings`), and the reason per ISP left missing.

    Returns
    -------
    frame : DataFrame
        Indexed by ISP start (UTC): ``energy_wh`` and ``power_mean_w`` (the formula over the
        inputs' [Wh] and [W]), ``sample_count`` and ``coverage`` (the least of the inputs'),
        for the ISPs where every input has a reading with at least ``min_coverage``.
    missing : dict
        ISP start [ns] -> reason (``"no reading of pv/power"``, ``"grid/power covers 20 %
        (needs 50 %)"``, ...).
    """
    n = isps_ns.size
    energy = np.zeros(n)
    mean = np.zeros(n)
    count = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    coverage = np.ones(n)
    reasons: list[list[str]] = [[] for _ in range(n)]
    if not readings.empty:
        starts = readings["isp_start"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64")
        by_channel = {
            int(cid): frame.set_axis(starts.loc[frame.index].to_numpy(), axis=0)
            for cid, frame in readings.groupby("channel_id")
        }
    else:
        by_channel = {}
    for cid, key, coef in definition.terms:
        if cid is None:
            for r in reasons:
                r.append(f"input channel {key} is not in the database")
            continue
        frame = by_channel.get(cid)
        if frame is None:
            got = pd.DataFrame(index=isps_ns, columns=["energy_wh", "power_mean_w", "coverage"])
            got["sample_count"] = 0
        else:
            got = frame.reindex(isps_ns)
        cov = got["coverage"].to_numpy(dtype=float)
        e = got["energy_wh"].to_numpy(dtype=float)
        m = got["power_mean_w"].to_numpy(dtype=float)
        c = got["sample_count"].to_numpy(dtype=float)
        absent = np.isnan(cov)
        thin = ~absent & (cov < definition.min_coverage)
        no_mean = ~absent & ~thin & np.isnan(m)
        for i in np.flatnonzero(absent):
            reasons[i].append(f"no reading of {key}")
        for i in np.flatnonzero(thin):
            reasons[i].append(
                f"{key} covers {100 * cov[i]:.0f} % (needs {100 * definition.min_coverage:.0f} %)"
            )
        for i in np.flatnonzero(no_mean):
            reasons[i].append(f"{key} has no mean power")
        ok = ~(absent | thin | no_mean)
        energy[ok] += coef * e[ok]
        mean[ok] += coef * m[ok]
        coverage[ok] = np.minimum(coverage[ok], cov[ok])
        count[ok] = np.minimum(count[ok], np.nan_to_num(c[ok]).astype(np.int64))
    present = np.array([not r for r in reasons], dtype=bool)
    if not definition.terms:
        present[:] = False
    frame = pd.DataFrame(
        {
            "energy_wh": energy[present],
            "power_mean_w": mean[present],
            "sample_count": count[present],
            "coverage": coverage[present],
        },
        index=_utc(isps_ns[present]),
    )
    missing = {int(isps_ns[i]): "; ".join(reasons[i]) for i in np.flatnonzero(~present)}
    return frame, missing


def _write_derived(
    session: Session, definition: DerivedDef, a: int, b: int, report: UpdateReport
) -> None:
    """Recompute the derived ISPs ``[a, b)`` [ns]: readings where complete, gaps elsewhere."""
    cid = definition.channel_id
    for w0 in range(a, b, CHUNK_NS):
        w1 = min(w0 + CHUNK_NS, b)
        t0 = pd.Timestamp(w0, unit="ns", tz="UTC").to_pydatetime()
        t1 = pd.Timestamp(w1, unit="ns", tz="UTC").to_pydatetime()
        readings = read_readings(session, sorted(definition.input_ids), t0, t1)
        isps = np.arange(w0, w1, ISP_NS, dtype=np.int64)
        frame, missing = compute_derived(definition, readings, isps)
        report.isps_written += upsert_readings(session, cid, frame)
        in_range = (
            (IntervalReading.channel_id == cid)
            & (IntervalReading.isp_start >= t0)
            & (IntervalReading.isp_start < t1)
        )
        gaps_in_range = (
            (DerivedGap.channel_id == cid)
            & (DerivedGap.isp_start >= t0)
            & (DerivedGap.isp_start < t1)
        )
        session.execute(delete(DerivedGap).where(gaps_in_range))
        if missing:
            times = [pd.Timestamp(t, unit="ns", tz="UTC").to_pydatetime() for t in missing]
            session.execute(
                delete(IntervalReading).where(in_range & IntervalReading.isp_start.in_(times))
            )
            readings_changed(session, cid)
            session.execute(  # Core rows: no ORM identity to clash with an earlier round's
                insert(DerivedGap),
                [
                    {"channel_id": cid, "isp_start": t, "reason": reason[:500]}
                    for t, reason in zip(times, missing.values(), strict=True)
                ],
            )
            report.missing_isps += len(missing)
            if report.first_missing is None:
                t, reason = next(iter(missing.items()))
                when = pd.Timestamp(t, unit="ns", tz="UTC").isoformat()
                report.first_missing = f"{when}: {reason}"
        session.flush()


def _update_derived(
    store: AnySampleStore,
    session: Session,
    channels: Sequence[Channel],
    plans: list[_Plan],
    full: bool,
) -> list[tuple[Path, dict[str, Any], UpdateReport]]:
    """Recompute the derived channels after their inputs (see :func:`update_derived`)."""
    changed: dict[int, list[tuple[int, int]]] = {}
    for p in plans:
        if p.report.ranges_ns:
            changed.setdefault(p.report.channel_id, []).extend(p.report.ranges_ns)
    out = []
    for ch in channels:
        definition = derived_definition(session, ch)
        settings = definition.settings()
        path = derived_state_path(store, ch.id)
        state = None if full else _load_state(path)
        fresh = state is None or state.get("settings") != settings
        report = UpdateReport(ch.id, full=fresh, derived=True)
        if fresh:
            span = _input_span(session, definition.input_ids)
            ranges = [span] if span else []
        else:
            ranges = _union([r for i in definition.input_ids for r in changed.get(i, [])])
        for a, b in ranges:
            _write_derived(session, definition, a, b, report)
        report.ranges_ns = ranges
        if fresh or ranges:
            out.append((path, {"version": STATE_VERSION, "settings": settings}, report))
    return out


def update_derived(
    sample_store: AnySampleStore,
    session: Session,
    channel_ids: Sequence[int] | None = None,
    *,
    full: bool = False,
    commit: bool = True,
) -> list[UpdateReport]:
    """Recompute derived channels over the whole span of their inputs' readings, or where
    ``full`` is False only those never computed or whose definition changed.

    :func:`update_many` calls the same code after the measured channels, for the ISPs those
    changed; this is the entry for a derived channel on its own (``channel_ids``: derived
    channels or their inputs; None: every derived channel).
    """
    channels = derived_of(session, channel_ids)
    derived = _update_derived(sample_store, session, channels, [], full)
    if commit and derived:
        session.commit()
        for path, state, _report in derived:
            _save_state(path, state)
    return [r for _p, _s, r in derived]
