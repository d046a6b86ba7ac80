"""Sample batches over MQTT: the edge gateway publishes, the centre stores (ARCHITECTURE.md).

:class:`MqttSampleSink` is a :class:`~modbus_gateway.spool.SampleSink` for
:class:`~modbus_gateway.spool.StoreAndForward`: ``write`` returns only after the broker has
acknowledged the batch (QoS 1 PUBACK) and raises otherwise, so an unreachable broker sends the
batch to the local spool. :class:`MqttSampleConsumer` subscribes at the centre with a
persistent session and manual acknowledgement: a batch is acknowledged only after the store
took it. QoS 1 is at-least-once; the store is idempotent by channel and timestamp, so every
sample is stored exactly once.

Payload (JSON, UTF-8)::

    {"v": 1, "gateway": "dorpshuis-a", "samples": [["<channel key>", ts_ns, value|null, quality], ...]}
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Sequence

import paho.mqtt.client as mqtt

from modbus_gateway.spool import Sample, SampleSink

log = logging.getLogger(__name__)

TOPIC = "noaber/{gateway}/samples"
PAYLOAD_VERSION = 1


def encode_batch(gateway: str, samples: Sequence[Sample]) -> bytes:
    """A batch as JSON; NaN values become ``null``."""
    rows = [
        [s.channel, s.ts_ns, None if math.isnan(s.value) else s.value, s.quality] for s in samples
    ]
    return json.dumps({"v": PAYLOAD_VERSION, "gateway": gateway, "samples": rows}).encode()


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


def _client(client_id: str, clean_session: bool) -> mqtt.Client:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    c.reconnect_delay_set(min_delay=1, max_delay=5)
    return c


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
    """

    def __init__(self, host: str, port: int, gateway: str, timeout_s: float = 5.0):
        self.host, self.port, self.gateway = host, port, gateway
        self.topic = TOPIC.format(gateway=gateway)
        self.timeout_s = timeout_s
        self._connected = threading.Event()
        self.client: mqtt.Client | None = None

    def _start(self) -> mqtt.Client:
        c = _client(f"noaber-gw-{self.gateway}", clean_session=True)
        c.on_connect = lambda *a: self._connected.set()
        c.on_disconnect = lambda *a: self._connected.clear()
        c.connect_async(self.host, self.port, keepalive=30)
        c.loop_start()
        self.client = c
        return c

    def _reset(self) -> None:
        """Drop the client and its queue: the spool holds the batch, not paho's memory."""
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
            self.client = None
        self._connected.clear()

    def write(self, samples: Sequence[Sample]) -> None:
        client = self.client or self._start()
        if not self._connected.wait(self.timeout_s):
            self._reset()
            raise ConnectionError(f"MQTT broker {self.host}:{self.port} not reachable")
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


class MqttSampleConsumer:
    """Subscribes to the gateways' batches and writes them to a sink (the energy store).

    A persistent session (fixed client id, ``clean_session=False``) and manual
    acknowledgement: a batch is acknowledged only after the sink took it. While the sink
    fails, batches wait in order and are retried every ``retry_s``; unacknowledged batches
    stay with the broker, which delivers them again if this process restarts. A malformed
    batch is logged with its content and acknowledged (it would never become valid).
    """

    def __init__(
        self,
        host: str,
        port: int,
        sink: SampleSink,
        topic: str = "noaber/+/samples",
        client_id: str = "noaber-store",
        retry_s: float = 1.0,
    ):
        self.sink = sink
        self.topic = topic
        self.retry_s = retry_s
        self.stored = 0
        self.rejected: list[str] = []
        self.failures = 0
        self._pending: deque[tuple[int, int, list[Sample]]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.client = _client(client_id, clean_session=False)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message
        self.host, self.port = host, port
        self._retry = threading.Thread(
            target=self._retry_loop, name="mqtt-store-retry", daemon=True
        )

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=1)
        self._connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            _, samples = decode_batch(msg.payload)
        except ValueError as exc:
            log.error("%s: %s; payload %r", msg.topic, exc, msg.payload[:200])
            self.rejected.append(str(exc))
            client.ack(msg.mid, msg.qos)
            return
        with self._lock:
            self._pending.append((msg.mid, msg.qos, samples))
        self._drain()

    def _drain(self) -> None:
        """Write waiting batches in order; acknowledge each one the sink took."""
        with self._lock:
            while self._pending:
                mid, qos, samples = self._pending[0]
                try:
                    self.sink.write(samples)
                except Exception as exc:  # the store is down: keep it, no ack, retry later
                    self.failures += 1
                    log.warning("store refused a batch (%s); %d waiting", exc, len(self._pending))
                    return
                self._pending.popleft()
                self.stored += len(samples)
                self.client.ack(mid, qos)

    def _retry_loop(self) -> None:
        while not self._stop.wait(self.retry_s):
            if self._pending:
                self._drain()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def start(self, timeout_s: float = 5.0) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._retry.start()
        if not self._connected.wait(timeout_s):
            raise ConnectionError(f"MQTT broker {self.host}:{self.port} not reachable")

    def stop(self) -> None:
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()
