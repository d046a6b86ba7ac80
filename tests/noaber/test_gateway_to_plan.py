"""End to end: a site fed only through its gateway is planned from what the gateway measured.

Simulated devices (grid meter, PV meter, Victron GX battery, Wallbox Quasar with a car) on
127.0.0.1 -> the gateway (:class:`modbus_gateway.service.GatewayService`, what ``noaber
gateway run --mqtt`` runs) -> Mosquitto -> ``noaber gateway consume`` (a subprocess, with the
interval pipeline) -> ``noaber intervals update`` -> ``noaber optimize run --at``. The clock is
injected: the simulators and the gateway's timestamps run 240 times faster than the wall
clock, so an hour of a June morning passes in 15 s. The building's load is derived from the
meters in the site file (``building = grid - pv - battery - ev-1``); no series is synthetic.

What must hold: the derived load equals the formula over the stored meter readings in every
ISP; SoC channels reach the interval readings; the plan starts from the measured SoC of the
battery and of the car (no fallback warning).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from energy.db import make_engine, session_factory, upgrade
from energy.gateways import add_gateway
from energy.models import Channel, DerivedGap
from energy.readings import read_readings
from energy.siteconfig import import_site_file
from modbus_gateway.broker_auth import mosquitto_hash, new_password
from modbus_gateway.config import load_config
from modbus_gateway.mqtt import MqttSampleSink, parse_broker_url
from modbus_gateway.service import GatewayService
from modbus_gateway.simulator import serve_config
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
SITE = "dorpshuis-e2e"
TZ = "Europe/Amsterdam"
T0 = pd.Timestamp("2026-06-15T05:00+02:00").tz_convert("UTC")
SPEED = 240.0  # simulated seconds per wall-clock second
RUN_S = 15.0  # wall clock: one simulated hour
DEVICES = [
    {"name": "grid-meter", "profile": "eastron_sdm630", "unit_id": 1, "seed": 1},
    {"name": "pv-meter", "profile": "eastron_sdm630", "unit_id": 1, "sim_role": "pv", "seed": 2},
    {"name": "battery-gx", "profile": "victron_gx", "unit_id": 100, "seed": 3},
    {"name": "charger-1", "profile": "wallbox_quasar", "unit_id": 1, "seed": 4},
]
ASSETS = [
    {"name": "grid", "kind": "meter",
     "channels": [{"quantity": "power", "device": "grid-meter", "register": "total_power_w"}]},
    {"name": "pv", "kind": "pv", "params": {"peak_kw": 4},
     "channels": [{"quantity": "power", "device": "pv-meter", "register": "total_power_w"}]},
    {"name": "building", "kind": "building_load",
     "channels": [{"quantity": "power", "derived": "grid - pv - battery - ev-1"}]},
    {"name": "battery", "kind": "battery",
     "params": {"capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5,
                "efficiency_charge": 1.0, "efficiency_discharge": 1.0, "soc_initial_pct": 50},
     "channels": [
         {"quantity": "power", "device": "battery-gx", "register": "battery_power_w"},
         {"quantity": "soc", "device": "battery-gx", "register": "battery_soc_pct"}]},
    {"name": "ev-1", "kind": "ev",
     "params": {"capacity_kwh": 40, "max_charge_kw": 7.4, "max_discharge_kw": 7.4,
                "efficiency": 1.0, "v2g": True, "soc_min_pct": 20},
     "channels": [
         {"quantity": "power", "device": "charger-1", "register": "actual_power_w"},
         {"quantity": "soc", "device": "charger-1", "register": "ev_soc_pct"}]},
]  # fmt: skip


class SpeedClock:
    """The gateway's clock: wall-clock scheduling, timestamps from ``T0`` at ``SPEED``."""

    def __init__(self) -> None:
        self.r0 = time.monotonic()

    def sim_s(self) -> float:
        """Simulated seconds since the start (the simulators' clock)."""
        return (time.monotonic() - self.r0) * SPEED

    def time_ns(self) -> int:
        return T0.value + int(self.sim_s() * 1e9)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _site_doc(ports: dict[str, int]) -> dict:
    return {
        "site": {
            "name": SITE, "ean": "871685900000000059", "latitude": 52.88, "longitude": 6.86,
            "grid_import_limit_kw": 40, "grid_export_limit_kw": 25,
        },
        "devices": [
            {**d, "host": "127.0.0.1", "port": ports.get(d["name"], 15020), "poll_interval_s": 0.5}
            for d in DEVICES
        ],
        "assets": ASSETS,
    }  # fmt: skip


