"""The demo hook: simulators on free ports polled through the real gateway into the store."""

from __future__ import annotations

from energy.samples import Quality, SampleStore
from modbus_gateway.config import load_config
from noaber.services.demo.gateway import DEMO_SITE_FILE, run_demo_async


async def test_run_demo_stores_samples_of_every_channel(tmp_path):
    cfg = load_config(DEMO_SITE_FILE)
    keys = sorted({k for regs in cfg.site_channels.values() for k in regs.values()})
    ids = {k: i + 1 for i, k in enumerate(keys)}
    store = SampleStore(tmp_path / "samples")
    res = await run_demo_async(2.5, store, ids, spool_path=tmp_path / "spool.sqlite")
    assert set(res.statuses.values()) <= {"ok", "degraded"}  # every device answered
    assert res.samples_spooled == 0 and res.samples_delivered > 0
    for key, cid in ids.items():
        s = store.read(cid)
        assert len(s) >= 2, key
        assert Quality.GOOD in set(s.quality.tolist()), key
        assert Quality.INVALID not in set(s.quality.tolist()), key
    # the V2G setpoint reached the charger and shows in the measured power
    asset, applied, by = res.setpoints[0]
    assert asset == "ev-1" and by == "noaber demo" and applied < 0
    ev = store.read(ids["dorpshuis-noaberhof/ev-1/power"])
    assert ev.value[-1] == applied
    # energy counters in kWh registers arrive in Wh
    imp = store.read(ids["dorpshuis-noaberhof/grid/energy_import"])
    assert imp.value[0] > 1_000_000
