"""A dead controller: SIGKILL of ``noaber control run`` leaves every device it drove at its
safe state by the device's own fail-safe, one test per controllable profile the loop drives.

The real process runs against simulators on free loopback ports (the simulators run their
own timers in real time, as devices do). The site file gives each controlled device a short
fail-safe timeout (``failsafe_timeout_s``: the value written to the Quasar's idle timeout and
the SunSpec revert timer; for the Victron Multi the firmware's own timeout, which the
simulator then uses), so the device is back within seconds; the brief's bound is 2 minutes.
Right after the kill the device must still be under control (no shutdown path ran), and the
gateway's write log must show no safe-default write after it.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from energy.db import make_engine, session_factory, upgrade
from energy.models import Channel
from energy.readings import upsert_readings
from energy.siteconfig import import_site_file
from modbus_gateway.config import parse_config
from modbus_gateway.simulator import serve_config
from tests.net import scaled, until
from tests.noaber.test_control import SITE, SITE_FILE, _prices, _sessions_doc, _setpoint_written

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FAILSAFE_S = 5.0


def _doc(profile: str) -> dict:
    """The demo site with its controllable device of ``profile`` given a short fail-safe."""
    doc = copy.deepcopy(yaml.safe_load(SITE_FILE.read_text(encoding="utf-8")))
    devices = {d["name"]: d for d in doc["devices"]}
    if profile == "sunspec_storage":
        devices["battery-gx"].update(
            name="battery-st", profile="sunspec_storage", unit_id=1, poll_interval_s=1
        )
        battery = next(a for a in doc["assets"] if a["name"] == "battery")
        battery["channels"] = [
            {"quantity": "power", "device": "battery-st", "register": "power_w"},
            {"quantity": "soc", "device": "battery-st", "register": "soc_pct"},
        ]
        battery["params"].update(max_charge_kw=5, max_discharge_kw=5, capacity_kwh=10)
    controlled = {"victron_gx": "battery-gx", "wallbox_quasar": "charger-1"}.get(
        profile, "battery-st"
    )
    for d in doc["devices"]:
        d.update(host="127.0.0.1", port=0)
        if d["name"] == controlled:
            d["failsafe_timeout_s"] = FAILSAFE_S
    return doc


def _prepare(url: str, site: Path) -> None:
    """Import the site; a week of building load readings up to now."""
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    import_site_file(site, sessions)
    now = pd.Timestamp.now(tz="UTC").floor("15min")
    hist = pd.date_range(now - pd.Timedelta(days=7), now, freq="15min", inclusive="left")
    hist = hist.as_unit("ns")
    local = hist.tz_convert("Europe/Amsterdam")
    load_w = np.asarray(4000.0 + 3000.0 * ((local.hour >= 18) & (local.hour < 22)), float)
    with sessions() as s, s.begin():
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        frame = pd.DataFrame(
            {"energy_wh": load_w / 4, "power_mean_w": load_w, "sample_count": 900, "coverage": 1.0},
            index=hist,
        )
        upsert_readings(s, ch[f"{SITE}/building/power"], frame)
    engine.dispose()


def _under_control(profile: str, sim) -> bool:
    if profile == "victron_gx":
        return (
            sim.get("ess_mode") == 3
            and bool(sim.writes_to("ess_setpoint_l1_w"))
            and sim.state.get("passthru") == 0
            and sim.get("ess_setpoint_l1_w") != 0
        )
    if profile == "wallbox_quasar":
        return _setpoint_written(sim) and sim.get("power_setpoint_w") != 0
    return sim.get("storage_control_mode") == 3 and sim.get("discharge_rate_pct") != 0


def _safe(profile: str, sim) -> bool:
    if profile == "victron_gx":  # passthru: the Multi neither charges nor discharges
        sim.read(3, 842, 1, 100)  # as a monitor would (no write)
        return sim.state.get("passthru") == 1 and sim.get("battery_power_w") == 0
    if profile == "wallbox_quasar":
        return sim.get("control_mode") == 0 and sim.get("power_setpoint_w") == 0
    return sim.get("storage_control_mode") == 0 and sim.get("discharge_rate_pct") == 0


@pytest.mark.parametrize("profile", ["victron_gx", "wallbox_quasar", "sunspec_storage"])
async def test_sigkill_of_control_run_leaves_the_device_safe(
    profile: str, settings_env, tmp_path: Path
) -> None:
    doc = _doc(profile)
    cfg = parse_config({"devices": doc["devices"]}, "site.yaml", tmp_path)  # ports 0: free
    servers, sims = await serve_config(cfg)
    try:
        port_of = {
            name: next(s.port for s in servers if any(v is sim for v in s.devices.values()))
            for name, sim in sims.items()
        }
        for d in doc["devices"]:
            d["port"] = port_of[d["name"]]
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        _prepare(settings_env.sqlalchemy_url, site)
        args = [sys.executable, "-m", "noaber.cli", "control", "run", str(site)]
        args += ["--prices", str(_prices(tmp_path / "prices.csv")), "--steps", "1000"]
        args += ["--step-seconds", "2", "--horizon-hours", "6", "--no-store"]
        if profile == "wallbox_quasar":
            sessions_file = tmp_path / "sessions.yaml"
            sessions_file.write_text(
                yaml.safe_dump(_sessions_doc(pd.Timestamp.now(tz="UTC"), True)), encoding="utf-8"
            )
            args += ["--sessions", str(sessions_file)]
        name = {"victron_gx": "battery-gx", "wallbox_quasar": "charger-1"}.get(
            profile, "battery-st"
        )
        sim = sims[name]
        log = tmp_path / "control.out"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            await until(
                lambda: _under_control(profile, sim),
                f"{name} under control",
                timeout_s=90,
                proc=proc,
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(scaled(10))
            killed = time.monotonic()
            # requests the process sent before it died, still queued while this loop was
            # blocked in wait(), are served now; nothing can come after
            await asyncio.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, log.read_text(errors="replace")
        writes_after_kill = len(sim.write_log)
        assert _under_control(profile, sim)  # no shutdown path ran: still under control
        await until(lambda: _safe(profile, sim), f"{name} at its safe state", timeout_s=120)
        took_s = time.monotonic() - killed
        assert took_s <= scaled(FAILSAFE_S + 5), took_s  # its own timeout, well within 2 min
        assert len(sim.write_log) == writes_after_kill  # nobody wrote: the device did it
        jsonl = settings_env.data_dir / "gateway-writes.jsonl"
        assert "gateway (shutdown)" not in jsonl.read_text(encoding="utf-8")
    finally:
        for s in servers:
            await s.stop()
