"""Home Assistant MQTT discovery: a site's live values, today's plan and its savings.

For each site, :func:`site_entities` describes the sensors and :func:`site_state` computes their
values from the store; :class:`HomeAssistantPublisher` publishes both to the site's broker:

* a retained discovery config per sensor on
  ``<prefix>/sensor/noaber_<site>/<object>/config`` (prefix ``homeassistant``), with the
  device block (one device per site), ``unique_id``, ``device_class``, ``state_class``,
  ``unit_of_measurement``, ``value_template`` into the state JSON and the availability topic;
* one retained state JSON on ``noaber-ha/<site>/state`` (every sensor's value by its key) and
  the plan's step series on ``noaber-ha/<site>/plan`` (the ``json_attributes_topic`` of the
  planned grid power);
* ``online``/``offline`` on ``noaber-ha/<site>/availability``: ``online`` retained after each
  connect, ``offline`` on a clean stop and, as the broker's last will, when the publisher dies.
* an empty retained payload on the config topic of a sensor the site no longer has (a removed
  channel or asset), which is how Home Assistant removes an entity: on connect the publisher
  reads the site's retained configs from the broker (the broker is what Home Assistant sees),
  and each publish clears those it did not publish again.

The sensors (units as Home Assistant's sensor device classes want them):

* per power channel: power [W] (``measurement``, the mean of the latest interval reading) and
  the energy imported and exported [kWh] (``total_increasing``: the sums of the channel's
  interval readings' positive and negative ``energy_wh``), so the grid, PV and battery
  meters can be picked in the energy dashboard without configuration;
* per SoC channel: ``battery`` [%];
* the plan: grid power now and next step [kW], the battery setpoint now [kW], the plan's cost
  and its savings against each baseline (``monetary`` [EUR], no state class: they are not
  running totals), and when the plan was made (``timestamp``).

Topics and ids use only the site's name and its asset names, which the site import keeps
pseudonymous (:mod:`energy.pseudonyms`): no owner's name, label or e-mail reaches the broker.

References
----------
Home Assistant, MQTT discovery (topic ``<discovery_prefix>/<component>/[<node_id>/]<object_id>
/config``, abbreviations, device and availability options) and the MQTT sensor; sensor device
classes and state classes (developers.home-assistant.io, "New sensor state class: total",
2021-09-20; ``monetary`` allows no state class or ``total``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from energy.models import Asset, AssetKind, Channel, IntervalReading, Quantity, Site
from energy.timegrid import ISP_NS
from modbus_gateway.mqtt import BrokerUrl
from optimizer.sitestore import get_site
from optimizer.store import Schedule, latest_schedule, schedule_steps

log = logging.getLogger(__name__)

DISCOVERY_PREFIX = "homeassistant"
STATE_BASE = "noaber-ha/{site}"
ONLINE, OFFLINE = "online", "offline"
#: At most this many plan steps go into the plan attributes (48 h of ISPs).
PLAN_STEPS_MAX = 192
#: Asset kinds that only consume: no "energy exported" sensor for them.
_CONSUMERS = {AssetKind.BUILDING_LOAD, AssetKind.PROCESS_LOAD}
_ID = re.compile(r"[^a-z0-9_]+")


def object_id(text: str) -> str:
    """A Home Assistant object id: lower case letters, digits and ``_`` only."""
    return _ID.sub("_", text.lower()).strip("_")


@dataclass(frozen=True)
class Entity:
    """One Home Assistant sensor: ``key`` names its value in the state JSON."""

    key: str
    name: str
    device_class: str | None
    unit: str | None
    state_class: str | None
    precision: int | None = None
    attributes: bool = False


def site_entities(session: Session, site_name: str) -> list[Entity]:
    """The sensors of a site: its power and SoC channels, the plan and the savings."""
    site = get_site(session, site_name)
    out: list[Entity] = []
    for asset, ch in _channels(session, site):
        base = object_id(ch.key.split("/", 1)[-1])
        if ch.quantity is Quantity.POWER:
            out.append(Entity(base, f"{asset.name} power", "power", "W", "measurement", 0))
            out.append(
                Entity(
                    f"{base}_import_kwh",
                    f"{asset.name} energy imported",
                    "energy",
                    "kWh",
                    "total_increasing",
                    3,
                )
            )
            if asset.kind not in _CONSUMERS:
                out.append(
                    Entity(
                        f"{base}_export_kwh",
                        f"{asset.name} energy exported",
                        "energy",
                        "kWh",
                        "total_increasing",
                        3,
                    )
                )
        elif ch.quantity is Quantity.SOC:
            out.append(
                Entity(base, f"{asset.name} state of charge", "battery", "%", "measurement", 1)
            )
    out += [
        Entity("plan_grid_now_kw", "planned grid power now", "power", "kW", "measurement", 2, True),
        Entity(
            "plan_grid_next_kw", "planned grid power next step", "power", "kW", "measurement", 2
        ),
        Entity("plan_battery_now_kw", "planned battery power now", "power", "kW", "measurement", 2),
        Entity("plan_cost_eur", "plan cost", "monetary", "EUR", None, 2),
        Entity("plan_made_at", "plan made at", "timestamp", None, None),
    ]
    sched = latest_schedule(session, site_name)
    for baseline in sorted((sched.summary or {}).get("savings_eur", {}) if sched else {}):
        out.append(
            Entity(
                f"savings_vs_{object_id(baseline)}_eur",
                f"plan savings vs {baseline.replace('_', ' ')}",
                "monetary",
                "EUR",
                None,
                2,
            )
        )
    return out


def _channels(session: Session, site: Site) -> list[tuple[Asset, Channel]]:
    rows = session.execute(
        select(Asset, Channel)
        .join(Channel, Channel.asset_id == Asset.id)
        .where(Asset.site_id == site.id, Channel.quantity.in_([Quantity.POWER, Quantity.SOC]))
        .order_by(Asset.name, Channel.key)
    ).all()
    return [(a, c) for a, c in rows]


def discovery_config(
    entity: Entity, site: Site, prefix: str = DISCOVERY_PREFIX
) -> tuple[str, dict]:
    """The discovery topic and config of one sensor of ``site``."""
    node = f"noaber_{object_id(site.name)}"
    base = STATE_BASE.format(site=site.name)
    config: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"{node}_{entity.key}",
        "state_topic": f"{base}/state",
        "value_template": f"{{{{ value_json.{entity.key} }}}}",
        "availability_topic": f"{base}/availability",
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": {
            "identifiers": [node],
            "name": site.display_name,
            "manufacturer": "Noaber",
            "model": site.kind,
        },
        "origin": {"name": "Noaber"},
    }
    for field_name, value in (
        ("device_class", entity.device_class),
        ("unit_of_measurement", entity.unit),
        ("state_class", entity.state_class),
        ("suggested_display_precision", entity.precision),
    ):
        if value is not None:
            config[field_name] = value
    if entity.attributes:
        config["json_attributes_topic"] = f"{base}/plan"
    return f"{prefix}/sensor/{node}/{entity.key}/config", config


def site_state(
    session: Session, site_name: str, now: dt.datetime | pd.Timestamp
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state JSON (every sensor's value by key; None: unknown) and the plan attributes.

    Live values are the latest interval reading of each channel; energy totals the sums of a
    channel's readings split by sign [kWh]; the plan values are the latest schedule's step
    that holds ``now`` and the next one (None outside the plan's horizon).
    """
    now_ts = pd.Timestamp(now).tz_convert("UTC")
    site = get_site(session, site_name)
    channels = _channels(session, site)
    ids = [c.id for _, c in channels]
    state: dict[str, Any] = {}
    latest: dict[int, tuple[dt.datetime | None, float | None, float | None]] = {}
    totals: dict[int, tuple[float, float]] = {}
    if ids:
        last = (
            select(IntervalReading.channel_id, func.max(IntervalReading.isp_start).label("ts"))
            .where(IntervalReading.channel_id.in_(ids))
            .group_by(IntervalReading.channel_id)
            .subquery()
        )
        for cid, ts, mean, value_last in session.execute(
            select(
                IntervalReading.channel_id,
                IntervalReading.isp_start,
                IntervalReading.power_mean_w,
                IntervalReading.value_last,
            ).join(
                last,
                (IntervalReading.channel_id == last.c.channel_id)
                & (IntervalReading.isp_start == last.c.ts),
            )
        ):
            latest[cid] = (ts, mean, value_last)
        for cid, imp, exp in session.execute(
            select(
                IntervalReading.channel_id,
                func.sum(case((IntervalReading.energy_wh > 0, IntervalReading.energy_wh), else_=0)),
                func.sum(
                    case((IntervalReading.energy_wh < 0, -IntervalReading.energy_wh), else_=0)
                ),
            )
            .where(IntervalReading.channel_id.in_(ids))
            .group_by(IntervalReading.channel_id)
        ):
            totals[cid] = (float(imp or 0.0), float(exp or 0.0))
    newest: dt.datetime | None = None
    for asset, ch in channels:
        base = object_id(ch.key.split("/", 1)[-1])
        seen, mean, value_last = latest.get(ch.id, (None, None, None))
        if seen is not None and (newest is None or seen > newest):
            newest = seen
        if ch.quantity is Quantity.POWER:
            state[base] = None if mean is None else round(float(mean), 1)
            imp, exp = totals.get(ch.id, (0.0, 0.0))
            state[f"{base}_import_kwh"] = round(imp / 1000, 3) if ch.id in totals else None
            if asset.kind not in _CONSUMERS:
                state[f"{base}_export_kwh"] = round(exp / 1000, 3) if ch.id in totals else None
        else:
            value = value_last if value_last is not None else mean
            state[base] = None if value is None else round(float(value), 2)
    state["readings_until"] = (
        None
        if newest is None
        else (pd.Timestamp(newest).tz_convert("UTC") + pd.Timedelta(ISP_NS)).isoformat()
    )
    plan_state, attributes = _plan_state(session, site, now_ts)
    state.update(plan_state)
    return state, attributes


