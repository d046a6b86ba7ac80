"""Raw samples to interval readings, incrementally.

:func:`update_intervals` turns the stored raw samples of a channel
(:class:`energy.samples.SampleStore`) into interval readings per ISP (energy_wh, mean/min/max
power, sample count, coverage) in SQL (:func:`energy.readings.upsert_readings`).

Incremental by construction. A small JSON sidecar per channel in the sample store
(``<root>/_pipeline/channel=<id>.json``) records which Parquet part files (name, size,
modification time) have been aggregated, the newest sample seen and the settings used. An
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

ISPs without data inside a recomputed range are written only where a reading existed
before (then with count and coverage 0), so stale values never survive.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.kernels.counters import counter_to_buckets
from energy.kernels.power import DEFAULT_MAX_GAP_NS, BucketResult, power_to_buckets
from energy.models import Channel, IntervalReading, Quantity
from energy.readings import upsert_readings
from energy.samples import SampleStore
from energy.timegrid import ISP_NS, floor_isp_ns

STATE_DIR = "_pipeline"
STATE_VERSION = 1
KINDS = ("power", "counter")
WINDOW_NS = 86_400 * 1_000_000_000
"""Recomputation proceeds in windows of one day (bounded memory for long channels)."""


@dataclass
class UpdateReport:
    """What one :func:`update_intervals` call did.

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
        Whether everything was recomputed (first run or changed settings).
    """

    channel_id: int
    new_parts: int = 0
    samples_read: int = 0
    isps_written: int = 0
    ranges_ns: list[tuple[int, int]] = field(default_factory=list)
    full: bool = False


def state_path(store: SampleStore, channel_id: int) -> Path:
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


def _clusters(ts: np.ndarray, join_ns: int) -> list[tuple[int, int]]:
    """``[(tmin, tmax)]`` of sorted timestamps, split where they lie more than ``join_ns`` apart."""
    if ts.size == 0:
        return []
    cut = np.flatnonzero(np.diff(ts) > join_ns)
    starts = np.concatenate(([0], cut + 1))
    ends = np.concatenate((cut, [ts.size - 1]))
    return [(int(ts[a]), int(ts[b])) for a, b in zip(starts, ends)]


def _aggregate(
    kind: str, ts: np.ndarray, v: np.ndarray, q: np.ndarray, max_gap_ns: int, wrap_wh: float | None
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Bucket starts, reading frame and 'has data' mask for the samples of one window."""
    if kind == "power":
        res: Any = power_to_buckets(ts, v, ISP_NS, 0, max_gap_ns, q, n_threads=1)
        assert isinstance(res, BucketResult)
    else:
        res = counter_to_buckets(ts, v, ISP_NS, 0, wrap_wh, max_gap_ns, q)
    has = (res.count > 0) | (res.coverage > 0) | (res.invalid_count > 0)
    return res.start_ns, res.to_frame(), has


def _recompute(
    store: SampleStore,
    session: Session,
    channel_id: int,
    w0: int,
    w1: int,
    kind: str,
    gap: int,
    wrap_wh: float | None,
    report: UpdateReport,
) -> int:
    """Recompute and write the ISPs in ``[w0, w1)``; returns the rows written.

    Samples within ``gap`` outside the window are read too: every sample interval that
    reaches into the window and is integrated (no longer than ``gap``) has both ends there,
    so the window's ISPs come out exactly as from a computation over all samples.
    """
    s = store.read(channel_id, w0 - gap, w1 + gap)
    report.samples_read += len(s)
    q = select(IntervalReading.isp_start).where(
        IntervalReading.channel_id == channel_id,
        IntervalReading.isp_start >= pd.Timestamp(w0, unit="ns", tz="UTC").to_pydatetime(),
        IntervalReading.isp_start < pd.Timestamp(w1, unit="ns", tz="UTC").to_pydatetime(),
    )
    existing = np.array(
        [pd.Timestamp(t).as_unit("ns").value for t in session.scalars(q)], dtype=np.int64
    )
    written = 0
    starts = np.empty(0, np.int64)
    if len(s):
        starts, frame, has = _aggregate(kind, s.ts, s.value, s.quality, gap, wrap_wh)
        keep = (starts >= w0) & (starts < w1) & (has | np.isin(starts, existing))
        written += upsert_readings(session, channel_id, frame[keep])
    # Readings with no samples left around them (nothing to compute from): empty them.
    orphans = existing[~np.isin(existing, starts)]
    if orphans.size:
        empty = pd.DataFrame(
            {"energy_wh": 0.0, "sample_count": 0, "coverage": 0.0},
            index=pd.DatetimeIndex(pd.to_datetime(orphans, unit="ns", utc=True)).as_unit("ns"),
        )
        written += upsert_readings(session, channel_id, empty)
    return written


