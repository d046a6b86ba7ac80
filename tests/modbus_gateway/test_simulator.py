"""Simulated devices: realistic, time-varying, deterministic per seed; faults by config."""

from __future__ import annotations

import random

import pytest
from pymodbus.constants import ExcCodes

from modbus_gateway.config import FaultSpec
from modbus_gateway.profiles import shipped_profiles
from modbus_gateway.simulator import Silence, SimulatedDevice, sunspec_layout
from tests.modbus_gateway.conftest import FakeClock


def _dev(name, clock, **kw):
    return SimulatedDevice(shipped_profiles()[name], clock=clock, rng=random.Random(7), **kw)


def test_same_seed_same_values():
    c1, c2 = FakeClock(), FakeClock()
    a, b = _dev("eastron_sdm630", c1), _dev("eastron_sdm630", c2)
    for _ in range(5):
        c1.advance(1)
        c2.advance(1)
        assert a.read(4, 0, 0x12) == b.read(4, 0, 0x12)


def test_meter_counters_integrate_and_pv_role_exports():
    clock = FakeClock()
    grid = _dev("eastron_sdm630", clock)
    pv = _dev("eastron_sdm630", clock, role="pv", time_of_day_s=12 * 3600)
    night = _dev("eastron_sdm630", clock, role="pv", time_of_day_s=0)
    imp0 = grid.get("import_energy_kwh") + grid.get("export_energy_kwh")
    for _ in range(36):
        clock.advance(100)
        for d in (grid, pv, night):
            d.read(4, 0x34, 2)
    assert grid.get("import_energy_kwh") + grid.get("export_energy_kwh") > imp0
    assert pv.get("total_power_w") < -3000  # producing at noon: export, negative
    assert night.get("total_power_w") == 0
    assert pv.get("export_energy_kwh") > 567 + 3  # about 4 kWh in an hour


def test_victron_soc_follows_the_grid_setpoint():
    clock = FakeClock()
    gx = _dev("victron_gx", clock, time_of_day_s=0)  # night: no PV
    soc0 = gx.state["soc"]
    gx.write(6, 2700, [5000])  # import 5 kW from the grid: the battery charges
    for _ in range(60):
        clock.advance(60)
        gx.read(3, 840, 5)
    assert gx.get("battery_power_w") > 0 and gx.state["soc"] > soc0 + 10
    gx.write(6, 2700, [(-5000) & 0xFFFF])  # export: the battery discharges
    soc1 = gx.state["soc"]
    for _ in range(10):
        clock.advance(60)
        gx.read(3, 840, 5)
    assert gx.get("battery_power_w") < 0 and gx.state["soc"] < soc1


def test_charger_car_charges_in_remote_mode_only():
    clock = FakeClock()
    q = _dev("wallbox_quasar", clock)
    q.write(6, 260, [3000])
    clock.advance(60)
    q.read(3, 526, 1)
    assert q.get("actual_power_w") == 0  # user mode: the setpoint is not applied
    for addr, v in ((81, 1), (83, 1), (257, 1), (260, 7400)):
        assert q.write(6, addr, [v]) is None
    clock.advance(600)
    q.read(3, 526, 1)
    assert q.get("actual_power_w") == 7400 and q.state["ev_soc"] > 40
    assert q.write(6, 260, [8000]) == ExcCodes.ILLEGAL_VALUE  # beyond +/-7400


def test_sunspec_map_walks_to_the_end_marker():
    d = _dev("sunspec_storage", FakeClock())
    assert d.read(3, 40000, 2) == [0x5375, 0x6E53]
    bases = sunspec_layout()
    assert d.read(3, bases[802] - 2, 2) == [802, 62]
    end = bases[124] + 24
    assert d.read(3, end, 2) == [0xFFFF, 0]
    assert d.read(3, 0, 2) == ExcCodes.ILLEGAL_ADDRESS


def test_faults_by_window_and_probability():
    clock = FakeClock()
    d = _dev(
        "eastron_sdm120",
        clock,
        faults=[
            FaultSpec(kind="timeout", start_s=10, duration_s=5),
            FaultSpec(kind="short", start_s=20, duration_s=5),
            FaultSpec(kind="busy", start_s=30, probability=0.5),
        ],
    )
    assert len(d.read(4, 0, 2)) == 2
    clock.advance(11)
    with pytest.raises(Silence):
        d.read(4, 0, 2)
    clock.advance(10)
    assert len(d.read(4, 0, 2)) == 1
    clock.advance(10)
    replies = [d.read(4, 0, 2) for _ in range(200)]
    busy = sum(r == ExcCodes.DEVICE_BUSY for r in replies)
    assert 60 < busy < 140


