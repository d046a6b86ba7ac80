"""Store and forward: sample batches to the energy store, spooled durably when it is down.

Samples are delivered to a :class:`SampleSink` in batches. When the sink fails, the batch goes
to a local SQLite spool (``synchronous=FULL``: the rows are on disk before ``append`` returns)
and everything after it goes there too, so the order is kept. :meth:`StoreAndForward.flush`
first drains the spool oldest-first; a row is deleted only after the sink accepted it. A crash
between delivery and deletion re-delivers rows the store already has, which the store ignores
(idempotent by channel and timestamp): every sample arrives exactly once.

A sink that acknowledges end to end (:class:`AckedSink`, e.g. the MQTT sink: the broker's
PUBACK is not "stored", the centre's acknowledgement on the gateway's ack topic is) is used
differently: every batch is taken by the spool *before* it is sent, sent with a batch id
(``<spool id>:<first seq>-<last seq>``), and its rows are deleted only when the centre
acknowledges that id (:meth:`StoreAndForward.acknowledge`, from any thread). At most
``max_inflight`` batches wait for their acknowledgement; one not acknowledged in
``ack_timeout_s`` is sent again (the timeout doubles per attempt up to ``ack_timeout_max_s``),
and every waiting batch is sent again after the sink reconnects (a broker that restarted may
have lost what it had not saved). A SIGKILL at any moment loses nothing polled and flushed:
the rows are on disk, and the next start sends them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class AckedSink(Protocol):
    """A sink whose ``send`` only hands a batch over; the store acknowledges it later.

    ``send(batch_id, samples)`` returns once the transport took the batch (e.g. the broker's
    PUBACK) and raises otherwise. The sink calls ``on_ack(batch_id)`` (from any thread) when the
    store has stored the batch, and ``on_reconnect()`` after a new connection to the transport
    (what was in flight may have been lost with the old one).
    """

    on_ack: Callable[[str], None] | None
    on_reconnect: Callable[[], None] | None

    def send(self, batch_id: str, samples: Sequence[Sample]) -> None: ...


BATCH_ID = re.compile(r"(?P<spool>[0-9a-f]{32}):(?P<first>\d+)-(?P<last>\d+)")
"""A batch id: the spool's id and the first and last sequence number of its rows."""


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
    """An append-only, durable queue of samples in a SQLite file.

    Sequence numbers only grow (``AUTOINCREMENT``: never reused after a delete), and the spool
    has a random id made when the file is created, so ``(id, seq)`` names a row for good.
    Safe to use from several threads (one lock around the connection).
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "channel TEXT NOT NULL, ts_ns INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value TEXT)")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR IGNORE INTO spool_meta (key, value) VALUES ('id', ?)",
                (uuid.uuid4().hex,),
            )
        self.id = str(
            self.db.execute("SELECT value FROM spool_meta WHERE key = 'id'").fetchone()[0]
        )

    def append(self, samples: Sequence[Sample]) -> int:
        """Store samples durably (on disk when this returns); the last sequence number."""
        rows = [
            (s.channel, s.ts_ns, None if math.isnan(s.value) else s.value, s.quality)
            for s in samples
        ]
        with self._lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO spool (channel, ts_ns, value, quality) VALUES (?, ?, ?, ?)", rows
            )
            last = self.db.execute("SELECT max(seq) FROM spool").fetchone()[0]
        return int(last or 0)

    @staticmethod
    def _samples(rows: list[tuple]) -> list[Sample]:
        return [Sample(c, t, math.nan if v is None else v, q) for _, c, t, v, q in rows]

    def peek(self, limit: int) -> tuple[int, list[Sample]]:
        """The oldest ``limit`` samples and the sequence number of the last one."""
        _first, last, samples = self.after(0, limit)
        return last, samples

    def after(self, seq: int, limit: int) -> tuple[int, int, list[Sample]]:
        """``(first seq, last seq, samples)`` of the oldest ``limit`` rows after ``seq``."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, channel, ts_ns, value, quality FROM spool WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        if not rows:
            return 0, 0, []
        return rows[0][0], rows[-1][0], self._samples(rows)

    def between(self, first: int, last: int) -> list[Sample]:
        """The rows with ``first <= seq <= last`` still in the spool, oldest first."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, channel, ts_ns, value, quality FROM spool "
                "WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (first, last),
            ).fetchall()
        return self._samples(rows)

    def ack(self, upto_seq: int) -> None:
        """Delete delivered samples (``seq <= upto_seq``)."""
        self.delete_range(0, upto_seq)

    def delete_range(self, first: int, last: int) -> int:
        """Delete the rows ``first <= seq <= last`` (stored by the centre); how many went."""
        with self._lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute("DELETE FROM spool WHERE seq BETWEEN ? AND ?", (first, last))
        return int(cur.rowcount)

    def __len__(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self.db.close()


@dataclass
class _InFlight:
    """A batch sent and not yet acknowledged by the centre."""

    first: int
    last: int
    size: int
    due: float  # monotonic time of the next send [s]
    attempts: int


class StoreAndForward:
    """Batches samples to a sink; spools them on local disk while the sink fails.

    Parameters
    ----------
    sink : SampleSink
        The energy store (idempotent by channel and timestamp), or an :class:`AckedSink`
        (the spool takes every batch before it is sent; rows go when the centre acknowledges).
    spool_path : Path
        SQLite file of the spool; survives restarts (undelivered samples are sent first).
    batch_max : int
        Largest batch handed to the sink at once [samples].
    max_inflight : int
        Batches sent to an :class:`AckedSink` that may wait for their acknowledgement at once.
    ack_timeout_s, ack_timeout_max_s : float
        A batch not acknowledged in this time is sent again; the wait doubles per attempt up
        to the maximum [s].
    """

    def __init__(
        self,
        sink: SampleSink,
        spool_path: Path | str,
        batch_max: int = 5000,
        max_inflight: int = 4,
        ack_timeout_s: float = 60.0,
        ack_timeout_max_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.sink = sink
        self.spool = Spool(spool_path)
        self.batch_max = batch_max
        self.buffer: list[Sample] = []
        self.delivered = 0
        self.spooled = 0
        self.failures = 0
        self.resent = 0
        self.last_error = ""
        self._lock = asyncio.Lock()
        self.acked = isinstance(sink, AckedSink)
        self.max_inflight = max_inflight
        self.ack_timeout_s = ack_timeout_s
        self.ack_timeout_max_s = ack_timeout_max_s
        self._clock = clock
        self._inflight: dict[str, _InFlight] = {}
        self._sent_upto = 0  # rows up to this seq were sent (in flight or acknowledged)
        self._acks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._resend_all = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if isinstance(sink, AckedSink):
            sink.on_ack = self.acknowledge
            sink.on_reconnect = self._reconnected

    # ------------------------------------------------------------ acknowledgements (any thread)

    def acknowledge(self, batch_id: str) -> None:
        """The centre stored batch ``batch_id``: its rows may go (applied at the next flush)."""
        self._acks.put(batch_id)
        self._poke()

    def _reconnected(self) -> None:
        self._resend_all = True
        self._poke()

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wake.set)

    def _apply_acks(self) -> None:
        for _ in range(1_000_000):  # bounded: the queue holds what arrived so far
            try:
                batch_id = self._acks.get_nowait()
            except queue.Empty:
                return
            m = BATCH_ID.fullmatch(batch_id)
            if m is None or m["spool"] != self.spool.id:
                log.warning("acknowledgement of an unknown batch %r ignored", batch_id[:80])
                continue
            first, last = int(m["first"]), int(m["last"])
            removed = self.spool.delete_range(first, last)
            self.delivered += removed
            self._inflight.pop(batch_id, None)

    # ------------------------------------------------------------------------------- sending

    def put(self, samples: Sequence[Sample]) -> None:
        """Queue samples for the next flush (called by the poll loop, once per device poll).

        With an :class:`AckedSink` the samples go to the spool at once (on disk when this
        returns: a SIGKILL loses nothing polled); otherwise to a memory buffer.
        """
        if self.acked and samples:
            self.spool.append(samples)
            self.spooled += len(samples)
            return
        self.buffer.extend(samples)

    async def _deliver(self, samples: Sequence[Sample]) -> bool:
        try:
            await asyncio.to_thread(self.sink.write, samples)
        except Exception as exc:  # any failure of the store: keep the data, retry later
            self._failed(exc)
            return False
        self.delivered += len(samples)
        return True

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("energy store unavailable, spooling: %s", self.last_error)

    async def _send(self, batch_id: str, samples: Sequence[Sample]) -> bool:
        try:
            await asyncio.to_thread(self.sink.send, batch_id, samples)  # type: ignore[attr-defined]
        except Exception as exc:  # the broker is away: the rows stay in the spool
            self._failed(exc)
            return False
        return True

    def _timeout(self, attempts: int) -> float:
        return min(self.ack_timeout_s * 2 ** max(attempts - 1, 0), self.ack_timeout_max_s)

    async def _send_acked(self) -> None:
        """Send again what is due, then new rows while fewer than ``max_inflight`` wait."""
        self._apply_acks()
        now = self._clock()
        resend_all, self._resend_all = self._resend_all, False
        for batch_id, f in list(self._inflight.items()):
            if not resend_all and f.due > now:
                continue
            rows = self.spool.between(f.first, f.last)
            if not rows:  # acknowledged meanwhile (a late acknowledgement of an older send)
                self._inflight.pop(batch_id, None)
                continue
            if not await self._send(batch_id, rows):
                self._resend_all = True  # after the reconnect, everything again
                return
            f.attempts += 1
            f.due = self._clock() + self._timeout(f.attempts)
            self.resent += 1
        for _ in range(1_000_000):  # bounded: each round sends up to batch_max rows
            if len(self._inflight) >= self.max_inflight:
                return
            first, last, rows = self.spool.after(self._sent_upto, self.batch_max)
            if not rows:
                return
            batch_id = f"{self.spool.id}:{first}-{last}"
            if not await self._send(batch_id, rows):
                return
            self._inflight[batch_id] = _InFlight(
                first, last, len(rows), self._clock() + self._timeout(1), 1
            )
            self._sent_upto = last
            self._apply_acks()

    async def flush(self) -> None:
        """Deliver the spool (oldest first), then the buffer; spool what cannot be delivered.

        With an :class:`AckedSink` the buffer goes to the spool first, then what is due is sent.
        """
        async with self._lock:
            batch, self.buffer = self.buffer, []
            if self.acked:
                if batch:
                    self.spool.append(batch)  # on disk before anything is sent
                    self.spooled += len(batch)
                await self._send_acked()
                return
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
        """Flush every ``interval_s`` until ``stop`` is set, then flush once more.

        An acknowledgement or a reconnection wakes the loop at once (the next batch goes out
        without waiting for the interval).
        """
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        next_flush = self._clock() + interval_s
        try:
            while not stop.is_set():
                wait = max(0.0, next_flush - self._clock())
                stopped = asyncio.create_task(stop.wait())
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait({stopped, woken}, timeout=wait, return_when="FIRST_COMPLETED")
                stopped.cancel()
                woken.cancel()
                self._wake.clear()
                if self._clock() >= next_flush or stop.is_set():
                    next_flush = self._clock() + interval_s
                    await self.flush()
                elif self.acked:  # woken by an acknowledgement: top up the window
                    async with self._lock:
                        await self._send_acked()
            await self.flush()
        finally:
            self._loop = self._wake = None

    async def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the acknowledgements of what was sent; True if none
        is outstanding (an :class:`AckedSink`; other sinks are settled after each flush)."""
        if not self.acked:
            return True
        deadline = self._clock() + timeout_s
        while True:  # bounded by the deadline
            async with self._lock:
                await self._send_acked()
                done = not self._inflight and len(self.spool) == 0
            if done:
                return True
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(0.05)

    @property
    def inflight(self) -> int:
        """Batches sent and waiting for the centre's acknowledgement."""
        return len(self._inflight)

    @property
    def pending(self) -> int:
        """Samples not yet delivered (buffer plus spool)."""
        return len(self.buffer) + len(self.spool)

    def close(self) -> None:
        self.spool.close()
