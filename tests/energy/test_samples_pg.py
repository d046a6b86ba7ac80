"""The PostgreSQL raw-sample store (energy/rawstore.py) against the Parquet store it stands in
for: the same samples, conflicts and interval readings from the same writes; safe with several
writers (threads on their own connections racing on the same (channel, ts)); monthly partitions
made on demand once; the pipeline's per-channel locks never make one worker wait."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import select

from energy.db import make_engine, session_factory
from energy.models import Asset, AssetKind, Channel, IntervalReading, Quantity, Site
from energy.pipeline import update_many
from energy.rawstore import PgSampleStore, decode_copy_rows, encode_copy_rows, partition_name
from energy.samples import SampleStore
from tests.conftest import _drop_pg_database, _new_pg_database, need

S = 1_000_000_000
T0 = int(np.datetime64("2026-11-30T22:00:00", "ns").astype(np.int64))  # spans a month end


@pytest.fixture
def pg_url(pg_template):
    need(pg_template is not None, "PostgreSQL is not reachable")
    name, url = _new_pg_database(pg_template)
    yield url
    _drop_pg_database(name)


@pytest.fixture
def pg_store(pg_url, tmp_path):
    engine = make_engine(pg_url)
    yield PgSampleStore(engine, tmp_path / "pg")
    engine.dispose()


def _channels(engine, n: int = 2) -> list[int]:
    with session_factory(engine).begin() as session:
        site = Site(name="dorpshuis-a", display_name="Dorpshuis A", ean="871685900000000001",
                    latitude=52.9, longitude=6.6, grid_import_limit_kw=40,
                    grid_export_limit_kw=25)  # fmt: skip
        grid = Asset(site=site, name="grid", kind=AssetKind.METER)
        chans = [
            Channel(key=f"dorpshuis-a/grid/p{i}", asset=grid, quantity=Quantity.POWER, unit="W")
            for i in range(n)
        ]
        session.add_all([site, grid, *chans])
        session.flush()
        return [c.id for c in chans]


def test_copy_rows_round_trip_by_hand():
    """The binary COPY row layout, checked against the format's definition by hand."""
    buf = encode_copy_rows(np.array([7]), np.array([5]), np.array([1.5]), np.array([2]))
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
    row = (b"\x00\x04" + b"\x00\x00\x00\x04" + b"\x00\x00\x00\x07" + b"\x00\x00\x00\x08"
           + (5).to_bytes(8, "big") + b"\x00\x00\x00\x08" + bytes.fromhex("3ff8000000000000")
           + b"\x00\x00\x00\x02" + b"\x00\x02")  # fmt: skip
    assert buf == header + row + b"\xff\xff"
    out = header + b"\x00\x03" + b"\x00\x00\x00\x08" + (5).to_bytes(8, "big")
    out += b"\x00\x00\x00\x08" + bytes.fromhex("3ff8000000000000") + b"\x00\x00\x00\x02\x00\x02"
    got = decode_copy_rows(out + b"\xff\xff")
    assert got.ts.tolist() == [5] and got.value.tolist() == [1.5] and got.quality.tolist() == [2]


