"""The site configuration: the gateway's own shape and a whole site description."""

from __future__ import annotations

import pytest

from energy.errors import ValidationError
from modbus_gateway.config import load_config, parse_config
from noaber.services.demo.gateway import DEMO_SITE_FILE


def test_errors_name_the_path():
    with pytest.raises(ValidationError, match=r"devices\[1\]\.port"):
        parse_config(
            {"devices": [{"name": "a", "profile": "eastron_sdm120"}, {"name": "b", "profile": "eastron_sdm120", "port": 70000}]},
            "s.yaml",
        )  # fmt: skip
    with pytest.raises(ValidationError, match=r"devices\[0\]\.profile"):
        parse_config({"devices": [{"name": "a", "profile": "acme_9000"}]}, "s.yaml")
    with pytest.raises(ValidationError, match="needs bus"):
        parse_config(
            {"devices": [{"name": "a", "profile": "eastron_sdm120", "transport": "rtu"}]}, "s.yaml"
        )
    with pytest.raises(ValidationError, match="duplicate device name"):
        parse_config({"devices": [{"name": "a", "profile": "eastron_sdm120"}] * 2}, "s.yaml")
    with pytest.raises(ValidationError, match="has no register"):
        parse_config(
            {"devices": [{"name": "a", "profile": "eastron_sdm120", "channels": {"x": "y"}}]},
            "s.yaml",
        )


def test_serial_port_gets_a_bus_and_channels_default():
    cfg = parse_config(
        {"devices": [{"name": "m", "profile": "eastron_sdm120", "transport": "rtu", "serial_port": "/dev/ttyUSB0", "baudrate": 19200}]},
        "s.yaml",
    )  # fmt: skip
    d = cfg.devices[0]
    assert cfg.buses[d.bus].port == "/dev/ttyUSB0" and cfg.buses[d.bus].baudrate == 19200
    assert cfg.channel_map(d)["total_power_w"] == "m.total_power_w"
    assert cfg.unit_id(d) == 1


def test_site_description_channels_units_and_sign():
    cfg = load_config(DEMO_SITE_FILE)
    grid = next(d for d in cfg.devices if d.name == "grid-meter")
    assert cfg.channel_map(grid)["total_power_w"] == "dorpshuis-noaberhof/grid/power"
    assert cfg.factors(grid)["import_energy_kwh"] == 1000.0  # kWh register -> Wh channel
    gx = next(d for d in cfg.devices if d.name == "battery-gx")
    assert cfg.unit_id(gx) == 100
    assert set(cfg.channel_map(gx)) == {"battery_power_w", "battery_soc_pct"}


async def test_site_assets_name_the_controllable_devices():
    cfg = load_config(DEMO_SITE_FILE)
    by_name = {d.name: d for d in cfg.devices}
    assert by_name["charger-1"].asset_from_site == "ev-1"
    assert by_name["battery-gx"].asset_from_site == "battery"
    from modbus_gateway.poller import Gateway
    from modbus_gateway.writes import SafeWriter

    gw = Gateway(cfg)
    try:
        controls = SafeWriter(gw).controls
    finally:
        gw.close()
    assert {"ev-1", "ev-2", "ev-3"} <= set(controls)
    # the Victron ESS mode 3 setpoint is the Multi's own AC-input power: the battery's
    assert "battery" in controls and controls["battery"].dev.name == "battery-gx"
