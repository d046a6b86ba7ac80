"""Safe writes against the simulators: clamps, refusals, control mode, watchdog, safe default."""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise

import pytest

from energy.errors import NoaberError, ValidationError
from modbus_gateway.driver import WriteRefused
from modbus_gateway.poller import Gateway
from modbus_gateway.profiles import parse_profile, shipped_profiles
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
        for _ in range(10):  # the writer ramps on by itself
            clock.advance(1)
            await w.keepalive_once()
        assert await w.apply("ev-charger-1", -20_000, requested_by="mpc") == -7400  # profile
        assert sim.get("power_setpoint_w") == -7400
        assert sim.get("actual_power_w") == -7400  # the car discharges
    finally:
        gw.close()
    entries = [json.loads(line) for line in (tmp_path / "writes.jsonl").read_text().splitlines()]
    sp = [e for e in entries if e["register"] == "power_setpoint_w"]
    assert [e["requested_by"] for e in sp].count("mpc") == 4
    assert {e["requested_by"] for e in sp} == {"mpc", "mpc (ramp)"}
    assert sp[0]["requested_value"] == 20_000 and sp[0]["value"] == 3700
    assert all(e["result"] == "ok" for e in entries)


async def test_non_writable_register_is_refused_and_logged(serve):
    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock)
    try:
        with pytest.raises(WriteRefused, match="not writable"):
            await w.write_register("ev1", "actual_power_w", 100, requested_by="operator:anna")
        with pytest.raises(WriteRefused, match="outside"):
            await w.write_register("ev1", "control_mode", 5, requested_by="operator:anna")
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
        ticks = 0
        fake_sleep = clock.sleep

        async def three_ticks_then_stop(s: float) -> None:
            # the fake clock's sleep does not wait: a real-time pause here let the loop spin
            # past schedule_timeout_s on a fast machine; stop after three keep-alive ticks
            nonlocal ticks
            ticks += 1
            if ticks > 3:
                stop.set()
            await fake_sleep(s)
            await asyncio.sleep(0)

        clock.sleep = three_ticks_then_stop  # type: ignore[method-assign]
        await asyncio.wait_for(w.run(stop), 5)  # shutdown: safe default
        assert ticks == 4 and clock.t - 1000.0 < 120
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


async def test_unchanged_setpoint_without_refresh_is_not_rewritten(serve, tmp_path):
    """A device whose setpoint persists (no setpoint refresh in its profile, e.g. a setting
    stored in flash) gets an unchanged setpoint once only."""
    clock = FakeClock()
    srv, sim = await serve("wallbox_quasar", clock=clock)
    prof = shipped_profiles()["wallbox_quasar"].model_dump(by_alias=True)
    prof["control"]["setpoint_refresh_s"] = None
    prof["control"]["watchdog"] = None
    prof["control"]["failsafe"] = {"kind": "none", "safe_state": "keeps its setpoint"}
    path = tmp_path / "flash.yaml"
    path.write_text(json.dumps(prof), encoding="utf-8")
    dev = {"name": "ev1", "profile": str(path), "port": srv.port, "accept_no_failsafe": True}
    gw = Gateway(config_for([dev]), clock=clock)
    w = SafeWriter(gw)
    try:
        await w.apply("ev1", 1000, requested_by="mpc")
        clock.advance(5)
        await w.apply("ev1", 1000, requested_by="mpc")
        await w.keepalive_once()
        assert len(sim.writes_to("power_setpoint_w")) == 1
        await w.close()
        assert sim.get("power_setpoint_w") == 0
    finally:
        gw.close()


async def test_device_without_failsafe_is_refused_unless_accepted(serve, tmp_path):
    clock = FakeClock()
    srv, sim = await serve("wallbox_quasar", clock=clock)
    prof = shipped_profiles()["wallbox_quasar"].model_dump(by_alias=True)
    prof["control"]["failsafe"] = {"kind": "none", "safe_state": "keeps its last setpoint"}
    path = tmp_path / "nofailsafe.yaml"
    path.write_text(json.dumps(prof), encoding="utf-8")
    dev = {"name": "ev1", "profile": str(path), "port": srv.port}
    gw = Gateway(config_for([dev]), clock=clock)
    try:
        with pytest.raises(WriteRefused, match=r"declares no fail-safe.*accept_no_failsafe: true"):
            await SafeWriter(gw).apply("ev1", 1000, requested_by="mpc")
        assert len(sim.write_log) == 0  # nothing reached the device
    finally:
        gw.close()
    gw = Gateway(config_for([{**dev, "accept_no_failsafe": True}]), clock=clock)
    try:
        assert await SafeWriter(gw).apply("ev1", 1000, requested_by="mpc") == 1000
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

    def ack_but_ignore(function, address, values, unit=None):
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


