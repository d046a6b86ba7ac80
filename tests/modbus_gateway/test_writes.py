"""Safe writes against the simulators: clamps, refusals, control mode, watchdog, safe default."""

from __future__ import annotations

import asyncio
import json

import pytest

from energy.errors import NoaberError
from modbus_gateway.driver import WriteRefused
from modbus_gateway.poller import Gateway
from modbus_gateway.writes import SafeWriter
from tests.modbus_gateway.conftest import FakeClock, config_for


async def _quasar(serve, clock, limits=None, **writer_kw):
    srv, sim = await serve("wallbox_quasar", clock=clock)
    dev = {"name": "ev1", "profile": "wallbox_quasar", "port": srv.port, "asset": "ev-charger-1"}
    if limits:
        dev["limits"] = limits
    gw = Gateway(config_for([dev]), clock=clock)
    return sim, gw, SafeWriter(gw, **writer_kw)


async def test_clamped_to_site_and_profile_limits_and_ramp(serve, tmp_path):
    clock = FakeClock()
    sim, gw, w = await _quasar(
        serve, clock, limits={"power_w_max": 7000}, log_path=tmp_path / "writes.jsonl"
    )
    try:
        # first setpoint: control mode first, then ramp from 0 at 3700 W/s over 1 s
        assert await w.apply("ev-charger-1", 20_000, requested_by="mpc") == 3700
        names = [r.name for r in sim.write_log]
        assert names[:3] == ["control_mode", "setpoint_type", "action"]
        assert names.index("control_mode") < names.index("power_setpoint_w")
        assert sim.get("power_setpoint_w") == 3700
        clock.advance(10)
        assert await w.apply("ev-charger-1", 20_000, requested_by="mpc") == 7000  # site limit
        clock.advance(0.5)
        assert await w.apply("ev-charger-1", -20_000, requested_by="mpc") == 7000 - 1850  # ramp
        clock.advance(10)
        assert await w.apply("ev-charger-1", -20_000, requested_by="mpc") == -7400  # profile
        assert sim.get("power_setpoint_w") == -7400
        assert sim.get("actual_power_w") == -7400  # the car discharges
    finally:
        gw.close()
    entries = [json.loads(line) for line in (tmp_path / "writes.jsonl").read_text().splitlines()]
    sp = [e for e in entries if e["register"] == "power_setpoint_w"]
    assert [e["requested_by"] for e in sp] == ["mpc"] * 4
    assert sp[0]["requested_value"] == 20_000 and sp[0]["value"] == 3700
    assert all(e["result"] == "ok" for e in entries)


async def test_non_writable_register_is_refused_and_logged(serve):
    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock)
    try:
        with pytest.raises(WriteRefused, match="not writable"):
            await w.write_register("ev1", "actual_power_w", 100, requested_by="operator:anna")
        with pytest.raises(WriteRefused, match="outside"):
            await w.write_register("ev1", "power_setpoint_w", 9000, requested_by="operator:anna")
        with pytest.raises(NoaberError, match="no controllable asset"):
            await w.apply("no-such-asset", 0, requested_by="mpc")
    finally:
        gw.close()
    assert len(sim.write_log) == 0  # nothing reached the device
    assert [e.result.split(":")[0] for e in w.log] == ["refused", "refused"]
    assert w.log[0].requested_by == "operator:anna"


async def test_simulator_refuses_writes_to_read_only_registers(serve):
    """The device itself (simulator) answers exception 2 for a read-only register."""
    clock = FakeClock()
    _sim, gw, _ = await _quasar(serve, clock)
    try:
        from modbus_gateway.driver import ExceptionReply

        with pytest.raises(ExceptionReply) as ei:
            await gw.devices["ev1"].driver.link.write(1, 526, [5])
        assert ei.value.code == 2
    finally:
        gw.close()


async def test_watchdog_refresh_observed_and_expiry_without_it(serve):
    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock)
    try:
        await w.apply("ev-charger-1", 2000, requested_by="mpc")
        assert sim.get("control_mode") == 1 and sim.get("modbus_idle_timeout_s") == 60
        wd0 = len(sim.writes_to("modbus_idle_timeout_s"))
        for _ in range(6):  # 6 x 15 s = 90 s > 60 s idle timeout, with keepalive
            clock.advance(15)
            await w.keepalive_once()
            sim.read(3, 81, 1)  # let the simulated device run its timers
        assert len(sim.writes_to("modbus_idle_timeout_s")) >= wd0 + 3
        assert len(sim.writes_to("power_setpoint_w")) >= 4  # refreshed before expiry
        assert sim.get("control_mode") == 1
        assert sim.state.get("watchdog_expired", 0) == 0
        # without keepalive the charger hands control back by itself after 60 s
        clock.advance(61)
        sim.read(3, 81, 1)
        assert sim.get("control_mode") == 0 and sim.state["watchdog_expired"] == 1
    finally:
        gw.close()


