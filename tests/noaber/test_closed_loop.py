"""End to end, the closed loop: the setpoints go back through the gateway to the devices.

Simulated devices on 127.0.0.1 (a load meter, a SunSpec PV inverter, a Victron GX battery, a
Wallbox Quasar with a car) -> the gateway -> Mosquitto -> ``noaber gateway consume`` (a
subprocess, with the interval pipeline; the grid connection is a channel it derives from the
meters) -> interval readings (derived, SoC) -> the control loop
(:func:`noaber.services.control.run_control`, what ``noaber control run`` runs: the MPC
re-plans every 15 minutes from the measured SoC) -> battery, charger and PV-limit setpoints
through the gateway's safe writes to the simulated devices, 12:00-15:00 of a June day.

Real processes where the clock need not be injected: Mosquitto and ``consume`` (which only
stores what arrives, with the timestamps the gateway gave it). In process, on one injected
clock (:class:`SimClock`): the simulators, the gateway (poller, safe writer: ramps, refreshes,
watchdogs) and the controller, so that the span passes in about two minutes while every
timeout and ramp keeps its meaning in simulated seconds; ``noaber control run`` as a
subprocess could not share that clock. Simulated time is the event loop's idle time times
:data:`SPEED`: work in the loop (Modbus transactions, a solve) takes none, as it takes a
negligible part of a real step. A whole day would take an estimated 15 minutes (~10 CPU-s of
polls, refreshes and checks per simulated ISP), hence the span.

The forecast is perfect (``forecast_csv``: the load and PV the simulators' models produce,
ISP by ISP), as in :func:`optimizer.replay.replay`, so what is measured is the loop: the plan
carried out as made. The simulators are not coupled electrically (each models its own flow),
so the grid connection is their balance, ``grid = building + pv + battery + ev-1`` (signs:
+ = consumption), derived by the pipeline from what each device measured.

What must hold (issue 11): every step planned, no device lost, the battery setpoints within
the site file's device limits (4 kW, while the asset's own rating says 5 kW), the planned
curtailment sent to the inverter; the grid import and export limits in every ISP, as the
meter settles on them (the derived connection's ISP mean); and the cost of what the meters
measured, priced with the same prices, within 1 % of the plan's. The fixture prints, per ISP,
the plan made at its start against what was metered (grid, battery, EV, PV, load).

What holds the limits (the export limit binds from 12:00 to 13:00, with the PV curtailed):
the loop plans :data:`noaber.services.control.GRID_LIMIT_MARGIN_KW` inside them (ramps, the
load's and PV's noise within an ISP, register rounding), samples every controlled device
right before a step's setpoints and once their ramps ended (without it a setpoint step
between two polls a minute apart is integrated as a one-minute ramp, up to 0.2 kW of an
ISP's mean in the wrong ISP: export 2.13-2.18 kW was metered against the 2 kW limit, the cost
x0.997 to x1.017), and a production limit ramps from what the inverter produces, not from no
limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from energy.db import make_engine, session_factory, upgrade
from energy.gateways import add_gateway
from energy.models import Channel
from energy.readings import read_readings
from energy.samples import SampleStore
from energy.siteconfig import import_site_file
from modbus_gateway.broker_auth import mosquitto_hash, new_password
from modbus_gateway.config import load_config
from modbus_gateway.driver import Link
from modbus_gateway.mqtt import MqttSampleSink, parse_broker_url
from modbus_gateway.profiles import decode
from modbus_gateway.service import GatewayService
from modbus_gateway.simulator import serve_config
from noaber.services.control import ControlClock, run_control
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
SITE = "dorpshuis-loop"
TZ = "Europe/Amsterdam"
DAY0 = pd.Timestamp("2026-06-16T12:00", tz=TZ).tz_convert("UTC")  # control starts
HOURS = 3  # 12:00-15:00 local: PV above the export limit, a cheap hour, a car to charge
PRE_S = 1740.0  # simulated seconds measured before control starts (the load history)
T0 = DAY0 - pd.Timedelta(minutes=45)  # the simulators' time 0: 11:15 local
# the loop starts at 11:44 and has the devices under control for the whole ISP before 12:00
DAY_END = DAY0 + pd.Timedelta(hours=HOURS)
SPEED = 300.0  # simulated seconds per wall-clock second the event loop waits
IMPORT_KW, EXPORT_KW = 5.0, 2.0  # the site's grid limits: both bind on this day
BATTERY_W = 4000.0  # the site's limit on the GX setpoint (the asset says 5 kW)
DEVICES = [
    {
        "name": "load-meter",
        "profile": "eastron_sdm630",
        "unit_id": 1,
        "sim_role": "load",
        "seed": 1,
    },
    {"name": "pv-inverter", "profile": "sunspec_inverter", "unit_id": 1, "seed": 2, "asset": "pv"},
    {
        "name": "battery-gx",
        "profile": "victron_gx",
        "unit_id": 100,
        "seed": 3,
        "limits": {"power_w_min": -BATTERY_W, "power_w_max": BATTERY_W},
    },
    {"name": "charger-1", "profile": "wallbox_quasar", "unit_id": 1, "seed": 4},
]
ASSETS = [
    {"name": "grid", "kind": "meter",
     "channels": [{"quantity": "power", "derived": "building + pv + battery + ev-1"}]},
    {"name": "pv", "kind": "pv", "params": {"peak_kw": 8},
     "channels": [{"quantity": "power", "device": "pv-inverter", "register": "ac_power_w"}]},
    {"name": "building", "kind": "building_load",
     "channels": [{"quantity": "power", "device": "load-meter", "register": "total_power_w"}]},
    {"name": "battery", "kind": "battery",
     "params": {"capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5,
                "efficiency_charge": 1.0, "efficiency_discharge": 1.0, "soc_initial_pct": 50},
     "channels": [
         {"quantity": "power", "device": "battery-gx", "register": "battery_power_w"},
         {"quantity": "soc", "device": "battery-gx", "register": "battery_soc_pct"}]},
    {"name": "ev-1", "kind": "ev",
     "params": {"capacity_kwh": 40, "max_charge_kw": 7.4, "max_discharge_kw": 7.4,
                "efficiency": 1.0, "v2g": False, "soc_min_pct": 20},
     "channels": [
         {"quantity": "power", "device": "charger-1", "register": "actual_power_w"},
         {"quantity": "soc", "device": "charger-1", "register": "ev_soc_pct"}]},
]  # fmt: skip


class IdleSelector(selectors.DefaultSelector):
    """The event loop's selector, counting the wall seconds the loop spent waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.idle_s = 0.0

    def select(self, timeout: float | None = None):  # type: ignore[override]
        t = time.monotonic()
        try:
            return super().select(timeout)
        finally:
            # at most the timeout asked for: a process woken late on a loaded machine has
            # not waited longer in simulated time
            waited = time.monotonic() - t
            self.idle_s += waited if timeout is None else min(waited, max(timeout, 0.0))


