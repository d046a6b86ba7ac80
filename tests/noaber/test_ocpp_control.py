"""OCPP chargers under the closed loop (:mod:`noaber.services.ocpp_control`): ``run_control``
starts the site's central system itself (the site file's ``ocpp:`` section has
``listen_host``/``listen_port``) and a simulated charger (``modbus_gateway.ocpp.sim``) on
loopback takes each step's planned power as a TxProfile limit, within the site's limit for it
(planned within it, and clamped when more is asked), audited; a charger that lost its
profile gets it again (``control_restored``); while the loop lives the profile never lapses
although it expires sooner than the next step; the end hands the charger back to its
TxDefaultProfile. A SIGKILLed ``noaber control run`` leaves the charger to fall back by
itself when its profile expires.

The site is the demo's (battery behind a Victron ESS, Modbus chargers, simulated on free
ports) plus ``ev-4``, a car on an OCPP charger (11 kW, the site's limit for it 5 kW).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from energy.alarms import DeviceAlarm
from energy.audit import entries
from energy.db import make_engine, session_factory
from energy.models import Channel
from energy.samples import SampleStore
from energy.siteconfig import parse_site_document
from modbus_gateway.config import parse_config
from modbus_gateway.ocpp.sim import SimulatedCharger
from modbus_gateway.simulator import serve_config
from noaber.services.control import run_control
from noaber.services.ocpp import ocpp_site
from tests.net import pick_port, scaled, until
from tests.noaber.test_control import SITE, SITE_FILE, _prices
from tests.noaber.test_control_failsafe import _prepare

pytestmark = pytest.mark.timeout(120)

LIMIT_W = 5000.0  # the site's limit for the OCPP charger (its limits.power_w_max)
FALLBACK_W = 2000.0  # its TxDefaultProfile: what it does when the controller is gone


def _doc(version: str, port: int, profile_duration_s: int) -> dict:
    """The demo site with ``ev-4`` on an OCPP charger CP-1; the devices on port 0."""
    doc = copy.deepcopy(yaml.safe_load(SITE_FILE.read_text(encoding="utf-8")))
    for d in doc["devices"]:
        d.update(host="127.0.0.1", port=0, poll_interval_s=0.5)
    doc["assets"].append(
        {
            "name": "ev-4",
            "kind": "ev",
            "owner": "m-dorpshuis",
            "params": {"capacity_kwh": 60, "max_charge_kw": 11, "soc_min_pct": 10},
            "channels": [{"quantity": "power"}, {"quantity": "energy_import"}],
        }
    )
    doc["ocpp"] = {
        "id_tokens": ["04A1B2C3D4"],
        "heartbeat_interval_s": 60,
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "charge_points": [
            {
                "id": "CP-1",
                "ocpp_version": version,
                "asset": "ev-4",
                # 1.6 in A (3 x 230 V): 5000 W is 7.2 A, sent 7.2 A = 4968 W
                "rate_unit": "A" if version == "1.6" else "W",
                "max_power_w": 11000,
                "fallback_power_w": FALLBACK_W,
                "profile_duration_s": profile_duration_s,
                "limits": {"power_w_max": LIMIT_W},
            }
        ],
    }
    return doc


def _sessions(path: Path) -> Path:
    """ev-4 plugged in, 20 % to 90 % of 60 kWh in 3 h: 14 kW, more than the 5 kW it may draw."""
    start = pd.Timestamp.now(tz="UTC").floor("15min")
    doc = {
        "ev-4": [
            {
                "arrival": (start - pd.Timedelta(hours=1)).isoformat(),
                "departure": (start + pd.Timedelta(hours=3)).isoformat(),
                "soc_arrival_pct": 20,
                "soc_departure_pct": 90,
            }
        ]
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def _serve_devices(doc: dict, tmp_path: Path) -> list:
    """The site's Modbus devices simulated on free ports (``doc`` pointed at them)."""
    cfg = parse_config({"devices": doc["devices"]}, "site.yaml", tmp_path)
    servers, sims = await serve_config(cfg)
    for d in doc["devices"]:
        d["port"] = next(
            s.port for s in servers if any(v is sims[d["name"]] for v in s.devices.values())
        )
    return servers


