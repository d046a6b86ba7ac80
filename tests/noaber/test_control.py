"""Closed loop over real Modbus TCP on 127.0.0.1: the MPC's setpoints reach the simulators.

The demo site (battery behind a Victron ESS, three V2G chargers) is imported into a SQLite
store with a week of building load; its devices are simulated on free loopback ports. The
control loop runs four 2-second steps: step 1 plans and writes, step 2 gets an unreachable
departure target (the sessions file changes between steps) and must hand every device back
to its safe default, step 3 plans again, before step 4 the car leaves (its charger is handed
back); the end restores the safe defaults.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
from sqlalchemy.orm import sessionmaker

from energy.db import make_engine, session_factory, upgrade
from energy.errors import NoaberError
from energy.models import Channel
from energy.readings import upsert_readings
from energy.samples import SampleStore
from energy.siteconfig import import_site_file
from modbus_gateway.config import GatewayConfig, LimitsConfig, parse_config
from modbus_gateway.simulator import serve_config
from noaber.services.control import GatewaySetpoints, run_control, site_wiring
from tests.net import scaled, until

SITE_FILE = (
    Path(__file__).resolve().parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"
)
SITE = "dorpshuis-noaberhof"
#: The site's limits in this test, tighter than the profiles' so the clamp is what binds
#: (the first setpoint's ramp allows 5000 W on the GX and 3700 W on the Quasar).
LIMITS_W = {"battery-gx": 4000.0, "charger-1": 3000.0}
DEVICE_OF = {"battery": "battery-gx", "ev-1": "charger-1"}

pytestmark = pytest.mark.timeout(60)


def _local_config() -> GatewayConfig:
    """The demo site's devices on 127.0.0.1, port 0 (each simulator picks a free port)."""
    cfg = parse_config(
        yaml.safe_load(SITE_FILE.read_text(encoding="utf-8")), str(SITE_FILE), SITE_FILE.parent
    )
    devices = []
    for d in cfg.devices:
        update: dict[str, object] = {"host": "127.0.0.1", "port": 0, "poll_interval_s": 0.5}
        if d.name in LIMITS_W:
            w = LIMITS_W[d.name]
            update["limits"] = LimitsConfig(power_w_min=-w, power_w_max=w)
        devices.append(d.model_copy(update=update))
    return cfg.model_copy(update={"devices": devices})


def _sessions_doc(now: pd.Timestamp, reachable: bool | None) -> dict:
    """Anna plugged in since an hour ago; reachable: 60 % in 3 h, else 100 % in 30 min;
    None: she has left."""
    if reachable is None:
        return {}
    start = now.floor("15min")
    if reachable:
        dep, target = start + pd.Timedelta(hours=3), 60
    else:
        dep, target = start + pd.Timedelta(minutes=30), 100
    return {
        "ev-1": [
            {
                "arrival": (start - pd.Timedelta(hours=1)).isoformat(),
                "departure": dep.isoformat(),
                "soc_arrival_pct": 40,
                "soc_departure_pct": target,
            }
        ]
    }


def _prepare(engine) -> sessionmaker:
    """Migrate; import the demo site; a week of building load readings up to now."""
    upgrade(engine)
    sessions = session_factory(engine)
    import_site_file(SITE_FILE, sessions)
    now = pd.Timestamp.now(tz="UTC").floor("15min")
    hist = pd.date_range(now - pd.Timedelta(days=7), now, freq="15min", inclusive="left")
    hist = hist.as_unit("ns")
    local = hist.tz_convert("Europe/Amsterdam")
    load_w = np.asarray(4000.0 + 3000.0 * ((local.hour >= 18) & (local.hour < 22)), float)
    with sessions() as s, s.begin():
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        upsert_readings(
            s,
            ch[f"{SITE}/building/power"],
            pd.DataFrame(
                {
                    "energy_wh": load_w / 4,
                    "power_mean_w": load_w,
                    "sample_count": 900,
                    "coverage": 1.0,
                },
                index=hist,
            ),
        )
        # this month's kW-max so far, 20 kW at the grid meter in the last ISP (sunk): the
        # demo's capacity tariff then prices nothing the next hours do, so "cheap now, charge
        # now" holds at any hour the test runs (without it, charging car and battery at once
        # raises the month's peak, and at 18-22 local discharging is the optimum)
        upsert_readings(
            s,
            ch[f"{SITE}/grid/power"],
            pd.DataFrame(
                {"energy_wh": [5000.0], "power_mean_w": [20_000.0], "sample_count": [900],
                 "coverage": [1.0]},
                index=hist[-1:],
            ),
        )  # fmt: skip
    return sessions


