"""Raw high-frequency samples in Parquet, partitioned by channel and UTC day.

Layout: ``<root>/channel=<id>/date=<YYYY-MM-DD>/part-<n>.parquet`` with the columns
``ts`` (int64 ns since the epoch, UTC), ``value`` (float64, in the channel's unit and our sign
convention) and ``quality`` (uint8, :class:`Quality`). Appends write a new part file atomically
(write to a temporary name, then rename); :meth:`SampleStore.compact` merges a day's parts into
one sorted file without duplicates. A sample is identified by (channel, ts): appending the same
sample again changes nothing, so re-imports are idempotent.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY_NS = 86_400 * 1_000_000_000
SCHEMA = pa.schema([("ts", pa.int64()), ("value", pa.float64()), ("quality", pa.uint8())])


class Quality(enum.IntEnum):
    """Quality flag carried by every sample."""

    GOOD = 0
    STALE = 1
    INVALID = 2
    MISSING = 3


@dataclass(frozen=True, slots=True)
class Samples:
    """Samples of one channel, sorted by time, unique timestamps."""

    ts: np.ndarray  # int64 [ns since epoch, UTC]
    value: np.ndarray  # float64
    quality: np.ndarray  # uint8 (Quality)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def empty(cls) -> Samples:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint8))


@dataclass(slots=True)
class Conflicts:
    """What :meth:`SampleStore.append_new` wrote, and the samples it refused because their
    timestamp already holds a different value (with that stored value)."""

    written: int
    ts: np.ndarray  # int64 [ns]
    value: np.ndarray  # float64, offered
    quality: np.ndarray  # uint8, offered
    stored_value: np.ndarray  # float64
    stored_quality: np.ndarray  # uint8

    @classmethod
    def none(cls) -> Conflicts:
        f, q = np.empty(0, np.float64), np.empty(0, np.uint8)
        return cls(0, np.empty(0, np.int64), f, q, f.copy(), q.copy())

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def _dedupe_sorted(table: pa.Table) -> pa.Table:
    """Sort by ts and keep the last-written sample of each timestamp (stable, deterministic)."""
    n = table.num_rows
    if n == 0:
        return table
    ts = table.column("ts").to_numpy()
    if (ts[1:] > ts[:-1]).all():  # already sorted and unique (a logger's export)
        return table
    order = np.lexsort((np.arange(n), ts))  # by ts, then by write order
    ts_sorted = ts[order]
    keep = np.ones(n, dtype=bool)
    keep[:-1] = ts_sorted[1:] != ts_sorted[:-1]  # last of each run of equal ts
    return table.take(pa.array(order[keep]))


def _read_part(path: Path) -> pa.Table:
    """One part file in :data:`SCHEMA` (read as a single file, without the dataset layer)."""
    t = pq.ParquetFile(path).read()
    return t if t.schema.equals(SCHEMA, check_metadata=False) else t.cast(SCHEMA)


class SampleStore:
    """A Parquet store of raw samples under ``root``.

    Safe with several writer processes on one file system: each write or compaction of a
    channel holds an exclusive ``flock`` on ``<root>/channel=<id>/.lock``, so the check for
    stored timestamps and the part it writes are one step (two writers never both store a
    (channel, ts), nor lose a different value). For ingest workers on several machines use
    the PostgreSQL store (:mod:`energy.rawstore`).
    """

    kind = "parquet"

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @contextlib.contextmanager
    def _locked(self, channel_id: int) -> Iterator[None]:
        """Exclusive, across processes, for the writes of one channel."""
        base = self.root / f"channel={channel_id}"
        base.mkdir(parents=True, exist_ok=True)
        with open(base / ".lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _day_dir(self, channel_id: int, day_index: int) -> Path:
        day = np.datetime64(day_index, "D").astype(str)
        return self.root / f"channel={channel_id}" / f"date={day}"

    def append(
        self,
        channel_id: int,
        ts_ns: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray | None = None,
    ) -> int:
        """Append samples of one channel; returns the number of samples that were new (see
        :meth:`_append`), under the channel's write lock."""
        with self._locked(channel_id):
            return self._append(channel_id, ts_ns, value, quality)

    def _append(
        self,
        channel_id: int,
        ts_ns: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray | None = None,
    ) -> int:
        """Append samples of one channel; returns the number of samples that were new.

        Samples whose (channel, ts) is already stored with the same value and quality are
        skipped, so importing a file twice writes nothing the second time. A sample at an
        existing timestamp with a different value is a correction and replaces it (last write
        wins at compaction and read).
        """
        ts_ns = np.asarray(ts_ns, dtype=np.int64)
        value = np.asarray(value, dtype=np.float64)
        if quality is None:
            quality = np.where(np.isnan(value), Quality.INVALID, Quality.GOOD).astype(np.uint8)
        quality = np.asarray(quality, dtype=np.uint8)
        if not (ts_ns.shape == value.shape == quality.shape) or ts_ns.ndim != 1:
            raise ValueError(
                f"channel {channel_id}: ts, value and quality must be 1-D of equal length, "
                f"got {ts_ns.shape}, {value.shape}, {quality.shape}"
            )
        if ts_ns.size == 0:
            return 0
        written = 0
        days = ts_ns // DAY_NS
        groups: list[tuple[int, slice | np.ndarray]]
        if (ts_ns[1:] >= ts_ns[:-1]).all():  # in time order: each day a slice, no masks
            cuts = np.flatnonzero(np.diff(days)) + 1
            bounds = zip(np.r_[0, cuts].tolist(), np.r_[cuts, ts_ns.size].tolist())
            groups = [(int(days[a]), slice(a, b)) for a, b in bounds]
        else:
            groups = [(int(d), days == d) for d in np.unique(days)]
        for day, sel in groups:
            new = pa.table(
                {"ts": ts_ns[sel], "value": value[sel], "quality": quality[sel]}, schema=SCHEMA
            )
            new = _dedupe_sorted(new)
            parts = self._parts(channel_id, int(day))
            new_min_ts = int(new.column("ts")[0].as_py())
            if parts and self._max_ts(parts) >= new_min_ts:
                # Overlaps what is stored: keep only samples that are new or changed.
                existing = self._read_day(channel_id, int(day))
                if existing is not None and existing.num_rows:
                    new = self._only_changed(existing, new)
            if new.num_rows == 0:
                continue
            self._write_part(self._day_dir(channel_id, int(day)), new)
            written += new.num_rows
        return written

    def append_new(
        self,
        channel_id: int,
        ts_ns: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray,
    ) -> Conflicts:
        """:meth:`_append_new` under the channel's write lock."""
        with self._locked(channel_id):
            return self._append_new(channel_id, ts_ns, value, quality)

    def _append_new(
        self,
        channel_id: int,
        ts_ns: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray,
    ) -> Conflicts:
        """Append only samples at timestamps not stored yet; never replace a stored value.

        A sample equal to the stored one (value and quality; NaN equals NaN) is skipped, as
        in :meth:`append`. A sample at a stored timestamp with a different value or quality
        is *not* written: it is returned in :class:`Conflicts` with the stored value, for the
        caller to quarantine. (A correction goes through :meth:`append`, which replaces.)
        Duplicate timestamps within the call keep the last one.
        """
        ts_ns = np.asarray(ts_ns, dtype=np.int64)
        value = np.asarray(value, dtype=np.float64)
        quality = np.asarray(quality, dtype=np.uint8)
        if not (ts_ns.shape == value.shape == quality.shape) or ts_ns.ndim != 1:
            raise ValueError(
                f"channel {channel_id}: ts, value and quality must be 1-D of equal length, "
                f"got {ts_ns.shape}, {value.shape}, {quality.shape}"
            )
        out = Conflicts.none()
        if ts_ns.size == 0:
            return out
        new_all = _dedupe_sorted(
            pa.table({"ts": ts_ns, "value": value, "quality": quality}, schema=SCHEMA)
        )
        ts_all = new_all.column("ts").to_numpy()
        days = ts_all // DAY_NS
        conflicts: list[tuple[np.ndarray, ...]] = []
        for day in np.unique(days).tolist():
            new = new_all.filter(pa.array(days == day))
            parts = self._parts(channel_id, int(day))
            if parts and self._max_ts(parts) >= int(new.column("ts")[0].as_py()):
                existing = self._read_day(channel_id, int(day))
                if existing is not None and existing.num_rows:
                    ets = existing.column("ts").to_numpy()
                    nts = new.column("ts").to_numpy()
                    idx = np.minimum(np.searchsorted(ets, nts), len(ets) - 1)
                    at_stored = ets[idx] == nts
                    ev = existing.column("value").to_numpy()[idx]
                    eq = existing.column("quality").to_numpy()[idx]
                    nv = new.column("value").to_numpy()
                    nq = new.column("quality").to_numpy()
                    same = ((ev == nv) | (np.isnan(ev) & np.isnan(nv))) & (eq == nq)
                    clash = at_stored & ~same
                    if clash.any():
                        conflicts.append((nts[clash], nv[clash], nq[clash], ev[clash], eq[clash]))
                    new = new.filter(pa.array(~at_stored))
            if new.num_rows == 0:
                continue
            self._write_part(self._day_dir(channel_id, int(day)), new)
            out.written += new.num_rows
        if conflicts:
            out.ts, out.value, out.quality, out.stored_value, out.stored_quality = (
                np.concatenate(c) for c in zip(*conflicts, strict=True)
            )
        return out

    @staticmethod
    def _only_changed(existing: pa.Table, new: pa.Table) -> pa.Table:
        ets = existing.column("ts").to_numpy()
        nts = new.column("ts").to_numpy()
        idx = np.searchsorted(ets, nts)
        idx_c = np.minimum(idx, len(ets) - 1)
        same_ts = ets[idx_c] == nts
        ev = existing.column("value").to_numpy()[idx_c]
        nv = new.column("value").to_numpy()
        eq = existing.column("quality").to_numpy()[idx_c]
        nq = new.column("quality").to_numpy()
        same_val = (ev == nv) | (np.isnan(ev) & np.isnan(nv))
        unchanged = same_ts & same_val & (eq == nq)
        return new.filter(pa.array(~unchanged))

    @staticmethod
    def _write_part(directory: Path, table: pa.Table) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = directory / f".{name}.tmp"
        # Dictionary encoding only for the quality flags: tried on float values it costs 3x
        # the write time (and a larger file) for 1 Hz samples, which are nearly all distinct.
        # Timestamps delta-encoded: regular sampling packs to a few bits (a third of the file,
        # read twice as fast). Values byte-stream-split: zstd then finds the repeating
        # exponent and high mantissa bytes; the same size, a third less CPU to write and read.
        # Statistics only of ``ts``: its min/max are what appends and the pipeline read from
        # the footers; those of the values cost a sixth of the write and are never read.
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            use_dictionary=["quality"],
            column_encoding={"ts": "DELTA_BINARY_PACKED", "value": "BYTE_STREAM_SPLIT"},
            write_statistics=["ts"],
        )
        os.replace(tmp, directory / name)

    @staticmethod
    def _max_ts(parts: list[Path]) -> int:
        """Largest stored timestamp of the parts, from the Parquet footers (no data read)."""
        best = np.iinfo(np.int64).min
        for p in parts:
            meta = pq.ParquetFile(p).metadata
            for i in range(meta.num_row_groups):
                stats = meta.row_group(i).column(0).statistics
                if stats is None or not stats.has_min_max:
                    return np.iinfo(np.int64).max  # unknown: assume overlap
                best = max(best, int(stats.max))
        return int(best)

    def _parts(self, channel_id: int, day_index: int) -> list[Path]:
        d = self._day_dir(channel_id, day_index)
        if not d.is_dir():
            return []
        # Write order: by modification time, then name (parts written in one ns are rare).
        return sorted(d.glob("part-*.parquet"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def _read_day(self, channel_id: int, day_index: int) -> pa.Table | None:
        parts = self._parts(channel_id, day_index)
        if not parts:
            return None
        tables = [_read_part(p) for p in parts]
        return _dedupe_sorted(pa.concat_tables(tables) if len(tables) > 1 else tables[0])

    def days(self, channel_id: int) -> list[int]:
        """Day indices (days since the epoch, UTC) that hold samples of a channel."""
        base = self.root / f"channel={channel_id}"
        if not base.is_dir():
            return []
        out = []
        for d in base.glob("date=*"):
            if any(d.glob("part-*.parquet")):
                out.append(int(np.datetime64(d.name.removeprefix("date="), "D").astype(np.int64)))
        return sorted(out)

    def channels(self) -> list[int]:
        """Channel ids with stored samples."""
        if not self.root.is_dir():
            return []
        return sorted(int(p.name.removeprefix("channel=")) for p in self.root.glob("channel=*"))

    def read(
        self, channel_id: int, start_ns: int | None = None, end_ns: int | None = None
    ) -> Samples:
        """Samples of a channel in ``[start_ns, end_ns)`` as NumPy arrays, sorted and unique.

        Each day's columns are cut to the range by binary search (they are sorted), only on
        the first and last day, and joined once.
        """
        cols: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for day in self.days(channel_id):
            if start_ns is not None and (day + 1) * DAY_NS <= start_ns:
                continue
            if end_ns is not None and day * DAY_NS >= end_ns:
                continue
            t = self._read_day(channel_id, day)
            if t is None or t.num_rows == 0:
                continue
            ts = t.column("ts").to_numpy()
            lo = 0 if start_ns is None else int(np.searchsorted(ts, start_ns, "left"))
            hi = ts.size if end_ns is None else int(np.searchsorted(ts, end_ns, "left"))
            if lo >= hi:
                continue
            cols.append(
                (
                    ts[lo:hi],
                    t.column("value").to_numpy()[lo:hi],
                    t.column("quality").to_numpy()[lo:hi],
                )
            )
        if not cols:
            return Samples.empty()
        if len(cols) == 1:
            return Samples(*(np.ascontiguousarray(a) for a in cols[0]))
        return Samples(*(np.concatenate(parts) for parts in zip(*cols)))

    def compact(self, channel_id: int | None = None) -> int:
        """Merge each day's parts into one sorted, duplicate-free file; returns files removed."""
        removed = 0
        for ch in [channel_id] if channel_id is not None else self.channels():
            with self._locked(ch):
                for day in self.days(ch):
                    parts = self._parts(ch, day)
                    if len(parts) <= 1:
                        continue
                    merged = self._read_day(ch, day)
                    assert merged is not None
                    self._write_part(self._day_dir(ch, day), merged)
                    for p in parts:
                        p.unlink()
                        removed += 1
        return removed