def _plan_state(
    session: Session, site: Site, now: pd.Timestamp
) -> tuple[dict[str, Any], dict[str, Any]]:
    sched: Schedule | None = latest_schedule(session, site.name)
    state: dict[str, Any] = {
        "plan_grid_now_kw": None,
        "plan_grid_next_kw": None,
        "plan_battery_now_kw": None,
        "plan_cost_eur": None,
        "plan_made_at": None,
    }
    if sched is None:
        return state, {"schedule_id": None}
    summary = sched.summary or {}
    steps = schedule_steps(session, sched.id)
    step = pd.Timedelta(minutes=sched.step_minutes)
    grid = steps[steps["kind"] == "grid"].set_index("ts")["power_kw"]
    battery = steps[steps["kind"] == "battery"].set_index("ts")
    now_step = now.floor(step)

    def at(series: pd.Series, ts: pd.Timestamp) -> float | None:
        return round(float(series[ts]), 3) if ts in series.index else None

    state["plan_grid_now_kw"] = at(grid, now_step)
    state["plan_grid_next_kw"] = at(grid, now_step + step)
    state["plan_battery_now_kw"] = at(battery["power_kw"], now_step) if len(battery) else None
    cost = summary.get("kpis", {}).get("optimized", {}).get("cost_eur")
    state["plan_cost_eur"] = None if cost is None else round(float(cost), 2)
    state["plan_made_at"] = pd.Timestamp(sched.created_at).tz_convert("UTC").isoformat()
    for baseline, eur in summary.get("savings_eur", {}).items():
        state[f"savings_vs_{object_id(baseline)}_eur"] = round(float(eur), 2)
    day_start = now.tz_convert(site.timezone).normalize().tz_convert("UTC")
    shown = grid[grid.index >= day_start].iloc[:PLAN_STEPS_MAX]
    attributes = {
        "schedule_id": sched.id,
        "step_minutes": sched.step_minutes,
        "start": pd.Timestamp(sched.start).tz_convert("UTC").isoformat(),
        "end": pd.Timestamp(sched.end).tz_convert("UTC").isoformat(),
        "timestamps": [t.isoformat() for t in shown.index],
        "grid_kw": [round(float(v), 3) for v in shown],
        "battery_kw": [at(battery["power_kw"], t) if len(battery) else None for t in shown.index],
        "battery_soc_pct": [
            None
            if not len(battery) or t not in battery.index or pd.isna(battery.loc[t, "soc_pct"])
            else round(float(battery.loc[t, "soc_pct"]), 1)
            for t in shown.index
        ],
        "price_fallback": summary.get("price_fallback", []),
    }
    return state, attributes