@pytest.fixture
def store(tmp_path: Path):
    """A migrated SQLite store with the demo site and a week of building load readings."""
    engine = make_engine(f"sqlite:///{tmp_path / 'noaber.sqlite'}")
    yield _prepare(engine)
    engine.dispose()


async def _serve(cfg: GatewayConfig) -> tuple[GatewayConfig, list, dict]:
    """Simulators for every device on free ports; the config pointed at them."""
    servers, sims = await serve_config(cfg)
    port_of = {
        name: next(s.port for s in servers if sim in s.devices.values())
        for name, sim in sims.items()
    }
    devices = [d.model_copy(update={"port": port_of[d.name]}) for d in cfg.devices]
    return cfg.model_copy(update={"devices": devices}), servers, sims


def _prices(path: Path) -> Path:
    """Rising every step: charging as early as possible is the one optimum."""
    idx = pd.date_range(
        pd.Timestamp.now(tz="UTC").floor("15min") - pd.Timedelta(hours=1), periods=40, freq="15min"
    )
    price = 0.02 + 0.02 * np.arange(40)
    pd.DataFrame(
        {
            "timestamp": [t.isoformat() for t in idx],
            "import_price_eur_per_kwh": price,
            "export_price_eur_per_kwh": price - 0.10,
        }
    ).to_csv(path, index=False)
    return path


def _clamp(x: float, w: float) -> float:
    """``x`` within ±``w``, at the setpoint registers' 1 W resolution (2177.7 W is written 2178)."""
    return float(round(min(w, max(-w, x))))


