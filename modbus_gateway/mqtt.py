"""Sample batches over MQTT: the edge gateway publishes, the centre stores (docs/ARCHITECTURE.md).

:class:`MqttSampleSink` is an :class:`~modbus_gateway.spool.AckedSink` for
:class:`~modbus_gateway.spool.StoreAndForward`: ``send`` publishes a batch with its batch id
and returns after the broker's PUBACK (raises otherwise); the batch stays in the gateway's
spool until the centre, having stored it, publishes the batch id on the gateway's ack topic
``noaber/<gateway>/ack`` (a broker's PUBACK is not "stored": a broker drops what its queue
cannot hold, and loses what it had not saved when it is killed). :class:`MqttSampleConsumer`
subscribes at the centre with a persistent session and manual acknowledgement: a batch is
acknowledged to the broker, and end to end to the gateway, only after the store took it.
QoS 1 is at-least-once; the store is idempotent by channel and timestamp, so every sample is
stored exactly once.

Each gateway has its own broker identity (its name is its MQTT user; Mosquitto's password
file and ACL, :mod:`modbus_gateway.broker_auth`): it may publish only to
``noaber/<name>/samples`` and read only ``noaber/<name>/ack``. :class:`KeyedStoreSink` maps channel keys to channel ids for
the store; samples of a key the database does not know (after one reload) go to a
:class:`DeadLetterFile` instead of blocking the queue.

The broker is named by a URL ``mqtt://USER:PASSWORD@HOST:PORT`` (``NOABER_MQTT_URL``) or
``HOST[:PORT]`` (:func:`parse_broker_url`); the password is never logged or shown
(:func:`redact_url`). ``mqtts://USER:PASSWORD@HOST:8883`` is the same over TLS (:class:`Tls`:
the server's certificate checked against a CA file, ``NOABER_MQTT_CA_FILE``, or the system's
CAs, and its name against HOST; optionally a client certificate and key,
``NOABER_MQTT_CERT_FILE``/``NOABER_MQTT_KEY_FILE``; ``docker/mosquitto-tls.conf``).

Payload (JSON, UTF-8)::

    {"v": 1, "gateway": "dorpshuis-a", "batch": "<spool id>:<first>-<last>",
     "samples": [["<channel key>", ts_ns, value|null, quality], ...]}

Acknowledgement (JSON, on ``noaber/<gateway>/ack``)::

    {"v": 1, "batch": "<batch id>", "stored": n, "dead_lettered": n, "quarantined": n}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from energy.clock import utc_now
from energy.samples import SampleStore
from modbus_gateway.spool import Sample, SampleSink, SampleStoreSink

log = logging.getLogger(__name__)

TOPIC = "noaber/{gateway}/samples"
TOPIC_ALL = TOPIC.format(gateway="+")
"""What the centre subscribes to: every gateway's samples."""
ACK_TOPIC = "noaber/{gateway}/ack"
"""Where the centre acknowledges a gateway's stored batches."""
_TOPIC_RE = re.compile(r"noaber/(?P<gateway>[^/+#]+)/samples")


def topic_gateway(topic: str) -> str | None:
    """The gateway named by a samples topic ``noaber/<gateway>/samples``, else None."""
    m = _TOPIC_RE.fullmatch(topic)
    return m["gateway"] if m else None


