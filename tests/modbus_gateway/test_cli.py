"""``noaber simulate`` in a subprocess, ``noaber gateway read|scan|run`` against it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from energy.errors import NoaberError
from noaber.cli.gateway import register
from tests.modbus_gateway.conftest import start_simulate
from tests.net import (
    refusing_port,
    scaled,
    tcp_established,
    wait_for_signal_handler,
    wait_until,
)


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer(pretty_exceptions_enable=False)
    register(root)
    return root


@pytest.fixture
def simulated_site(tmp_path: Path):
    site = {
        "devices": [
            {"name": "grid", "profile": "eastron_sdm630", "poll_interval_s": 0.5},
            {"name": "ev", "profile": "wallbox_quasar", "poll_interval_s": 0.5,
             "faults": [{"kind": "busy", "probability": 0.3}]},
            {"name": "bat", "profile": "sunspec_storage", "poll_interval_s": 0.5},
        ]
    }  # fmt: skip
    path = tmp_path / "site.yaml"
    proc, log = start_simulate(site, path)  # each device on the port it bound
    ports = [d["port"] for d in yaml.safe_load(path.read_text(encoding="utf-8"))["devices"]]
    yield path, ports
    proc.terminate()  # SIGTERM: the simulator stops its servers and exits 0
    assert proc.wait(scaled(10)) == 0, log.read_text(encoding="utf-8")


def test_read_scan_and_run_against_noaber_simulate(app, simulated_site, tmp_path):
    path, ports = simulated_site
    runner = CliRunner()
    res = runner.invoke(
        app, ["gateway", "read", f"127.0.0.1:{ports[0]}", "--profile", "eastron_sdm630"]
    )
    assert res.exit_code == 0, res.output
    assert "total_power_w" in res.output and "GOOD" in res.output
    res = runner.invoke(app, ["gateway", "scan", f"127.0.0.1:{ports[2]}"])
    assert res.exit_code == 0, res.output
    assert "802" in res.output and "124" in res.output and "SIM-0001" in res.output
    res = runner.invoke(
        app,
        ["gateway", "run", str(path), "--no-store", "--duration", "1.5", "--no-live",
         "--spool", str(tmp_path / "spool.sqlite")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "samples delivered, 0 waiting" in res.output


def test_read_errors_are_one_line(app):
    runner = CliRunner()
    with refusing_port() as port:  # nobody listens
        res = runner.invoke(
            app,
            ["gateway", "read", f"127.0.0.1:{port}", "--profile", "eastron_sdm630",
             "--timeout", "0.3"],
        )  # fmt: skip
    assert isinstance(res.exception, NoaberError)
    assert "cannot connect" in str(res.exception)
    res = runner.invoke(app, ["gateway", "read", "127.0.0.1:1", "--profile", "nope"])
    assert isinstance(res.exception, NoaberError) and "unknown profile" in str(res.exception)


def test_run_stores_samples_of_an_imported_site(app, tmp_path, settings_env):
    """``gateway run`` on a whole site description: channel ids from the database, samples in
    the energy store (the composition path of ``noaber gateway run``)."""
    from energy.db import make_engine, session_factory, upgrade
    from energy.samples import SampleStore
    from energy.siteconfig import import_site_file
    from noaber.services.demo.gateway import DEMO_SITE_FILE

    doc = yaml.safe_load(DEMO_SITE_FILE.read_text(encoding="utf-8"))
    doc["devices"] = doc["devices"][:2]  # two meters
    doc["assets"] = [a for a in doc["assets"] if a["name"] in {"grid", "pv"}]
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["gateway", "run", str(site), "--duration", "1", "--no-live"])
    assert isinstance(res.exception, NoaberError) and "site import" in str(res.exception)
    engine = make_engine(settings_env.sqlalchemy_url)
    upgrade(engine)
    res = runner.invoke(app, ["gateway", "run", str(site), "--duration", "1", "--no-live"])
    assert isinstance(res.exception, NoaberError) and "channels not in the database" in str(
        res.exception
    )
    ids = import_site_file(site, session_factory(engine)).channel_ids
    engine.dispose()
    proc, _ = start_simulate(doc, site)  # the same devices, on the ports the simulator bound
    try:
        res = runner.invoke(app, ["gateway", "run", str(site), "--duration", "3.5", "--no-live"])
        assert res.exit_code == 0, res.output
    finally:
        proc.terminate()
        proc.wait(scaled(10))
    store = SampleStore(settings_env.samples_dir)
    power = store.read(ids["dorpshuis-noaberhof/grid/power"])
    assert len(power) >= 2 and set(power.quality.tolist()) == {0}, (power, res.output)
    energy = store.read(ids["dorpshuis-noaberhof/grid/energy_import"])
    assert energy.value[0] > 1_000_000  # the kWh register arrives in Wh
    assert (settings_env.data_dir / "gateway-spool.sqlite").exists()


def test_scan_of_a_device_without_sunspec(app, simulated_site):
    _, ports = simulated_site
    res = CliRunner().invoke(app, ["gateway", "scan", f"127.0.0.1:{ports[0]}"])
    assert isinstance(res.exception, NoaberError) and "no SunSpec marker" in str(res.exception)


def test_sigterm_stops_run_and_simulate_cleanly(simulated_site, tmp_path):
    """A service manager stops with SIGTERM: the gateway flushes, restores and exits 0."""
    import signal

    path, ports = simulated_site
    proc = subprocess.Popen(
        [sys.executable, "-m", "noaber.cli", "gateway", "run", str(path), "--no-store",
         "--no-live", "--spool", str(tmp_path / "spool.sqlite")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # running: it handles SIGTERM itself and polls every simulated device
    wait_for_signal_handler(proc)
    wait_until(lambda: all(map(tcp_established, ports)), "the gateway's connections", proc=proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=scaled(30))
    assert proc.returncode == 0, out
    assert "samples delivered, 0 waiting" in out
