"""Capability protocols: the core asks what a device can do, not what brand it is."""

from __future__ import annotations

import math

import pytest

from energy.errors import ValidationError
from energy.samples import Quality
from modbus_gateway.capabilities import (
    Battery,
    EnergyMeter,
    Meter,
    PowerControl,
    Written,
    device,
)
from modbus_gateway.poller import Gateway
from modbus_gateway.profiles import parse_profile
from modbus_gateway.service import GatewayService
from modbus_gateway.spool import MemorySink
from modbus_gateway.writes import SafeWriter
from tests.modbus_gateway.conftest import FakeClock, config_for


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


async def test_power_control_clamps_to_the_site_limit_reads_back_and_releases(serve, tmp_path):
    """Through the service's view: the site's limit binds, the device reads the value back,
    ``release`` writes the profile's safe default (control back to the charger)."""
    clock = FakeClock()
    srv, sim = await serve("wallbox_quasar", clock=clock)
    cfg = config_for(
        [
            {
                "name": "charger-1",
                "profile": "wallbox_quasar",
                "port": srv.port,
                "asset": "ev-anna",
                "limits": {"power_w_min": -3000, "power_w_max": 3000},
            }
        ]
    )
    service = GatewayService(cfg, MemorySink(), tmp_path / "spool.sqlite", clock=clock)
    try:
        ev = service.devices()["charger-1"]
        assert isinstance(ev, PowerControl) and ev.asset == "ev-anna" and ev.kind == "charger"
        assert not ev.enabled
        # the first setpoint may ramp to 3700 W; the site's 3000 W is what binds
        assert await ev.write(5000, requested_by="test") == Written(5000, 3000, True)
        assert ev.enabled and sim.get("control_mode") == 1
        assert sim.get("power_setpoint_w") == 3000
        await service.gateway.poll_once(service.gateway.devices["charger-1"])
        assert isinstance(ev, Meter) and ev.power_w().value == 3000
        clock.advance(10)
        # one ramp step (3700 W/s) now, the writer ramps on to the site's -3000 W
        assert await ev.write(-9000, requested_by="test") == Written(-9000, -700, True)
        for _ in range(2):
            clock.advance(1)
            await service.writer.keepalive_once()
        assert sim.get("power_setpoint_w") == -3000
        await ev.release(requested_by="test")
        assert not ev.enabled
        assert sim.get("power_setpoint_w") == 0 and sim.get("control_mode") == 0
        assert service.writer.log[-1].requested_by == "test"
    finally:
        service.gateway.close()
        service.close()


async def test_ess_view_takes_battery_power_as_a_grid_setpoint(serve):
    """A Victron ESS regulates its grid connection: the view asks for the grid setpoint that
    leaves the asked battery power; an unchanged setpoint is not re-written (flash wear)."""
    clock = FakeClock()  # the simulated building load stays put while the clock does
    srv, sim = await serve("victron_gx", clock=clock)
    gw = Gateway(
        config_for([{"name": "gx", "profile": "victron_gx", "port": srv.port}]), clock=clock
    )
    writer = SafeWriter(gw)
    try:
        gx = device(gw, writer, "gx")
        assert isinstance(gx, PowerControl) and isinstance(gx, Battery) and gx.asset == "gx"
        net_w = sim.get("grid_power_l1_w") - sim.get("battery_power_w")
        assert abs(net_w) > 100  # so the translation shows
        written = await gx.write(2000, requested_by="test")
        assert written.requested_w == pytest.approx(2000 + net_w, abs=0.1)
        assert written.read_back and written.written_w == sim.get("grid_setpoint_w")
        sim.read(3, 842, 1)  # let the simulated ESS follow its setpoint
        assert sim.get("battery_power_w") == pytest.approx(2000, abs=1)
        again = await gx.write(2000, requested_by="test")
        assert again.written_w == written.written_w and not again.read_back
        assert len(sim.writes_to("grid_setpoint_w")) == 1
        await gx.release(requested_by="test")
        assert sim.get("grid_setpoint_w") == 0 and not gx.enabled
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
