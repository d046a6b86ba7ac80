"""``noaber gateway profiles`` and ``noaber gateway write`` against ``noaber simulate`` on
loopback: bounded by the profile and the site's limits, read back (checked with mbpoll, a
master we did not write), audited as ``device.write``."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from modbus_gateway.profiles import shipped_profiles
from noaber.cli.gateway import register
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import start_simulate
from tests.net import scaled


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer(pretty_exceptions_enable=False)
    register(root)
    return root


@pytest.fixture
def site(tmp_path: Path):
    doc = {
        "devices": [
            {"name": "alfen", "profile": "alfen_ng9xx"},
            # the site lets the charger take at most 3 kW (the Quasar's profile: 7.4 kW)
            {"name": "ev", "profile": "wallbox_quasar",
             "limits": {"power_w_min": -2000, "power_w_max": 3000, "ramp_w_per_s": 1000}},
        ]
    }  # fmt: skip
    path = tmp_path / "site.yaml"
    proc, log = start_simulate(doc, path)
    ports = {d["name"]: d["port"] for d in yaml.safe_load(path.read_text("utf-8"))["devices"]}
    yield path, ports
    proc.terminate()
    assert proc.wait(scaled(10)) == 0, log.read_text(encoding="utf-8")


def _mbpoll_regs(port: int, address: int, count: int) -> list[int]:
    out = subprocess.run(
        [need_executable("mbpoll"), "-m", "tcp", "-p", str(port), "-t", "4:hex", "-0",
         "-r", str(address), "-c", str(count), "-1", "-o", "5", "127.0.0.1"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return [int(v, 16) for _a, v in re.findall(r"\[(\d+)\]:\s+(0x[0-9A-Fa-f]+)", out)]


def _audit(settings):
    from energy.db import make_engine, session_factory
    from energy.models import AuditEntry

    engine = make_engine(settings.sqlalchemy_url)
    with session_factory(engine)() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "device.write").order_by(AuditEntry.seq)
        ).all()
        out = [(r.actor, r.target, dict(r.detail)) for r in rows]
    engine.dispose()
    return out


def test_profiles_lists_every_profile_with_its_source(app):
    res = CliRunner().invoke(app, ["gateway", "profiles", "--plain"])
    assert res.exit_code == 0, res.output
    lines = [line.split("\t") for line in res.output.splitlines() if line.strip()]
    profs = shipped_profiles()
    assert sorted(row[0] for row in lines) == sorted(profs)
    for name, _kind, control, _writable, source in lines:
        assert source == " ".join(profs[name].source.split()) and len(source) > 20
        assert control.startswith("control (device_timeout") == (profs[name].control is not None)
    table = CliRunner().invoke(app, ["gateway", "profiles"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and f"{len(profs)} device profiles" in table.output


@pytest.mark.slow  # noaber simulate in a subprocess, a 3 s ramp: about 30 s
def test_write_is_bounded_read_back_and_audited(app, site, settings_env, monkeypatch):
    path, ports = site
    monkeypatch.setenv("NOABER_AS", "installer-jan")
    runner = CliRunner()

    # Alfen max current 10 A: written, read back, and mbpoll sees float32 10.0 at 1210
    res = runner.invoke(
        app, ["gateway", "write", "alfen", "max_current_a", "10", "--site", str(path)]
    )
    assert res.exit_code == 0, res.output
    assert "wrote 10 A, read back 10 A" in res.output and "was 16" in res.output
    words = _mbpoll_regs(ports["alfen"], 1210, 2)
    assert struct.unpack(">f", struct.pack(">HH", *words))[0] == 10.0

    # 40 A is outside the profile's 0..32 A: refused, nothing written, audited as refused
    res = runner.invoke(
        app, ["gateway", "write", "alfen", "max_current_a", "40", "--site", str(path)]
    )
    assert res.exit_code != 0
    assert "refused" in str(res.exception) and "outside [0.0, 32.0]" in str(res.exception)
    words = _mbpoll_regs(ports["alfen"], 1210, 2)
    assert struct.unpack(">f", struct.pack(">HH", *words))[0] == 10.0

    # a power setpoint is clamped to the site's limit (3000 W, stricter than the profile)
    # and ramped at the site's 1000 W/s: 1000, 2000, 3000 W a second apart, then read back
    res = runner.invoke(
        app, ["gateway", "write", "ev", "power_setpoint_w", "5000", "--site", str(path)]
    )
    assert res.exit_code == 0, res.output
    assert "wrote 3000 W" in res.output and "asked 5000" in res.output
    assert _mbpoll_regs(ports["ev"], 260, 1) == [3000]

    # 0 s would switch the charger's idle timeout (its fail-safe) off: refused
    res = runner.invoke(
        app, ["gateway", "write", "ev", "modbus_idle_timeout_s", "0", "--site", str(path)]
    )
    assert res.exit_code != 0 and "would weaken it" in str(res.exception)

    # read-only and unknown registers: a clear error before anything is tried (not audited)
    res = runner.invoke(
        app, ["gateway", "write", "alfen", "real_power_w", "1", "--site", str(path)]
    )
    assert res.exit_code != 0 and "not writable (read-only)" in str(res.exception)
    res = runner.invoke(app, ["gateway", "write", "alfen", "nope", "1", "--site", str(path)])
    assert res.exit_code != 0 and "writable: max_current_a, phases" in str(res.exception)
    res = runner.invoke(app, ["gateway", "write", "pv", "x", "1", "--site", str(path)])
    assert res.exit_code != 0 and "no device 'pv' (devices: alfen, ev)" in str(res.exception)
    res = runner.invoke(
        app, ["gateway", "write", "alfen", "max_current_a", "nan", "--site", str(path)]
    )
    assert res.exit_code != 0 and "must be finite" in str(res.exception)

    rows = _audit(settings_env)
    assert [(a, t, d["register"], d["result"].split(":")[0]) for a, t, d in rows] == [
        ("installer-jan", "site/alfen", "max_current_a", "ok"),
        ("installer-jan", "site/alfen", "max_current_a", "refused"),
        ("installer-jan", "site/ev", "power_setpoint_w", "ok"),
        ("installer-jan", "site/ev", "modbus_idle_timeout_s", "refused"),
    ]
    ok, refused, clamped, _ = (d for _a, _t, d in rows)
    assert (ok["requested"], ok["before"], ok["written"], ok["read_back"]) == (
        10.0,
        16.0,
        10.0,
        10.0,
    )
    assert refused["written"] is None and refused["requested"] == 40.0
    assert (clamped["requested"], clamped["written"], clamped["read_back"]) == (
        5000.0,
        3000.0,
        3000.0,
    )
    steps = [w["value"] for w in clamped["writes"] if w["result"] == "ok"]
    assert steps == sorted(steps) and steps[-1] == 3000.0 and len(steps) >= 3, steps
    assert all(b - a <= 1000.0 + 1e-9 for a, b in zip([0.0, *steps], steps)), steps


@pytest.mark.slow  # noaber simulate in a subprocess
def test_write_to_a_sunspec_device_finds_its_models_first(app, tmp_path: Path):
    """A SunSpec register's address is known only after discovery: the write finds the
    models, writes the point's absolute address, and mbpoll reads the value there."""
    doc = {"devices": [{"name": "inv", "profile": "fronius_symo"}]}
    path = tmp_path / "site.yaml"
    proc, log = start_simulate(doc, path)
    try:
        port = yaml.safe_load(path.read_text("utf-8"))["devices"][0]["port"]
        runner = CliRunner()
        res = runner.invoke(
            app,
            ["gateway", "write", "inv", "limit_revert_timeout_s", "30", "--site", str(path),
             "--no-audit"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "wrote 30 s, read back 30 s" in res.output
        # layout of the simulator's map: 40000 "SunS", then models 1, 103, 120, 121, 123 each
        # ID, L and the official length; WMaxLimPct_RvrtTms is offset 5 in model 123's data
        from modbus_gateway import sunspec_models

        ms = sunspec_models.models()
        base = 40002 + sum(2 + ms[m].length for m in (1, 103, 120, 121)) + 2
        assert _mbpoll_regs(port, base - 2, 1) == [123]
        offset = sunspec_models.point(123, "WMaxLimPct_RvrtTms").offset
        assert _mbpoll_regs(port, base + offset, 1) == [30]
        res = runner.invoke(
            app,
            ["gateway", "write", "inv", "limit_revert_timeout_s", "0", "--site", str(path),
             "--no-audit"],
        )  # fmt: skip
        assert res.exit_code != 0 and "would weaken it" in str(res.exception)
        assert _mbpoll_regs(port, base + offset, 1) == [30]
    finally:
        proc.terminate()
        assert proc.wait(scaled(10)) == 0, log.read_text(encoding="utf-8")