def _env(data: Path, mqtt_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOABER_")}
    env.update(
        NOABER_MODE="local", NOABER_DATA_DIR=str(data), NOABER_MQTT_URL=mqtt_url, COLUMNS="400"
    )
    return env


async def _run_gateway(tmp_path: Path, mqtt_url: str, centre) -> tuple[Path, int, str]:
    """Serve the simulators, write the site file with their ports, start the centre on it
    (``centre(site_file)`` returns the running ``consume`` process), poll for RUN_S seconds
    and wait for the centre's acknowledgement of every batch (the spool empties only then)."""
    template = tmp_path / "template.yaml"
    template.write_text(yaml.safe_dump(_site_doc({})), encoding="utf-8")
    cfg = load_config(template)
    cfg = cfg.model_copy(
        update={"devices": [d.model_copy(update={"port": 0}) for d in cfg.devices]}
    )
    clock = SpeedClock()
    tod = (T0.tz_convert(TZ) - T0.tz_convert(TZ).normalize()).total_seconds()
    servers, sims = await serve_config(cfg, clock=clock.sim_s, time_of_day_s=tod)
    try:
        ports = {
            name: next(s.port for s in servers if sim in s.devices.values())
            for name, sim in sims.items()
        }
        site_file = tmp_path / "site.yaml"
        site_file.write_text(yaml.safe_dump(_site_doc(ports)), encoding="utf-8")
        consume = await asyncio.to_thread(centre, site_file)
        try:
            sink = MqttSampleSink.from_url(parse_broker_url(mqtt_url), SITE)
            service = GatewayService(
                load_config(site_file), sink, tmp_path / "spool.sqlite", flush_interval_s=1.0,
                clock=clock,
            )  # fmt: skip
            await service.run(RUN_S)
            # end to end: the spool empties only on the centre's acknowledgement (bounded)
            assert await service.forwarder.settle(120.0), "the centre did not acknowledge"
            delivered = service.counters().samples_delivered
            assert service.counters().samples_spooled == 0
            service.close()
            sink.close()
        finally:
            consume.terminate()  # SIGTERM: the consumer stops cleanly and prints its report
            out, err = await asyncio.to_thread(consume.communicate, timeout=120)
        assert consume.returncode == 0, err
    finally:
        for s in servers:
            await s.stop()
    return site_file, delivered, out


@pytest.mark.slow
def test_a_site_fed_only_by_its_gateway_is_planned_from_the_measured_state(tmp_path, monkeypatch):
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

    def centre(site_file: Path) -> subprocess.Popen:
        """Import the site, register its gateway (bound to the site), start ``consume``."""
        import_site_file(site_file, session_factory(engine))
        with session_factory(engine).begin() as session:
            add_gateway(session, SITE, [SITE], mosquitto_hash(new_password()))
        proc = subprocess.Popen(
            [sys.executable, "-m", "noaber.cli", "gateway", "consume",
             "--intervals-every", "1", "--max-age-days", "3650"],  # June samples, replayed
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # ready when it has subscribed (its first line on stderr), bounded
        line = proc.stderr.readline() if proc.stderr else ""
        assert line.startswith("consuming"), line
        return proc

    try:
        _, delivered, out = asyncio.run(_run_gateway(tmp_path, mqtt_url, centre))
    finally:
        broker.stop()
    assert delivered > 100
    # every polled sample stored exactly once: the rows on disk (re-sent batches counted as
    # stored by the consumer are idempotent) equal the unique samples and what was polled
    from energy.samples import SampleStore

    store = SampleStore(data / "samples")
    on_disk = sum(pq.read_metadata(f).num_rows for f in (data / "samples").rglob("*.parquet"))
    unique = sum(len(store.read(c)) for c in store.channels())
    assert on_disk == unique == delivered, (on_disk, unique, delivered, out)
    assert int(out.split(" samples stored")[0].split()[-1]) >= delivered, out
    assert "0 unacknowledged" in out, out
    assert " 0 to the dead-letter store, 0 quarantined" in out, out

    from noaber.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["intervals", "update", "--full"])
    assert res.exit_code == 0, res.output
    assert f"derived {SITE}/building/power:" in res.output

    sessions = session_factory(engine)
    with sessions() as s:
        ids = {c.key.split("/", 1)[1]: c.id for c in s.scalars(select(Channel))}
        frame = read_readings(s, list(ids.values()))
        gaps = s.scalars(select(DerivedGap.isp_start)).all()
    wide = frame.pivot(index="isp_start", columns="channel_id", values="power_mean_w")
    cov = frame.pivot(index="isp_start", columns="channel_id", values="coverage")
    building = wide[ids["building/power"]].dropna()
    assert len(building) >= 3  # the hour's ISPs, from the meters alone
    # the derived load is the formula over the stored meter readings, ISP by ISP (signs:
    # the battery discharges into the building in the morning, so it adds to the load)
    expected = (
        wide[ids["grid/power"]] - wide[ids["pv/power"]] - wide[ids["battery/power"]]
        - wide[ids["ev-1/power"]]
    ).loc[building.index]  # fmt: skip
    np.testing.assert_allclose(building.to_numpy(), expected.to_numpy(), rtol=1e-9)
    assert (wide.loc[building.index, ids["battery/power"]] < 0).all()  # discharging
    assert (building > 0).all()
    # the ISPs without a derived reading are those where an input covers too little
    inputs = [ids[k] for k in ("grid/power", "pv/power", "battery/power", "ev-1/power")]
    thin = cov[inputs].reindex(pd.DatetimeIndex(gaps)).min(axis=1)
    assert ((thin < 0.5) | thin.isna()).all()
    # SoC channels reach the interval readings: mean, min, max and last per ISP
    soc = frame[frame.channel_id == ids["battery/soc"]].set_index("isp_start")
    assert soc["value_last"].notna().all() and (soc["power_min_w"] <= soc["power_max_w"]).all()
    assert soc["value_last"].iloc[-1] < soc["value_last"].iloc[0]  # it discharged

    # plan as of the end of the last ISP with a derived load: on a loaded machine the centre's
    # start-up takes simulated minutes, so the hour measured need not start at T0
    at = building.index[-1] + pd.Timedelta(minutes=15)
    idx = pd.date_range(at, periods=4 * 26, freq="15min")
    hour = idx.tz_convert(TZ).hour
    price = 0.22 + 0.15 * ((hour >= 17) & (hour < 21))
    pd.DataFrame(
        {"timestamp": [t.isoformat() for t in idx], "import_price_eur_per_kwh": price,
         "export_price_eur_per_kwh": price - 0.12}
    ).to_csv(tmp_path / "prices.csv", index=False)  # fmt: skip
    (tmp_path / "sessions.yaml").write_text(
        yaml.safe_dump(
            {"ev-1": [{"arrival": T0.isoformat(), "departure": (T0 + pd.Timedelta(hours=10)).isoformat(),
                       "soc_arrival_pct": 30, "soc_departure_pct": 60}]}
        ),
        encoding="utf-8",
    )  # fmt: skip
    res = runner.invoke(
        app,
        ["optimize", "run", "--site", SITE, "--prices", str(tmp_path / "prices.csv"),
         "--sessions", str(tmp_path / "sessions.yaml"), "--at", at.isoformat(), "--steps", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output, res.output  # measured, no fallback
    assert "step 1/2" in res.output and "step 2/2" in res.output

    from optimizer.store import Schedule, ScheduleStep

    battery_soc = soc["value_last"].loc[soc.index < at].iloc[-1]
    ev = frame[frame.channel_id == ids["ev-1/soc"]].set_index("isp_start")["value_last"]
    ev = ev.loc[ev.index < at]
    with sessions() as s:
        first = s.scalars(select(Schedule).order_by(Schedule.id)).first()
        assert first is not None and pd.Timestamp(first.start) == at
        steps = s.scalars(
            select(ScheduleStep).where(ScheduleStep.schedule_id == first.id, ScheduleStep.ts == at)
        ).all()
    rows = {r.asset: r for r in steps}
    # the SoC before the first step, from the stored plan: end-of-step SoC minus that step's
    # energy (efficiency 1 in the site file); the stored plan rounds SoC to 0.001 %
    b = rows["battery"]
    assert b.soc_pct - 100 * b.power_kw * 0.25 / 10 == pytest.approx(battery_soc, abs=1e-3)
    e = rows["ev-1"]
    assert e.soc_pct - 100 * e.power_kw * 0.25 / 40 == pytest.approx(ev.iloc[-1], abs=1e-3)
    assert battery_soc != 50 and ev.iloc[-1] != 30  # neither the site file nor the session