def test_same_samples_and_conflicts_as_parquet(pg_store, tmp_path):
    pq_store = SampleStore(tmp_path / "parquet")
    ts = T0 + np.arange(0, 4 * 3600, 1) * S  # 4 h at 1 Hz across the month boundary
    rng = np.random.default_rng(3)
    v = rng.normal(2000, 300, ts.size)
    v[10] = np.nan
    q = np.where(np.isnan(v), 2, 0).astype(np.uint8)
    for store in (pq_store, pg_store):
        first = store.append_new(5, ts[: ts.size // 2], v[: ts.size // 2], q[: ts.size // 2])
        assert first.written == ts.size // 2 and len(first) == 0
        # the rest, plus an overlap: equal values (NaN too) skipped, two changed ones refused
        offer_v = v.copy()
        offer_v[100] += 1.0
        offer_v[ts.size // 2 - 1] = 7.0
        again = store.append_new(5, ts[50:], offer_v[50:], q[50:])
        assert again.written == ts.size - ts.size // 2
        assert again.ts.tolist() == [ts[100], ts[ts.size // 2 - 1]]
        assert again.stored_value.tolist() == [v[100], v[ts.size // 2 - 1]]
        assert again.value.tolist() == [v[100] + 1.0, 7.0]
        # a correction replaces (append), the conflicting value then is the stored one
        assert store.append(5, ts[100:101], offer_v[100:101], q[100:101]) == 1
    a, b = pq_store.read(5), pg_store.read(5)
    assert a.ts.tolist() == b.ts.tolist() == ts.tolist()
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.quality, b.quality)
    assert b.value[100] == v[100] + 1.0
    lo, hi = int(ts[1000]), int(ts[9000])
    np.testing.assert_array_equal(pq_store.read(5, lo, hi).ts, pg_store.read(5, lo, hi).ts)
    assert pg_store.partitions() == [partition_name(np.datetime64("2026-11")),
                                     partition_name(np.datetime64("2026-12"))]  # fmt: skip
    assert pg_store.count() == ts.size


def test_several_writers_store_each_sample_once_and_never_drop_a_different_value(pg_url, tmp_path):
    """Four writers (own engines, like four consume processes) offer overlapping batches of
    the same (channel, ts), half of them with their own value: each key is stored once, and
    every offer of another value than the stored one comes back as a conflict."""
    n_writers, n = 4, 3000
    ts = T0 + 86_400 * S * 2 + np.arange(n) * S  # a month no one has created yet
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n_writers)

    def writer(w: int) -> None:
        engine = make_engine(pg_url)
        store = PgSampleStore(engine, tmp_path / f"w{w}")
        try:
            start.wait(30)
            value = np.where(np.arange(n) % 2 == 0, 100.0, 100.0 + w)  # odd ts: differ
            out = []
            for a in range(0, n, 500):  # in batches, overlapping each other's
                out.append(store.append_new_many(
                    np.full(500, 9), ts[a : a + 500], value[a : a + 500],
                    np.zeros(500, np.uint8),
                ))  # fmt: skip
            results[w] = out
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    engine = make_engine(pg_url)
    store = PgSampleStore(engine, tmp_path)
    got = store.read(9)
    assert got.ts.tolist() == ts.tolist()  # each once
    written = sum(r.written for rs in results.values() for r in rs)
    assert written == n
    conflicts = [(int(t), float(v)) for rs in results.values() for r in rs
                 for t, v in zip(r.ts, r.value)]  # fmt: skip
    stored = dict(zip(got.ts.tolist(), got.value.tolist()))
    # every odd key: the three writers whose value lost report it, none else is reported
    odd = ts[1::2].tolist()
    assert sorted(t for t, _v in conflicts) == sorted(odd * (n_writers - 1))
    assert all(stored[t] != v for t, v in conflicts)
    assert all(stored[t] == 100.0 for t in ts[0::2].tolist())
    # one partition, made once by four racing writers
    assert store.partitions() == [partition_name(np.datetime64("2026-12"))]
    engine.dispose()


def _readings(engine, cid):
    with session_factory(engine)() as s:
        rows = s.execute(
            select(IntervalReading.isp_start, IntervalReading.energy_wh,
                   IntervalReading.sample_count)
            .where(IntervalReading.channel_id == cid).order_by(IntervalReading.isp_start)
        ).all()  # fmt: skip
    return [(r[0], round(r[1], 6), r[2]) for r in rows]


def test_pipeline_same_readings_from_both_stores_incrementally(pg_url, tmp_path):
    engine = make_engine(pg_url)
    a, b = _channels(engine)
    pg_store = PgSampleStore(engine, tmp_path / "pg")
    pq_store = SampleStore(tmp_path / "parquet")
    sessions = session_factory(engine)
    ts = T0 + np.arange(0, 3 * 3600, 2) * S
    v = 1500 + 500 * np.sin(np.arange(ts.size) / 300)
    q = np.zeros(ts.size, np.uint8)
    steps = [slice(0, 2000), slice(2000, 4000), slice(4000, ts.size)]
    late = ts.size // 3  # a corrected sample in the middle of what is aggregated
    for i, sl in enumerate(steps):
        pg_store.append_new(a, ts[sl], v[sl], q[sl])
        pq_store.append_new(b, ts[sl], v[sl], q[sl])
        if i == 2:
            pg_store.append(a, ts[late : late + 1], np.array([9000.0]), q[:1])
            pq_store.append(b, ts[late : late + 1], np.array([9000.0]), q[:1])
        with sessions() as s:
            (ra,) = update_many(pg_store, s, [a])
        with sessions() as s:
            update_many(pq_store, s, [b])
        assert not ra.busy and ra.isps_written > 0
        assert _readings(engine, a) == _readings(engine, b)
    with sessions() as s:  # nothing new: nothing recomputed
        (again,) = update_many(pg_store, s, [a])
    assert again.ranges_ns == [] and pg_store.dirty_channels() == []
    got = _readings(engine, a)
    assert len(got) == 12 and sum(r[2] for r in got) == ts.size
    engine.dispose()


def test_pipeline_two_workers_never_wait_for_each_other(pg_url, tmp_path):
    """Worker 1 holds channel a's lock (its transaction is open): worker 2 skips a at once
    (busy) and updates b; once worker 1 is done, a's changes are there for a later round."""
    engine = make_engine(pg_url)
    a, b = _channels(engine)
    store = PgSampleStore(engine, tmp_path)
    ts = T0 + np.arange(0, 1800) * S
    for cid in (a, b):
        store.append_new(cid, ts, np.full(ts.size, 1000.0), np.zeros(ts.size, np.uint8))
    sessions = session_factory(engine)
    w1 = sessions()
    assert PgSampleStore.claim(w1, [a]) == [a]
    with sessions() as w2:
        reports = {r.channel_id: r for r in update_many(store, w2, [a, b])}
    assert reports[a].busy and not reports[b].busy and reports[b].isps_written == 2
    assert store.dirty_channels() == [a]
    w1.rollback()  # worker 1 gives its lock up
    w1.close()
    with sessions() as w2:
        (ra,) = update_many(store, w2, [a])
    assert not ra.busy and ra.isps_written == 2 and store.dirty_channels() == []
    assert _readings(engine, a) == _readings(engine, b)
    # by hand: 1 kW for the whole first ISP (the interval to the sample at 900 s included),
    # then for the 899 s up to the last sample
    assert [r[1] for r in _readings(engine, a)] == pytest.approx([250.0, 1000.0 * 899 / 3600])
    engine.dispose()


class _Written:
    """The part of a sink :func:`noaber.services.ingest.update_written_intervals` uses."""

    def __init__(self, ids: list[int]):
        self.channel_ids = {str(i): i for i in ids}
        self.marked: set[int] = set()

    def take_written(self) -> set[int]:
        return set()

    def mark_written(self, ids) -> None:
        self.marked.update(ids)


def test_two_workers_updating_intervals_at_once_split_the_channels(pg_url, tmp_path, monkeypatch):
    """Two ingest workers run their interval round at the same moment over the same 40 dirty
    channels (as with a shared subscription, where both write every channel): each takes
    chunks of its own (one transaction per chunk), so both aggregate some channels, together
    all of them exactly once, with the readings of one worker updating everything. (One
    transaction claiming every channel left one worker all the work and the other none.)"""
    import noaber.services.ingest as ingest

    engine = make_engine(pg_url)
    ids = _channels(engine, 40)
    store = PgSampleStore(engine, tmp_path)
    ts = T0 + np.arange(0, 3600, 2) * S
    for i, cid in enumerate(ids):
        store.append_new(cid, ts, np.full(ts.size, 100.0 * (i + 1)), np.zeros(ts.size, np.uint8))
    both_in = threading.Barrier(2, timeout=60)
    real = ingest.update_many
    first_call: set[int] = set()
    done: dict[int, list[int]] = {}

    def update_many(store_, session, channel_ids, **kw):
        me = threading.get_ident()
        if me not in first_call:  # both workers inside their round before either claims
            first_call.add(me)
            both_in.wait()
        reports = real(store_, session, channel_ids, **kw)
        done.setdefault(me, []).extend(
            r.channel_id for r in reports if not r.busy and r.isps_written
        )
        return reports

    monkeypatch.setattr(ingest, "update_many", update_many)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            ingest.update_written_intervals(store, engine, _Written(ids), first=False, chunk=4)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    per_worker = list(done.values())
    assert len(per_worker) == 2 and all(per_worker), {k: len(v) for k, v in done.items()}
    assert sorted(per_worker[0] + per_worker[1]) == sorted(ids)  # each channel once
    assert store.dirty_channels() == []
    # by hand: channel i holds (i + 1) x 100 W for the hour of samples (one 2 s step short of
    # the last ISP's end): 25 Wh in each of the first three ISPs, 25 Wh x 898/900 in the last
    for i, cid in enumerate(ids):
        got = [r[1] for r in _readings(engine, cid)]
        w = 100.0 * (i + 1)
        assert got == pytest.approx([w / 4, w / 4, w / 4, w * 898 / 3600]), (i, got)
    engine.dispose()