def update_intervals(
    sample_store: SampleStore,
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
    sample_store : SampleStore
        The Parquet store of raw samples.
    session : Session
        SQL session; readings are written with :func:`energy.readings.upsert_readings`.
    channel_id : int
        The channel.
    max_gap_ns : int
        Longest sample interval integrated [ns] (default 2 h).
    kind : {"power", "counter"}
        Samples are power [W] (trapezoid rule) or an energy-counter register [Wh].
    wrap_wh : float, optional
        Register range of a counter [Wh] (see :func:`energy.kernels.counter_to_buckets`).
    full : bool
        Recompute all ISPs from all samples.
    commit : bool
        Commit the session, then record the new state. With ``commit=False`` the state is
        not advanced (the next call recomputes the same ranges, which is harmless).

    Returns
    -------
    UpdateReport
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if int(max_gap_ns) != max_gap_ns or max_gap_ns < 0:
        raise ValueError(f"max_gap_ns must be a non-negative integer [ns], got {max_gap_ns!r}")
    settings = {"kind": kind, "max_gap_ns": int(max_gap_ns), "wrap_wh": wrap_wh}
    path = state_path(sample_store, channel_id)
    state = None if full else _load_state(path)
    if state is not None and state.get("settings") != settings:
        state = None
    report = UpdateReport(channel_id, full=state is None)
    parts_now = _parts(sample_store, channel_id)
    seen: dict[str, list[int]] = state["parts"] if state else {}
    new = [rel for rel, sig in parts_now.items() if seen.get(rel) != sig]
    report.new_parts = len(new)
    max_seen = int(state["max_ts"]) if state and state.get("max_ts") is not None else None
    if not new and state is not None:
        return report

    base = sample_store.root / f"channel={channel_id}"
    all_ts = [pq.read_table(base / rel, columns=["ts"]).column("ts").to_numpy() for rel in new]
    new_ts = np.unique(np.concatenate(all_ts)) if all_ts else np.empty(0, np.int64)
    gap = int(max_gap_ns)
    if state is None:
        clusters = [(int(new_ts[0]), int(new_ts[-1]))] if new_ts.size else []
    else:
        clusters = _clusters(new_ts, 2 * gap + 2 * ISP_NS)
    for tmin, tmax in clusters:
        if state is None:
            a, b = floor_isp_ns(tmin), floor_isp_ns(tmax) + ISP_NS
        elif max_seen is not None and tmin > max_seen:
            # Appended: only the interval from the last valid sample before tmin is new.
            s = sample_store.read(channel_id, tmin - gap, tmin)
            report.samples_read += len(s)
            valid = (s.quality == 0) & np.isfinite(s.value)
            a = floor_isp_ns(int(s.ts[valid][-1]) if valid.any() else tmin)
            b = floor_isp_ns(tmax) + ISP_NS
        else:
            a = floor_isp_ns(tmin - gap)
            b = floor_isp_ns(tmax + gap) + ISP_NS
        for w0 in range(a, b, WINDOW_NS):
            w1 = min(w0 + WINDOW_NS, b)
            report.isps_written += _recompute(
                sample_store, session, channel_id, w0, w1, kind, gap, wrap_wh, report
            )
        report.ranges_ns.append((a, b))
    if commit:
        session.commit()
        newest = int(new_ts[-1]) if new_ts.size else None
        if max_seen is not None and (newest is None or max_seen > newest):
            newest = max_seen
        _save_state(
            path,
            {
                "version": STATE_VERSION,
                "settings": settings,
                "parts": parts_now,
                "max_ts": newest,
            },
        )
    return report


def kind_of(quantity: Quantity) -> str | None:
    """Pipeline kind of a channel quantity: power, counter, or None (no interval energy)."""
    if quantity == Quantity.POWER:
        return "power"
    if quantity in (Quantity.ENERGY_IMPORT, Quantity.ENERGY_EXPORT):
        return "counter"
    return None


def update_all(
    sample_store: SampleStore,
    session: Session,
    channel_ids: list[int] | None = None,
    *,
    max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    full: bool = False,
) -> list[UpdateReport]:
    """:func:`update_intervals` for every stored channel whose quantity has an energy.

    Power channels are integrated, energy-counter channels differenced (without a register
    range: every drop counts as a reset; call :func:`update_intervals` with ``wrap_wh`` for a
    wrapping register); other quantities (state of charge, temperature, ...) are skipped.
    ``channel_ids`` limits the channels (default: all channels in the store).
    """
    ids = sample_store.channels() if channel_ids is None else list(channel_ids)
    if not ids:
        return []
    rows = session.scalars(select(Channel).where(Channel.id.in_(ids))).all()
    known = {ch.id: ch for ch in rows}
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"channel(s) {', '.join(map(str, missing))} not in the database")
    reports = []
    for cid in ids:
        kind = kind_of(known[cid].quantity)
        if kind is None:
            continue
        reports.append(
            update_intervals(
                sample_store, session, cid, max_gap_ns=max_gap_ns, kind=kind, full=full
            )
        )
    return reports