def _setpoints(sim) -> list[tuple[float, float]]:
    """(time [s], W) of every setpoint the simulated Quasar received (int16, 1 W per unit)."""
    return [
        (r.t, r.words[0] - (r.words[0] >> 15) * 65536) for r in sim.writes_to("power_setpoint_w")
    ]


async def test_raw_setpoint_write_is_clamped_to_the_site_limits(serve):
    """A raw register write is a setpoint like any other: the device gets the clamped value."""
    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock, limits={"power_w_max": 3000, "power_w_min": -2000})
    try:
        # above the site's 3000 W and the profile's 7400 W: 3000 (the ramp allows 3700 in 1 s)
        assert await w.write_register("ev1", "power_setpoint_w", 9000, "operator:anna") == 3000
        assert sim.get("power_setpoint_w") == 3000
        back = await gw.devices["ev1"].driver.read_values(["power_setpoint_w"])
        assert back["power_setpoint_w"].value == 3000  # what the device reports
        clock.advance(10)
        # the ramp (3700 W/s) takes it down one step now and the rest from the keepalive
        assert await w.write_register("ev1", "power_setpoint_w", -7000, "operator:anna") == -700
        for _ in range(4):
            clock.advance(1)
            await w.keepalive_once()
        assert sim.get("power_setpoint_w") == -2000
        assert max(v for _t, v in _setpoints(sim)) == 3000
        assert min(v for _t, v in _setpoints(sim)) == -2000
    finally:
        gw.close()
    sp = [e for e in w.log if e.register == "power_setpoint_w"]
    assert [(e.requested_by, e.requested_value, e.value, e.result) for e in sp] == [
        ("operator:anna", 9000, 3000, "ok"),
        ("operator:anna", -7000, -700, "ok"),
        ("operator:anna (ramp)", -2000, -2000, "ok"),
    ]


async def test_raw_write_cannot_weaken_the_watchdog(serve):
    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock)
    try:
        await w.apply("ev-charger-1", 2000, requested_by="mpc")
        assert sim.get("modbus_idle_timeout_s") == 60
        n = len(sim.write_log)
        with pytest.raises(WriteRefused, match=r"watchdog timeout: 0 s .*switches it off"):
            await w.write_register("ev1", "modbus_idle_timeout_s", 0, "operator:anna")
        with pytest.raises(WriteRefused, match="allowed 1 to 120 s"):
            await w.write_register("ev1", "modbus_idle_timeout_s", 600, "operator:anna")
        assert len(sim.write_log) == n  # nothing reached the device
        assert sim.get("modbus_idle_timeout_s") == 60  # the device keeps its timeout
        # the timeout still runs out: no keepalive for 61 s hands control back
        clock.advance(61)
        sim.read(3, 81, 1)
        assert sim.get("control_mode") == 0
        # a shorter timeout strengthens it and is written
        assert await w.write_register("ev1", "modbus_idle_timeout_s", 30, "operator:anna") == 30
        assert sim.get("modbus_idle_timeout_s") == 30
    finally:
        gw.close()
    assert [e.result.split(":")[0] for e in w.log if e.requested_by == "operator:anna"] == [
        "refused",
        "refused",
        "ok",
    ]


async def _storage(serve, clock, limits=None):
    """A discovered SunSpec storage simulator ("bat") behind a gateway and a writer."""
    srv, sim = await serve("sunspec_storage", clock=clock)
    dev = {"name": "bat", "profile": "sunspec_storage", "port": srv.port}
    if limits:
        dev["limits"] = limits
    gw = Gateway(config_for([dev]), clock=clock)
    await gw.poll_once(gw.devices["bat"])  # discovery
    return sim, gw, SafeWriter(gw)


async def test_sunspec_revert_timeout_zero_is_refused(serve):
    sim, gw, w = await _storage(serve, FakeClock())
    try:
        await w.apply("bat", -1000, requested_by="mpc")
        assert sim.get("revert_timeout_s") == 60
        with pytest.raises(WriteRefused, match="watchdog timeout"):
            await w.write_register("bat", "revert_timeout_s", 0, "operator:anna")
        assert sim.get("revert_timeout_s") == 60
        await w.close()
    finally:
        gw.close()


async def test_raw_percent_setpoint_write_is_clamped_in_watts(serve):
    """SunSpec 124 takes % of WChaMax (5000 W in the simulator): -100 % asks 5000 W discharge,
    the site allows 2000 W, so the device gets -40 % (our sign: negative = discharge)."""
    sim, gw, w = await _storage(serve, FakeClock(), limits={"power_w_min": -2000})
    try:
        written = await w.write_register("bat", "discharge_rate_pct", -100, "operator:anna")
        assert written == pytest.approx(-40.0)
        assert sim.get("discharge_rate_pct") == pytest.approx(-40.0)
    finally:
        gw.close()


