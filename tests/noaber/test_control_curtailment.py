"""The closed loop's sink reaches a PV inverter's active-power limit (the device path for PV
curtailment; the optimiser's plan of it is another part): bounded, read back, recorded,
checked, kept while planned and handed back when not."""

from __future__ import annotations

import random

import pytest

from energy.errors import NoaberError
from modbus_gateway.profiles import shipped_profiles
from modbus_gateway.service import GatewayService
from modbus_gateway.simulator import SimServer, SimulatedDevice
from modbus_gateway.spool import MemorySink
from noaber.services.control import GatewaySetpoints
from tests.modbus_gateway.conftest import config_for


async def test_sink_limits_the_inverter_and_hands_it_back(tmp_path):
    sim = SimulatedDevice(
        shipped_profiles()["sunspec_inverter"], rng=random.Random(1), time_of_day_s=12 * 3600
    )
    srv = await SimServer({1: sim}).start()
    cfg = config_for(
        [{"name": "inv", "profile": "sunspec_inverter", "port": srv.port, "asset": "pv"}]
    )
    service = GatewayService(cfg, MemorySink(), tmp_path / "spool.sqlite")
    try:
        await service.gateway.poll_once(service.gateway.devices["inv"])  # SunSpec discovery
        sink = GatewaySetpoints(service, {})
        assert set(sink.limits) == {"pv"} and "pv" not in sink.controls
        written = await sink.limit("pv", 4000, "noaber control")
        assert written is not None and written.read_back and 4000 <= written.written_w < 10_000
        assert sim.get("limit_enabled") == 1
        assert sim.get("limit_pct") == pytest.approx(written.written_w / 100, abs=0.05)
        rec = sink.records[-1]
        assert (rec.asset, rec.requested_w, rec.written_w) == ("pv", 4000, written.written_w)
        (check,) = await sink.check_all("noaber control (check)")
        assert check.in_control and check.asset == "pv"
        assert await sink.release_all("noaber control (no longer planned)", keep={"pv"}) == []
        assert sim.get("limit_enabled") == 1  # still planned: kept
        assert await sink.release_all("noaber control (no longer planned)") == ["pv"]
        assert sim.get("limit_enabled") == 0 and sim.get("limit_pct") == 100
        with pytest.raises(NoaberError, match="no gateway device limits the production"):
            await sink.limit("battery", 1000, "noaber control")
    finally:
        service.gateway.close()
        service.close()
        await srv.stop()
