"""PV curtailment through the gateway: a SunSpec inverter's active-power limit (model 123
``WMaxLimPct`` in % of model 121 ``WMax``, ``WMaxLim_Ena``, ``WMaxLimPct_RvrtTms``) behind
``GatewayService.devices()`` as a :class:`~modbus_gateway.capabilities.PowerLimit`: bounded by
the profile and the site, ramped, read back, checked, and dropped by the inverter itself when
the gateway process is killed."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from energy.errors import NoaberError
from modbus_gateway.capabilities import PowerControl, PowerLimit, device
from modbus_gateway.driver import WriteRefused
from modbus_gateway.poller import Gateway
from modbus_gateway.service import GatewayService
from modbus_gateway.spool import MemorySink
from modbus_gateway.writes import SafeWriter
from tests.modbus_gateway.conftest import FakeClock, config_for
from tests.net import scaled, until


async def test_curtailment_setpoint_reaches_the_inverter_and_reads_back(serve):
    clock = FakeClock()
    srv, sim = await serve("sunspec_inverter", clock=clock)
    sim.time_of_day_s = 12 * 3600.0  # noon: about 8 kW available
    dev = {
        "name": "inv",
        "profile": "sunspec_inverter",
        "port": srv.port,
        "asset": "pv",
        "limits": {"power_w_min": 1000},  # the site never throttles below 1 kW
    }
    gw = Gateway(config_for([dev]), clock=clock)
    writer = SafeWriter(gw)
    try:
        await gw.poll_once(gw.devices["inv"])  # SunSpec discovery
        view = device(gw, writer, "inv")
        assert isinstance(view, PowerLimit) and not isinstance(view, PowerControl)
        inv = gw.devices["inv"]
        produced = abs(float(inv.values[inv.profile.capabilities["power_w"]][0]))
        assert 3000 < produced < 10_000  # noon, below WMax
        first = await view.limit_w(3000, requested_by="mpc")
        # enabling starts from what the inverter produces now (not from no limit, 10 kW) and
        # ramps down at 10 %/s of WMax = 1 kW/s
        assert first.requested_w == 3000 and first.read_back
        assert first.written_w == pytest.approx(produced - 1000, abs=10)  # 0.1 % of WMax
        names = [w.name for w in sim.write_log]
        assert names[:3] == ["limit_revert_timeout_s", "limit_enabled", "limit_pct"]
        assert sim.get("limit_revert_timeout_s") == 60 and sim.get("limit_enabled") == 1
        for _ in range(8):
            clock.advance(1)
            await writer.keepalive_once()
        assert sim.get("limit_pct") == 30.0  # 3000 W of WMax 10 kW, read back each write
        sim.read(3, 40000, 2)
        assert sim.get("ac_power_w") == -3000 and sim.get("operating_state") == 5
        check = await view.check(requested_by="mpc")
        assert check.in_control and not check.mismatches
        # bounded: the site's minimum, the profile's maximum (100 % of WMax)
        low = await view.limit_w(0, requested_by="mpc")
        assert low.requested_w == 0 and writer.controls["pv"].target_w == 1000
        clock.advance(10)
        await writer.keepalive_once()
        assert sim.get("limit_pct") == 10.0
        with pytest.raises(NoaberError, match="a power >= 0 W"):
            await view.limit_w(-5, requested_by="mpc")
        # a raw write of the limit register is a setpoint like any other: held to the site's
        # minimum (10 % of 10 kW), never below
        assert await writer.write_register("inv", "limit_pct", 5, "operator:anna") == 10.0
        with pytest.raises(WriteRefused, match="weaken"):
            await writer.write_register("inv", "limit_revert_timeout_s", 0, "operator:anna")
        await view.release(requested_by="mpc")
        assert sim.get("limit_enabled") == 0 and sim.get("limit_pct") == 100
    finally:
        gw.close()


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from modbus_gateway.config import load_config
    from modbus_gateway.service import GatewayService
    from modbus_gateway.spool import MemorySink

    async def main():
        service = GatewayService(load_config(sys.argv[1]), MemorySink(), sys.argv[2])
        task = asyncio.create_task(service.run())
        while not service.gateway.devices["inv"].discovered:
            await asyncio.sleep(0.05)
        written = await service.devices()["inv"].limit_w(4000, requested_by="test")
        print("LIMITED", written.written_w, flush=True)
        await task

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sigkill_of_the_gateway_drops_the_limit_by_itself(serve, tmp_path: Path):
    """A real gateway process holds a limit (refreshing it); after SIGKILL the inverter drops
    it by its revert timer (3 s in this site file), with no write from anyone."""
    srv, sim = await serve("sunspec_inverter")
    site = tmp_path / "site.yaml"
    device_doc = {
        "name": "inv",
        "profile": "sunspec_inverter",
        "port": srv.port,
        "poll_interval_s": 0.5,
        "failsafe_timeout_s": 3,
    }
    site.write_text(yaml.safe_dump({"devices": [device_doc]}), encoding="utf-8")
    script = tmp_path / "hold_limit.py"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "gateway.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(site), str(tmp_path / "spool.sqlite")],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        await until(
            lambda: sim.get("limit_enabled") == 1 and sim.get("limit_pct") == 40.0,
            "the limit at the inverter",
            timeout_s=60,
            proc=proc,
        )
        assert sim.get("limit_revert_timeout_s") == 3
        proc.send_signal(signal.SIGKILL)
        proc.wait(scaled(10))
        killed = time.monotonic()
        # requests the process sent before it died, still queued while this loop was blocked
        # in wait(), are served now; nothing can come after
        await asyncio.sleep(0.5)
        writes = len(sim.write_log)
        assert sim.get("limit_enabled") == 1  # still limited: no shutdown path ran
        await until(lambda: sim.get("limit_enabled") == 0, "the limit dropped", timeout_s=120)
        assert time.monotonic() - killed <= scaled(3 + 3)
        assert len(sim.write_log) == writes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "LIMITED" in out.read_text(errors="replace")


async def test_service_hands_out_a_power_limit_view(tmp_path):
    cfg = config_for([{"name": "inv", "profile": "sunspec_inverter", "port": 1502}])
    service = GatewayService(cfg, MemorySink(), tmp_path / "spool.sqlite")
    try:
        assert isinstance(service.devices()["inv"], PowerLimit)
    finally:
        service.gateway.close()
        service.close()
