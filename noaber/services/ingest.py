"""The centre's ingest: the gateways' MQTT sample batches into the energy store, exactly once.

:class:`Ingest` subscribes to the gateways' topic (:class:`modbus_gateway.mqtt.MqttSampleConsumer`)
and hands each batch to :class:`CentreSink`: the sending gateway (the topic's, which the
broker's ACL ties to its credentials) must be registered and bound to the site of every
channel it sends, each value must lie in its channel's plausible range and time window, and a
stored value is never replaced (a different value at a stored (channel, ts) is quarantined).
What passes goes to the :class:`~energy.samples.SampleStore`; what does not goes to the
dead-letter store (``ingest_dead_letters``) with the reason; then the batch is acknowledged
to the broker and end to end to the gateway (``noaber/<gateway>/ack``). With
``intervals_every_s`` it also runs the incremental interval pipeline
(:func:`energy.pipeline.update_many`) for the channels written since the last round, holding
the store writes while the pipeline reads. ``noaber gateway consume`` runs it
(:mod:`noaber.cli.gateway`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from energy.audit import Actor, cli_actor, record
from energy.clock import utc_now
from energy.db import make_engine, session_factory
from energy.errors import NoaberError
from energy.gateways import (
    ChannelRule,
    DeadLetter,
    QuarantinedSample,
    bindings,
    channel_rules,
)
from energy.models import Channel
from energy.pipeline import update_many
from energy.samples import SampleStore
from energy.settings import Settings
from energy.siteconfig import UNIT_FACTORS
from modbus_gateway.mqtt import (
    TOPIC_ALL,
    BrokerUrl,
    KeyedStoreSink,
    MqttSampleConsumer,
    Outcome,
    Received,
    topic_gateway,
)
from modbus_gateway.profiles import Profile, get_profile
from modbus_gateway.spool import Sample
from noaber.services.metrics import SAMPLES_DEAD_LETTERED, SAMPLES_INGESTED

log = logging.getLogger("noaber.services.ingest")

DEFAULT_CLIENT_ID = "noaber-store"
"""The ingest's MQTT client id: names its persistent session at the broker."""


def channel_ids(engine: Engine) -> dict[str, int]:
    """``{channel key: channel id}`` of every channel in the database."""
    with engine.connect() as conn:
        return {k: i for k, i in conn.execute(select(Channel.key, Channel.id)).all()}


def _profile_range(rule: ChannelRule, cache: dict[str, Profile | None]) -> tuple[float, float]:
    """The device profile's ``valid_min``/``valid_max`` of a channel's register, in the
    channel's stored unit and sign (``-inf, inf`` when unknown)."""
    if rule.device_profile is None or rule.register is None:
        return -math.inf, math.inf
    if rule.device_profile not in cache:
        try:
            cache[rule.device_profile] = get_profile(rule.device_profile)
        except Exception as exc:  # a profile file only the gateway has: the site range holds
            log.info("profile %s not available at the centre: %s", rule.device_profile, exc)
            cache[rule.device_profile] = None
    prof = cache[rule.device_profile]
    spec = prof.registers.get(rule.register) if prof is not None else None
    if spec is None:
        return -math.inf, math.inf
    factor = UNIT_FACTORS.get(rule.quantity, {}).get(spec.unit, 1.0) * rule.sign
    lo = -math.inf if spec.valid_min is None else spec.valid_min * factor
    hi = math.inf if spec.valid_max is None else spec.valid_max * factor
    return (lo, hi) if lo <= hi else (hi, lo)


def load_rules(engine: Engine) -> tuple[dict[str, frozenset[int]], dict[str, ChannelRule]]:
    """Gateway bindings and channel rules (site range intersected with the profile's)."""
    with session_factory(engine)() as session:
        binds = bindings(session)
        rules = channel_rules(session)
    cache: dict[str, Profile | None] = {}
    out = {}
    for key, r in rules.items():
        plo, phi = _profile_range(r, cache)
        lo, hi, why = r.lo, r.hi, r.why
        if plo > lo or phi < hi:
            lo, hi = max(lo, plo), min(hi, phi)
            why += f"; the profile {r.device_profile} limits register {r.register}"
        out[key] = dataclasses.replace(r, lo=lo, hi=hi, why=why)
    return binds, out