class _Charger:
    """A simulated charger that connects as soon as the central system listens."""

    def __init__(self, port: int, version: str):
        self.port, self.version = port, version
        self.sim: SimulatedCharger | None = None
        self._stop = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop:
            self.sim = SimulatedCharger(
                f"ws://127.0.0.1:{self.port}", "CP-1", self.version, meter_interval_s=0.1
            )
            try:
                await self.sim.run()
            except OSError:  # not listening yet
                await asyncio.sleep(0.1)
                continue
            if self.sim.booted.is_set():
                return

    async def close(self) -> None:
        self._stop = True
        if self.sim is not None:
            self.sim.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, scaled(10))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_the_plan_reaches_an_ocpp_charger_within_the_site_limit_audited(
    version: str, tmp_path: Path
) -> None:
    port = pick_port()
    doc = _doc(version, port, profile_duration_s=4)
    servers = await _serve_devices(doc, tmp_path)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'noaber.sqlite'}"
    _prepare(url, site_file)
    engine = make_engine(url)
    charger = None
    try:
        sessions = session_factory(engine)
        cfg = parse_config(doc, str(site_file), tmp_path)
        ocpp = ocpp_site(parse_site_document(doc, str(site_file)), str(site_file))
        charger = _Charger(port, version)
        unit_w = 690.0 if version == "1.6" else 1.0  # W per unit of the profile's limit
        sent_w = round(int(LIMIT_W / unit_w * 10) / 10 * unit_w, 3)  # 7.2 A or 5000 W
        fallback_w = round(round(FALLBACK_W / unit_w, 1) * unit_w, 3)  # 2.9 A or 2000 W
        seen: list[dict] = []

        async def on_step(i: int, controller) -> None:
            sim = charger.sim
            assert sim is not None
            seen.append(
                {"power_w": sim.power_w, "source": sim.source, "fell_back": sim.fell_back.is_set()}
            )
            if i == 0:
                # more than the site allows, asked through the loop's sink as the MPC does:
                # clamped to the limit, the charger draws no more
                written = await controller.sink.apply("ev-4", 9000.0, "test (above the limit)")
                assert written.requested_w == 9000.0 and written.written_w == sent_w
                assert written.read_back and sim.power_w == sent_w
            if i == 1:
                sim.clear("TxProfile")  # the charger lost its profile (a reboot, a reset)
                assert sim.source == "TxDefaultProfile" and sim.power_w == fallback_w

        run = await run_control(
            cfg,
            sessions,
            SampleStore(tmp_path / "samples"),
            _prices(tmp_path / "prices.csv"),
            tmp_path / "spool.sqlite",
            steps=3,
            step_s=5.0,  # longer than the profile's 4 s: only the refresh keeps it valid
            sessions_file=_sessions(tmp_path / "sessions.yaml"),
            horizon_hours=6,
            flush_interval_s=0.2,
            on_step=on_step,
            write_log_path=tmp_path / "writes.jsonl",
            ocpp=ocpp,
        )
        st = run.status
        assert (st.steps, st.plans, st.failures) == (3, 3, 0), st.as_dict()
        sim = charger.sim
        assert sim is not None

        # each step: the plan wanted more than 5 kW (14 kW to reach its target), was made
        # within the charger's site limit, and the charger took it as its profile limit
        ocpp_records = [r for r in run.setpoints if r.asset == "ev-4"]
        planned = [r for r in ocpp_records if r.requested_by == "noaber control"]
        assert len(planned) == 3
        for rec in planned:
            assert rec.via == "ocpp" and rec.control == "ev-4"
            assert rec.planned_w == pytest.approx(LIMIT_W, abs=1.0)
            assert rec.written_w == sent_w and rec.read_back
        assert [s["power_w"] for s in seen] == [sent_w] * 3
        assert [s["source"] for s in seen] == ["TxProfile"] * 3
        # the Modbus devices were driven alongside
        assert {r.asset for r in run.setpoints if r.via == "modbus"} >= {"battery"}

        # the lost profile was found at the next check, sent again: control restored
        restored = [a for a in run.alarms if a.kind == "control_restored"]
        assert [(a.asset, a.device) for a in restored] == [("ev-4", "CP-1")]
        assert "composite schedule" in restored[0].message
        assert any(c.asset == "ev-4" and c.in_control and not c.re_enabled for c in run.checks)

        # 5 s between steps, a 4 s profile: it never lapsed while the loop ran (refreshed)
        assert not any(s["fell_back"] for s in seen) and not sim.fell_back.is_set()
        with sessions() as s:
            audit = [e for e in entries(s, action="device.setpoint") if e.target == f"{SITE}/ev-4"]
        by = [e.detail["by"] for e in audit]
        assert by.count("noaber control") == 3 and "noaber control (refresh)" in by
        assert "noaber control (re-enable)" in by  # found by the refresh
        first = next(e for e in audit if e.detail["by"] == "test (above the limit)")
        assert first.actor == "noaber-control" and first.detail["control"] == "ocpp"
        assert first.detail["requested_w"] == 9000.0 and first.detail["written_w"] == sent_w
        assert first.detail["read_back"] and first.detail["charge_point"] == "CP-1"
        log = (tmp_path / "writes.jsonl").read_text(encoding="utf-8")
        assert '"register": "TxProfile"' in log and '"register": "TxDefaultProfile"' in log

        # the end: TxProfile cleared, the charger on its own fallback; meter values stored
        assert sim.source == "TxDefaultProfile" and sim.power_w == fallback_w
        with sessions() as s:
            ch = s.scalars(select(Channel).where(Channel.key == f"{SITE}/ev-4/power")).one()
        stored = SampleStore(tmp_path / "samples").read(ch.id)
        assert (stored.value == sent_w).any()
    finally:
        if charger is not None:
            await charger.close()
        for s in servers:
            await s.stop()
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_of_control_run_leaves_the_ocpp_charger_on_its_fallback(
    settings_env, tmp_path: Path
) -> None:
    """``noaber control run`` as a process drives the charger; after SIGKILL nobody clears
    its profile, and the charger falls back to its TxDefaultProfile by itself when the
    TxProfile expires (``profile_duration_s``)."""
    duration_s = 5
    port = pick_port()
    doc = _doc("2.0.1", port, profile_duration_s=duration_s)
    servers = await _serve_devices(doc, tmp_path)
    charger = None
    try:
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        _prepare(settings_env.sqlalchemy_url, site)
        args = [sys.executable, "-m", "noaber.cli", "control", "run", str(site)]
        args += ["--prices", str(_prices(tmp_path / "prices.csv")), "--steps", "1000"]
        args += ["--step-seconds", "2", "--horizon-hours", "6", "--no-store"]
        args += ["--sessions", str(_sessions(tmp_path / "sessions.yaml"))]
        out = tmp_path / "control.out"
        with out.open("wb") as f:
            proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT)
        charger = _Charger(port, "2.0.1")
        try:
            jsonl = settings_env.data_dir / "gateway-writes.jsonl"
            await until(
                lambda: (
                    charger.sim is not None
                    and charger.sim.source == "TxProfile"
                    and charger.sim.power_w == LIMIT_W
                    # read back and logged (the line follows the composite schedule's answer)
                    and jsonl.is_file()
                    and '"register": "TxProfile"' in jsonl.read_text(encoding="utf-8")
                ),
                "the charger on the plan's TxProfile, logged",
                timeout_s=90,
                proc=proc,
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(scaled(10))
            killed = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, out.read_text(errors="replace")
        sim = charger.sim
        assert sim is not None
        received = len(sim.profiles_received)
        assert sim.source == "TxProfile"  # no shutdown path ran: still the plan's profile
        await until(lambda: sim.fell_back.is_set(), "the TxProfile expired", timeout_s=60)
        took_s = time.monotonic() - killed
        assert took_s <= scaled(duration_s + 2), took_s
        assert sim.source == "TxDefaultProfile" and sim.power_w == FALLBACK_W
        assert len(sim.profiles_received) == received  # nobody sent it: the charger did it
        assert "ClearChargingProfile" not in jsonl.read_text(encoding="utf-8")
    finally:
        if charger is not None:
            await charger.close()
        for s in servers:
            await s.stop()


async def test_a_charger_that_disconnects_is_lost_and_planned_without(tmp_path: Path) -> None:
    """The charger goes away after step 1: the next check raises ``control_lost`` (nothing
    can reach it; its own profile expiry hands it to its fallback), the loop excludes it and
    plans on without it, no step fails."""
    port = pick_port()
    doc = _doc("2.0.1", port, profile_duration_s=60)
    servers = await _serve_devices(doc, tmp_path)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'noaber.sqlite'}"
    _prepare(url, site_file)
    engine = make_engine(url)
    charger = None
    try:
        sessions = session_factory(engine)
        charger = _Charger(port, "2.0.1")

        async def on_step(i: int, controller) -> None:
            if i == 0:
                assert charger.sim is not None and charger.sim.source == "TxProfile"
                await charger.close()  # the charger's connection drops
                central = controller.sink.ocpp["ev-4"].service.central
                await until(lambda: not central.ready("CP-1"), "the charger gone")

        run = await run_control(
            parse_config(doc, str(site_file), tmp_path),
            sessions,
            SampleStore(tmp_path / "samples"),
            _prices(tmp_path / "prices.csv"),
            tmp_path / "spool.sqlite",
            steps=3,
            step_s=2.0,
            sessions_file=_sessions(tmp_path / "sessions.yaml"),
            horizon_hours=6,
            flush_interval_s=0.2,
            on_step=on_step,
            ocpp=ocpp_site(parse_site_document(doc, str(site_file)), str(site_file)),
        )
        st = run.status
        assert (st.steps, st.plans, st.failures) == (3, 3, 0), st.as_dict()
        lost = [a for a in run.alarms if a.kind == "control_lost"]
        assert [(a.asset, a.device) for a in lost] == [("ev-4", "CP-1")]
        assert "not connected" in lost[0].message
        planned = [r.asset for r in run.setpoints if r.requested_by == "noaber control"]
        assert planned.count("ev-4") == 1  # step 1 only
        assert run.controller.last_scenario is not None
        assert "ev-4" not in {e.name for e in run.controller.last_scenario.evs}
        with sessions() as s:
            rows = s.scalars(select(DeviceAlarm)).all()
        assert [(r.asset, r.kind) for r in rows] == [("ev-4", "control_lost")]
    finally:
        if charger is not None:
            await charger.close()
        for s in servers:
            await s.stop()
        engine.dispose()