PAYLOAD_VERSION = 1
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883


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
class Tls:
    """TLS to the broker: the server's certificate is verified (against ``ca_file``, or the
    system's CAs without one) and its name must match the host; ``cert_file``/``key_file``
    are a client certificate for a broker that asks for one (``require_certificate``)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def checked(self) -> Tls:
        """This, after checking each named file can be read (one line naming it otherwise)."""
        for what, path in (("CA", self.ca_file), ("certificate", self.cert_file),
                           ("key", self.key_file)):  # fmt: skip
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"MQTT TLS {what} file {path}: not found or not readable")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError(f"MQTT TLS key file {self.key_file} given without a certificate file")
        return self


@dataclass(frozen=True)
class BrokerUrl:
    """Where the MQTT broker is and who we are there (the password never shows in ``repr``)."""

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: Tls | None = None

    def __str__(self) -> str:
        """``mqtt://USER:***@HOST:PORT`` (no password; ``mqtts://`` over TLS), for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username is not None:
            user = self.username + (":***" if self.password is not None else "") + "@"
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"

    def with_tls_files(
        self, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
    ) -> BrokerUrl:
        """This broker with TLS files set; files on a plain ``mqtt://`` URL are an error."""
        if ca_file is None and cert_file is None and key_file is None:
            return self
        if self.tls is None:
            raise ValueError(
                f"MQTT broker {self}: TLS CA/certificate files are set but the URL is not "
                "mqtts://USER:PASSWORD@HOST:PORT"
            )
        return dataclasses.replace(self, tls=Tls(ca_file, cert_file, key_file).checked())


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
    if parts.scheme not in {"mqtt", "tcp", "mqtts", "ssl"}:
        raise ValueError(
            f"MQTT broker {shown!r}: scheme must be mqtt:// or mqtts:// (TLS) (got "
            f"{parts.scheme}://); expected mqtt://USER:PASSWORD@HOST:PORT or HOST[:PORT]"
        )
    tls = Tls() if parts.scheme in {"mqtts", "ssl"} else None
    if tls is not None and default_port == DEFAULT_PORT:
        default_port = DEFAULT_TLS_PORT
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
        tls=tls,
    )


def encode_batch(gateway: str, samples: Sequence[Sample], batch_id: str | None = None) -> bytes:
    """A batch as JSON; NaN values become ``null``."""
    doc: dict = {"v": PAYLOAD_VERSION, "gateway": gateway}
    if batch_id is not None:
        doc["batch"] = batch_id
    doc["samples"] = _rows(samples)
    return json.dumps(doc).encode()


@dataclass(frozen=True)
class Batch:
    """A decoded sample batch: the gateway its payload names, its id (if any), the samples."""

    gateway: str
    batch_id: str | None
    samples: list[Sample]


def _rows(samples: Sequence[Sample]) -> list[list]:
    return [
        [s.channel, s.ts_ns, None if math.isnan(s.value) else s.value, s.quality] for s in samples
    ]


def decode_batch(payload: bytes) -> tuple[str, list[Sample]]:
    """``(gateway, samples)`` of a payload; raises ValueError naming what is wrong."""
    b = decode_message(payload)
    return b.gateway, b.samples


def decode_message(payload: bytes) -> Batch:
    """The :class:`Batch` of a payload; raises ValueError naming what is wrong."""
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
    batch_id = doc.get("batch")
    if batch_id is not None and (not isinstance(batch_id, str) or len(batch_id) > 200):
        raise ValueError(f"sample batch: batch must be a string id, got {str(batch_id)[:80]!r}")
    return Batch(str(doc.get("gateway", "")), batch_id, out)


def encode_ack(batch_id: str, stored: int, dead_lettered: int = 0, quarantined: int = 0) -> bytes:
    """The centre's acknowledgement of a stored batch."""
    return json.dumps(
        {
            "v": PAYLOAD_VERSION,
            "batch": batch_id,
            "stored": stored,
            "dead_lettered": dead_lettered,
            "quarantined": quarantined,
        }
    ).encode()


