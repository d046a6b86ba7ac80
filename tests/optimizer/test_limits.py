"""One source of limits (issue 11, point 4): the plan stays within what the safe writer lets through."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from energy.errors import ValidationError
from modbus_gateway.config import parse_config
from noaber.services.control import writer_limits
from optimizer.limits import WriterLimit, apply_writer_limits
from optimizer.model import plan
from optimizer.scenario import Scenario, load_scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"
SITE_FILE = (
    Path(__file__).resolve().parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"
)


@pytest.fixture(scope="module")
def example() -> Scenario:
    return load_scenario(EXAMPLE)


def test_a_battery_behind_a_4_kw_writer_is_planned_at_4_kw_at_most(example: Scenario) -> None:
    free = plan(example)
    assert free.flows["battery_charge_kw"].max() > 4.0 + 1e-6  # the limit binds: it can fail
    sc = apply_writer_limits(example, [WriterLimit("battery", "battery-inv", -4000, 4000)])
    assert sc.battery is not None and (sc.battery.max_charge_kw, sc.battery.max_discharge_kw) == (
        4.0,
        4.0,
    )
    assert "battery 'battery' planned within 4 kW charging" in sc.meta["writer_limits"][0]
    f = plan(sc).flows
    assert f["battery_charge_kw"].max() <= 4.0 + 1e-7
    assert f["battery_discharge_kw"].max() <= 4.0 + 1e-7
    assert f["battery_charge_kw"].max() == pytest.approx(4.0)  # used up to the limit


def test_a_charger_that_may_not_discharge_plans_no_v2g(example: Scenario) -> None:
    sc = apply_writer_limits(example, [WriterLimit("car-1", "charger-1", 0, 3700)])
    car = next(ev for ev in sc.evs if ev.name == "car-1")
    assert (car.max_charge_kw, car.max_discharge_kw, car.v2g) == (3.7, 0.0, False)
    f = plan(sc).flows
    assert f["ev:car-1:discharge_kw"].max() == 0.0
    assert f["ev:car-1:charge_kw"].max() == pytest.approx(3.7)


def test_a_grid_setpoint_limit_caps_the_grid_not_the_battery(example: Scenario) -> None:
    """A Victron ESS takes the power at the grid connection: its limits cap import/export."""
    sc = apply_writer_limits(example, [WriterLimit("battery", "gx", -8000, 10000, "grid_power")])
    assert sc.battery == example.battery  # the inverter's rating stays the battery's limit
    assert sc.series["grid_import_limit_kw"].max() == 10.0
    assert sc.series["grid_export_limit_kw"].max() == 8.0
    f = plan(sc).flows
    assert f["grid_import_kw"].max() <= 10.0 + 1e-7
    assert f["grid_export_kw"].max() <= 8.0 + 1e-7
    assert plan(example).flows["grid_export_kw"].max() > 8.0  # without it the plan exports more


def test_limits_that_exclude_every_setpoint_are_refused() -> None:
    with pytest.raises(ValidationError, match="exclude every setpoint"):
        WriterLimit("battery", "inv", 5000, 4000, source="site.yaml")


def test_the_writer_limits_of_a_site_description(tmp_path: Path) -> None:
    """From the site file the gateway reads: the profile's register range and the site's
    ``devices[].limits``, the tighter of the two, per controlled asset."""
    doc = yaml.safe_load(SITE_FILE.read_text())
    for d in doc["devices"]:
        if d["name"] == "charger-1":
            d["limits"] = {"power_w_min": -2000, "power_w_max": 4000}
    cfg = parse_config(doc, str(SITE_FILE), SITE_FILE.parent)
    power = {"battery": "battery-gx", "ev-1": "charger-1", "ev-2": "charger-2"}
    limits = {lim.asset: lim for lim in writer_limits(cfg, power)}
    # wallbox_quasar.yaml: power_setpoint_w writable -7400..7400; the site narrows charger-1
    assert (limits["ev-1"].power_w_min, limits["ev-1"].power_w_max) == (-2000, 4000)
    assert (limits["ev-2"].power_w_min, limits["ev-2"].power_w_max) == (-7400, 7400)
    # victron_gx.yaml, ESS mode 3: the Multi's own power at its AC input (register 37 on the
    # VE.Bus unit), writable -10000..10000 W: it bounds the battery, not the grid
    gx = limits["battery"]
    assert (gx.quantity, gx.power_w_min, gx.power_w_max) == ("device_power", -10000, 10000)
