"""Store and forward: the energy store goes away mid-run and comes back; nothing lost or doubled."""

from __future__ import annotations

import asyncio
import math
import shutil

import numpy as np

from energy.samples import Quality, SampleStore
from modbus_gateway.poller import Gateway
from modbus_gateway.spool import MemorySink, Sample, SampleStoreSink, Spool, StoreAndForward
from tests.modbus_gateway.conftest import config_for
from tests.net import until


class CountingSink:
    """Wraps a sink and counts every sample handed over (to prove none is sent twice)."""

    def __init__(self, inner):
        self.inner = inner
        self.seen: list[tuple[str, int]] = []

    def write(self, samples):
        self.inner.write(samples)
        self.seen.extend((s.channel, s.ts_ns) for s in samples)


def test_spool_keeps_order_and_nan(tmp_path):
    sp = Spool(tmp_path / "s.sqlite")
    sp.append([Sample("a", 1, 1.5, 0), Sample("a", 2, math.nan, 2)])
    sp.append([Sample("b", 3, 7.0, 1)])
    seq, rows = sp.peek(10)
    assert [(r.channel, r.ts_ns) for r in rows] == [("a", 1), ("a", 2), ("b", 3)]
    assert math.isnan(rows[1].value) and rows[1].quality == 2
    sp.ack(seq)
    assert len(sp) == 0
    sp.close()


async def test_store_unavailable_mid_run_every_sample_exactly_once(serve, tmp_path):
    srv, _ = await serve("eastron_sdm630")
    cfg = config_for(
        [{"name": "m", "profile": "eastron_sdm630", "port": srv.port, "poll_interval_s": 0.1}]
    )
    store_root = tmp_path / "store"
    store = SampleStore(store_root)
    gw_channels = list(cfg.channel_map(cfg.devices[0]).values())
    ids = {key: i + 1 for i, key in enumerate(gw_channels)}
    sink = CountingSink(SampleStoreSink(store, ids))
    fwd = StoreAndForward(sink, tmp_path / "spool.sqlite", batch_max=50)
    sink.inner.check(gw_channels)
    produced: list[Sample] = []

    def on_samples(samples):
        produced.extend(samples)
        fwd.put(samples)

    gw = Gateway(cfg, on_samples)
    stop = asyncio.Event()
    flusher = asyncio.create_task(fwd.run(0.1, stop))
    poller = asyncio.create_task(gw.run())

    await until(lambda: fwd.delivered > 0, "first delivery")
    # the store becomes unavailable: its directory is replaced by a file
    shutil.move(store_root, tmp_path / "store-away")
    store_root.write_text("not a directory")
    await until(lambda: fwd.failures > 0 and len(fwd.spool) > 20, "spooling")
    spooled_while_down = len(fwd.spool)
    # restored
    store_root.unlink()
    shutil.move(tmp_path / "store-away", store_root)
    await until(lambda: len(fwd.spool) == 0, "the spool to drain")
    gw.stop()
    await asyncio.wait_for(poller, 5)
    stop.set()
    await asyncio.wait_for(flusher, 10)
    gw.close()
    assert fwd.pending == 0
    assert spooled_while_down > 0
    # every sample arrived exactly once, in order per channel
    assert len(sink.seen) == len(set(sink.seen)) == len(produced)
    for key, cid in ids.items():
        got = store.read(cid)
        want = [s for s in produced if s.channel == key]
        assert got.ts.tolist() == [s.ts_ns for s in want]
        np.testing.assert_allclose(got.value, [s.value for s in want])
        assert set(got.quality.tolist()) == {Quality.GOOD}
    fwd.close()


async def test_spool_survives_restart(tmp_path):
    class Down:
        def write(self, samples):
            raise ConnectionError("store down")

    fwd = StoreAndForward(Down(), tmp_path / "spool.sqlite")
    fwd.put([Sample("c", i, float(i), 0) for i in range(10)])
    await fwd.flush()
    assert len(fwd.spool) == 10
    fwd.close()
    # a new process: the spool is delivered first, then the new batch
    mem = MemorySink()
    order: list[int] = []

    class Recording:
        def write(self, samples):
            mem.write(samples)
            order.extend(s.ts_ns for s in samples)

    fwd2 = StoreAndForward(Recording(), tmp_path / "spool.sqlite", batch_max=4)
    fwd2.put([Sample("c", 10, 10.0, 0)])
    await fwd2.flush()
    assert order == list(range(11))
    assert fwd2.pending == 0
    fwd2.close()


def test_store_sink_compacts_so_parts_do_not_pile_up(tmp_path):
    store = SampleStore(tmp_path / "store")
    sink = SampleStoreSink(store, {"a": 1}, compact_every=5)
    day_ns = 1_790_000_000 * 10**9
    for i in range(23):  # one small batch per flush, as the gateway does
        sink.write([Sample("a", day_ns + i * 10**9, float(i), 0)])
    parts = list((tmp_path / "store").glob("channel=1/date=*/part-*.parquet"))
    assert len(parts) <= 5
    got = store.read(1)
    assert got.ts.tolist() == [day_ns + i * 10**9 for i in range(23)]
    assert got.value.tolist() == [float(i) for i in range(23)]