async def test_safe_default_on_shutdown_and_on_lost_schedule(serve):
    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock, schedule_timeout_s=120)
    try:
        await w.apply("ev-charger-1", 1500, requested_by="mpc")
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)  # shutdown: safe default
        assert sim.get("control_mode") == 0 and sim.get("power_setpoint_w") == 0
        assert w.log[-1].requested_by == "gateway (shutdown)"
        # lost schedule: no apply() for longer than schedule_timeout_s
        await w.apply("ev-charger-1", 1500, requested_by="mpc")
        assert sim.get("control_mode") == 1
        clock.advance(121)
        await w.keepalive_once()
        assert sim.get("control_mode") == 0 and sim.get("power_setpoint_w") == 0
        assert w.log[-1].requested_by == "gateway (lost schedule)"
    finally:
        gw.close()


async def test_victron_unchanged_setpoint_is_not_rewritten(serve):
    clock = FakeClock()
    srv, sim = await serve("victron_gx", clock=clock)
    gw = Gateway(
        config_for([{"name": "gx", "profile": "victron_gx", "port": srv.port}]), clock=clock
    )
    w = SafeWriter(gw)
    try:
        await w.apply("gx", 1000, requested_by="mpc")
        clock.advance(5)
        await w.apply("gx", 1000, requested_by="mpc")
        await w.keepalive_once()
        assert len(sim.writes_to("grid_setpoint_w")) == 1
        await w.close()
        assert sim.get("grid_setpoint_w") == 0
    finally:
        gw.close()


async def test_sunspec_percent_setpoint_heartbeat_and_revert(serve):
    clock = FakeClock()
    srv, sim = await serve("sunspec_storage", clock=clock)
    gw = Gateway(
        config_for([{"name": "bat", "profile": "sunspec_storage", "port": srv.port}]), clock=clock
    )
    w = SafeWriter(gw)
    try:
        await gw.poll_once(gw.devices["bat"])  # discovery
        applied = await w.apply("bat", -2500, requested_by="mpc")  # discharge 2500 W
        assert applied == -2500
        assert sim.get("discharge_rate_pct") == pytest.approx(-50.0)  # our sign: -50 % = discharge
        assert (
            sim.words[("h", sim.profile.registers["discharge_rate_pct"].address)] == 500
        )  # 50.0 % at SF -1
        assert sim.get("storage_control_mode") == 3
        hb = [r.words[0] for r in sim.writes_to("controller_heartbeat")]
        for _ in range(4):
            clock.advance(5)
            await w.keepalive_once()
        hb = [r.words[0] for r in sim.writes_to("controller_heartbeat")]
        assert hb == sorted(hb) and len(set(hb)) == len(hb) >= 4  # counting heartbeat
        sim.read(3, 40000, 2)
        assert sim.get("power_w") == pytest.approx(-2500)
        assert sim.state.get("reverted", 0) == 0
        await w.close()
        assert sim.get("storage_control_mode") == 0
    finally:
        gw.close()


async def test_read_back_mismatch_is_an_error_and_logged(serve):
    """A device that acknowledges a write but keeps its old value is caught by the read-back."""
    from modbus_gateway.driver import WriteVerifyError

    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock)

    def ack_but_ignore(function, address, values):
        sim.requests += 1
        return None  # a device that says yes and does nothing

    sim.write = ack_but_ignore
    try:
        with pytest.raises(WriteVerifyError, match="read back"):
            await w.apply("ev-charger-1", 1000, requested_by="mpc")
    finally:
        gw.close()
    assert w.log[-1].result.startswith("failed") and w.log[-1].requested_by == "mpc"
    assert not w.controls["ev-charger-1"].enabled


async def test_device_exception_on_write_is_reported(serve):
    clock = FakeClock()
    srv, _sim = await serve(
        "wallbox_quasar", clock=clock, faults=[{"kind": "exception", "code": 3}]
    )
    gw = Gateway(
        config_for([{"name": "ev1", "profile": "wallbox_quasar", "port": srv.port}]), clock=clock
    )
    w = SafeWriter(gw)
    try:
        from modbus_gateway.driver import ExceptionReply

        with pytest.raises(ExceptionReply) as ei:
            await w.apply("ev1", 1000, requested_by="mpc")
        assert ei.value.code == 3
    finally:
        gw.close()
    assert "exception code 3" in w.log[-1].result