async def test_mpc_setpoints_reach_the_simulators_and_a_short_car_stays_controlled(
    store, tmp_path: Path, capsys, caplog
) -> None:
    cfg = _local_config()
    servers, sims = await serve_config(cfg)
    try:
        port_of = {
            name: next(s.port for s in servers if sim in s.devices.values())
            for name, sim in sims.items()
        }
        cfg = cfg.model_copy(
            update={
                "devices": [d.model_copy(update={"port": port_of[d.name]}) for d in cfg.devices]
            }
        )
        sessions_file = tmp_path / "sessions.yaml"
        now = pd.Timestamp.now(tz="UTC")
        sessions_file.write_text(yaml.safe_dump(_sessions_doc(now, True)), encoding="utf-8")
        gx, quasar = sims["battery-gx"], sims["charger-1"]
        seen: list[dict[str, float]] = []

        async def on_step(i: int, controller) -> None:
            seen.append(
                {
                    "ess_setpoint_l1_w": gx.get("ess_setpoint_l1_w"),
                    "power_setpoint_w": quasar.get("power_setpoint_w"),
                    "control_mode": quasar.get("control_mode"),
                    "writes": len(controller.sink.records),
                    "plan_import_kw": float(controller.last_plan.flows["grid_import_kw"].max()),
                    "plan_export_kw": float(controller.last_plan.flows["grid_export_kw"].max()),
                }
            )
            # the owner's app changes the session: step 2 cannot reach its target, step 3 can,
            # before step 4 the car has left
            doc = _sessions_doc(pd.Timestamp.now(tz="UTC"), {0: False, 1: True, 2: None}.get(i))
            sessions_file.write_text(yaml.safe_dump(doc), encoding="utf-8")

        caplog.set_level(logging.ERROR)
        run = await run_control(
            cfg,
            store,
            SampleStore(tmp_path / "samples"),
            _prices(tmp_path / "prices.csv"),
            tmp_path / "spool.sqlite",
            steps=4,
            step_s=2.0,
            sessions_file=sessions_file,
            horizon_hours=6,
            flush_interval_s=0.5,
            on_step=on_step,
        )
        st = run.status
        # step 2's unreachable target is a shortfall the plan reports, not a failure
        assert (st.steps, st.plans, st.failures) == (4, 4, 0), st.as_dict()

        # step 1: the planned setpoints arrive at the registers, clamped to the site's limits
        first = {r.asset: r for r in run.setpoints[: seen[0]["writes"]]}
        assert set(first) == {"battery", "ev-1"} and seen[0]["writes"] == 2
        for rec in first.values():
            assert rec.requested_by == "noaber control"
            assert rec.written_w == _clamp(rec.requested_w, LIMITS_W[DEVICE_OF[rec.asset]])
        assert first["ev-1"].planned_w > 0  # cheap now, the car charges
        assert first["ev-1"].requested_w == first["ev-1"].planned_w
        assert first["battery"].planned_w > 0  # and the battery too (ESS mode 3: its own power)
        assert first["battery"].requested_w == first["battery"].planned_w
        assert abs(first["battery"].planned_w) <= 4000.0 + 1e-6  # planned within the writer's limit
        assert seen[0]["ess_setpoint_l1_w"] == first["battery"].written_w
        assert seen[0]["power_setpoint_w"] == first["ev-1"].written_w == 3000.0
        assert seen[0]["control_mode"] == 1

        # step 2: the unreachable target is met as closely as possible and reported; every
        # device stays controlled (the car charges at its 3 kW site limit)
        second = {r.asset: r for r in run.setpoints[seen[0]["writes"] : seen[1]["writes"]]}
        assert set(second) == {"battery", "ev-1"}
        assert second["ev-1"].planned_w == pytest.approx(3000.0)
        assert seen[1]["power_setpoint_w"] == 3000.0 and seen[1]["control_mode"] == 1
        assert run.released[1] == []
        out = capsys.readouterr().out
        assert "step 2/4" in out and "planning failed" not in out
        assert "warning: EV 'ev-1' reaches" in out and "instead of 100 %" in out
        assert not any("planning failed" in r.getMessage() for r in caplog.records)

        # step 3: planned and written again
        third = {r.asset: r for r in run.setpoints[seen[1]["writes"] : seen[2]["writes"]]}
        assert set(third) == {"battery", "ev-1"}
        for rec in third.values():
            assert rec.written_w == _clamp(rec.requested_w, LIMITS_W[DEVICE_OF[rec.asset]])
        assert seen[2]["ess_setpoint_l1_w"] == third["battery"].written_w
        assert seen[2]["power_setpoint_w"] == third["ev-1"].written_w
        assert seen[2]["control_mode"] == 1

        # step 4: the car has left; its charger is handed back, the battery still planned
        fourth = run.setpoints[seen[2]["writes"] : seen[3]["writes"]]
        assert [r.asset for r in fourth] == ["battery"]
        assert run.released[3] == ["ev-1"]
        assert seen[3]["power_setpoint_w"] == 0 and seen[3]["control_mode"] == 0
        assert seen[3]["ess_setpoint_l1_w"] == fourth[0].written_w

        # the measured SoC came from the simulators through the gateway
        sc = run.controller.last_scenario
        assert sc is not None and sc.battery is not None
        assert abs(sc.battery.soc_initial_pct - gx.get("battery_soc_pct")) <= 1
        # shutdown: safe defaults on the devices, samples in the store
        assert gx.get("ess_setpoint_l1_w") == 0
        assert quasar.get("power_setpoint_w") == 0 and quasar.get("control_mode") == 0
        log = run.service.writer.log
        assert any(e.requested_by == "gateway (shutdown)" for e in log)
        assert run.polls > 0 and run.samples_delivered > 0
    finally:
        for s in servers:
            await s.stop()