def test_profile_that_would_weaken_its_own_watchdog_is_refused():
    doc = shipped_profiles()["wallbox_quasar"].model_dump(by_alias=True, exclude_defaults=True)
    doc["control"]["watchdog"]["value"] = 0
    with pytest.raises(ValidationError, match="would weaken the watchdog timeout"):
        parse_profile(doc, "quasar-copy.yaml")
    doc = shipped_profiles()["wallbox_quasar"].model_dump(by_alias=True, exclude_defaults=True)
    doc["registers"]["modbus_idle_timeout_s"]["watchdog_timeout_s"] = {"min": 1, "max": 900}
    with pytest.raises(ValidationError, match="within the register's writable range"):
        parse_profile(doc, "quasar-copy.yaml")


async def test_step_change_goes_out_as_a_ramp_over_real_time(serve):
    """5000 W asked at once with a 1000 W/s ramp: 1000 W now, then +1000 W per second."""
    clock = FakeClock()
    sim, gw, w = await _quasar(serve, clock, limits={"ramp_w_per_s": 1000})
    try:
        t0 = clock.t
        assert await w.apply("ev-charger-1", 5000, requested_by="mpc") == 1000
        while sim.get("power_setpoint_w") != 5000 and clock.t < t0 + 60:
            clock.advance(0.25)
            await w.keepalive_once()
        assert clock.t - t0 == pytest.approx(4.0)  # (5000 - 1000) W / 1000 W/s
        clock.advance(5)
        t1 = clock.t
        assert await w.apply("ev-charger-1", -3000, requested_by="mpc") == 4000  # at rest for 5 s
        while sim.get("power_setpoint_w") != -3000 and clock.t < t1 + 60:
            clock.advance(0.25)
            await w.keepalive_once()
        # 8000 W down: 1000 W at once (one ramp step, no jump for the 5 s at rest), then
        # 7000 W at 1000 W/s
        assert clock.t - t1 == pytest.approx(7.0)
        for _ in range(8):  # at the target: nothing more to ramp
            clock.advance(0.25)
            await w.keepalive_once()
        assert sim.get("power_setpoint_w") == -3000
    finally:
        gw.close()
    points = _setpoints(sim)
    assert points[0] == (t0, 1000)  # the first setpoint ramps from 0 over 1 s
    for (ta, va), (tb, vb) in pairwise(points):
        assert abs(vb - va) <= 1000 * (tb - ta) + 1e-6  # never faster than the ramp
    assert len([v for _t, v in points if 1000 < v < 5000]) >= 3  # several writes, not a jump
    assert {e.requested_by for e in w.log if e.register == "power_setpoint_w"} >= {
        "mpc",
        "mpc (ramp)",
    }


async def test_raw_write_of_another_power_register_is_held_to_the_site_limits(serve, tmp_path):
    """A W register that is not the control setpoint (a user profile's export limit, say)
    cannot be written past the site's limits either: refused, nothing reaches the device."""
    clock = FakeClock()
    srv, sim = await serve("wallbox_quasar", clock=clock)
    prof = shipped_profiles()["wallbox_quasar"].model_dump(by_alias=True)
    prof["registers"]["max_power_w"] = {
        "address": 82, "type": "int16", "unit": "W", "writable": {"min": -7400, "max": 7400}
    }  # fmt: skip
    path = tmp_path / "quasar_plus.yaml"
    path.write_text(json.dumps(prof), encoding="utf-8")
    limits = {"power_w_min": -2000, "power_w_max": 3000}
    dev = {"name": "ev1", "profile": str(path), "port": srv.port, "limits": limits}
    sim.words[("h", 82)] = 0
    sim.writable.add(82)
    gw = Gateway(config_for([dev]), clock=clock)
    w = SafeWriter(gw)
    try:
        with pytest.raises(WriteRefused, match="outside the site's limits"):
            await w.write_register("ev1", "max_power_w", 5000, "operator:anna")
        with pytest.raises(WriteRefused, match="outside the site's limits"):
            await w.write_register("ev1", "max_power_w", -2500, "operator:anna")
        assert sim.writes_to("max_power_w") == []
        assert await w.write_register("ev1", "max_power_w", 2500, "operator:anna") == 2500
        # and the setpoint register itself, raw, is clamped to them
        assert await w.write_register("ev1", "power_setpoint_w", 9000, "operator:anna") == 3000
    finally:
        gw.close()