@dataclass
class _Refused:
    """Samples of one batch refused for one reason, with the first problem in words."""

    detail: str
    samples: list[Sample] = dataclasses.field(default_factory=list)


class CentreSink:
    """The centre's checks, then the sample store; what it refuses is kept with the reason.

    For each received batch (:class:`modbus_gateway.mqtt.Received`): the topic must name a
    known gateway (else every sample is ``unknown_gateway``) and the payload the same gateway
    (else ``forged_topic``); each sample's channel must exist (``unknown_channel``), belong
    to a site the gateway is bound to (``other_site``), have a timestamp within
    ``[now - max_age_s, now + max_future_s]`` (``implausible_time``) and a value within the
    channel's plausible range (``implausible_value``; NaN is a flagged missing value and
    passes). Refused samples go to ``ingest_dead_letters``; the rest to the store with
    :meth:`~energy.samples.SampleStore.append_new`, which never replaces a stored value:
    a different value at a stored (channel, ts) goes to ``sample_quarantine``. Bindings and
    channels are reloaded from the database (at most every ``reload_s``) when a batch names a
    gateway or a channel key not known yet.
    """

    def __init__(
        self,
        store: SampleStore,
        engine: Engine,
        max_age_s: float = 35 * 86_400,
        max_future_s: float = 300,
        now_ns: Callable[[], int] = time.time_ns,
        reload_s: float = 5.0,
        compact_every: int = 20,
    ):
        self.store = store
        self.engine = engine
        self.sessions = session_factory(engine)
        self.max_age_ns = int(max_age_s * 1e9)
        self.max_future_ns = int(max_future_s * 1e9)
        self.now_ns = now_ns
        self.reload_s = reload_s
        self.reloads = 0
        self._loaded_at = -math.inf
        self.bindings, self.rules = load_rules(engine)
        self._loaded_at = time.monotonic()
        self._written: set[int] = set()
        self.compact_every = compact_every
        self._parts_written: dict[int, int] = {}

    @property
    def channel_ids(self) -> dict[str, int]:
        return {k: r.channel_id for k, r in self.rules.items()}

    def _reload(self) -> None:
        if time.monotonic() - self._loaded_at < self.reload_s:
            return
        self.bindings, self.rules = load_rules(self.engine)
        self._loaded_at = time.monotonic()
        self.reloads += 1

    def _check(self, b: Received) -> tuple[dict[int, list[Sample]], dict[str, _Refused], str]:
        """``(accepted samples by channel id, refused by reason, gateway)``."""
        gw = b.topic_gateway
        refused: dict[str, _Refused] = {}
        if gw is None:
            refused["forged_topic"] = _Refused(
                f"topic {b.topic!r} is not a gateway's samples topic noaber/<gateway>/samples",
                list(b.samples),
            )
            return {}, refused, b.gateway or "?"
        if gw not in self.bindings:
            self._reload()
        if gw not in self.bindings:
            refused["unknown_gateway"] = _Refused(
                f"gateway {gw!r} is not registered at the centre (noaber gateway add) or "
                "is disabled",
                list(b.samples),
            )
            return {}, refused, gw
        if b.gateway != gw:
            refused["forged_topic"] = _Refused(
                f"the payload names gateway {b.gateway!r} but came on {b.topic!r}",
                list(b.samples),
            )
            return {}, refused, gw
        if any(s.channel not in self.rules for s in b.samples):
            self._reload()
        sites = self.bindings[gw]
        now = self.now_ns()
        oldest, newest = now - self.max_age_ns, now + self.max_future_ns
        accepted: dict[int, list[Sample]] = {}

        def refuse(reason: str, s: Sample, detail: str) -> None:
            refused.setdefault(reason, _Refused(detail)).samples.append(s)

        for s in b.samples:
            rule = self.rules.get(s.channel)
            if rule is None:
                refuse("unknown_channel", s, f"no channel has the key {s.channel!r}")
            elif rule.site_id not in sites:
                refuse(
                    "other_site",
                    s,
                    f"channel {s.channel!r} belongs to site id {rule.site_id}, not to a site of "
                    f"gateway {gw!r} (site ids {sorted(sites)})",
                )
            elif not oldest <= s.ts_ns <= newest:
                when = np.datetime64(s.ts_ns, "ns").astype("datetime64[s]")
                side = "in the future" if s.ts_ns > newest else "older than the retention window"
                refuse("implausible_time", s, f"{s.channel!r} at {when}Z is {side}")
            elif not math.isnan(s.value) and not rule.lo <= s.value <= rule.hi:
                refuse(
                    "implausible_value",
                    s,
                    f"{s.channel!r} = {s.value:g} is outside {rule.lo:g}..{rule.hi:g} ({rule.why})",
                )
            else:
                accepted.setdefault(rule.channel_id, []).append(s)
        return accepted, refused, gw

    def write_batch(self, b: Received) -> Outcome:
        accepted, refused, gw = self._check(b)
        stored = 0
        conflicts: list[QuarantinedSample] = []
        received = utc_now()
        for cid, rows in accepted.items():
            n = len(rows)
            res = self.store.append_new(
                cid,
                np.fromiter((r.ts_ns for r in rows), np.int64, n),
                np.fromiter((r.value for r in rows), np.float64, n),
                np.fromiter((r.quality for r in rows), np.uint8, n),
            )
            stored += n - len(res)
            if res.written:
                self._written.add(cid)
                parts = self._parts_written.get(cid, 0) + 1
                self._parts_written[cid] = parts
                if self.compact_every and parts % self.compact_every == 0:
                    self.store.compact(cid)  # one file per day again: reads stay short
            for i in range(len(res)):
                conflicts.append(
                    QuarantinedSample(
                        received_at=received,
                        gateway=gw,
                        batch_id=b.batch_id,
                        channel_id=cid,
                        ts_ns=int(res.ts[i]),
                        stored_value=_num(res.stored_value[i]),
                        stored_quality=int(res.stored_quality[i]),
                        value=_num(res.value[i]),
                        quality=int(res.quality[i]),
                        status="open",
                    )
                )
        dead = sum(len(r.samples) for r in refused.values())
        if refused or conflicts:
            self._record(b, gw, refused, conflicts, received)
        SAMPLES_INGESTED.inc(stored)  # this process's Prometheus counters (consume --metrics-port)
        for reason, r in refused.items():
            SAMPLES_DEAD_LETTERED.labels(reason=reason).inc(len(r.samples))
        return Outcome(stored, dead, len(conflicts))

    def _record(
        self,
        b: Received,
        gw: str,
        refused: dict[str, _Refused],
        conflicts: list[QuarantinedSample],
        received: dt.datetime,
    ) -> None:
        with self.sessions.begin() as session:
            seen = set()
            if b.batch_id is not None:  # a batch sent again: recorded once
                seen = set(
                    session.scalars(
                        select(DeadLetter.reason).where(
                            DeadLetter.gateway == gw, DeadLetter.batch_id == b.batch_id
                        )
                    )
                )
            for reason, r in refused.items():
                if reason in seen:
                    continue
                extra = f" (and {len(r.samples) - 1} more)" if len(r.samples) > 1 else ""
                session.add(
                    DeadLetter(
                        received_at=received,
                        topic=b.topic,
                        gateway=gw,
                        batch_id=b.batch_id,
                        reason=reason,
                        detail=r.detail + extra,
                        samples=_rows(r.samples),
                    )
                )
                log.error(
                    "%s: %d sample(s) to the dead-letter store (%s): %s",
                    b.topic,
                    len(r.samples),
                    reason,
                    r.detail,
                )
            for q in conflicts:
                already = session.scalar(
                    select(QuarantinedSample.id).where(
                        QuarantinedSample.channel_id == q.channel_id,
                        QuarantinedSample.ts_ns == q.ts_ns,
                        QuarantinedSample.status == "open",
                        QuarantinedSample.value.is_(None)
                        if q.value is None
                        else QuarantinedSample.value == q.value,
                    )
                )
                if already is None:
                    session.add(q)
            if conflicts:
                log.error(
                    "%s: %d sample(s) quarantined: their (channel, ts) holds another value "
                    "(noaber gateway quarantine)",
                    b.topic,
                    len(conflicts),
                )

    def record_malformed(self, topic: str, error: str, payload: bytes) -> None:
        """A payload that is not a sample batch, kept as text with the reason."""
        with self.sessions.begin() as session:
            session.add(
                DeadLetter(
                    received_at=utc_now(),
                    topic=topic,
                    gateway=topic_gateway(topic) or "?",
                    reason="malformed",
                    detail=error,
                    samples=[],
                    payload=payload.decode("utf-8", "backslashreplace")[:100_000],
                )
            )

    def mark_written(self, ids: Iterable[int]) -> None:
        """Count these channel ids as written again (an interval update of them failed)."""
        self._written.update(ids)

    def take_written(self) -> set[int]:
        """Channel ids written since the last call."""
        out, self._written = self._written, set()
        return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _rows(samples: list[Sample]) -> list[list]:
    return [[s.channel, s.ts_ns, _num(s.value), s.quality] for s in samples]


