"""Control that knows when it is lost: a charger rebooted mid-run is put back under control
(the enable sequence again, then its setpoint) and an alarm says so; a charger that stays out
of control raises a ``control_lost`` alarm, is excluded, and the plan goes on without it.

The closed loop (``run_control``) over real Modbus TCP against the demo site's simulators,
2-second steps; the test reboots the simulated Quasar between steps.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from energy.samples import SampleStore
from modbus_gateway.simulator import serve_config
from noaber.services.control import run_control
from tests.noaber.test_control import _local_config, _prices, _sessions_doc, store  # noqa: F401

pytestmark = pytest.mark.timeout(120)


async def test_reboot_is_re_enabled_with_an_alarm_and_a_lost_device_is_excluded(
    store,  # noqa: F811
    tmp_path: Path,
) -> None:
    cfg = _local_config()
    servers, sims = await serve_config(cfg)
    try:
        port_of = {
            name: next(s.port for s in servers if any(v is sim for v in s.devices.values()))
            for name, sim in sims.items()
        }
        cfg = cfg.model_copy(
            update={
                "devices": [d.model_copy(update={"port": port_of[d.name]}) for d in cfg.devices]
            }
        )
        sessions_file = tmp_path / "sessions.yaml"
        sessions_file.write_text(
            yaml.safe_dump(_sessions_doc(pd.Timestamp.now(tz="UTC"), True)), encoding="utf-8"
        )
        quasar = sims["charger-1"]
        marks: dict[str, int] = {}
        original_write = quasar.write

        def ignore_remote_mode(function, address, values, unit=None):
            if address == 81:  # acknowledged, not applied: the charger will not go remote
                quasar.requests += 1
                return None
            return original_write(function, address, values, unit)

        async def on_step(i: int, controller) -> None:
            if i == 0:
                assert quasar.get("control_mode") == 1
                marks["reboot"] = len(quasar.write_log)
                quasar.reboot()  # a power cycle: back in user control, setpoint 0
                assert quasar.get("control_mode") == 0
            elif i == 2:
                marks["stuck"] = len(quasar.write_log)
                quasar.write = ignore_remote_mode
                quasar.reboot()

        run = await run_control(
            cfg,
            store,
            SampleStore(tmp_path / "samples"),
            _prices(tmp_path / "prices.csv"),
            tmp_path / "spool.sqlite",
            steps=7,
            step_s=2.0,
            sessions_file=sessions_file,
            horizon_hours=6,
            flush_interval_s=0.5,
            on_step=on_step,
        )
        kinds = [(a.kind, a.asset) for a in run.alarms]
        # the first reboot: the enable sequence again, then the setpoint, and an alarm
        after = [w.name for w in list(quasar.write_log)[marks["reboot"] : marks["stuck"]]]
        assert after[:3] == ["control_mode", "setpoint_type", "action"], after
        assert "power_setpoint_w" in after[after.index("action") :]
        assert ("control_restored", "ev-1") in kinds, run.alarms
        restored = next(a for a in run.alarms if a.kind == "control_restored")
        assert "control_mode: 0" in restored.message and restored.device == "charger-1"
        assert any(c.re_enabled and c.in_control and c.asset == "ev-1" for c in run.checks)
        # the second reboot: remote mode never comes back -> control_lost, excluded
        assert ("control_lost", "ev-1") in kinds, run.alarms
        lost = next(a for a in run.alarms if a.kind == "control_lost")
        assert "control_mode" in lost.message and "excluded" in lost.message
        lost_at = run.alarms.index(lost)
        assert kinds.index(("control_lost", "ev-1")) == lost_at
        # nothing more is sent to it; the plan is made without the car; the battery goes on
        sc = run.controller.last_scenario
        assert sc is not None and "ev-1" not in {e.name for e in sc.evs}
        assert sc.battery is not None
        last_battery = [r for r in run.setpoints if r.asset == "battery"]
        assert len(last_battery) == run.status.plans
        ev_records = [r for r in run.setpoints if r.asset == "ev-1"]
        assert len(ev_records) < run.status.plans
        assert run.status.failures == 0
        # both alarms are stored for the API (GET /alarms/sites/{site})
        from energy.alarms import site_alarms
        from energy.models import Site

        with store() as s:
            site = s.query(Site).one()
            stored = {(a.kind, a.asset, a.device) for a in site_alarms(s, site.id)}
        assert {
            ("control_restored", "ev-1", "charger-1"),
            ("control_lost", "ev-1", "charger-1"),
        } <= stored
    finally:
        for s in servers:
            await s.stop()
