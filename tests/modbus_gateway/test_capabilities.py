"""Capability protocols: the core asks what a device can do, not what brand it is."""

from __future__ import annotations

import math

import pytest

from energy.errors import ValidationError
from energy.samples import Quality
from modbus_gateway.capabilities import Battery, EnergyMeter, Meter, PowerControl, device
from modbus_gateway.poller import Gateway
from modbus_gateway.profiles import parse_profile
from modbus_gateway.writes import SafeWriter
from tests.modbus_gateway.conftest import config_for


async def test_meter_and_charger_capabilities(serve):
    srv_m, meter = await serve("eastron_sdm630")
    srv_q, _charger = await serve("wallbox_quasar")
    meter.frozen = True
    cfg = config_for(
        [
            {"name": "grid", "profile": "eastron_sdm630", "port": srv_m.port},
            {"name": "ev", "profile": "wallbox_quasar", "port": srv_q.port, "asset": "ev-anna"},
        ]
    )
    gw = Gateway(cfg)
    writer = SafeWriter(gw)
    try:
        grid, ev = device(gw, writer, "grid"), device(gw, writer, "ev")
        assert isinstance(grid, Meter) and isinstance(grid, EnergyMeter)
        assert not isinstance(grid, Battery) and not isinstance(grid, PowerControl)
        assert isinstance(ev, Meter) and isinstance(ev, Battery) and isinstance(ev, PowerControl)
        before = grid.power_w()
        assert before.quality == Quality.MISSING and math.isnan(before.value)  # not polled yet
        await gw.poll_once(gw.devices["grid"])
        p = grid.power_w()
        assert p.quality == Quality.GOOD and p.value == pytest.approx(meter.get("total_power_w"))
        e = grid.energy_import_wh()
        assert e.value == pytest.approx(meter.get("import_energy_kwh") * 1000)  # kWh -> Wh
        assert (await ev.write(2000, requested_by="test")).written_w == 2000
        await gw.poll_once(gw.devices["ev"])
        assert ev.power_w().value == 2000 and ev.soc_pct().quality == Quality.GOOD
    finally:
        gw.close()


def test_unknown_capability_is_refused():
    with pytest.raises(ValidationError, match=r"capabilities\.volume_l"):
        parse_profile(
            {"name": "x", "capabilities": {"volume_l": "a"}, "registers": {"a": {"address": 0}}},
            "x.yaml",
        )
    with pytest.raises(ValidationError, match=r"capabilities\.power_w: no register"):
        parse_profile(
            {"name": "x", "capabilities": {"power_w": "b"}, "registers": {"a": {"address": 0}}},
            "x.yaml",
        )
