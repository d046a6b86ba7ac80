"""Sample batches over MQTT with a real Mosquitto on 127.0.0.1: broker restarts and store
outages lose nothing and store nothing twice."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from energy.samples import SampleStore
from modbus_gateway.mqtt import MqttSampleConsumer, MqttSampleSink, decode_batch, encode_batch
from modbus_gateway.service import GatewayService
from modbus_gateway.spool import MemorySink, Sample, SampleStoreSink
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto, config_for, start_simulate
from tests.net import scaled, until


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto with persistence on 127.0.0.1, to be stopped and started again."""
    exe = need_executable("mosquitto")
    (tmp_path / "db").mkdir()
    b = Mosquitto(
        exe,
        tmp_path,
        f"allow_anonymous true\npersistence true\npersistence_location {tmp_path / 'db'}/\n"
        "max_queued_messages 100000\n",
    )
    b.start()
    yield b
    b.stop()


@pytest.fixture
def serve_sync_site(tmp_path):
    """A simulated SDM630 in a subprocess (``noaber simulate``) and its site file."""
    site = tmp_path / "edge-site.yaml"
    doc = {"devices": [{"name": "grid", "profile": "eastron_sdm630", "poll_interval_s": 0.5}]}
    proc, _ = start_simulate(doc, site)
    yield site
    proc.terminate()
    proc.wait(10)


def test_codec_roundtrip_and_precise_errors():
    batch = [Sample("a/b/power", 1, 2.5, 0), Sample("a/b/power", 2, math.nan, 3)]
    gw, back = decode_batch(encode_batch("site-a", batch))
    assert gw == "site-a" and back[0] == batch[0] and math.isnan(back[1].value)
    with pytest.raises(ValueError, match="not JSON"):
        decode_batch(b"\xff")
    with pytest.raises(ValueError, match=r"samples\[0\]"):
        decode_batch(b'{"v": 1, "samples": [["x", "not-a-ts", 1, 0]]}')


class _Taken:
    """A sink that notes which samples (channel, timestamp) it passed on to ``inner``."""

    def __init__(self, inner):
        self.inner = inner
        self.keys: set[tuple[str, int]] = set()

    def write(self, samples):
        self.inner.write(samples)
        self.keys.update((s.channel, s.ts_ns) for s in samples)


async def test_broker_restart_mid_run_every_sample_stored_once(serve, broker, tmp_path):
    srv, _ = await serve("eastron_sdm120")
    cfg = config_for(
        [{"name": "m", "profile": "eastron_sdm120", "port": srv.port, "poll_interval_s": 0.1}]
    )
    keys = list(cfg.channel_map(cfg.devices[0]).values())
    ids = {k: i + 1 for i, k in enumerate(keys)}
    store = SampleStore(tmp_path / "store")
    taken = _Taken(SampleStoreSink(store, ids))
    consumer = MqttSampleConsumer("127.0.0.1", broker.port, taken, client_id="t-store")
    consumer.start()
    edge = MqttSampleSink("127.0.0.1", broker.port, "site-a", timeout_s=1.0)
    service = GatewayService(cfg, edge, tmp_path / "spool.sqlite", flush_interval_s=0.2)
    produced: list[Sample] = []
    put = service.forwarder.put
    service.gateway.on_samples = lambda s: (produced.extend(s), put(s))
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: consumer.stored > 0, "first batch at the store", timeout_s=60)
        broker.stop()  # the site's broker goes down
        await until(
            lambda: service.forwarder.failures > 0 and len(service.forwarder.spool) > 10,
            "spooling",
            timeout_s=60,
        )
        broker.start()  # and comes back (its persistent session keeps the consumer's subscription)
        await until(lambda: len(service.forwarder.spool) == 0, "the spool to drain", timeout_s=60)
        service.stop()
        await asyncio.wait_for(task, scaled(30))
        try:
            # every sample reached the store (a count would include redelivered batches)
            want = {(s.channel, s.ts_ns) for s in produced}
            await until(
                lambda: taken.keys >= want and consumer.waiting == 0,
                "the store to catch up",
                timeout_s=60,
            )
        except AssertionError:
            state = f"stored {consumer.stored} of {len(produced)}, waiting {consumer.waiting}"
            raise AssertionError(f"the store did not catch up: {state}") from None
    finally:
        service.stop()
        service.close()
        edge.close()
        consumer.stop()
    for key, cid in ids.items():
        want = [s for s in produced if s.channel == key]
        got = store.read(cid)
        assert got.ts.tolist() == [s.ts_ns for s in want], key
        assert got.value.tolist() == [s.value for s in want]


async def test_consumer_keeps_batches_while_the_store_is_down(broker):
    class Flaky:
        def __init__(self):
            self.inner = MemorySink()
            self.down = True
            self.order: list[int] = []

        def write(self, samples):
            if self.down:
                raise OSError("store down")
            self.inner.write(samples)
            self.order.extend(s.ts_ns for s in samples)

    sink = Flaky()
    consumer = MqttSampleConsumer("127.0.0.1", broker.port, sink, client_id="t-flaky", retry_s=0.1)
    consumer.start()
    edge = MqttSampleSink("127.0.0.1", broker.port, "site-b")
    try:
        for i in range(5):
            edge.write([Sample("c", i, float(i), 0)])
        await until(lambda: consumer.waiting == 5 and consumer.failures > 0, "batches waiting")
        sink.down = False
        await until(lambda: consumer.waiting == 0, "the retry")
    finally:
        edge.close()
        consumer.stop()
    assert sink.order == [0, 1, 2, 3, 4]
    assert consumer.stored == 5


def test_gateway_run_publishes_to_mqtt(serve_sync_site, broker, tmp_path):
    """``noaber gateway run SITE --mqtt HOST:PORT``: the edge gateway publishes its batches."""
    import typer
    from typer.testing import CliRunner

    from noaber.cli.gateway import register

    site = serve_sync_site
    got = MemorySink()
    consumer = MqttSampleConsumer("127.0.0.1", broker.port, got, client_id="t-cli")
    consumer.start()
    app = typer.Typer()
    register(app)
    try:
        res = CliRunner().invoke(
            app,
            ["gateway", "run", str(site), "--mqtt", f"127.0.0.1:{broker.port}", "--no-live",
             "--duration", "1.5", "--spool", str(tmp_path / "spool.sqlite")],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        deadline = time.monotonic() + scaled(10)
        while consumer.stored == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        consumer.stop()
    assert consumer.stored > 0
    assert {c for c, _ in got.samples} >= {"grid.total_power_w"}
