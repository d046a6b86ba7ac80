"""TLS on the broker port: the shipped ``docker/mosquitto-tls.conf`` on a private Mosquitto
(free ports, certificates made in the test: a self-signed CA and a server certificate for
127.0.0.1), a gateway publishing over TLS with the CA, the centre's ingest consuming over TLS
into PostgreSQL and acknowledging, and clients without the CA (or without TLS) refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from energy.rawstore import PgSampleStore
from energy.settings import Settings
from modbus_gateway.mqtt import MqttSampleSink, Tls, parse_broker_url
from modbus_gateway.spool import Sample
from noaber.services.ingest import Ingest
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto
from tests.modbus_gateway.test_centre import CENTRE_PASSWORD, _broker_files, _world, pg_url
from tests.modbus_gateway.tls import make_certs
from tests.net import pick_port, scaled, wait_for_tcp, wait_until

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
__all__ = ["pg_url"]  # the fixture, used by name


def shipped_tls_broker(tmp_path: Path, pw: Path, acl: Path, certs) -> tuple[Mosquitto, int]:
    """``docker/mosquitto-tls.conf`` with its paths in ``tmp_path``; the plain listener on the
    helper's port, the TLS one on another free port. Returns the broker and the TLS port."""
    tls_port = pick_port()
    paths = {
        "password_file": pw, "acl_file": acl, "persistence_location": f"{tmp_path / 'mq'}/",
        "cafile": certs.ca, "certfile": certs.cert, "keyfile": certs.key,
    }  # fmt: skip
    conf = []
    for line in (ROOT / "docker" / "mosquitto-tls.conf").read_text(encoding="utf-8").splitlines():
        key = line.split(" ", 1)[0]
        if line == "listener 1883":
            continue  # the helper adds "listener PORT 127.0.0.1" first
        if line == "listener 8883":
            line = f"listener {tls_port} 127.0.0.1"
        elif key in paths:
            line = f"{key} {paths[key]}"
        conf.append(line)
    (tmp_path / "mq").mkdir()
    return Mosquitto(need_executable("mosquitto"), tmp_path, "\n".join(conf) + "\n"), tls_port


def test_tls_config_is_the_plain_one_plus_a_tls_listener() -> None:
    plain = (ROOT / "docker" / "mosquitto.conf").read_text(encoding="utf-8").splitlines()
    tls = (ROOT / "docker" / "mosquitto-tls.conf").read_text(encoding="utf-8").splitlines()
    settings = [ln for ln in plain if ln and not ln.startswith("#")]
    assert [ln for ln in tls if ln in settings] == settings  # every line, in order
    extra = [ln for ln in tls if ln and not ln.startswith("#") and ln not in settings]
    assert extra[0] == "listener 8883"
    assert {ln.split()[0] for ln in extra} == {
        "listener", "protocol", "cafile", "certfile", "keyfile", "tls_version"
    }  # fmt: skip


def test_broker_url_tls_settings(tmp_path) -> None:
    b = parse_broker_url("mqtts://gw-1:pw@centre.example")
    assert b.tls == Tls() and b.port == 8883 and str(b) == "mqtts://gw-1:***@centre.example:8883"
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    assert b.with_tls_files(str(ca)).tls == Tls(str(ca))
    with pytest.raises(ValueError, match="not found or not readable"):
        b.with_tls_files(str(tmp_path / "none.crt"))
    with pytest.raises(ValueError, match="not mqtts://"):
        parse_broker_url("mqtt://gw-1:pw@h").with_tls_files(str(ca))
    assert parse_broker_url("mqtt://h").tls is None and parse_broker_url("mqtt://h").port == 1883


@pytest.mark.postgres
def test_gateway_to_centre_over_tls_and_no_ca_refused(tmp_path, pg_url, monkeypatch) -> None:
    passwords, ids = _world(pg_url, 1)
    pw, acl = _broker_files(tmp_path, passwords)
    certs = make_certs(tmp_path / "certs")
    broker, tls_port = shipped_tls_broker(tmp_path, pw, acl, certs)
    broker.start()
    ingest = None
    stop = threading.Event()
    runner = None
    try:
        wait_for_tcp(tls_port)
        # the settings' CA file reaches the broker of an mqtts:// URL (as consume/run read it)
        from noaber.cli.gateway import _broker

        monkeypatch.setenv("NOABER_MQTT_CA_FILE", str(certs.ca))
        centre_url = f"mqtts://noaber:{CENTRE_PASSWORD}@127.0.0.1:{tls_port}"
        settings = Settings(mode="local", data_dir=tmp_path / "data", database_url=pg_url,
                            sample_store="postgresql")  # fmt: skip
        assert settings.mqtt_ca_file == str(certs.ca)
        centre = _broker(None, centre_url, "test", settings)
        assert centre.tls == Tls(str(certs.ca))
        ingest = Ingest(settings, centre, client_id="tls-centre", intervals_every_s=None)
        ingest.start(scaled(30))
        runner = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
        runner.start()

        gw = "gw000"
        keys = ["site-000/grid/power", "site-000/pv/power"]
        t0 = (time.time_ns() // S) * S
        samples = [Sample(k, t0 + j * S, 1000.0 + j, 0) for j in range(5) for k in keys]
        url = parse_broker_url(f"mqtts://{gw}:{passwords[gw]}@127.0.0.1:{tls_port}")
        sink = MqttSampleSink.from_url(url.with_tls_files(str(certs.ca)), gw, timeout_s=scaled(10))
        acks: list[str] = []
        sink.on_ack = acks.append
        try:
            sink.send("tls-1", samples)
            wait_until(lambda: "tls-1" in acks, "the centre's acknowledgement over TLS")
        finally:
            sink.close()
        store = PgSampleStore(ingest.engine, tmp_path)
        got = store.read(ids[keys[0]])
        assert got.ts.tolist() == [t0 + j * S for j in range(5)]
        assert got.value.tolist() == [1000.0 + j for j in range(5)]

        # no CA (the system's CAs do not know ours), or no TLS at all on the TLS port: refused
        other = [Sample(keys[0], t0 + 100 * S, 7.0, 0)]
        for bad in (
            MqttSampleSink.from_url(url, gw, timeout_s=scaled(3)),  # mqtts, system CAs
            MqttSampleSink.from_url(parse_broker_url(f"mqtt://{gw}:{passwords[gw]}@127.0.0.1:"
                                                     f"{tls_port}"), gw, timeout_s=scaled(3)),
        ):  # fmt: skip
            try:
                with pytest.raises(ConnectionError):
                    bad.send("tls-bad", other)
            finally:
                bad.close()
        assert len(store.read(ids[keys[0]], t0 + 100 * S, t0 + 101 * S)) == 0
        assert "tls-bad" not in acks
    finally:
        stop.set()
        if runner is not None:
            runner.join(scaled(30))
        broker.stop()
