"""The bridge example for a site behind NAT: two private Mosquittos, the centre on the shipped
``docker/mosquitto-tls.conf`` and the site on the shipped ``docker/mosquitto-bridge-site.conf``
(names, ports and paths substituted, the centre's CA made in the test). A gateway publishes to
the site broker; its sample reaches the centre over the TLS bridge and is stored in
PostgreSQL, and the centre's acknowledgement comes back to the gateway through the bridge."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from energy.rawstore import PgSampleStore
from energy.settings import Settings
from modbus_gateway.broker_auth import mosquitto_hash, set_password_entry
from modbus_gateway.mqtt import MqttSampleSink, parse_broker_url
from modbus_gateway.spool import Sample
from noaber.services.ingest import Ingest
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto
from tests.modbus_gateway.test_centre import CENTRE_PASSWORD, _broker_files, _world, pg_url
from tests.modbus_gateway.test_mqtt_tls import shipped_tls_broker
from tests.modbus_gateway.tls import make_certs
from tests.net import scaled, wait_for_tcp, wait_until

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
__all__ = ["pg_url"]  # the fixture, used by name


def site_broker(tmp_path: Path, gateway: str, password: str, centre_port: int, ca: Path,
                site_passwords: Path) -> Mosquitto:  # fmt: skip
    """The shipped bridge example with its placeholders and paths replaced."""
    text = (ROOT / "docker" / "mosquitto-bridge-site.conf").read_text(encoding="utf-8")
    for placeholder in ("GATEWAY_NAME", "GATEWAY_PASSWORD", "centre.example.org:8883"):
        assert placeholder in text, placeholder
    text = (
        text.replace("GATEWAY_PASSWORD", password)
        .replace("GATEWAY_NAME", gateway)
        .replace("centre.example.org:8883", f"127.0.0.1:{centre_port}")
        .replace("/mosquitto/certs/ca.crt", str(ca))
        .replace("/mosquitto/config/passwords", str(site_passwords))
        .replace("/mosquitto/data/", f"{tmp_path / 'data'}/")
    )
    lines = [ln for ln in text.splitlines() if ln != "listener 1883"]  # the helper's port
    (tmp_path / "data").mkdir(parents=True)
    return Mosquitto(need_executable("mosquitto"), tmp_path, "\n".join(lines) + "\n")


@pytest.mark.postgres
def test_site_bridge_forwards_samples_and_brings_the_ack_back(tmp_path, pg_url) -> None:
    passwords, ids = _world(pg_url, 1)
    gw = "gw000"
    centre_dir, site_dir = tmp_path / "centre", tmp_path / "site"
    centre_dir.mkdir()
    site_dir.mkdir()
    pw, acl = _broker_files(centre_dir, passwords)
    certs = make_certs(centre_dir / "certs")
    centre, tls_port = shipped_tls_broker(centre_dir, pw, acl, certs)
    site_pw = site_dir / "passwords"
    local_password = "site-local-pw"
    set_password_entry(site_pw, gw, mosquitto_hash(local_password))
    site = site_broker(site_dir, gw, passwords[gw], tls_port, certs.ca, site_pw)
    stop = threading.Event()
    runner = None
    centre.start()
    try:
        wait_for_tcp(tls_port)
        assert centre.port is not None
        settings = Settings(mode="local", data_dir=tmp_path / "data", database_url=pg_url,
                            sample_store="postgresql")  # fmt: skip
        # the centre's ingest on the centre's plain listener (inside its network)
        url = parse_broker_url(f"mqtt://noaber:{CENTRE_PASSWORD}@127.0.0.1:{centre.port}")
        ingest = Ingest(settings, url, client_id="bridge-centre")
        ingest.start(scaled(30))
        runner = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
        runner.start()
        site.start()
        assert site.port is not None
        # the bridge is up when the centre's log shows its client connected as the gateway
        wait_until(
            lambda: f"noaber-bridge-{gw}" in centre.log.read_text(encoding="utf-8"),
            "the site's bridge connected to the centre",
        )
        keys = ["site-000/grid/power", "site-000/pv/power"]
        t0 = time.time_ns() // S * S
        samples = [Sample(k, t0 + j * S, 500.0 + j, 0) for j in range(3) for k in keys]
        sink = MqttSampleSink.from_url(
            parse_broker_url(f"mqtt://{gw}:{local_password}@127.0.0.1:{site.port}"),
            gw,
            timeout_s=scaled(10),
        )
        acks: list[str] = []
        sink.on_ack = acks.append
        try:
            sink.send("bridged-1", samples)  # the site broker's PUBACK
            wait_until(lambda: "bridged-1" in acks, "the centre's acknowledgement via the bridge",
                       timeout_s=scaled(60))  # fmt: skip
        finally:
            sink.close()
        store = PgSampleStore(ingest.engine, tmp_path)
        for k in keys:
            got = store.read(ids[k])
            assert got.ts.tolist() == [t0 + j * S for j in range(3)], k
            assert got.value.tolist() == [500.0 + j for j in range(3)], k
        # and it went through the bridge: the gateway never connected to the centre itself
        assert f"noaber-gw-{gw}" not in centre.log.read_text(encoding="utf-8")
    finally:
        stop.set()
        if runner is not None:
            runner.join(scaled(30))
        site.stop()
        centre.stop()
