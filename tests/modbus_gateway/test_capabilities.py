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


async def test_gx_view_takes_battery_power_in_ess_mode_3(serve):
    """A Victron GX is controlled in ESS mode 3: external control is set on the system unit
    (2902), the Multi's AC-input setpoint on the VE.Bus unit (37) is the battery's power, it
    is refreshed (a RAM value the Multi drops after 60 s), and release hands the ESS back."""
    clock = FakeClock()
    srv, sim = await serve("victron_gx", clock=clock)
    gw = Gateway(
        config_for([{"name": "gx", "profile": "victron_gx", "port": srv.port, "asset": "battery"}]),
        clock=clock,
    )
    writer = SafeWriter(gw)
    try:
        gx = device(gw, writer, "gx")
        assert isinstance(gx, PowerControl) and isinstance(gx, Battery) and gx.asset == "battery"
        written = await gx.write(2000, requested_by="test")
        assert written.requested_w == 2000 and written.read_back
        assert [w.name for w in sim.write_log][:4] == [
            "ess_mode", "disable_charge", "disable_feed_in", "ess_setpoint_l1_w"
        ]  # fmt: skip
        assert sim.get("ess_mode") == 3 and sim.get("ess_setpoint_l1_w") == 2000
        sim.read(3, 842, 1, 100)  # let the simulated Multi follow its setpoint
        assert sim.get("battery_power_w") == 2000
        assert len(sim.writes_to("grid_setpoint_w")) == 0  # the flash setting is never touched
        for _ in range(4):  # 40 s: refreshed before the Multi's 60 s run out
            clock.advance(10)
            await writer.keepalive_once()
            sim.tick()
        assert len(sim.writes_to("ess_setpoint_l1_w")) >= 4 and sim.state["passthru"] == 0
        check = await gx.check(requested_by="test")
        assert check.in_control and not check.mismatches
        await gx.release(requested_by="test")
        assert sim.get("ess_setpoint_l1_w") == 0 and sim.get("ess_mode") == 1 and not gx.enabled
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
