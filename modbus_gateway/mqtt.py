"""Sample batches over MQTT: the edge gateway publishes, the centre stores (docs/ARCHITECTURE.md).

:class:`MqttSampleSink` is a :class:`~modbus_gateway.spool.SampleSink` for
:class:`~modbus_gateway.spool.StoreAndForward`: ``write`` returns only after the broker has
acknowledged the batch (QoS 1 PUBACK) and raises otherwise, so an unreachable broker sends the
batch to the local spool. :class:`MqttSampleConsumer` subscribes at the centre with a
persistent session and manual acknowledgement: a batch is acknowledged only after the store
took it. QoS 1 is at-least-once; the store is idempotent by channel and timestamp, so every
sample is stored exactly once. :class:`KeyedStoreSink` maps channel keys to channel ids for
the store; samples of a key the database does not know (after one reload) go to a
:class:`DeadLetterFile` instead of blocking the queue.

The broker is named by a URL ``mqtt://USER:PASSWORD@HOST:PORT`` (``NOABER_MQTT_URL``) or
``HOST[:PORT]`` (:func:`parse_broker_url`); the password is never logged or shown
(:func:`redact_url`).

Payload (JSON, UTF-8)::

    {"v": 1, "gateway": "dorpshuis-a", "samples": [["<channel key>", ts_ns, value|null, quality], ...]}
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from energy.clock import utc_now
from energy.samples import SampleStore
from modbus_gateway.spool import Sample, SampleSink, SampleStoreSink

log = logging.getLogger(__name__)

TOPIC = "noaber/{gateway}/samples"
TOPIC_ALL = TOPIC.format(gateway="+")
"""What the centre subscribes to: every gateway's samples."""
PAYLOAD_VERSION = 1
DEFAULT_PORT = 1883


def redact_url(text: str) -> str:
    """``text`` with everything between the scheme and the last ``@`` replaced by ``***``.

    ``mqtt://noaber:secret@mqtt:1883`` -> ``mqtt://***@mqtt:1883``; safe for logs and errors
    even when the URL is malformed (a password with an unescaped ``/`` or ``#``).
    """
    if "@" not in text:
        return text
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


