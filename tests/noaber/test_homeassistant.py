"""Home Assistant MQTT discovery, read back from a private Mosquitto on 127.0.0.1: the
discovery configs and states of the demo site (SQLite + PostgreSQL) match the store, render
through Home Assistant's own template form, name nobody, and go offline by the last will."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import jinja2
import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from sqlalchemy import select

from energy.models import Channel, Member
from energy.prices import store_prices
from energy.readings import upsert_readings
from energy.siteconfig import import_site_file
from modbus_gateway.mqtt import BrokerUrl
from noaber.services.homeassistant import HomeAssistantPublisher, site_state
from noaber.services.siteplans import plan_site
from optimizer.store import latest_schedule, schedule_steps
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto
from tests.net import wait_until

SITE_FILE = (
    Path(__file__).resolve().parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"
)
SITE = "dorpshuis-noaberhof"
NOW = pd.Timestamp("2026-06-15T14:07+02:00").tz_convert("UTC")
START = pd.Timestamp("2026-06-15T00:00+02:00").tz_convert("UTC")


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(need_executable("mosquitto"), tmp_path, "allow_anonymous true\n")
    b.start()
    yield b
    b.stop()


class Retained:
    """Subscribes to the discovery and Noaber topics and keeps the last payload per topic."""

    def __init__(self, port: int):
        self.messages: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-ha-reader")
        self.client.on_connect = lambda c, *a: c.subscribe(
            [("homeassistant/#", 1), ("noaber-ha/#", 1)]
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages[msg.topic] = msg.payload

    def get(self, topic: str) -> bytes | None:
        with self.lock:
            return self.messages.get(topic)

    def json(self, topic: str):
        return json.loads(self.messages[topic])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# readings of the last 14 days: building load with an evening peak, a grid meter that imports
# by night and exports around noon, the battery's power and SoC, one car's SoC
HIST = pd.date_range(
    START - pd.Timedelta(days=14), NOW.floor("15min"), freq="15min", inclusive="left"
)
LOCAL_HOUR = HIST.tz_convert("Europe/Amsterdam").hour
GRID_W = np.where(
    (LOCAL_HOUR >= 11) & (LOCAL_HOUR < 15), -6000.0, 4000.0 + 10.0 * np.arange(len(HIST)) % 7
)
BATTERY_W = np.where(LOCAL_HOUR < 12, 2000.0, -1500.0)
SOC = 40.0 + (np.arange(len(HIST)) % 50)


def _frame(mean_w: np.ndarray, instant: bool = False) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "energy_wh": 0.0 if instant else mean_w / 4,
            "power_mean_w": mean_w,
            "sample_count": 900,
            "coverage": 1.0,
            "value_last": mean_w if instant else np.nan,
        },
        index=HIST,
    )


@pytest.fixture
def planned_site(sessions):
    import_site_file(SITE_FILE, sessions)
    load_w = 5000.0 + 12000.0 * ((LOCAL_HOUR >= 18) & (LOCAL_HOUR < 22))
    with sessions.begin() as s:
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        upsert_readings(s, ch[f"{SITE}/building/power"], _frame(np.asarray(load_w, float)))
        upsert_readings(s, ch[f"{SITE}/grid/power"], _frame(GRID_W))
        upsert_readings(s, ch[f"{SITE}/battery/power"], _frame(BATTERY_W))
        upsert_readings(s, ch[f"{SITE}/battery/soc"], _frame(SOC, instant=True))
        idx = pd.date_range(START - pd.Timedelta(days=7), periods=96 * 9, freq="15min")
        local = idx.tz_convert("Europe/Amsterdam").hour
        buy = 0.22 + 0.1 * ((local >= 17) & (local < 21)) - 0.15 * ((local >= 11) & (local < 15))
        store_prices(s, "imp", pd.Series(buy, index=idx))
        store_prices(s, "exp", pd.Series(buy - 0.12, index=idx))
    with sessions.begin() as s:
        plan_site(s, SITE, START, 24, price_series=("imp", "exp"))
    return sessions


def _render(template: str, state: dict):
    """What Home Assistant shows for a value template over the state JSON."""
    return jinja2.Environment().from_string(template).render(value_json=state)


def test_discovery_and_states_match_the_store_and_name_nobody(planned_site, broker):
    sessions = planned_site
    pub = HomeAssistantPublisher(BrokerUrl("127.0.0.1", broker.port), SITE)
    pub.connect()
    with sessions() as s:
        n = pub.publish(s, NOW)
        sched = latest_schedule(s, SITE)
        steps = schedule_steps(s, sched.id)
        people = s.scalars(select(Member)).all()
        personal = [
            w
            for m in people
            if m.personal is not None
            for w in (m.personal.name, m.personal.email, m.personal.label)
            if w
        ] + [m.ref for m in people if m.kind.value == "person"]
    pub.close()
    # read back only now: everything must be retained
    reader = Retained(broker.port)
    node = "homeassistant/sensor/noaber_dorpshuis_noaberhof"
    try:
        wait_until(
            lambda: (
                len([t for t in list(reader.messages) if t.startswith(node)]) == n
                and reader.get(f"noaber-ha/{SITE}/state") is not None
            ),
            "every retained discovery config and the state",
        )
        grid = reader.json(f"{node}/grid_power/config")
        state = reader.json(f"noaber-ha/{SITE}/state")
        plan = reader.json(f"noaber-ha/{SITE}/plan")
        every = {t: p for t, p in reader.messages.items()}
    finally:
        reader.close()
    assert grid["device_class"] == "power" and grid["unit_of_measurement"] == "W"
    assert grid["state_class"] == "measurement"
    assert grid["unique_id"] == "noaber_dorpshuis_noaberhof_grid_power"
    assert grid["device"]["identifiers"] == ["noaber_dorpshuis_noaberhof"]
    assert grid["availability_topic"] == f"noaber-ha/{SITE}/availability"
    assert every[f"noaber-ha/{SITE}/availability"] == b"offline"  # closed cleanly
    # the grid meter's energy totals for the energy dashboard, from the test's own readings
    imp = json.loads(every[f"{node}/grid_power_import_kwh/config"])
    exp = json.loads(every[f"{node}/grid_power_export_kwh/config"])
    for cfg in (imp, exp):
        assert (cfg["device_class"], cfg["unit_of_measurement"], cfg["state_class"]) == (
            "energy",
            "kWh",
            "total_increasing",
        )
    want_import = GRID_W[GRID_W > 0].sum() / 4 / 1000
    want_export = -GRID_W[GRID_W < 0].sum() / 4 / 1000
    assert float(_render(imp["value_template"], state)) == pytest.approx(want_import, abs=1e-3)
    assert float(_render(exp["value_template"], state)) == pytest.approx(want_export, abs=1e-3)
    assert float(_render(grid["value_template"], state)) == pytest.approx(GRID_W[-1], abs=0.1)
    # the building only consumes: no export sensor; the battery's SoC is a battery sensor
    assert f"{node}/building_power_export_kwh/config" not in every
    soc = json.loads(every[f"{node}/battery_soc/config"])
    assert (soc["device_class"], soc["unit_of_measurement"]) == ("battery", "%")
    assert float(_render(soc["value_template"], state)) == pytest.approx(SOC[-1])
    # the plan: grid power now and next, the battery setpoint, cost and savings from the store
    now_step = NOW.floor("15min")
    grid_plan = steps[steps["kind"] == "grid"].set_index("ts")["power_kw"]
    bat_plan = steps[steps["kind"] == "battery"].set_index("ts")["power_kw"]
    assert state["plan_grid_now_kw"] == pytest.approx(grid_plan[now_step], abs=1e-3)
    assert state["plan_grid_next_kw"] == pytest.approx(
        grid_plan[now_step + pd.Timedelta("15min")], abs=1e-3
    )
    assert state["plan_battery_now_kw"] == pytest.approx(bat_plan[now_step], abs=1e-3)
    cost = json.loads(every[f"{node}/plan_cost_eur/config"])
    assert cost["device_class"] == "monetary" and cost["unit_of_measurement"] == "EUR"
    assert "state_class" not in cost  # Home Assistant allows none or 'total' for monetary
    assert state["plan_cost_eur"] == pytest.approx(
        sched.summary["kpis"]["optimized"]["cost_eur"], abs=0.005
    )
    for baseline, eur in sched.summary["savings_eur"].items():
        cfg = json.loads(every[f"{node}/savings_vs_{baseline}_eur/config"])
        assert cfg["device_class"] == "monetary"
        assert float(_render(cfg["value_template"], state)) == pytest.approx(eur, abs=0.005)
    now_cfg = json.loads(every[f"{node}/plan_grid_now_kw/config"])
    assert now_cfg["json_attributes_topic"] == f"noaber-ha/{SITE}/plan"
    assert plan["schedule_id"] == sched.id and len(plan["timestamps"]) == 96
    assert plan["grid_kw"] == pytest.approx(grid_plan.to_numpy(), abs=1e-3)
    # no personal data anywhere: not in a topic, not in a payload
    text = "\n".join(f"{t} {p.decode()}" for t, p in every.items()).lower()
    assert personal and not [w for w in personal if w.lower() in text]


def test_state_outside_the_plan_is_unknown_not_invented(planned_site):
    with planned_site() as s:
        state, _ = site_state(s, SITE, NOW + pd.Timedelta(days=3))
    assert state["plan_grid_now_kw"] is None and state["plan_battery_now_kw"] is None


def test_cli_publishes_and_the_last_will_says_offline_when_killed(tmp_path, broker):
    env = {
        **os.environ,
        "NOABER_DATA_DIR": str(tmp_path / "data"),
        "NOABER_MODE": "local",
        "NOABER_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
    }
    env.pop("NOABER_DATABASE_URL", None)
    cli = [sys.executable, "-m", "noaber.cli"]
    out = subprocess.run(
        [*cli, "site", "import", str(SITE_FILE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    unknown = subprocess.run(
        [*cli, "homeassistant", "publish", "--site", "nope", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        unknown.returncode == 1 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr
    )
    reader = Retained(broker.port)
    proc = subprocess.Popen(
        [*cli, "homeassistant", "publish", "--site", SITE, "--every", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    avail = f"noaber-ha/{SITE}/availability"
    try:
        wait_until(
            lambda: (
                reader.get(avail) == b"online" and reader.get(f"noaber-ha/{SITE}/state") is not None
            ),
            "online and a state from the publisher",
            timeout_s=60,
            proc=proc,
        )
        state = reader.json(f"noaber-ha/{SITE}/state")
        assert state["plan_grid_now_kw"] is None and state["grid_power"] is None  # no data yet
        # a null renders as "None", which Home Assistant's MQTT sensor takes as unknown
        assert _render("{{ value_json.grid_power }}", state) == "None"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_until(lambda: reader.get(avail) == b"offline", "the last will", timeout_s=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
        reader.close()
    once = subprocess.run(
        [*cli, "homeassistant", "publish", "--site", SITE, "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert once.returncode == 0, once.stderr
    assert "sensors published" in once.stdout and "1 cycle(s), offline" in once.stdout


def test_a_cycle_the_broker_does_not_acknowledge_is_retried_when_publishing_every() -> None:
    """`--every`: a cycle without PUBACK is reported and the next one tries again; `--once`
    raises it (the command exits 1 with the broker named)."""
    import contextlib
    import threading

    from noaber.services.homeassistant import run

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def publish(self, session, now) -> int:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("MQTT broker mqtt://127.0.0.1:1: no PUBACK for x")
            return 7

    stop = threading.Event()
    errors: list[Exception] = []
    published: list[int] = []

    def cycle(n: int) -> None:
        published.append(n)
        stop.set()

    flaky = Flaky()
    cycles = run(flaky, contextlib.nullcontext, 0.01, lambda: None, stop, cycle, errors.append)
    assert (cycles, published, flaky.calls) == (1, [7], 2)
    assert [str(e) for e in errors] == ["MQTT broker mqtt://127.0.0.1:1: no PUBACK for x"]
    with pytest.raises(ConnectionError, match="no PUBACK"):
        run(Flaky(), contextlib.nullcontext, None, lambda: None, threading.Event())


def test_a_removed_channel_is_cleared_from_home_assistant_on_the_next_start(planned_site, broker):
    """A sensor the site no longer has gets an empty retained config (Home Assistant removes
    the entity), found from the broker's retained configs by a publisher started afresh; other
    sites' configs stay."""
    from sqlalchemy import delete

    from energy.models import IntervalReading

    sessions = planned_site
    reader = Retained(broker.port)
    other = "homeassistant/sensor/noaber_other_site/grid_power/config"
    reader.client.publish(
        other, json.dumps({"name": "other"}), qos=1, retain=True
    ).wait_for_publish(10)
    first = HomeAssistantPublisher(BrokerUrl("127.0.0.1", broker.port), SITE)
    first.connect()
    with sessions() as s:
        first.publish(s, NOW)
    first.close()
    soc_topics = sorted(t for t in first.published_configs if "/battery_soc" in t)
    assert soc_topics, sorted(first.published_configs)
    wait_until(lambda: all(reader.get(t) for t in soc_topics), "the battery SoC config")

    with sessions.begin() as s:  # the battery's SoC channel is taken out of the site
        ch = s.scalars(select(Channel).where(Channel.key == f"{SITE}/battery/soc")).one()
        s.execute(delete(IntervalReading).where(IntervalReading.channel_id == ch.id))
        s.delete(ch)

    second = HomeAssistantPublisher(BrokerUrl("127.0.0.1", broker.port), SITE)
    second.connect()
    assert set(soc_topics) <= second.published_configs  # read back from the broker's retained
    with sessions() as s:
        n = second.publish(s, NOW)
    second.close()
    assert n == len(second.published_configs) and not set(soc_topics) & second.published_configs
    wait_until(lambda: all(reader.get(t) == b"" for t in soc_topics), "the SoC config cleared")
    assert json.loads(reader.get(other) or b"{}") == {"name": "other"}
    kept = [t for t in second.published_configs if reader.get(t)]
    assert len(kept) == n  # every remaining sensor keeps its config
    reader.close()

    # a fresh subscriber (what Home Assistant sees after a restart) gets no SoC config at all
    fresh = Retained(broker.port)
    wait_until(lambda: fresh.get(f"noaber-ha/{SITE}/state") is not None, "the retained state")
    assert all(fresh.get(t) is None for t in soc_topics)
    fresh.close()
