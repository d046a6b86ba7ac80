"""The service bundle: poll + forward + safe writes, stopped together with safe defaults."""

from __future__ import annotations

import asyncio

from energy.samples import Quality
from modbus_gateway.service import GatewayService
from modbus_gateway.spool import MemorySink
from tests.modbus_gateway.conftest import config_for
from tests.net import until


async def test_service_runs_applies_and_restores_safe_default_on_stop(serve, tmp_path):
    srv_ev, ev = await serve("wallbox_quasar")
    srv_m, _ = await serve("eastron_sdm630")
    cfg = config_for(
        [
            {"name": "ev", "profile": "wallbox_quasar", "port": srv_ev.port, "asset": "ev-anna"},
            {"name": "grid", "profile": "eastron_sdm630", "port": srv_m.port},
        ]
    )
    sink = MemorySink()
    service = GatewayService(cfg, sink, tmp_path / "spool.sqlite", flush_interval_s=0.1,
                             write_log_path=tmp_path / "writes.jsonl")  # fmt: skip
    task = asyncio.create_task(service.run())
    await until(  # connected: both devices answered a poll
        lambda: all(d.polls > 0 for d in service.gateway.devices.values()), "the first polls"
    )
    applied = await service.writer.apply("ev-anna", -2000, requested_by="optimizer.mpc")
    assert applied == -2000 and ev.get("control_mode") == 1
    for _ in range(50):  # bounded: until a poll after the setpoint shows it
        await asyncio.sleep(0.1)
        last = service.gateway.devices["ev"].values.get("actual_power_w")
        if last is not None and last[0] == -2000:
            break
    service.stop()
    await asyncio.wait_for(task, 10)
    service.close()
    assert ev.get("control_mode") == 0 and ev.get("power_setpoint_w") == 0  # safe default
    powers = [
        s
        for (c, _), s in sorted(sink.samples.items(), key=lambda kv: kv[0][1])
        if c == "ev.actual_power_w"
    ]
    assert powers[-1].value == -2000 and powers[-1].quality == Quality.GOOD
    assert any(c.startswith("grid.") for c, _ in sink.samples)
    log = (tmp_path / "writes.jsonl").read_text()
    assert "optimizer.mpc" in log and "gateway (shutdown)" in log