def update_written_intervals(
    store: SampleStore, engine: Engine, sink: CentreSink | KeyedStoreSink, first: bool
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
    quarantined: int
    malformed: int
    acknowledged: int  # batches acknowledged end to end to their gateway
    waiting: int  # unacknowledged: the broker delivers them again
    isps_written: int | None  # None: the interval pipeline did not run

    def line(self) -> str:
        """One line for the terminal."""
        return (
            f"{self.stored} samples stored, {self.dead_lettered} to the dead-letter store, "
            f"{self.quarantined} quarantined (noaber gateway dead-letters / quarantine), "
            f"{self.malformed} malformed batches, {self.acknowledged} batches acknowledged to "
            f"their gateways, {self.waiting} unacknowledged (the broker delivers them again)"
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
        intervals_every_s: float | None = None,
        max_age_s: float = 35 * 86_400,
        max_future_s: float = 300.0,
    ):
        self.topic = topic or TOPIC_ALL
        self.intervals_every_s = intervals_every_s
        self.engine = make_engine(settings.sqlalchemy_url)
        self.store = SampleStore(settings.samples_dir)
        try:
            self.sink = CentreSink(self.store, self.engine, max_age_s, max_future_s)
        except DBAPIError as exc:
            self.engine.dispose()
            raise NoaberError(
                f"database {settings.database_for_display} is not ready ({exc.orig}); "
                "run noaber db upgrade and noaber site import FILE"
            ) from None
        self.consumer = MqttSampleConsumer.from_url(
            broker,
            self.sink,
            topic=self.topic,
            client_id=client_id or DEFAULT_CLIENT_ID,
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
            quarantined=c.quarantined,
            malformed=len(c.rejected),
            acknowledged=c.acks_sent,
            waiting=c.waiting,
            isps_written=self.isps_written if every is not None else None,
        )


def resolve_quarantine(
    sessions: sessionmaker[Session],
    store: SampleStore,
    quarantine_id: int,
    accept: bool,
    actor: Actor | None = None,
) -> QuarantinedSample:
    """Accept (the offered value replaces the stored one, and the channel's interval
    readings are brought up to date) or reject a quarantined sample; audited.

    Raises
    ------
    NoaberError
        No such quarantined sample, or it was resolved already.
    """
    with sessions.begin() as session:
        q = session.get(QuarantinedSample, quarantine_id, with_for_update=True)
        if q is None:
            raise NoaberError(f"no quarantined sample with id {quarantine_id}")
        if q.status != "open":
            raise NoaberError(f"quarantined sample {quarantine_id} was {q.status} already")
        if accept:
            value = math.nan if q.value is None else q.value
            store.append(
                q.channel_id, np.array([q.ts_ns]), np.array([value]), np.array([q.quality])
            )
        q.status = "accepted" if accept else "rejected"
        q.resolved_at = utc_now()
        who = actor or cli_actor()
        q.resolved_by = who.name[:100]
        record(
            session,
            who,
            "quarantine.accept" if accept else "quarantine.reject",
            q.channel.key,
            {
                "quarantine_id": q.id,
                "ts_ns": q.ts_ns,
                "stored_value": q.stored_value,
                "offered_value": q.value,
                "gateway": q.gateway,
            },
        )
        session.flush()
        session.expunge(q)
        _ = q.channel  # loaded above (record read its key)
    if accept:
        with sessions() as session:
            update_many(store, session, [q.channel_id])
    return q
