"""The centre's ingest: the gateways' MQTT sample batches into the energy store, exactly once.

:class:`Ingest` subscribes to the gateways' topic (:class:`modbus_gateway.mqtt.MqttSampleConsumer`),
maps each sample's channel key to its channel id from the database (reloaded once when a key
is unknown), stores the batch in the :class:`~energy.samples.SampleStore` and acknowledges it
end to end; a sample it cannot store goes to the dead-letter file with the reason. With
``intervals_every_s`` it also runs the incremental interval pipeline
(:func:`energy.pipeline.update_many`) for the channels written since the last round, holding
the store writes while the pipeline reads. ``noaber gateway consume`` runs it
(:mod:`noaber.cli.gateway`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError

from energy.db import make_engine, session_factory
from energy.errors import NoaberError
from energy.models import Channel
from energy.pipeline import update_many
from energy.samples import SampleStore
from energy.settings import Settings
from modbus_gateway.mqtt import (
    TOPIC_ALL,
    BrokerUrl,
    DeadLetterFile,
    KeyedStoreSink,
    MqttSampleConsumer,
)

log = logging.getLogger("noaber.services.ingest")

DEFAULT_CLIENT_ID = "noaber-store"
"""The ingest's MQTT client id: names its persistent session at the broker."""


def channel_ids(engine: Engine) -> dict[str, int]:
    """``{channel key: channel id}`` of every channel in the database."""
    with engine.connect() as conn:
        return {k: i for k, i in conn.execute(select(Channel.key, Channel.id)).all()}


def update_written_intervals(
    store: SampleStore, engine: Engine, sink: KeyedStoreSink, first: bool
) -> int:
    """Run the incremental interval pipeline for what ``sink`` wrote; interval readings written.

    The first run covers every stored channel that is in the database (what an earlier run
    stored but did not aggregate); later runs only the channels written since.
    """
    known = set(sink.channel_ids.values())
    written: set[int] = sink.take_written()
    if first:
        written |= set(store.channels())
    ids = sorted(written & known)
    if not ids:
        return 0
    try:
        with session_factory(engine)() as session:
            return sum(int(r.isps_written) for r in update_many(store, session, ids))
    except Exception:
        sink.mark_written(ids)  # tried again next round
        raise


@dataclass(frozen=True)
class IngestReport:
    """What an ingest run did."""

    stored: int
    dead_lettered: int
    dead_letter_path: Path
    dead_letter_lines: int
    malformed: int
    waiting: int  # unacknowledged: the broker delivers them again
    isps_written: int | None  # None: the interval pipeline did not run

    def line(self) -> str:
        """One line for the terminal."""
        return (
            f"{self.stored} samples stored, {self.dead_lettered} to the dead-letter file "
            f"{self.dead_letter_path} ({self.dead_letter_lines} lines), {self.malformed} "
            f"malformed batches, {self.waiting} unacknowledged (the broker delivers them again)"
            + (
                f"; {self.isps_written} interval readings written"
                if self.isps_written is not None
                else ""
            )
        )


class Ingest:
    """One ingest process: subscribe, store, acknowledge and (optionally) update intervals.

    Parameters
    ----------
    settings : Settings
        The database, the sample store and the data dir (default dead-letter file).
    broker : BrokerUrl
        The MQTT broker (credentials are never logged).
    intervals_every_s : float, optional
        Update the interval readings of the written channels this often [s] (and at the end).
    """

    def __init__(
        self,
        settings: Settings,
        broker: BrokerUrl,
        topic: str | None = None,
        client_id: str | None = None,
        dead_letter: Path | None = None,
        intervals_every_s: float | None = None,
    ):
        self.topic = topic or TOPIC_ALL
        self.intervals_every_s = intervals_every_s
        self.engine = make_engine(settings.sqlalchemy_url)
        self.store = SampleStore(settings.samples_dir)
        try:
            self.sink = KeyedStoreSink(self.store, lambda: channel_ids(self.engine))
        except DBAPIError as exc:
            self.engine.dispose()
            raise NoaberError(
                f"database {settings.database_for_display} is not ready ({exc.orig}); "
                "run noaber db upgrade and noaber site import FILE"
            ) from None
        self.dead = DeadLetterFile(dead_letter or settings.data_dir / "mqtt-dead-letter.jsonl")
        self.consumer = MqttSampleConsumer.from_url(
            broker,
            self.sink,
            topic=self.topic,
            client_id=client_id or DEFAULT_CLIENT_ID,
            dead_letter=self.dead,
        )
        self.isps_written = 0
        self._first = True

    def start(self, connect_timeout_s: float) -> None:
        """Connect and subscribe; :class:`NoaberError` if the broker does not answer in time."""
        try:
            self.consumer.start(connect_timeout_s)
        except ConnectionError as exc:
            self.engine.dispose()
            raise NoaberError(str(exc)) from None

    def update_intervals(self) -> None:
        """One round of the interval pipeline (a failure is logged; the next round catches up)."""
        try:
            with self.consumer.hold():  # no store writes (or compaction) while the pipeline reads
                self.isps_written += update_written_intervals(
                    self.store, self.engine, self.sink, self._first
                )
            self._first = False
        except Exception as exc:  # the pipeline is incremental: nothing is lost
            log.error("interval update failed: %s: %s", type(exc).__name__, exc)

    def run(self, stop: threading.Event, max_seconds: float | None = None) -> IngestReport:
        """Consume until ``stop`` is set or ``max_seconds`` have passed, then stop cleanly."""
        every = self.intervals_every_s
        end = None if max_seconds is None else time.monotonic() + max_seconds
        next_intervals = time.monotonic() + (every or 0.0)
        try:
            while not stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if every is not None and now >= next_intervals:
                    self.update_intervals()
                    next_intervals = time.monotonic() + every
                wait = 1.0 if every is None else max(0.0, next_intervals - now)
                if end is not None:
                    wait = min(wait, max(0.0, end - now))
                stop.wait(min(wait, 1.0))
        finally:
            self.consumer.stop()
        if every is not None:
            self.update_intervals()
        self.engine.dispose()
        c = self.consumer
        return IngestReport(
            stored=c.stored,
            dead_lettered=c.dead_lettered,
            dead_letter_path=self.dead.path,
            dead_letter_lines=self.dead.lines,
            malformed=len(c.rejected),
            waiting=c.waiting,
            isps_written=self.isps_written if every is not None else None,
        )