class HomeAssistantPublisher:
    """Publishes a site's discovery configs and states to an MQTT broker (QoS 1, retained).

    The connection carries a last will (``offline``, retained, on the availability topic), so
    Home Assistant shows the sensors unavailable when the publisher dies.
    """

    def __init__(
        self,
        broker: BrokerUrl,
        site_name: str,
        prefix: str = DISCOVERY_PREFIX,
        timeout_s: float = 30.0,
    ):
        self.broker, self.site_name, self.prefix = broker, site_name, prefix
        self.timeout_s = timeout_s
        base = STATE_BASE.format(site=site_name)
        self.availability_topic = f"{base}/availability"
        self.state_topic = f"{base}/state"
        self.plan_topic = f"{base}/plan"
        self._connected = threading.Event()
        self._refused = ""
        node = f"noaber_{object_id(site_name)}"
        self._config_filter = f"{prefix}/sensor/{node}/+/config"
        self._sync_topic = f"{base}/sync"
        #: config topics of this site that the broker holds (retained) or we published
        self.published_configs: set[str] = set()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"noaber-ha-{site_name}",
            protocol=mqtt.MQTTv311,
        )
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            return
        # the site's retained configs first (what Home Assistant knows of this site), then the
        # sync marker: the broker sends a subscription's retained messages before it handles
        # the next packet, so the marker coming back means they have all arrived
        client.subscribe([(self._config_filter, 1), (self._sync_topic, 1)])
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            # the broker's ACL lets this publisher write only: configs of removed sensors are
            # then cleared only for those published while this process runs
            log.warning(
                "Home Assistant: may not read %s back from the broker; configs of sensors "
                "removed before this start are not cleared",
                self._config_filter,
            )
            self._connected.set()
            return
        client.publish(self._sync_topic, b"sync", qos=1, retain=False)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == self._sync_topic:
            client.unsubscribe([self._config_filter, self._sync_topic])
            self._connected.set()
        elif msg.retain and msg.payload:
            with self._lock:
                self.published_configs.add(msg.topic)

    def connect(self) -> None:
        """Connect and wait for the broker's answer; raises ConnectionError naming the broker."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(self.timeout_s) or self._refused:
            self.client.loop_stop()
            reason = self._refused or "no answer"
            raise ConnectionError(f"MQTT broker {self.broker} refused or not reachable: {reason}")

    def _publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(self.timeout_s)
        if not info.is_published():
            raise ConnectionError(f"MQTT broker {self.broker}: no PUBACK for {topic}")

    def publish(self, session: Session, now: dt.datetime | pd.Timestamp) -> int:
        """Publish every discovery config, the state and the plan; returns the sensor count.

        The configs of sensors the site no longer has are cleared (an empty retained payload).
        """
        site = get_site(session, self.site_name)
        entities = site_entities(session, self.site_name)
        topics = set()
        for entity in entities:
            topic, config = discovery_config(entity, site, self.prefix)
            self._publish(topic, json.dumps(config))
            topics.add(topic)
        with self._lock:
            stale = sorted(self.published_configs - topics)
        for topic in stale:
            self._publish(topic, "")
            log.info("Home Assistant: removed %s (no such sensor any more)", topic)
        with self._lock:
            self.published_configs = topics
        state, attributes = site_state(session, self.site_name, now)
        self._publish(self.plan_topic, json.dumps(attributes))
        self._publish(self.state_topic, json.dumps(state))
        return len(entities)

    def close(self) -> None:
        """Say ``offline`` (retained) and disconnect."""
        if self._connected.is_set():
            self._publish(self.availability_topic, OFFLINE)
            self.client.disconnect()
        self.client.loop_stop()


def run(
    publisher: HomeAssistantPublisher,
    sessions: Callable[[], Session],
    every_s: float | None,
    now: Callable[[], dt.datetime],
    stop: threading.Event,
    on_cycle: Callable[[int], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> int:
    """Publish once, or every ``every_s`` seconds until ``stop`` is set; returns the cycles.

    Publishing once, a broker that does not acknowledge raises ``ConnectionError``. Publishing
    every ``every_s``, such a cycle is reported to ``on_error`` and the next cycle tries again
    (paho reconnects by itself), so a broker restart does not end the service.
    """
    cycles = 0
    while True:
        try:
            with sessions() as session:
                n = publisher.publish(session, now())
        except ConnectionError as exc:
            if every_s is None or on_error is None:
                raise
            on_error(exc)
        else:
            cycles += 1
            if on_cycle is not None:
                on_cycle(n)
        if every_s is None or stop.wait(every_s):
            return cycles
