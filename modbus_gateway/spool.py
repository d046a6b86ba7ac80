"""Store and forward: sample batches to the energy store, spooled durably when it is down.

Samples are delivered to a :class:`SampleSink` in batches. When the sink fails, the batch goes
to a local SQLite spool (``synchronous=FULL``: the rows are on disk before ``append`` returns)
and everything after it goes there too, so the order is kept. :meth:`StoreAndForward.flush`
first drains the spool oldest-first; a row is deleted only after the sink accepted it. A crash
between delivery and deletion re-delivers rows the store already has, which the store ignores
(idempotent by channel and timestamp): every sample arrives exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from energy.errors import NoaberError
from energy.samples import SampleStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one channel: ``ts_ns`` [ns since the epoch, UTC], value, quality."""

    channel: str
    ts_ns: int
    value: float
    quality: int


class SampleSink(Protocol):
    """Where sample batches go; ``write`` raises if the batch was not stored."""

    def write(self, samples: Sequence[Sample]) -> None: ...


class SampleStoreSink:
    """Writes batches to :class:`energy.samples.SampleStore` (channel key -> channel id).

    Every append adds a part file to the channel's day and reads the day's parts to skip
    duplicates; a gateway that runs for months would pile up parts, so every
    ``compact_every`` writes the written channels are compacted (one file per day again).
    """

    def __init__(self, store: SampleStore, channel_ids: Mapping[str, int], compact_every: int = 20):
        self.store = store
        self.channel_ids = dict(channel_ids)
        self.compact_every = compact_every
        self._writes = 0
        self._dirty: set[int] = set()

    def check(self, channels: Sequence[str]) -> None:
        """Refuse to start with channels that have no channel id (they could never be stored)."""
        unknown = sorted(set(channels) - set(self.channel_ids))
        if unknown:
            raise NoaberError(f"no channel id for gateway channel(s): {', '.join(unknown)}")

    def write(self, samples: Sequence[Sample]) -> None:
        by_channel: dict[str, list[Sample]] = {}
        for s in samples:
            by_channel.setdefault(s.channel, []).append(s)
        for key, rows in by_channel.items():
            cid = self.channel_ids[key]
            self.store.append(
                cid,
                np.fromiter((r.ts_ns for r in rows), np.int64, len(rows)),
                np.fromiter((r.value for r in rows), np.float64, len(rows)),
                np.fromiter((r.quality for r in rows), np.uint8, len(rows)),
            )
            self._dirty.add(cid)
        self._writes += 1
        if self.compact_every and self._writes % self.compact_every == 0:
            for cid in sorted(self._dirty):
                self.store.compact(cid)
            self._dirty.clear()


class MemorySink:
    """Keeps samples in memory, keyed by (channel, ts) like the store (tests, benchmarks)."""

    def __init__(self) -> None:
        self.samples: dict[tuple[str, int], Sample] = {}
        self.writes = 0

    def write(self, samples: Sequence[Sample]) -> None:
        self.writes += 1
        for s in samples:
            self.samples[(s.channel, s.ts_ns)] = s


class Spool:
    """An append-only, durable queue of samples in a SQLite file."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "channel TEXT NOT NULL, ts_ns INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL)"
        )

    def append(self, samples: Sequence[Sample]) -> None:
        rows = [
            (s.channel, s.ts_ns, None if math.isnan(s.value) else s.value, s.quality)
            for s in samples
        ]
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO spool (channel, ts_ns, value, quality) VALUES (?, ?, ?, ?)", rows
            )

    def peek(self, limit: int) -> tuple[int, list[Sample]]:
        """The oldest ``limit`` samples and the sequence number of the last one."""
        rows = self.db.execute(
            "SELECT seq, channel, ts_ns, value, quality FROM spool ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        if not rows:
            return 0, []
        samples = [Sample(c, t, math.nan if v is None else v, q) for _, c, t, v, q in rows]
        return rows[-1][0], samples

    def ack(self, upto_seq: int) -> None:
        """Delete delivered samples (``seq <= upto_seq``)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM spool WHERE seq <= ?", (upto_seq,))

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        self.db.close()


class StoreAndForward:
    """Batches samples to a sink; spools them on local disk while the sink fails.

    Parameters
    ----------
    sink : SampleSink
        The energy store (idempotent by channel and timestamp).
    spool_path : Path
        SQLite file of the spool; survives restarts (undelivered samples are sent first).
    batch_max : int
        Largest batch handed to the sink at once [samples].
    """

    def __init__(self, sink: SampleSink, spool_path: Path | str, batch_max: int = 5000):
        self.sink = sink
        self.spool = Spool(spool_path)
        self.batch_max = batch_max
        self.buffer: list[Sample] = []
        self.delivered = 0
        self.spooled = 0
        self.failures = 0
        self.last_error = ""
        self._lock = asyncio.Lock()

    def put(self, samples: Sequence[Sample]) -> None:
        """Queue samples for the next flush (cheap; called by the poll loop)."""
        self.buffer.extend(samples)

    async def _deliver(self, samples: Sequence[Sample]) -> bool:
        try:
            await asyncio.to_thread(self.sink.write, samples)
        except Exception as exc:  # any failure of the store: keep the data, retry later
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("energy store unavailable, spooling: %s", self.last_error)
            return False
        self.delivered += len(samples)
        return True

    async def flush(self) -> None:
        """Deliver the spool (oldest first), then the buffer; spool what cannot be delivered."""
        async with self._lock:
            batch, self.buffer = self.buffer, []
            if len(self.spool) == 0:
                ok = True
                for i in range(0, len(batch), self.batch_max):
                    part = batch[i : i + self.batch_max]
                    if not ok or not await self._deliver(part):
                        ok = False
                        self.spool.append(part)
                        self.spooled += len(part)
                return
            if batch:
                self.spool.append(batch)  # behind what is already waiting: order kept
                self.spooled += len(batch)
            await self._drain()

    async def _drain(self) -> None:
        for _ in range(1_000_000):  # bounded: each round removes up to batch_max rows
            seq, rows = self.spool.peek(self.batch_max)
            if not rows or not await self._deliver(rows):
                return
            self.spool.ack(seq)

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Flush every ``interval_s`` until ``stop`` is set, then flush once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            await self.flush()

    @property
    def pending(self) -> int:
        """Samples not yet delivered (buffer plus spool)."""
        return len(self.buffer) + len(self.spool)

    def close(self) -> None:
        self.spool.close()