def decode_ack(payload: bytes) -> str:
    """The batch id of an acknowledgement; raises ValueError naming what is wrong."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"acknowledgement is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("batch"), str):
        raise ValueError(f"acknowledgement without a batch id: {str(doc)[:80]!r}")
    return str(doc["batch"])


def _client(
    client_id: str,
    clean_session: bool,
    username: str | None,
    password: str | None,
    mqtt5: bool = False,
    tls: Tls | None = None,
) -> mqtt.Client:
    if mqtt5:  # MQTT 5: the session's persistence is the CONNECT's clean_start/expiry
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
    if username is not None:
        c.username_pw_set(username, password)
    if tls is not None:  # the server's certificate and host name are verified
        try:
            c.tls_set(
                ca_certs=tls.ca_file,
                certfile=tls.cert_file,
                keyfile=tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"MQTT TLS settings {tls}: {exc}") from None
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
    """Publishes batches with QoS 1; the centre acknowledges stored batches on the ack topic.

    ``send(batch_id, samples)`` returns once the broker has the batch (PUBACK) and raises
    otherwise; ``on_ack(batch_id)`` is called when the centre says it stored the batch, and
    ``on_reconnect()`` after each new connection (set by
    :class:`~modbus_gateway.spool.StoreAndForward`). ``write(samples)`` publishes without a
    batch id (no acknowledgement; for tools and tests).

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
        tls: Tls | None = None,
    ):
        self.host, self.port, self.gateway = host, port, gateway
        self.username, self._password = username, password
        self.tls = tls
        self.topic = TOPIC.format(gateway=gateway)
        self.timeout_s = timeout_s
        self.ack_topic = ACK_TOPIC.format(gateway=gateway)
        self.refused = ""
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._sub_mid: int | None = None
        self.client: mqtt.Client | None = None
        self.on_ack: Callable[[str], None] | None = None
        self.on_reconnect: Callable[[], None] | None = None
        self.acks = 0

    @classmethod
    def from_url(cls, broker: BrokerUrl, gateway: str, timeout_s: float = 5.0) -> MqttSampleSink:
        """A sink for the broker of a parsed ``mqtt://`` URL."""
        return cls(broker.host, broker.port, gateway, timeout_s, broker.username, broker.password,
                   broker.tls)  # fmt: skip

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # write raises it (and the spool logs it)
            self.refused = str(reason_code)
            return
        self.refused = ""
        self._subscribed.clear()
        _, self._sub_mid = client.subscribe(self.ack_topic, qos=1)
        self._connected.set()
        if self.on_reconnect is not None:
            self.on_reconnect()

    def _on_disconnect(self, *args) -> None:
        self._connected.clear()
        self._subscribed.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid == self._sub_mid and not any(rc.is_failure for rc in reason_codes):
            self._subscribed.set()
        elif mid == self._sub_mid:
            log.error("MQTT broker refused the subscription to %s", self.ack_topic)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            batch_id = decode_ack(msg.payload)
        except ValueError as exc:
            log.warning("%s: %s", msg.topic, exc)
            return
        self.acks += 1
        if self.on_ack is not None:
            self.on_ack(batch_id)

    def _start(self) -> mqtt.Client:
        c = _client(f"noaber-gw-{self.gateway}", True, self.username, self._password,
                    tls=self.tls)  # fmt: skip
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
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
        self._subscribed.clear()
        self.refused = ""

    def write(self, samples: Sequence[Sample]) -> None:
        """Publish without a batch id; returns after the PUBACK (no end-to-end acknowledgement)."""
        self._publish(encode_batch(self.gateway, samples), wait_subscribed=False)

    def send(self, batch_id: str, samples: Sequence[Sample]) -> None:
        """Publish a batch with its id; returns after the PUBACK, raises ConnectionError."""
        self._publish(encode_batch(self.gateway, samples, batch_id), wait_subscribed=True)

    def _publish(self, payload: bytes, wait_subscribed: bool) -> None:
        client = self.client or self._start()
        _await_connack(self._connected, lambda: self.refused, self.timeout_s)
        if not self._connected.is_set():
            reason = self.refused
            self._reset()
            raise _not_connected(f"{self.host}:{self.port}", self.username, reason)
        if wait_subscribed and not self._subscribed.wait(self.timeout_s):
            self._reset()  # an acknowledgement could not reach us: do not send yet
            raise ConnectionError(
                f"MQTT broker {self.host}:{self.port}: no subscription to {self.ack_topic} "
                f"for user {self.username!r} (check the broker's ACL)"
            )
        info = client.publish(self.topic, payload, qos=1)
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
    batch_id: str | None = None


@dataclass(frozen=True)
class Received:
    """A batch as the centre received it: the topic it came on and what its payload says.

    ``topic_gateway`` is the gateway the broker let publish on the topic (its identity);
    ``gateway`` is what the payload claims.
    """

    topic: str
    topic_gateway: str | None
    gateway: str
    batch_id: str | None
    samples: list[Sample]