async def test_port_in_use_is_a_clear_error(serve):
    from energy.errors import NoaberError
    from modbus_gateway.simulator import SimServer

    srv, dev = await serve("eastron_sdm120")
    with pytest.raises(NoaberError, match="cannot listen"):
        await SimServer({1: dev}, port=srv.port).start()


def _write(dev, name, value, unit=None):
    """Write an engineering value the way a client does (words, function 16)."""
    from modbus_gateway.profiles import encode

    spec = dev.profile.registers[name]
    sf = dev._sf(name)
    assert dev.write(16, spec.address, encode(dev.profile, spec, value, sf), unit) is None


def test_victron_mode_2_setpoint_is_kept_forever_mode_3_times_out():
    """The GX keeps a plain ESS grid setpoint with nobody writing; in ESS mode 3 the Multi
    follows the AC-input setpoint only while it is refreshed, then goes to passthru."""
    clock = FakeClock()
    gx = _dev("victron_gx", clock, time_of_day_s=0)
    gx.write(6, 2700, [5000])  # mode 1/2: 5 kW from the grid
    for _ in range(30):  # 30 minutes and nobody writes
        clock.advance(60)
        gx.tick()
        gx.read(3, 840, 5)
    assert gx.get("grid_setpoint_w") == 5000 and gx.get("battery_power_w") > 0
    # mode 3 on the VE.Bus unit (227); the system unit (100) does not serve register 37
    _write(gx, "ess_mode", 3, 100)
    assert gx.write(6, 37, [3000], 100) == ExcCodes.ILLEGAL_ADDRESS
    _write(gx, "ess_setpoint_l1_w", -3000, 227)
    clock.advance(1)
    gx.read(3, 840, 5)
    assert gx.get("battery_power_w") == -3000 and gx.get("vebus_state") == 9
    for _ in range(5):  # refreshed every 10 s: followed
        clock.advance(10)
        _write(gx, "ess_setpoint_l1_w", -3000, 227)
        gx.tick()
    assert gx.get("battery_power_w") == -3000
    clock.advance(61)  # the controller is gone: no write for longer than 60 s
    gx.tick()
    gx.read(3, 840, 5)
    assert gx.get("battery_power_w") == 0 and gx.get("vebus_state") == 8  # passthru
    assert gx.state["watchdog_expired"] == 1


def test_quasar_leaves_remote_after_idle_timeout_and_after_reboot():
    clock = FakeClock()
    q = _dev("wallbox_quasar", clock)
    for addr, v in ((88, 30), (81, 1), (83, 1), (257, 1), (260, 3000)):
        q.write(6, addr, [v])
    clock.advance(1)
    q.read(3, 526, 1)
    assert q.get("actual_power_w") == 3000
    q.reboot()
    assert q.get("control_mode") == 0 and q.get("power_setpoint_w") == 0
    assert q.get("modbus_idle_timeout_s") == 30  # a setting: kept
    clock.advance(1)
    q.read(3, 526, 1)
    assert q.get("actual_power_w") == 0
    for addr, v in ((81, 1), (83, 1), (257, 1), (260, 3000)):
        q.write(6, addr, [v])
    clock.advance(31)
    q.tick()  # no request needed: the charger's own timer
    assert q.get("control_mode") == 0 and q.state["watchdog_expired"] == 1


def test_sunspec_storage_and_inverter_revert_by_themselves():
    clock = FakeClock()
    st = _dev("sunspec_storage", clock)
    _write(st, "revert_timeout_s", 20)
    _write(st, "storage_control_mode", 3)
    _write(st, "discharge_rate_pct", 50)
    clock.advance(19)
    st.tick()
    assert st.get("storage_control_mode") == 3
    clock.advance(2)
    st.tick()
    assert st.get("storage_control_mode") == 0 and st.get("discharge_rate_pct") == 0
    inv = _dev("sunspec_inverter", clock, time_of_day_s=12 * 3600)
    clock.advance(1)
    inv.read(3, 40000, 2)
    assert inv.get("ac_power_w") < -7000  # noon: about 8 kW produced (negative)
    _write(inv, "limit_revert_timeout_s", 15)
    _write(inv, "limit_pct", 30)
    _write(inv, "limit_enabled", 1)
    clock.advance(1)
    inv.read(3, 40000, 2)
    assert inv.get("ac_power_w") == -3000 and inv.get("operating_state") == 5  # throttled
    clock.advance(16)
    inv.tick()
    assert inv.get("limit_enabled") == 0
    inv.read(3, 40000, 2)
    assert inv.get("ac_power_w") < -7000