async def test_unknown_asset_is_refused_and_unimported_site_is_explained(
    tmp_path: Path, store
) -> None:
    cfg = _local_config()
    with store() as s:
        wiring = site_wiring(s, cfg)
    assert wiring.site == SITE
    assert wiring.soc_sources["battery"][:2] == ("battery-gx", "battery_soc_pct")
    assert wiring.power_devices["battery"] == "battery-gx"

    from modbus_gateway.service import GatewayService
    from modbus_gateway.spool import MemorySink

    service = GatewayService(cfg, MemorySink(), tmp_path / "spool.sqlite")
    sink = GatewaySetpoints(service, wiring.power_devices)
    assert sink.control_of("battery") == "battery"
    assert sink.control_of("ev-1") == "ev-1"
    with pytest.raises(NoaberError, match="no gateway device controls asset 'car-x'"):
        await sink.apply("car-x", 1000.0, "test")
    service.close()

    engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    upgrade(engine)
    try:
        with session_factory(engine)() as s, pytest.raises(NoaberError, match="noaber site import"):
            site_wiring(s, cfg)
    finally:
        engine.dispose()


def _setpoint_written(charger) -> bool:
    """The charger is in remote control mode and a power setpoint was written after that mode."""
    names = [w.name for w in charger.write_log]
    if charger.get("control_mode") != 1 or "control_mode" not in names:
        return False
    last_mode = len(names) - 1 - names[::-1].index("control_mode")
    return "power_setpoint_w" in names[last_mode + 1 :]


@pytest.mark.slow
async def test_cli_runs_until_sigterm_and_restores_safe_defaults(
    settings_env, tmp_path: Path
) -> None:
    """``noaber control run`` in a subprocess: setpoints reach the simulators; SIGTERM stops
    it with exit 0 and every device back at its safe default."""
    engine = make_engine(settings_env.sqlalchemy_url)
    _prepare(engine)
    engine.dispose()
    cfg, servers, sims = await _serve(_local_config())
    try:
        doc = yaml.safe_load(SITE_FILE.read_text(encoding="utf-8"))
        doc["devices"] = [
            {**d, "port": next(c.port for c in cfg.devices if c.name == d["name"])}
            for d in doc["devices"]
        ]
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump(doc), encoding="utf-8")
        sessions_file = tmp_path / "sessions.yaml"
        now = pd.Timestamp.now(tz="UTC")
        sessions_file.write_text(yaml.safe_dump(_sessions_doc(now, True)), encoding="utf-8")
        args = [sys.executable, "-m", "noaber.cli", "control", "run", str(site)]
        args += ["--prices", str(_prices(tmp_path / "prices.csv")), "--sessions"]
        args += [str(sessions_file), "--steps", "1000", "--step-seconds", "1"]
        args += ["--horizon-hours", "6", "--no-store"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        quasar, gx = sims["charger-1"], sims["battery-gx"]
        try:
            # the charger took remote control and then its setpoint (two writes, in order)
            await until(
                lambda: _setpoint_written(quasar), "the charger's setpoint", timeout_s=60, proc=proc
            )
            assert quasar.get("power_setpoint_w") > 0  # the car charges at the cheap start
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + scaled(30)
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
        out = proc.communicate()[0].decode()
        assert proc.returncode == 0, out
        assert "planned, setpoints" in out and "safe defaults restored" in out
        assert quasar.get("control_mode") == 0 and quasar.get("power_setpoint_w") == 0
        assert gx.get("ess_setpoint_l1_w") == 0
        writes = (settings_env.data_dir / "gateway-writes.jsonl").read_text(encoding="utf-8")
        assert '"requested_by": "noaber control"' in writes
        assert '"requested_by": "gateway (shutdown)"' in writes
    finally:
        for s in servers:
            await s.stop()


def test_cli_site_not_imported_is_one_line(tmp_path: Path) -> None:
    """Before any device is touched: a site that is not in the store is one error line, exit 1."""
    env = {**os.environ, "NOABER_DATA_DIR": str(tmp_path / "data"), "NOABER_MODE": "local"}
    env.pop("NOABER_DATABASE_URL", None)
    args = [sys.executable, "-m", "noaber.cli", "control", "run", str(SITE_FILE)]
    args += ["--prices", str(_prices(tmp_path / "prices.csv")), "--steps", "1"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "channels not in the database" in out.stderr and "noaber site import" in out.stderr
    assert "Traceback" not in out.stderr
