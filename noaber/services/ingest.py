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
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
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
from energy.rawstore import AnySampleStore, ManyConflicts, PgSampleStore, open_sample_store
from energy.samples import Conflicts, SampleStore
from energy.settings import Settings
from energy.siteconfig import UNIT_FACTORS
from modbus_gateway.mqtt import (
    TOPIC_ALL,
    BrokerUrl,
    KeyedStoreSink,
    MqttSampleConsumer,
    Outcome,
    Received,
    shared_topic,
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


@dataclass
class _Checked:
    """One batch after the centre's checks: the accepted samples as arrays, the refused."""

    gateway: str
    channel_id: np.ndarray  # int64
    ts: np.ndarray  # int64 [ns]
    value: np.ndarray  # float64
    quality: np.ndarray  # uint8
    refused: dict[str, _Refused]

    @classmethod
    def refusing(cls, refused: dict[str, _Refused], gateway: str) -> _Checked:
        e = np.empty(0, np.int64)
        return cls(gateway, e, e.copy(), np.empty(0), np.empty(0, np.uint8), refused)


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
        store: AnySampleStore,
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
        self._arrays: tuple | None = None
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

    def _index(self) -> tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rules as arrays: ``(keys, channel id, site id, lo, hi)`` (rebuilt on reload)."""
        if self._arrays is None or self._arrays[0] is not self.rules:
            rules = list(self.rules.values())
            self._arrays = (
                self.rules,
                pd.Index(list(self.rules)),
                np.array([r.channel_id for r in rules], np.int64),
                np.array([r.site_id for r in rules], np.int64),
                np.array([r.lo for r in rules], np.float64),
                np.array([r.hi for r in rules], np.float64),
            )
        return self._arrays[1:]

    def _check(self, b: Received) -> _Checked:
        """The accepted samples of a batch as arrays, and the refused ones by reason.

        Vectorised (NumPy over the batch): one ``get_indexer`` maps the channel keys to
        their rules, then one mask per check; the reasons are exclusive, in the order
        unknown channel, other site, implausible time, implausible value.
        """
        gw = b.topic_gateway
        refused: dict[str, _Refused] = {}
        if gw is None:
            refused["forged_topic"] = _Refused(
                f"topic {b.topic!r} is not a gateway's samples topic noaber/<gateway>/samples",
                list(b.samples),
            )
            return _Checked.refusing(refused, b.gateway or "?")
        if gw not in self.bindings:
            self._reload()
        if gw not in self.bindings:
            refused["unknown_gateway"] = _Refused(
                f"gateway {gw!r} is not registered at the centre (noaber gateway add) or "
                "is disabled",
                list(b.samples),
            )
            return _Checked.refusing(refused, gw)
        if b.gateway != gw:
            refused["forged_topic"] = _Refused(
                f"the payload names gateway {b.gateway!r} but came on {b.topic!r}",
                list(b.samples),
            )
            return _Checked.refusing(refused, gw)
        samples = b.samples
        n = len(samples)
        keys, cids, site_ids, los, his = self._index()
        idx = keys.get_indexer([s.channel for s in samples]) if n else np.empty(0, np.intp)
        if (idx < 0).any():
            self._reload()
            keys, cids, site_ids, los, his = self._index()
            idx = keys.get_indexer([s.channel for s in samples])
        ts = np.fromiter((s.ts_ns for s in samples), np.int64, n)
        value = np.fromiter((s.value for s in samples), np.float64, n)
        quality = np.fromiter((s.quality for s in samples), np.uint8, n)
        sites = self.bindings[gw]
        now = self.now_ns()
        oldest, newest = now - self.max_age_ns, now + self.max_future_ns
        known = idx >= 0
        safe = np.where(known, idx, 0)
        unknown = ~known
        other = known & ~np.isin(site_ids[safe], np.fromiter(sites, np.int64, len(sites)))
        rest = known & ~other
        bad_time = rest & ((ts < oldest) | (ts > newest))
        rest &= ~bad_time
        with np.errstate(invalid="ignore"):
            bad_value = rest & ~np.isnan(value) & ((value < los[safe]) | (value > his[safe]))
        ok = rest & ~bad_value
        if not ok.all():
            self._refuse(gw, samples, idx, unknown, other, bad_time, bad_value, newest, refused)
        return _Checked(gw, cids[safe[ok]], ts[ok], value[ok], quality[ok], refused)

    def _refuse(
        self,
        gw: str,
        samples: list[Sample],
        idx: np.ndarray,
        unknown: np.ndarray,
        other: np.ndarray,
        bad_time: np.ndarray,
        bad_value: np.ndarray,
        newest: int,
        refused: dict[str, _Refused],
    ) -> None:
        """The refused samples by reason, each with the first one's problem in words."""
        rules = list(self.rules.values())
        sites = self.bindings[gw]
        for reason, mask in (
            ("unknown_channel", unknown),
            ("other_site", other),
            ("implausible_time", bad_time),
            ("implausible_value", bad_value),
        ):
            where = np.flatnonzero(mask)
            if not where.size:
                continue
            s = samples[int(where[0])]
            rule = rules[int(idx[where[0]])] if idx[where[0]] >= 0 else None
            if reason == "unknown_channel" or rule is None:
                detail = f"no channel has the key {s.channel!r}"
            elif reason == "other_site":
                detail = (
                    f"channel {s.channel!r} belongs to site id {rule.site_id}, not to a site of "
                    f"gateway {gw!r} (site ids {sorted(sites)})"
                )
            elif reason == "implausible_time":
                when = np.datetime64(s.ts_ns, "ns").astype("datetime64[s]")
                side = "in the future" if s.ts_ns > newest else "older than the retention window"
                detail = f"{s.channel!r} at {when}Z is {side}"
            else:
                detail = (
                    f"{s.channel!r} = {s.value:g} is outside {rule.lo:g}..{rule.hi:g} ({rule.why})"
                )
            refused[reason] = _Refused(detail, [samples[int(i)] for i in where])

    def write_batch(self, b: Received) -> Outcome:
        return self.write_batches([b])[0]

    def write_batches(self, batches: Sequence[Received]) -> list[Outcome]:
        """Check and store several batches; one :class:`Outcome` per batch, in order.

        With the PostgreSQL store every accepted sample of the batches goes in one
        transaction (:meth:`~energy.rawstore.PgSampleStore.append_new_many`: one COPY, one
        INSERT); with Parquet each batch's channels are appended in turn.
        """
        checked = [self._check(b) for b in batches]
        received = utc_now()
        stored = [len(c.ts) for c in checked]
        conflicts: list[list[QuarantinedSample]] = [[] for _ in checked]
        if isinstance(self.store, PgSampleStore):
            self._store_pg(batches, checked, received, stored, conflicts)
        else:
            self._store_parquet(batches, checked, received, stored, conflicts)
        out = []
        for b, c, n, q in zip(batches, checked, stored, conflicts, strict=True):
            if c.refused or q:
                self._record(b, c.gateway, c.refused, q, received)
            SAMPLES_INGESTED.inc(n)  # this process's Prometheus counters (--metrics-port)
            for reason, r in c.refused.items():
                SAMPLES_DEAD_LETTERED.labels(reason=reason).inc(len(r.samples))
            out.append(Outcome(n, sum(len(r.samples) for r in c.refused.values()), len(q)))
        return out

    def _store_pg(
        self,
        batches: Sequence[Received],
        checked: list[_Checked],
        received: dt.datetime,
        stored: list[int],
        conflicts: list[list[QuarantinedSample]],
    ) -> None:
        assert isinstance(self.store, PgSampleStore)
        if not any(len(c.ts) for c in checked):
            return
        cid = np.concatenate([c.channel_id for c in checked])
        ts = np.concatenate([c.ts for c in checked])
        order = np.lexsort((ts, cid))
        c_s, t_s = cid[order], ts[order]
        if len(checked) > 1 and ((c_s[1:] == c_s[:-1]) & (t_s[1:] == t_s[:-1])).any():
            # a (channel, ts) in two of the batches: one at a time, so the later one is
            # compared with the earlier one (stored, or quarantined), never dropped
            for i in range(len(checked)):
                self._store_pg([batches[i]], [checked[i]], received, stored[i : i + 1],
                               conflicts[i : i + 1])  # fmt: skip
            return
        which = np.concatenate([np.full(len(c.ts), i, np.int64) for i, c in enumerate(checked)])
        res = self.store.append_new_many(
            cid, ts, np.concatenate([c.value for c in checked]),
            np.concatenate([c.quality for c in checked]),
        )  # fmt: skip
        self._written.update(np.unique(cid).tolist())
        for j in range(len(res)):  # rare: each conflict to the batch that offered it
            hit = np.flatnonzero((cid == res.channel_id[j]) & (ts == res.ts[j]))
            i = int(which[hit[-1]])
            stored[i] -= 1
            conflicts[i].append(
                self._quarantined(batches[i], checked[i].gateway, received, int(res.channel_id[j]),
                                  int(res.ts[j]), res, j)
            )  # fmt: skip

    def _store_parquet(
        self,
        batches: Sequence[Received],
        checked: list[_Checked],
        received: dt.datetime,
        stored: list[int],
        conflicts: list[list[QuarantinedSample]],
    ) -> None:
        assert isinstance(self.store, SampleStore)
        for i, c in enumerate(checked):
            for cid in np.unique(c.channel_id).tolist():
                sel = c.channel_id == cid
                res = self.store.append_new(cid, c.ts[sel], c.value[sel], c.quality[sel])
                stored[i] -= len(res)
                if res.written:
                    self._written.add(cid)
                    parts = self._parts_written.get(cid, 0) + 1
                    self._parts_written[cid] = parts
                    if self.compact_every and parts % self.compact_every == 0:
                        self.store.compact(cid)  # one file per day again: reads stay short
                for j in range(len(res)):
                    conflicts[i].append(
                        self._quarantined(batches[i], c.gateway, received, cid, int(res.ts[j]),
                                          res, j)
                    )  # fmt: skip

    @staticmethod
    def _quarantined(
        b: Received,
        gw: str,
        received: dt.datetime,
        cid: int,
        ts_ns: int,
        res: Conflicts | ManyConflicts,
        j: int,
    ) -> QuarantinedSample:
        return QuarantinedSample(
            received_at=received,
            gateway=gw,
            batch_id=b.batch_id,
            channel_id=cid,
            ts_ns=ts_ns,
            stored_value=_num(res.stored_value[j]),
            stored_quality=int(res.stored_quality[j]),
            value=_num(res.value[j]),
            quality=int(res.quality[j]),
            status="open",
        )

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


INTERVAL_CHUNK = 16
"""Channels per interval-update transaction with the PostgreSQL store (see
:func:`update_written_intervals`)."""


def update_written_intervals(
    store: AnySampleStore,
    engine: Engine,
    sink: CentreSink | KeyedStoreSink,
    first: bool,
    chunk: int = INTERVAL_CHUNK,
) -> int:
    """Run the incremental interval pipeline for what ``sink`` wrote; interval readings written.

    The first run covers every stored channel that is in the database (what an earlier run
    stored but did not aggregate); later runs only the channels written since.

    With the PostgreSQL store the channels go ``chunk`` at a time, each chunk in its own
    transaction that claims only its channels (:meth:`~energy.rawstore.PgSampleStore.claim`),
    starting at a random place in the list: several workers updating at once split the
    channels between them (a chunk another worker holds is skipped in a moment and left to
    it), where one transaction over every dirty channel had one worker aggregate for all
    while the others found every channel busy and waited (``bench/ingest_bench.py``).
    """
    known = set(sink.channel_ids.values())
    written: set[int] = sink.take_written()
    pg = isinstance(store, PgSampleStore)
    if isinstance(store, PgSampleStore):  # what any worker wrote and no one aggregated yet
        written |= set(store.dirty_channels())
    if first:
        written |= set(store.channels())
    ids = sorted(written & known)
    if not ids:
        return 0
    size = max(1, chunk) if pg else len(ids)
    if pg and len(ids) > size:
        start = random.randrange(len(ids))
        ids = ids[start:] + ids[:start]
    done = 0
    total = 0
    try:
        for a in range(0, len(ids), size):
            with session_factory(engine)() as session:
                part = update_many(store, session, ids[a : a + size])
                total += sum(int(r.isps_written) for r in part)
            done = a + size
    except Exception:
        sink.mark_written(ids[done:])  # tried again next round
        raise
    return total


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
        share: str | None = None,
        max_batches: int = 64,
    ):
        self.topic = topic or TOPIC_ALL
        if share is not None:
            try:
                self.topic = shared_topic(share, self.topic)
            except ValueError as exc:
                raise NoaberError(str(exc)) from None
        self.intervals_every_s = intervals_every_s
        self.engine = make_engine(settings.sqlalchemy_url)
        self.store = open_sample_store(settings, self.engine)
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
            max_batches=max_batches,
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
            if isinstance(self.store, PgSampleStore):  # writes go on (MVCC, per-channel locks)
                self.isps_written += update_written_intervals(
                    self.store, self.engine, self.sink, self._first
                )
            else:
                with self.consumer.hold():  # no Parquet writes (or compaction) while it reads
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
    store: AnySampleStore,
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
