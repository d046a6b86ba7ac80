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


class AckingSink:
    """An :class:`AckedSink` that records what was sent; the test acknowledges by hand."""

    def __init__(self):
        self.on_ack = None
        self.on_reconnect = None
        self.sent: list[tuple[str, list[Sample]]] = []
        self.down = False

    def send(self, batch_id, samples):
        if self.down:
            raise ConnectionError("broker away")
        self.sent.append((batch_id, list(samples)))


async def test_acked_spool_deletes_only_what_the_centre_acknowledged(tmp_path):
    sink = AckingSink()
    fwd = StoreAndForward(sink, tmp_path / "spool.sqlite", batch_max=3, max_inflight=2)
    assert fwd.acked
    fwd.put([Sample("c", i, float(i), 0) for i in range(8)])
    await fwd.flush()
    # the spool took all 8 before anything was sent; two batches of 3 wait for their acks
    assert len(fwd.spool) == 8 and [len(s) for _, s in sink.sent] == [3, 3]
    first_id = sink.sent[0][0]
    assert first_id.endswith(":1-3") and first_id.split(":")[0] == fwd.spool.id
    sink.on_ack(first_id)  # the centre stored the first batch
    await fwd.flush()
    assert len(fwd.spool) == 5 and fwd.delivered == 3
    assert [len(s) for _, s in sink.sent] == [3, 3, 2]  # the freed slot took the rest
    sink.on_ack("0" * 32 + ":4-6")  # another spool's batch: ignored
    await fwd.flush()
    assert len(fwd.spool) == 5
    fwd.spool.db.close()  # SIGKILL: no flush, no close of anything else

    # the next start sends everything not acknowledged again, in order
    sink2 = AckingSink()
    fwd2 = StoreAndForward(sink2, tmp_path / "spool.sqlite", batch_max=10)
    await fwd2.flush()
    assert [s.ts_ns for s in sink2.sent[0][1]] == [3, 4, 5, 6, 7]
    sink2.on_ack(sink.sent[1][0])  # a late ack of the earlier process's batch (rows 4-6)
    await fwd2.flush()
    assert sorted(s.ts_ns for s in fwd2.spool.between(0, 99)) == [6, 7]
    sink2.on_ack(sink2.sent[0][0])
    assert await fwd2.settle(1.0) and fwd2.pending == 0
    fwd2.close()


async def test_acked_spool_resends_after_timeout_and_reconnect(tmp_path):
    now = [0.0]
    sink = AckingSink()
    fwd = StoreAndForward(
        sink, tmp_path / "s.sqlite", ack_timeout_s=10, ack_timeout_max_s=15, clock=lambda: now[0]
    )
    fwd.put([Sample("c", 1, 1.0, 0)])
    await fwd.flush()
    assert len(sink.sent) == 1
    now[0] = 9.0
    await fwd.flush()
    assert len(sink.sent) == 1  # not due yet
    now[0] = 10.5
    await fwd.flush()
    assert len(sink.sent) == 2 and fwd.resent == 1  # the same id again
    assert sink.sent[1][0] == sink.sent[0][0]
    now[0] = 20.5
    await fwd.flush()
    assert len(sink.sent) == 2  # the wait doubled (to 15 s, the maximum)
    sink.on_reconnect()  # a new connection: the broker may have lost it
    await fwd.flush()
    assert len(sink.sent) == 3
    sink.down = True  # the broker goes away: new samples are kept, nothing lost
    fwd.put([Sample("c", 2, 2.0, 0)])
    await fwd.flush()
    assert fwd.failures >= 1 and len(fwd.spool) == 2
    sink.down = False
    sink.on_reconnect()
    await fwd.flush()
    ids = {b for b, _ in sink.sent}
    for b in ids:
        sink.on_ack(b)
    assert await fwd.settle(1.0) and len(fwd.spool) == 0
    fwd.close()