@dataclass(frozen=True)
class BrokerUrl:
    """Where the MQTT broker is and who we are there (the password never shows in ``repr``)."""

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        """``mqtt://USER:***@HOST:PORT`` (no password), for logs and messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username is not None:
            user = self.username + (":***" if self.password is not None else "") + "@"
        return f"mqtt://{user}{host}:{self.port}"


def parse_broker_url(text: str, default_port: int = DEFAULT_PORT) -> BrokerUrl:
    """The broker of ``mqtt://USER:PASSWORD@HOST:PORT``, ``mqtt://HOST`` or ``HOST[:PORT]``.

    User and password may be percent-encoded (needed for ``/ ? # %`` in a password).

    Raises
    ------
    ValueError
        One line naming what is wrong, with the credentials redacted.
    """
    text = text.strip()
    shown = redact_url(text)
    if "://" not in text:
        text = "mqtt://" + text
    parts = urlsplit(text)
    if parts.scheme not in {"mqtt", "tcp"}:
        raise ValueError(
            f"MQTT broker {shown!r}: scheme must be mqtt:// (got {parts.scheme}://); "
            "expected mqtt://USER:PASSWORD@HOST:PORT or HOST[:PORT]"
        )
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError(
            f"MQTT broker {shown!r}: unexpected path, query or fragment (percent-encode "
            "/ ? # in a password); expected mqtt://USER:PASSWORD@HOST:PORT"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise ValueError(
            f"MQTT broker {shown!r}: expected mqtt://USER:PASSWORD@HOST:PORT or HOST[:PORT] "
            "with a numeric port (percent-encode / ? # in a password)"
        )
    return BrokerUrl(
        host=parts.hostname,
        port=port if port is not None else default_port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def encode_batch(gateway: str, samples: Sequence[Sample]) -> bytes:
    """A batch as JSON; NaN values become ``null``."""
    return json.dumps(
        {"v": PAYLOAD_VERSION, "gateway": gateway, "samples": _rows(samples)}
    ).encode()


def _rows(samples: Sequence[Sample]) -> list[list]:
    return [
        [s.channel, s.ts_ns, None if math.isnan(s.value) else s.value, s.quality] for s in samples
    ]


def decode_batch(payload: bytes) -> tuple[str, list[Sample]]:
    """``(gateway, samples)`` of a payload; raises ValueError naming what is wrong."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"sample batch is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != PAYLOAD_VERSION:
        raise ValueError(f"sample batch: expected v={PAYLOAD_VERSION}, got {str(doc)[:80]!r}")
    out = []
    for i, row in enumerate(doc.get("samples") or []):
        try:
            channel, ts_ns, value, quality = row
            out.append(
                Sample(
                    str(channel),
                    int(ts_ns),
                    math.nan if value is None else float(value),
                    int(quality),
                )
            )
        except (TypeError, ValueError):
            raise ValueError(
                f"sample batch: samples[{i}] is not [channel, ts_ns, value, quality]: {row!r}"
            ) from None
    return str(doc.get("gateway", "")), out


def _client(
    client_id: str, clean_session: bool, username: str | None, password: str | None
) -> mqtt.Client:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    if username is not None:
        c.username_pw_set(username, password)
    c.reconnect_delay_set(min_delay=1, max_delay=5)
    return c


def _close(client: mqtt.Client) -> None:
    client.loop_stop()
    client.disconnect()


def _await_connack(
    connected: threading.Event, refused: Callable[[], str], timeout_s: float
) -> None:
    """Wait until the broker accepted (``connected``) or refused the connection, or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not connected.is_set() and not refused():  # bounded by the deadline
        if time.monotonic() >= deadline:
            break
        connected.wait(0.05)


def _not_connected(where: str, username: str | None, reason: str) -> ConnectionError:
    """The error of a connection the broker refused (``reason``) or never answered."""
    if reason:
        return ConnectionError(_refusal(where, username, reason))
    return ConnectionError(f"MQTT broker {where} not reachable")


def _refusal(where: str, username: str | None, reason: str) -> str:
    who = f"user {username!r}" if username is not None else "an anonymous client (no user given)"
    return (
        f"MQTT broker {where} refused {who}: {reason} "
        "(check USER:PASSWORD in mqtt://USER:PASSWORD@HOST:PORT)"
    )


class MqttSampleSink:
    """Publishes batches with QoS 1; ``write`` returns once the broker acknowledged them.

    Parameters
    ----------
    host, port : str, int
        The broker (the site's Mosquitto, bridged to the centre).
    gateway : str
        Names the topic ``noaber/<gateway>/samples``.
    timeout_s : float
        How long ``write`` waits for a connection and for the PUBACK [s].
    username, password : str, optional
        Broker credentials (Mosquitto ``password_file``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        gateway: str,
        timeout_s: float = 5.0,
        username: str | None = None,
        password: str | None = None,
    ):
        self.host, self.port, self.gateway = host, port, gateway
        self.username, self._password = username, password
        self.topic = TOPIC.format(gateway=gateway)
        self.timeout_s = timeout_s
        self.refused = ""
        self._connected = threading.Event()
        self.client: mqtt.Client | None = None

    @classmethod
    def from_url(cls, broker: BrokerUrl, gateway: str, timeout_s: float = 5.0) -> MqttSampleSink:
        """A sink for the broker of a parsed ``mqtt://`` URL."""
        return cls(broker.host, broker.port, gateway, timeout_s, broker.username, broker.password)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # write raises it (and the spool logs it)
            self.refused = str(reason_code)
            return
        self.refused = ""
        self._connected.set()

    def _start(self) -> mqtt.Client:
        c = _client(f"noaber-gw-{self.gateway}", True, self.username, self._password)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self._connected.clear()
        c.connect_async(self.host, self.port, keepalive=30)
        c.loop_start()
        self.client = c
        return c

    def _reset(self) -> None:
        """Drop the client and its queue: the spool holds the batch, not paho's memory."""
        client, self.client = self.client, None
        if client is not None and self._connected.is_set():
            client.disconnect()
            client.loop_stop()
        elif client is not None:  # its thread may sleep up to 1 s before a reconnect: not here
            threading.Thread(target=_close, args=(client,), daemon=True).start()
        self._connected.clear()
        self.refused = ""

    def write(self, samples: Sequence[Sample]) -> None:
        client = self.client or self._start()
        _await_connack(self._connected, lambda: self.refused, self.timeout_s)
        if not self._connected.is_set():
            reason = self.refused
            self._reset()
            raise _not_connected(f"{self.host}:{self.port}", self.username, reason)
        info = client.publish(self.topic, encode_batch(self.gateway, samples), qos=1)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            self._reset()
            raise ConnectionError(f"MQTT publish failed: {exc}") from None
        if not info.is_published():
            self._reset()
            raise ConnectionError(f"MQTT broker {self.host}:{self.port}: no PUBACK")

    def close(self) -> None:
        self._reset()


class UnknownChannels(Exception):
    """Raised by a sink after it stored what it could: these samples have no channel id.

    Attributes
    ----------
    keys : list of str
        The unknown channel keys.
    samples : list of Sample
        The samples of those keys (the rest of the batch is stored).
    """

    def __init__(self, keys: Iterable[str], samples: Sequence[Sample]):
        self.keys = sorted(keys)
        self.samples = list(samples)
        shown = ", ".join(self.keys[:5]) + (" …" if len(self.keys) > 5 else "")
        super().__init__(f"channel key(s) not in the database: {shown}")


class KeyedStoreSink:
    """The energy store by channel key; the key -> id map is reloaded once for an unknown key.

    Parameters
    ----------
    store : energy.samples.SampleStore
    load_ids : callable
        Returns the current ``{channel key: channel id}`` map (from the database). Called at
        construction and once for each batch that names a key not in the map; if it raises
        (the database is down) the batch is refused and the consumer retries it later.
    compact_every : int
        Compact the written channels every this many writes (see ``SampleStoreSink``).

    ``write`` stores the samples of known keys and then raises :class:`UnknownChannels` for
    the others. ``take_written()`` returns (and forgets) the channel ids written since the
    last call, for the incremental interval pipeline.
    """

    def __init__(
        self,
        store: SampleStore,
        load_ids: Callable[[], Mapping[str, int]],
        compact_every: int = 20,
    ):
        self.load_ids = load_ids
        self.reloads = 0
        self.stored = 0
        self._inner = SampleStoreSink(store, load_ids(), compact_every)
        self._written: set[int] = set()

    @property
    def channel_ids(self) -> dict[str, int]:
        return self._inner.channel_ids

    def write(self, samples: Sequence[Sample]) -> None:
        keys = {s.channel for s in samples}
        unknown = keys - self._inner.channel_ids.keys()
        if unknown:
            self._inner.channel_ids = dict(self.load_ids())
            self.reloads += 1
            unknown = keys - self._inner.channel_ids.keys()
        known = [s for s in samples if s.channel not in unknown]
        if known:
            self._inner.write(known)
            self.stored += len(known)
            self._written.update(self._inner.channel_ids[k] for k in keys - unknown)
        if unknown:
            raise UnknownChannels(unknown, [s for s in samples if s.channel in unknown])

    def mark_written(self, ids: Iterable[int]) -> None:
        """Count these channel ids as written again (an interval update of them failed)."""
        self._written.update(ids)

    def take_written(self) -> set[int]:
        """Channel ids written since the last call."""
        out, self._written = self._written, set()
        return out


class DeadLetterFile:
    """Batches (or parts of them) the centre cannot store, one JSON object per line.

    Each line has ``received_utc``, ``topic``, ``gateway``, ``error`` and either ``samples``
    (rows as in the payload, so they can be published again once the channel exists) or
    ``payload`` (a malformed message, as text). A line is flushed to disk (fsync) before the
    batch is acknowledged.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.lines = 0

    def record(
        self,
        topic: str,
        gateway: str,
        error: str,
        samples: Sequence[Sample] = (),
        payload: bytes | None = None,
    ) -> None:
        doc: dict = {
            "received_utc": utc_now().isoformat(timespec="milliseconds"),
            "topic": topic,
            "gateway": gateway,
            "error": error,
        }
        if payload is not None:
            doc["payload"] = payload.decode("utf-8", "backslashreplace")
        else:
            doc["v"] = PAYLOAD_VERSION
            doc["samples"] = _rows(samples)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.lines += 1


@dataclass
class _Batch:
    mid: int
    qos: int
    topic: str
    gateway: str
    samples: list[Sample]
    error: str = ""  # a malformed message: why, and its payload
    payload: bytes | None = None


class MqttSampleConsumer:
    """Subscribes to the gateways' batches and writes them to a sink (the energy store).

    A persistent session (fixed client id, ``clean_session=False``) and manual
    acknowledgement: a batch is acknowledged only after the sink took it. Batches are written
    in order by a writer thread (the network thread only queues them); while the sink fails,
    batches wait and are retried every ``retry_s``; unacknowledged batches stay with the
    broker, which delivers them again if this process restarts.

    With a ``dead_letter`` file, a malformed batch and the samples for which the sink raises
    :class:`UnknownChannels` are recorded there with a logged error, and the batch is
    acknowledged (the rest of it is stored): they can never be stored as they are and must
    not hold up the batches behind them. Without one, a malformed batch is logged and
    acknowledged, and unknown channels are retried like a store failure.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sink: SampleSink,
        topic: str = TOPIC_ALL,
        client_id: str = "noaber-store",
        retry_s: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        dead_letter: DeadLetterFile | None = None,
    ):
        self.sink = sink
        self.topic = topic
        self.retry_s = retry_s
        self.username = username
        self.dead_letter = dead_letter
        self.stored = 0
        self.dead_lettered = 0
        self.rejected: list[str] = []
        self.failures = 0
        self.refused = ""
        self._started = False
        self._pending: deque[_Batch] = deque()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self.client = _client(client_id, False, username, password)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message
        self.host, self.port = host, port
        self._writer = threading.Thread(target=self._write_loop, name="mqtt-store", daemon=True)

    @classmethod
    def from_url(cls, broker: BrokerUrl, sink: SampleSink, **kwargs) -> MqttSampleConsumer:
        """A consumer for the broker of a parsed ``mqtt://`` URL (other arguments as above)."""
        return cls(
            broker.host,
            broker.port,
            sink,
            username=broker.username,
            password=broker.password,
            **kwargs,
        )

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            if self._started:  # at start, start() raises it
                log.error("%s", _refusal(f"{self.host}:{self.port}", self.username, self.refused))
            return
        self.refused = ""
        client.subscribe(self.topic, qos=1)
        self._connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            gateway, samples = decode_batch(msg.payload)
        except ValueError as exc:
            log.error("%s: %s; payload %r", msg.topic, exc, msg.payload[:200])
            self.rejected.append(str(exc))
            if self.dead_letter is not None:
                self._pending.append(
                    _Batch(msg.mid, msg.qos, msg.topic, "", [], str(exc), bytes(msg.payload))
                )
                self._wake.set()
                return
            client.ack(msg.mid, msg.qos)
            return
        self._pending.append(_Batch(msg.mid, msg.qos, msg.topic, gateway, samples))
        self._wake.set()

    def _dead(self, batch: _Batch, error: str, samples=(), payload=None) -> None:
        assert self.dead_letter is not None
        self.dead_letter.record(batch.topic, batch.gateway, error, samples, payload)
        self.dead_lettered += len(samples)
        log.error(
            "%s: %s; %d sample(s) written to the dead-letter file %s",
            batch.topic,
            error,
            len(samples),
            self.dead_letter.path,
        )

    def _drain(self) -> bool:
        """Write waiting batches in order; acknowledge each one the sink took.

        Returns False if the sink refused a batch (it stays first in the queue).
        """
        with self._write_lock:
            while self._pending:
                batch = self._pending[0]
                try:
                    if batch.payload is not None:
                        self._dead(batch, batch.error, payload=batch.payload)
                    else:
                        try:
                            self.sink.write(batch.samples)
                            self.stored += len(batch.samples)
                        except UnknownChannels as exc:
                            if self.dead_letter is None:
                                raise
                            self.stored += len(batch.samples) - len(exc.samples)
                            self._dead(batch, str(exc), samples=exc.samples)
                except Exception as exc:  # the store is down: keep it, no ack, retry later
                    self.failures += 1
                    log.warning("store refused a batch (%s); %d waiting", exc, len(self._pending))
                    return False
                self._pending.popleft()
                self.client.ack(batch.mid, batch.qos)
        return True

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_s)
            self._wake.clear()
            if self._pending and not self._drain():
                self._stop.wait(self.retry_s)  # back off while the store is down
        self._drain()  # what arrived before the stop is stored and acknowledged

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def hold(self) -> threading.Lock:
        """A lock that pauses writing while held (``with consumer.hold(): ...``)."""
        return self._write_lock

    def start(self, timeout_s: float = 5.0) -> None:
        """Connect, subscribe and start writing; raises ConnectionError (refused, unreachable)."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._writer.start()
        _await_connack(self._connected, lambda: self.refused, timeout_s)
        if not self._connected.is_set():
            reason = self.refused
            self.stop()
            raise _not_connected(f"{self.host}:{self.port}", self.username, reason)
        self._started = True

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Store and acknowledge what has arrived, then disconnect (the session stays)."""
        self._stop.set()
        self._wake.set()
        if self._writer.is_alive():
            self._writer.join(drain_timeout_s)
        if self._connected.is_set():  # the acknowledgements go out before the DISCONNECT
            self.client.disconnect()
            self.client.loop_stop()
        else:  # not connected: do not wait for a reconnect attempt
            self.client.loop_stop()
            self.client.disconnect()
