"""``noaber gateway consume`` against a Mosquitto with a password file on 127.0.0.1: the edge
publishes with credentials, the centre stores every sample exactly once, an unknown channel
goes to the dead-letter store without holding up later batches, a wrong password is one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from energy.db import make_engine, session_factory, upgrade
from energy.gateways import DeadLetter, add_gateway
from energy.models import Asset, AssetKind, Channel, Quantity, Site
from energy.readings import read_readings
from energy.samples import SampleStore
from modbus_gateway.broker_auth import mosquitto_hash
from modbus_gateway.mqtt import (
    BrokerUrl,
    KeyedStoreSink,
    MqttSampleConsumer,
    MqttSampleSink,
    UnknownChannels,
    parse_broker_url,
    redact_url,
)
from modbus_gateway.spool import MemorySink, Sample
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto
from tests.modbus_gateway.test_mqtt import serve_sync_site  # noqa: F401 (a fixture)
from tests.net import scaled

USER = "noaber"
PASSWORD = "p@ss:w/rd#1"  # characters that must be percent-encoded in a URL
S = 1_000_000_000
T0 = (time.time_ns() // (900 * S) - 4) * 900 * S + 100 * S  # an hour ago: in the window
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def auth_broker(tmp_path):
    """A Mosquitto on 127.0.0.1 that admits only USER with PASSWORD."""
    exe = need_executable("mosquitto")
    passwd = need_executable("mosquitto_passwd")
    pwfile = tmp_path / "passwords"
    subprocess.run([passwd, "-c", "-b", str(pwfile), USER, PASSWORD], check=True, timeout=10)
    broker = Mosquitto(exe, tmp_path, f"allow_anonymous false\npassword_file {pwfile}\n")
    broker.start()
    try:
        yield f"mqtt://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{broker.port}"
    finally:
        broker.stop()


def _channels(url: str, keys: list[str], gateway: str | None = "dorpshuis-mqtt") -> dict[str, int]:
    """The channels of site dorpshuis-mqtt, and ``gateway`` bound to the site."""
    engine = make_engine(url)
    site = Site(
        name="dorpshuis-mqtt",
        display_name="Dorpshuis MQTT",
        ean="871685900000000031",
        latitude=52.99,
        longitude=6.56,
        grid_import_limit_kw=40,
        grid_export_limit_kw=30,
    )
    asset = Asset(site=site, name="grid", kind=AssetKind.BUILDING_LOAD)
    chans = [Channel(key=k, asset=asset, quantity=Quantity.POWER, unit="W") for k in keys]
    with session_factory(engine)() as session:
        session.add_all([site, asset, *chans])
        session.flush()
        if gateway is not None:
            add_gateway(session, gateway, [site.name], mosquitto_hash("unused"))
        session.commit()
        ids = {c.key: c.id for c in chans}
    engine.dispose()
    return ids


def _consume(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "noaber.cli", "gateway", "consume", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(tmp_path: Path, db_url: str, mqtt_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOABER_")}
    env.update(
        NOABER_MODE="local",
        NOABER_DATA_DIR=str(tmp_path / "data"),
        NOABER_DATABASE_URL=db_url,
        COLUMNS="400",
    )
    if mqtt_url is not None:
        env["NOABER_MQTT_URL"] = mqtt_url
    return env


def _rows_on_disk(store: SampleStore, cid: int) -> int:
    return sum(
        pq.read_metadata(p).num_rows for p in (store.root / f"channel={cid}").rglob("*.parquet")
    )


def test_parse_broker_url_and_redaction():
    b = parse_broker_url("mqtt://noaber:p%40ss%3Aw%2Frd@mqtt:1884")
    assert (b.host, b.port, b.username, b.password) == ("mqtt", 1884, "noaber", "p@ss:w/rd")
    assert "p@ss" not in repr(b) and "p@ss" not in str(b)
    assert str(b) == "mqtt://noaber:***@mqtt:1884"
    assert parse_broker_url("127.0.0.1:1999") == BrokerUrl("127.0.0.1", 1999)
    assert parse_broker_url("mqtt://noaber:x@mqtt") == BrokerUrl("mqtt", 1883, "noaber", "x")
    assert parse_broker_url("broker") == BrokerUrl("broker", 1883)
    for bad in (
        "mqtt://noaber:se/cret@mqtt:1883",
        "http://noaber:secret@x:1",
        "mqtt://u:secret@h:x",
    ):
        with pytest.raises(ValueError, match="mqtt://USER:PASSWORD@HOST:PORT") as err:
            parse_broker_url(bad)
        assert "secret" not in str(err.value) and "cret" not in str(err.value)
    assert redact_url("mqtt://a:b@c/d@h:1") == "mqtt://***@h:1"


def test_keyed_sink_reloads_once_then_reports_unknown(tmp_path):
    maps = [{"a": 1}, {"a": 1, "b": 2}]
    calls = []

    def load():
        calls.append(1)
        return maps[min(len(calls) - 1, 1)]

    store = SampleStore(tmp_path / "s")
    sink = KeyedStoreSink(store, load)
    sink.write([Sample("a", 1, 1.0, 0)])
    assert len(calls) == 1  # known keys: no reload
    sink.write([Sample("b", 2, 2.0, 0)])  # imported since the start: found by the reload
    assert len(calls) == 2 and store.read(2).ts.tolist() == [2]
    with pytest.raises(UnknownChannels, match="x") as err:
        sink.write([Sample("x", 3, 3.0, 0), Sample("a", 3, 4.0, 0)])
    assert len(calls) == 3  # one reload for this batch
    assert err.value.samples == [Sample("x", 3, 3.0, 0)]
    assert store.read(1).ts.tolist() == [1, 3]  # the rest of the batch is stored
    assert sink.take_written() == {1, 2} and sink.take_written() == set()


@pytest.mark.slow
def test_consume_stores_once_dead_letters_unknown_and_updates_intervals(
    auth_broker, tmp_path, db_url
):
    ids = _channels(db_url, ["dorpshuis-mqtt/grid/power", "dorpshuis-mqtt/pv/power"])
    a, b = ids["dorpshuis-mqtt/grid/power"], ids["dorpshuis-mqtt/pv/power"]
    broker = parse_broker_url(auth_broker)
    # the centre's persistent session exists (as after its first start): batches published
    # while it is down wait at the broker
    session = MqttSampleConsumer.from_url(broker, MemorySink())
    session.start()
    session.stop()

    batch1 = [Sample("dorpshuis-mqtt/grid/power", T0 + i * S, 1000.0 + i, 0) for i in range(10)]
    batch2 = [Sample("dorpshuis-mqtt/heatpump/power", T0, 5.0, 0)]
    batch2 += [Sample("dorpshuis-mqtt/pv/power", T0 + i * S, -200.0 - i, 0) for i in range(3)]
    batch3 = [Sample("dorpshuis-mqtt/grid/power", T0 + i * S, 1000.0 + i, 0) for i in range(10, 20)]
    edge = MqttSampleSink.from_url(broker, "dorpshuis-mqtt", timeout_s=5)
    try:
        edge.write(batch1)
        edge.write(batch2)
        assert edge.client is not None
        edge.client.publish("noaber/dorpshuis-mqtt/samples", b"not json", qos=1).wait_for_publish(5)
        edge.write(batch3)
        edge.write(batch1)  # delivered twice (QoS 1 is at-least-once)
    finally:
        edge.close()

    env = _env(tmp_path, db_url, auth_broker)
    res = _consume(env, "--max-seconds", "3", "--intervals-every", "1")
    assert res.returncode == 0, res.stderr
    assert PASSWORD not in res.stdout + res.stderr and quote(PASSWORD, safe="") not in res.stderr
    assert f"mqtt://{USER}:***@127.0.0.1" in res.stderr
    assert "dorpshuis-mqtt/heatpump/power" in res.stderr and "dead-letter" in res.stderr
    assert "unknown_channel" in res.stderr

    store = SampleStore(tmp_path / "data" / "samples")
    got = store.read(a)
    assert got.ts.tolist() == [s.ts_ns for s in batch1 + batch3]
    assert got.value.tolist() == [s.value for s in batch1 + batch3]
    assert _rows_on_disk(store, a) == 20  # the second delivery stored nothing
    assert store.read(b).value.tolist() == [-200.0, -201.0, -202.0]

    eng = make_engine(db_url)
    with session_factory(eng)() as s:
        readings = read_readings(s, [a, b])
        dead = list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))
    eng.dispose()
    assert [d.reason for d in dead] == ["unknown_channel", "malformed"]
    assert dead[0].gateway == "dorpshuis-mqtt" and "heatpump" in dead[0].detail
    assert dead[0].samples == [["dorpshuis-mqtt/heatpump/power", T0, 5.0, 0]]
    assert dead[1].payload == "not json" and "not JSON" in dead[1].detail
    assert "33 samples stored, 1 to the dead-letter store" in res.stdout, res.stdout
    assert set(readings.channel_id) == {a, b}  # the interval pipeline ran at the centre

    # everything was acknowledged: the session has nothing left to deliver
    left = MemorySink()
    again = MqttSampleConsumer.from_url(broker, left)
    again.start()
    time.sleep(0.7)
    again.stop()
    assert again.stored == 0 and not left.samples and again.waiting == 0


def test_wrong_password_and_no_broker_are_one_line_errors(auth_broker, tmp_path):
    broker = parse_broker_url(auth_broker)
    wrong = BrokerUrl(broker.host, broker.port, USER, "wrong-secret")
    edge = MqttSampleSink.from_url(wrong, "site-x", timeout_s=5)
    t = time.monotonic()
    with pytest.raises(ConnectionError, match="Not authorized"):
        edge.write([Sample("c", 1, 1.0, 0)])
    assert time.monotonic() - t < 4  # refused at once, not after the timeout
    edge.close()

    db_url = f"sqlite:///{tmp_path / 'centre.db'}"
    eng = make_engine(db_url)
    upgrade(eng)
    eng.dispose()
    url = f"mqtt://{USER}:wrong-secret@127.0.0.1:{broker.port}"
    res = _consume(_env(tmp_path, db_url, None), "--mqtt", url, "--max-seconds", "1")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Not authorized" in lines[0] and "user 'noaber'" in lines[0], (
        res.stderr
    )
    assert "wrong-secret" not in res.stdout + res.stderr

    res = _consume(_env(tmp_path, db_url, None), "--max-seconds", "1")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOABER_MQTT_URL" in lines[0], res.stderr


def test_gateway_name_from_the_site_description(tmp_path):
    from energy.errors import NoaberError
    from noaber.cli.gateway import _gateway_name

    site = tmp_path / "site.yaml"
    site.write_text("site:\n  name: dorpshuis-noaberhof\ndevices: []\n", encoding="utf-8")
    assert _gateway_name(site, None) == "dorpshuis-noaberhof"  # not "site" for every gateway
    assert _gateway_name(site, "edge-2") == "edge-2"
    (tmp_path / "edge-a.yaml").write_text("devices: []\n", encoding="utf-8")
    assert _gateway_name(tmp_path / "edge-a.yaml", None) == "edge-a"
    with pytest.raises(NoaberError, match="MQTT topic level"):
        _gateway_name(site, "a/+")


def test_gateway_run_publishes_with_credentials_from_env(
    serve_sync_site,  # noqa: F811 (the fixture imported above)
    auth_broker,
    settings_env,
    monkeypatch,
    tmp_path,
):
    """``noaber gateway run SITE --mqtt-from-env``: NOABER_MQTT_URL with user and password."""
    import typer
    from typer.testing import CliRunner

    from energy.settings import get_settings
    from noaber.cli.gateway import register

    monkeypatch.setenv("NOABER_MQTT_URL", auth_broker)
    get_settings.cache_clear()
    got = MemorySink()
    consumer = MqttSampleConsumer.from_url(
        parse_broker_url(auth_broker), got, topic="noaber/edge-7/samples", client_id="t-env"
    )
    consumer.start()
    app = typer.Typer()
    register(app)
    try:
        res = CliRunner().invoke(
            app,
            ["gateway", "run", str(serve_sync_site), "--mqtt-from-env", "--gateway", "edge-7",
             "--no-live", "--duration", "1.5", "--spool", str(tmp_path / "spool.sqlite")],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "0 waiting" in res.output, res.output  # nothing left in the spool
        deadline = time.monotonic() + scaled(10)
        while consumer.stored == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        consumer.stop()
    assert consumer.stored > 0
    assert {c for c, _ in got.samples} >= {"grid.total_power_w"}


def test_sigterm_stops_consume_cleanly(auth_broker, tmp_path):
    """Without --max-seconds, consume runs until SIGTERM; it exits 0 with what arrived stored
    and acknowledged."""
    import signal

    db_url = f"sqlite:///{tmp_path / 'centre.db'}"
    eng = make_engine(db_url)
    upgrade(eng)
    eng.dispose()
    cid = _channels(db_url, ["dorpshuis-mqtt/grid/power"])["dorpshuis-mqtt/grid/power"]
    broker = parse_broker_url(auth_broker)
    session = MqttSampleConsumer.from_url(broker, MemorySink())
    session.start()
    session.stop()
    batch = [Sample("dorpshuis-mqtt/grid/power", T0 + i * S, float(i), 0) for i in range(10)]
    edge = MqttSampleSink.from_url(broker, "dorpshuis-mqtt")
    try:
        edge.write(batch)
    finally:
        edge.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "noaber.cli", "gateway", "consume"],
        env=_env(tmp_path, db_url, auth_broker),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = SampleStore(tmp_path / "data" / "samples")
    try:
        deadline = time.monotonic() + scaled(90)  # a cold start under load is slow
        while store.read(cid).ts.size < 10:  # bounded by the deadline
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the batch did not reach the store"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=scaled(30))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "10 samples stored" in out and "0 unacknowledged" in out, out
    left = MemorySink()
    again = MqttSampleConsumer.from_url(broker, left)
    again.start()
    time.sleep(0.5)
    again.stop()
    assert again.stored == 0  # acknowledged before the stop