class SimClock(ControlClock):
    """One simulated clock for the simulators, the gateway and the controller.

    Simulated time is :data:`SPEED` times the wall time the event loop spent idle (waiting
    in its selector) since ``T0``: work in the loop (a poll, a Modbus transaction with the
    in-process simulators, a solve) takes no simulated time, as it takes a negligible part of
    a real step, so a loaded machine slows the day down but changes no timing within it.
    Held (:meth:`hold`, the loop's :meth:`planning`), it stands still.
    """

    def __init__(self, selector: IdleSelector) -> None:
        self.selector = selector
        self.depth = 0
        self.held_at: float | None = None  # the simulated time it stands at
        self.offset_s = 0.0  # idle wall seconds not counted (held)

    def sim_s(self) -> float:
        if self.held_at is not None:
            return self.held_at
        return (self.selector.idle_s - self.offset_s) * SPEED

    def time_ns(self) -> int:
        return T0.value + round(self.sim_s() * 1e9)

    def monotonic(self) -> float:
        return self.sim_s()

    async def sleep(self, seconds: float) -> None:
        target = self.sim_s() + seconds
        for _ in range(10_000_000):  # bounded: every pass sleeps at least 1 ms
            left = target - self.sim_s()
            if left <= 0:
                return
            await asyncio.sleep(max(left / SPEED, 0.001))

    def hold(self) -> None:
        if self.depth == 0:
            self.held_at = self.sim_s()
            self._idle_at_hold = self.selector.idle_s
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.offset_s += self.selector.idle_s - self._idle_at_hold
            self.held_at = None

    @contextlib.contextmanager
    def planning(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()


def _site_doc(ports: dict[str, int]) -> dict:
    return {
        "site": {
            "name": SITE, "ean": "871685900000000066", "latitude": 52.88, "longitude": 6.86,
            "grid_import_limit_kw": IMPORT_KW, "grid_export_limit_kw": EXPORT_KW,
        },
        "devices": [
            {**d, "host": "127.0.0.1", "port": ports.get(d["name"], 15020), "poll_interval_s": 60}
            for d in DEVICES
        ],
        "assets": ASSETS,
    }  # fmt: skip


def _isp_means(index: pd.DatetimeIndex) -> pd.DataFrame:
    """The simulators' load and PV per ISP [kW] (``modbus_gateway.simulator._meter_model``:
    load ``1800 + 400 sin(2 pi t / 600)`` W, PV ``4000 sin(pi (h - 6) / 12)`` W between 06:00
    and 18:00 local, t the simulated seconds since ``T0``), integrated over each ISP."""
    t0 = (index - T0).total_seconds().to_numpy()
    k = 2 * math.pi / 600
    load_w = 1800 + 400 * (np.cos(k * t0) - np.cos(k * (t0 + 900))) / (k * 900)
    tod0 = (T0.tz_convert(TZ) - T0.tz_convert(TZ).normalize()).total_seconds()
    fine = t0[:, None] + np.linspace(0, 900, 1801)[None, :]
    tod = (tod0 + fine) % 86400
    pv = 8000 * np.maximum(0.0, np.sin(math.pi * (tod - 6 * 3600) / (12 * 3600)))
    pv_w = np.trapezoid(pv, dx=0.5, axis=1) / 900
    return pd.DataFrame({"load_kw": load_w / 1000, "pv_kw": pv_w / 1000}, index=index)


def _prices(index: pd.DatetimeIndex) -> pd.DataFrame:
    hour = index.tz_convert(TZ).hour
    imp = np.select([(hour >= 13) & (hour < 15), (hour >= 17) & (hour < 21)], [0.12, 0.37], 0.22)
    return pd.DataFrame(
        {"import_price_eur_per_kwh": imp, "export_price_eur_per_kwh": imp - 0.12}, index=index
    )


def _write_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    idx = pd.date_range(T0, DAY_END + pd.Timedelta(hours=25), freq="15min")
    stamps = [t.isoformat() for t in idx]
    prices = tmp_path / "prices.csv"
    _prices(idx).assign(timestamp=stamps).to_csv(prices, index=False)
    forecast = tmp_path / "forecast.csv"
    _isp_means(idx).assign(timestamp=stamps).to_csv(forecast, index=False)
    sessions = tmp_path / "sessions.yaml"
    session = {"arrival": T0.isoformat(), "departure": (DAY0 + pd.Timedelta(hours=2.5)).isoformat(),
               "soc_arrival_pct": 40, "soc_departure_pct": 60}  # fmt: skip
    sessions.write_text(yaml.safe_dump({"ev-1": [session]}), encoding="utf-8")
    return prices, forecast, sessions


def _env(data: Path, mqtt_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOABER_")}
    env.update(
        NOABER_MODE="local", NOABER_DATA_DIR=str(data), NOABER_MQTT_URL=mqtt_url, COLUMNS="400"
    )
    return env


def _wait_for_history(sessions, building_id: int) -> None:
    """Until ``consume`` has the first ISP's building load in the store (bounded)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with sessions() as s:
            frame = read_readings(s, [building_id])
        if not frame.empty and frame["power_mean_w"].notna().any():
            return
        time.sleep(0.2)
    raise AssertionError("consume computed no building load reading within 120 s")


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> dict:
    """One run of the closed loop over the span, shared by the tests below."""
    from energy.settings import get_settings

    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            return _run_day(tmp_path_factory.mktemp("loop"), monkeypatch)
    finally:
        get_settings.cache_clear()  # the settings of this run's data directory


def _run_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    exe = need_executable("mosquitto")
    broker = Mosquitto(exe, tmp_path, "allow_anonymous true\n")
    broker.start()
    data = tmp_path / "data"
    mqtt_url = f"mqtt://127.0.0.1:{broker.port}"
    env = _env(data, mqtt_url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from energy.settings import get_settings

    get_settings.cache_clear()
    engine = make_engine(get_settings().sqlalchemy_url)
    upgrade(engine)
    sessions = session_factory(engine)
    prices_csv, forecast_csv, sessions_yaml = _write_inputs(tmp_path)
    plans: dict[int, pd.DataFrame] = {}
    selector = IdleSelector()
    clock = SimClock(selector)
    clock.hold()  # until the simulators stand
    call = Link._call

    async def on_the_wire(self, *args, **kwargs):
        """A Modbus transaction takes no simulated time (a few ms of a real 10 s refresh)."""
        clock.hold()
        try:
            return await call(self, *args, **kwargs)
        finally:
            clock.release()

    monkeypatch.setattr(Link, "_call", on_the_wire)

    async def day() -> tuple:
        template = tmp_path / "template.yaml"
        template.write_text(yaml.safe_dump(_site_doc({})), encoding="utf-8")
        cfg = load_config(template)
        cfg = cfg.model_copy(
            update={"devices": [d.model_copy(update={"port": 0}) for d in cfg.devices]}
        )
        tod = (T0.tz_convert(TZ) - T0.tz_convert(TZ).normalize()).total_seconds()
        servers, sims = await serve_config(cfg, clock=clock.sim_s, time_of_day_s=tod)
        try:
            ports = {
                name: next(s.port for s in servers if sim in s.devices.values())
                for name, sim in sims.items()
            }
            site_file = tmp_path / "site.yaml"
            site_file.write_text(yaml.safe_dump(_site_doc(ports)), encoding="utf-8")
            import_site_file(site_file, sessions)
            with sessions.begin() as session:
                add_gateway(session, SITE, [SITE], mosquitto_hash(new_password()))
                ids = {c.key.split("/", 1)[1]: c.id for c in session.scalars(select(Channel))}
            consume = subprocess.Popen(
                [sys.executable, "-m", "noaber.cli", "gateway", "consume",
                 "--intervals-every", "1", "--max-age-days", "3650"],
                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                line = await asyncio.to_thread(consume.stderr.readline)  # type: ignore[union-attr]
                assert line.startswith("consuming"), line
                site_cfg = load_config(site_file)
                broker_url = parse_broker_url(mqtt_url)
                # the measured history the forecast needs: half an hour, no control
                sink = MqttSampleSink.from_url(broker_url, SITE)
                pre = GatewayService(
                    site_cfg, sink, tmp_path / "pre-spool.sqlite", flush_interval_s=1.0,
                    clock=clock,
                )  # fmt: skip
                clock.release()
                await pre.run(PRE_S)
                clock.hold()  # until the loop's first step: it starts on the ISP grid
                assert await pre.forwarder.settle(120.0), "the centre did not acknowledge"
                pre.close()
                sink.close()
                await asyncio.to_thread(_wait_for_history, sessions, ids["building/power"])

                async def on_step(i: int, controller) -> None:
                    if i == 0:
                        clock.release()  # the day runs from the first plan on
                    if controller.status.last_ok and controller.last_plan is not None:
                        plans[i] = controller.last_plan.flows.copy()

                sink = MqttSampleSink.from_url(broker_url, SITE)
                run = await run_control(
                    site_cfg, sessions, SampleStore(data / "samples"), prices_csv,
                    tmp_path / "spool.sqlite", steps=200, step_s=900.0,
                    sessions_file=sessions_yaml, store_plans=False, on_step=on_step,
                    flush_interval_s=1.0, clock=clock, sample_sink=sink,
                    forecast_csv=forecast_csv, until=DAY_END,
                )  # fmt: skip
                sink.close()
            finally:
                consume.terminate()  # SIGTERM: it stops cleanly and prints its report
                out, err = await asyncio.to_thread(consume.communicate, timeout=120)
            assert consume.returncode == 0, err
        finally:
            for s in servers:
                await s.stop()
        return run, sims, ids, out

    try:
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
            run, sims, ids, out = runner.run(day())
    finally:
        broker.stop()
    assert "0 unacknowledged" in out, out
    assert run.status.plans == 2 + 4 * HOURS  # 11:44 (in the ISP of 11:30), 11:45, then each ISP

    from noaber.cli import app

    res = CliRunner().invoke(app, ["intervals", "update", "--full"])
    assert res.exit_code == 0, res.output
    day = pd.date_range(DAY0, DAY_END, freq="15min", inclusive="left")
    with sessions() as s:
        frame = read_readings(s, [ids["grid/power"]], DAY0.to_pydatetime(), DAY_END.to_pydatetime())
    grid_kw = frame.set_index("isp_start")["power_mean_w"].reindex(day) / 1000
    assert grid_kw.notna().all(), grid_kw[grid_kw.isna()]  # every ISP measured
    imp, exp = grid_kw.clip(lower=0), (-grid_kw).clip(lower=0)
    p = _prices(day)
    realised = 0.25 * float(
        imp @ p["import_price_eur_per_kwh"] - exp @ p["export_price_eur_per_kwh"]
    )
    plan = plans[2]  # made at 12:00 for the whole span
    assert plan.index[0] == DAY0 and plan.index[-1] == day[-1]
    planned = 0.25 * float(
        plan["grid_import_kw"] @ plan["import_price_eur_per_kwh"]
        - plan["grid_export_kw"] @ plan["export_price_eur_per_kwh"]
    )
    ratio = realised / planned
    with sessions() as s:
        devices = read_readings(
            s, [ids[f"{a}/power"] for a in ("battery", "ev-1", "pv", "building")],
            DAY0.to_pydatetime(), DAY_END.to_pydatetime(),
        )  # fmt: skip
    metered_kw = devices.pivot(index="isp_start", columns="channel_id", values="power_mean_w")
    first = pd.DataFrame([plans[2 + j].iloc[0] for j in range(len(day))], index=day)
    isp = pd.DataFrame(
        {
            "grid_plan": first["grid_import_kw"] - first["grid_export_kw"],
            "grid": grid_kw,
            "battery_plan": first["battery_charge_kw"] - first["battery_discharge_kw"],
            "battery": metered_kw[ids["battery/power"]] / 1000,
            "ev_plan": first["ev:ev-1:charge_kw"] - first["ev:ev-1:discharge_kw"],
            "ev": metered_kw[ids["ev-1/power"]] / 1000,
            "pv_plan": -first["pv_kw"],
            "pv": metered_kw[ids["pv/power"]] / 1000,
            "load_plan": first["load_kw"],
            "load": metered_kw[ids["building/power"]] / 1000,
        },
        index=day,
    )  # each ISP: the plan made at its start (its first step) against what was metered [kW]
    isp.index = isp.index.tz_convert(TZ).strftime("%H:%M")
    print(isp.round(3).to_string(), file=sys.stderr)
    print(
        f"closed loop over {len(day)} ISPs: planned {planned:.4f} EUR, realised {realised:.4f} "
        f"EUR, x{ratio:.6f}; max import {imp.max():.3f} kW (limit {IMPORT_KW}), max export "
        f"{exp.max():.3f} kW (limit {EXPORT_KW})",
        file=sys.stderr,
    )
    return {"run": run, "sims": sims, "plan": plan, "imp": imp, "exp": exp, "ratio": ratio,
            "planned": planned, "realised": realised, "isp": isp}  # fmt: skip


@pytest.mark.slow
def test_the_loop_sends_every_planned_action_within_the_device_limits(day):
    """Every step planned, no device lost, every ISP measured; the battery setpoints within
    the site's device limits; the planned curtailment reached the inverter."""
    run, sims, plan = day["run"], day["sims"], day["plan"]
    assert run.status.failures == 0, run.status.last_error
    assert not run.alarms, run.alarms
    assert plan["curtailed_kw"].max() > 1.0
    assert sims["pv-inverter"].writes_to("limit_pct"), "no production limit reached the inverter"
    gx = sims["battery-gx"]
    spec = gx.profile.registers["ess_setpoint_l1_w"]
    written = [decode(gx.profile, spec, w.words).value for w in gx.writes_to("ess_setpoint_l1_w")]
    assert written and max(abs(float(w)) for w in written) <= BATTERY_W
    assert max(abs(r.written_w) for r in run.setpoints if r.asset == "battery") <= BATTERY_W
    assert max(abs(r.written_w) for r in run.setpoints if r.asset == "battery") == BATTERY_W


@pytest.mark.slow
def test_the_metered_grid_keeps_the_limits_in_every_isp(day):
    """The grid connection's ISP means (what the meter settles on) within the site's import
    and export limits in every ISP, setpoint changes included."""
    imp, exp, isp = day["imp"], day["exp"], day["isp"]
    assert imp.max() <= IMPORT_KW, isp[imp.to_numpy() > IMPORT_KW]
    assert exp.max() <= EXPORT_KW, isp[exp.to_numpy() > EXPORT_KW]


@pytest.mark.slow
def test_the_metered_cost_is_the_plans_within_one_percent(day):
    """The metered grid flows priced with the plan's prices cost what the plan made at 12:00
    for the span said, within 1 %."""
    assert abs(day["ratio"] - 1) <= 0.01, (day["planned"], day["realised"], day["isp"])