@dataclass(frozen=True)
class Outcome:
    """What a :class:`BatchSink` did with a batch (the counts go into the acknowledgement)."""

    stored: int
    dead_lettered: int = 0
    quarantined: int = 0


SHARE_PREFIX = "$share/"
"""MQTT 5 shared subscriptions: ``$share/<group>/<filter>`` spreads the filter's messages over
the group's subscribers (each message to one of them)."""
SESSION_EXPIRY_S = 7 * 86_400
"""MQTT 5: how long the broker keeps a disconnected consumer's session (and queue) [s]."""


def shared_topic(group: str, topic: str = TOPIC_ALL) -> str:
    """``$share/<group>/<topic>``; ValueError for a group name MQTT does not allow."""
    if not group or any(c in group for c in "/+#"):
        raise ValueError(f"shared subscription group {group!r}: no '/', '+' or '#', not empty")
    return f"{SHARE_PREFIX}{group}/{topic}"


class BatchSink(Protocol):
    """A sink that checks each batch as received (gateway, topic) before storing it.

    ``write_batch`` stores what may be stored, records the rest (dead letters, quarantine)
    durably, and returns the counts; it raises when the store is down (the batch is retried).
    """

    def write_batch(self, batch: Received) -> Outcome: ...


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
        sink: SampleSink | BatchSink,
        topic: str = TOPIC_ALL,
        client_id: str = "noaber-store",
        retry_s: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        dead_letter: DeadLetterFile | None = None,
        mqtt5: bool | None = None,
        max_batches: int = 1,
        tls: Tls | None = None,
    ):
        self.sink = sink
        self.topic = topic
        #: MQTT 5 (default for a ``$share/...`` topic): shared subscriptions, session expiry
        self.mqtt5 = topic.startswith(SHARE_PREFIX) if mqtt5 is None else mqtt5
        #: batches handed at once to a sink with ``write_batches`` (one transaction)
        self.max_batches = max(1, max_batches)
        self.retry_s = retry_s
        self.username = username
        self.dead_letter = dead_letter
        self.stored = 0
        self.dead_lettered = 0
        self.dead_lettered_batches = 0
        self.quarantined = 0
        self.acks_sent = 0
        self.rejected: list[str] = []
        self.failures = 0
        self.refused = ""
        self._started = False
        self._pending: deque[_Batch] = deque()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self.client = _client(client_id, False, username, password, self.mqtt5, tls)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message
        self.host, self.port = host, port
        self._writer = threading.Thread(target=self._write_loop, name="mqtt-store", daemon=True)

    @classmethod
    def from_url(
        cls, broker: BrokerUrl, sink: SampleSink | BatchSink, **kwargs
    ) -> MqttSampleConsumer:
        """A consumer for the broker of a parsed ``mqtt://`` URL (other arguments as above)."""
        return cls(
            broker.host,
            broker.port,
            sink,
            username=broker.username,
            password=broker.password,
            tls=broker.tls,
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
            decoded = decode_message(msg.payload)
        except ValueError as exc:
            log.error("%s: %s; payload %r", msg.topic, exc, msg.payload[:200])
            self.rejected.append(str(exc))
            if self.dead_letter is not None or hasattr(self.sink, "record_malformed"):
                self._pending.append(
                    _Batch(msg.mid, msg.qos, msg.topic, "", [], str(exc), bytes(msg.payload))
                )
                self._wake.set()
                return
            client.ack(msg.mid, msg.qos)
            return
        self._pending.append(
            _Batch(
                msg.mid,
                msg.qos,
                msg.topic,
                decoded.gateway,
                decoded.samples,
                batch_id=decoded.batch_id,
            )
        )
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
        many = getattr(self.sink, "write_batches", None) if self.max_batches > 1 else None
        with self._write_lock:
            while self._pending:
                group = [self._pending[0]]
                if many is not None:  # several well-formed batches in one write
                    # by index, not by iterating: the network thread appends meanwhile (a
                    # deque iterated while it grows raises "deque mutated during iteration")
                    n = min(len(self._pending), self.max_batches)
                    for b in [self._pending[i] for i in range(1, n)]:
                        if b.payload is not None:
                            break
                        group.append(b)
                    if group[0].payload is not None:
                        group = group[:1]
                outcomes: list[Outcome | None]
                try:
                    if len(group) > 1:
                        outcomes = list(many(self._received(group)))  # type: ignore[misc]
                        self._count(outcomes)
                    else:
                        outcomes = [self._write(group[0])]
                except Exception as exc:  # the store is down: keep it, no ack, retry later
                    self.failures += 1
                    log.warning("store refused a batch (%s); %d waiting", exc, len(self._pending))
                    return False
                for batch, outcome in zip(group, outcomes, strict=True):
                    self._pending.popleft()
                    self._acknowledge(batch, outcome)
        return True

    @staticmethod
    def _received(group: list[_Batch]) -> list[Received]:
        return [
            Received(b.topic, topic_gateway(b.topic), b.gateway, b.batch_id, b.samples)
            for b in group
        ]

    def _count(self, outcomes: list[Outcome | None]) -> None:
        for o in outcomes:
            if o is not None:
                self.stored += o.stored
                self.dead_lettered += o.dead_lettered
                self.quarantined += o.quarantined

    def _acknowledge(self, batch: _Batch, outcome: Outcome | None) -> None:
        """End to end to the gateway (it may delete the batch from its spool), then to the broker."""
        gateway = topic_gateway(batch.topic)
        if batch.batch_id is not None and gateway is not None and outcome is not None:
            self.client.publish(
                ACK_TOPIC.format(gateway=gateway),
                encode_ack(
                    batch.batch_id, outcome.stored, outcome.dead_lettered, outcome.quarantined
                ),
                qos=1,
            )
            self.acks_sent += 1
        self.client.ack(batch.mid, batch.qos)

    def _write(self, batch: _Batch) -> Outcome | None:
        """Store one batch (or record it as a dead letter); raises when the store is down."""
        if batch.payload is not None:
            record = getattr(self.sink, "record_malformed", None)
            if record is not None:
                record(batch.topic, batch.error, batch.payload)
            else:
                self._dead(batch, batch.error, payload=batch.payload)
            self.dead_lettered_batches += 1
            return None
        sink = self.sink
        if not hasattr(sink, "write"):  # a BatchSink: it checks the batch as received
            outcome = cast(BatchSink, sink).write_batch(
                Received(
                    batch.topic,
                    topic_gateway(batch.topic),
                    batch.gateway,
                    batch.batch_id,
                    batch.samples,
                )
            )
            self.stored += outcome.stored
            self.dead_lettered += outcome.dead_lettered
            self.quarantined += outcome.quarantined
            return outcome
        try:
            cast(SampleSink, sink).write(batch.samples)
            self.stored += len(batch.samples)
            return Outcome(len(batch.samples))
        except UnknownChannels as exc:
            if self.dead_letter is None:
                raise
            self.stored += len(batch.samples) - len(exc.samples)
            self._dead(batch, str(exc), samples=exc.samples)
            return Outcome(len(batch.samples) - len(exc.samples), len(exc.samples))

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_s)
            self._wake.clear()
            try:
                if self._pending and not self._drain():
                    self._stop.wait(self.retry_s)  # back off while the store is down
            except Exception:  # never a dead writer with batches waiting: log, retry later
                self.failures += 1
                log.exception("storing the waiting batches failed; %d waiting", self.waiting)
                self._stop.wait(self.retry_s)
        self._drain()  # what arrived before the stop is stored and acknowledged

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def hold(self) -> threading.Lock:
        """A lock that pauses writing while held (``with consumer.hold(): ...``)."""
        return self._write_lock

    def start(self, timeout_s: float = 5.0) -> None:
        """Connect, subscribe and start writing; raises ConnectionError (refused, unreachable)."""
        if self.mqtt5:  # a persistent session: kept by the broker while we are away
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self.client.connect_async(
                self.host, self.port, keepalive=30, clean_start=False, properties=props
            )
        else:
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
