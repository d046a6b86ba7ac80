"""Ingest benchmark: gateway sample batches into PostgreSQL, interval updates included.

    python bench/ingest_bench.py            # 100 sites, ~1.2 M samples per phase
    python bench/ingest_bench.py --quick    # ~20 s smoke version (run from a test)

Needs the PostgreSQL of this machine (``NOABER_TEST_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``); it makes and drops its own database.
Sites have two power channels each and a gateway bound to them; the batches are the JSON
payloads the gateways publish (``modbus_gateway.mqtt.encode_batch``, 400 samples each).

Figures (absolute, and as ratios to a baseline measured in the same run):

- **baseline**: a raw binary COPY of the same rows into a table of the same columns
  (no checks, no conflict handling, no intervals): the floor of what PostgreSQL takes here;
- **one consumer**: a process that decodes every payload, runs the centre's checks
  (:class:`noaber.services.ingest.CentreSink`), stores them (COPY + ON CONFLICT, 64 batches a
  transaction) and updates the interval readings of what it wrote every 8 transactions and at the
  end; samples per second of wall time and per CPU-second of the consumer process
  (``time.process_time``; PostgreSQL's own CPU is not in it);
- **two consumers**: two such processes at once, batches dealt round-robin (as a shared
  subscription does, so both write and aggregate every channel); total samples per second and
  the ratio to one consumer (target >= 1.7);
- **end-to-end latency**: a Mosquitto on a free port, the real ``Ingest`` (MQTT consumer,
  shared-subscription code path, PostgreSQL store), gateways publishing every 0.2 s samples
  stamped at their poll time: p50/p95 from poll time to the commit after which the sample can
  be read (``PgSampleStore.read``), and to the interval readings that include it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, select, text

from energy.db import make_engine, session_factory, upgrade
from energy.gateways import add_gateway
from energy.models import Asset, AssetKind, Channel, IntervalReading, Quantity, Site
from energy.rawstore import PgSampleStore, encode_copy_rows
from energy.settings import Settings
from modbus_gateway.mqtt import Received, decode_message, encode_batch, parse_broker_url
from modbus_gateway.spool import Sample

S = 1_000_000_000
PG_ADMIN_URL = os.environ.get("NOABER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 400  # samples per gateway batch (the gateway spool's batch_max)
GROUP = 64  # batches per transaction (consume --max-batches)
INTERVAL_GROUPS = 8
"""Interval updates after every this many transactions (~200,000 samples: at 20,000 samples/s
the ``consume --intervals-every 10`` of a deployment) and at the end."""


def make_database() -> tuple[str, str]:
    name = f"bench_ingest_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return name, url


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def world(url: str, n: int) -> list[tuple[str, list[str]]]:
    """``n`` sites, two power channels and one gateway each: ``[(gateway, channel keys)]``."""
    engine = make_engine(url)
    out = []
    with session_factory(engine).begin() as session:
        for i in range(n):
            site = Site(name=f"site-{i:03d}", display_name=f"Site {i}", ean=f"8716859{i:011d}",
                        latitude=52.9, longitude=6.6, grid_import_limit_kw=40,
                        grid_export_limit_kw=25)  # fmt: skip
            grid = Asset(site=site, name="grid", kind=AssetKind.METER)
            pv = Asset(site=site, name="pv", kind=AssetKind.PV, params={"peak_kw": 30})
            keys = [f"site-{i:03d}/grid/power", f"site-{i:03d}/pv/power"]
            session.add_all([site, grid, pv,
                             Channel(key=keys[0], asset=grid, quantity=Quantity.POWER, unit="W"),
                             Channel(key=keys[1], asset=pv, quantity=Quantity.POWER, unit="W")])  # fmt: skip
            session.flush()
            add_gateway(session, f"gw{i:03d}", [site.name], "$7$bench")
            out.append((f"gw{i:03d}", keys))
    engine.dispose()
    return out


def payloads(gws: list[tuple[str, list[str]]], seconds: int, t0_ns: int, tag: str) -> list:
    """``[(topic, payload)]``: each gateway's 1 Hz samples of ``seconds`` in batches."""
    out = []
    per = BATCH // 2
    for gi, (gw, keys) in enumerate(gws):
        for a in range(0, seconds, per):
            samples = [
                Sample(k, t0_ns + t * S, (1000.0 + gi if j == 0 else -2000.0) + t % 50, 0)
                for t in range(a, min(a + per, seconds))
                for j, k in enumerate(keys)
            ]
            out.append((f"noaber/{gw}/samples", encode_batch(gw, samples, f"{tag}:{gw}:{a}")))
    # interleave the gateways as the broker delivers them
    order = sorted(range(len(out)), key=lambda i: (i % (seconds // per + 1), i))
    return [out[i] for i in order]


def consumer(url: str, data_dir: str, msgs: list, q: mp.Queue, barrier) -> None:
    """One consume worker without the network: decode, check, store, update intervals."""
    from energy.kernels.power import power_to_buckets_many
    from noaber.services.ingest import CentreSink, update_written_intervals

    engine = make_engine(url)
    store = PgSampleStore(engine, Path(data_dir))
    sink = CentreSink(store, engine)
    one = np.arange(3, dtype=np.int64) * S  # warm-up: the Numba kernel compiled before timing
    power_to_buckets_many([(one, np.ones(3), np.zeros(3, np.uint8))], 900 * S, 0, 7200 * S)
    barrier.wait()
    w0, c0 = time.perf_counter(), time.process_time()
    n = isps = 0
    for g in range(0, len(msgs), GROUP):
        group = []
        for topic, payload in msgs[g : g + GROUP]:
            b = decode_message(payload)
            group.append(Received(topic, topic.split("/")[1], b.gateway, b.batch_id, b.samples))
        n += sum(o.stored for o in sink.write_batches(group))
        if (g // GROUP) % INTERVAL_GROUPS == INTERVAL_GROUPS - 1:
            isps += update_written_intervals(store, engine, sink, first=False)
    isps += update_written_intervals(store, engine, sink, first=False)
    for _ in range(100):  # channels another worker held at the end: bounded retries
        if not store.dirty_channels():
            break
        isps += update_written_intervals(store, engine, sink, first=False)
        time.sleep(0.05)
    q.put((n, isps, time.perf_counter() - w0, time.process_time() - c0))
    engine.dispose()


def run_consumers(url: str, data_dir: str, msgs: list, k: int) -> tuple[int, int, float, float]:
    """``k`` consumer processes over ``msgs`` dealt round-robin: samples, ISPs, wall, CPU."""
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    barrier = ctx.Barrier(k + 1)
    procs = [ctx.Process(target=consumer, args=(url, data_dir, msgs[i::k], q, barrier))
             for i in range(k)]  # fmt: skip
    for p in procs:
        p.start()
    barrier.wait(120)
    w0 = time.perf_counter()
    res = [q.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - w0
    for p in procs:
        p.join(60)
    return sum(r[0] for r in res), sum(r[1] for r in res), wall, sum(r[3] for r in res)


def baseline_copy(url: str, msgs: list) -> tuple[int, float]:
    """Raw binary COPY of the same rows (decoded outside the timing): samples, seconds."""
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT key, id FROM channels")).all())
    rows = [(ids[s.channel], s.ts_ns, s.value, s.quality)
            for _t, p in msgs for s in decode_message(p).samples]  # fmt: skip
    cid, ts, val, qual = (np.array(c) for c in zip(*rows, strict=True))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE copy_baseline (channel_id int4, ts int8, value float8, "
                          "quality int2, PRIMARY KEY (channel_id, ts))"))  # fmt: skip
    t0 = time.perf_counter()
    for a in range(0, ts.size, GROUP * BATCH):
        buf = encode_copy_rows(cid[a : a + GROUP * BATCH], ts[a : a + GROUP * BATCH],
                               val[a : a + GROUP * BATCH], qual[a : a + GROUP * BATCH])  # fmt: skip
        with engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            with cur.copy("COPY copy_baseline FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(buf)
    dt_s = time.perf_counter() - t0
    engine.dispose()
    return int(ts.size), dt_s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def latency(url: str, data_dir: Path, gws: list, seconds: float) -> dict[str, float]:
    """Poll -> queryable sample, and -> interval reading, through Mosquitto and Ingest."""
    import paho.mqtt.client as mqtt

    from noaber.services.ingest import Ingest

    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = data_dir / "mosquitto.conf"
    for _attempt in range(5):
        port = free_port()
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        ok = False
        for _ in range(200):  # readiness: the port answers (bounded)
            if proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                ok = True
                break
            except OSError:
                time.sleep(0.025)
        if ok:
            break
        proc.kill()
        proc.wait(10)
    else:
        raise RuntimeError("mosquitto did not start")
    settings = Settings(mode="local", data_dir=data_dir, database_url=url,
                        sample_store="postgresql")  # fmt: skip
    ingest = Ingest(settings, parse_broker_url(f"mqtt://127.0.0.1:{port}"), client_id="bench-1",
                    share="bench", intervals_every_s=0.5)  # fmt: skip
    lat: list[float] = []
    stored_at: dict[str, int] = {}
    original = ingest.sink.write_batches

    def timed(batches):
        out = original(batches)
        now = time.time_ns()
        for b in batches:
            lat.extend((now - s.ts_ns) / 1e6 for s in b.samples)
            stored_at[b.samples[0].channel] = now
        return out

    ingest.sink.write_batches = timed  # type: ignore[method-assign]
    ingest.start(30)
    stop = threading.Event()
    runner = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    runner.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-gateways")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    end = time.monotonic() + seconds
    last_ts = 0
    while time.monotonic() < end:  # bounded by the phase's length
        ts = time.time_ns()
        for gw, keys in gws:
            samples = [Sample(k, ts, 500.0, 0) for k in keys]
            pub.publish(f"noaber/{gw}/samples", encode_batch(gw, samples, f"l:{gw}:{ts}"), qos=1)
        last_ts = ts
        time.sleep(0.2)
    # the interval reading of the last poll: when it is there
    engine = make_engine(url)
    with engine.connect() as conn:
        cid = conn.execute(text("SELECT id FROM channels WHERE key = :k"),
                           {"k": gws[0][1][0]}).scalar_one()  # fmt: skip
    isp = np.datetime64(last_ts // (900 * S) * (900 * S), "ns").astype("datetime64[us]").item()
    reading_ms = float("nan")
    for _ in range(600):  # bounded: 30 s
        with session_factory(engine)() as s:
            n = s.scalar(select(IntervalReading.sample_count).where(
                IntervalReading.channel_id == cid,
                IntervalReading.isp_start == isp.replace(tzinfo=__import__("datetime").UTC)))  # fmt: skip
        got = PgSampleStore(engine, data_dir).read(cid, last_ts, last_ts + 1)
        if len(got) and n:
            reading_ms = (time.time_ns() - last_ts) / 1e6
            break
        time.sleep(0.05)
    engine.dispose()
    pub.loop_stop()
    pub.disconnect()
    stop.set()
    runner.join(60)
    proc.terminate()
    proc.wait(10)
    arr = np.array(lat)
    return {
        "samples": float(arr.size),
        "p50_ms": float(np.percentile(arr, 50)) if arr.size else float("nan"),
        "p95_ms": float(np.percentile(arr, 95)) if arr.size else float("nan"),
        "reading_ms": reading_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    args = ap.parse_args()
    n_sites = 20 if args.quick else 100
    seconds = 1200 if args.quick else 6000  # per gateway and phase, 1 Hz, two channels
    name, url = make_database()
    try:
        gws = world(url, n_sites)
        now = time.time_ns() // S * S
        day = 86_400 * S
        m_base = payloads(gws, seconds, now - 5 * day, "base")
        m_one = payloads(gws, seconds, now - 4 * day, "one")
        m_two = payloads(gws, seconds, now - 3 * day, "two")
        with tempfile.TemporaryDirectory() as tmp:
            nb, tb = baseline_copy(url, m_base)
            n1, i1, w1, c1 = run_consumers(url, tmp, m_one, 1)
            n2, i2, w2, c2 = run_consumers(url, tmp, m_two, 2)
            lat = latency(url, Path(tmp), gws[: min(20, n_sites)], 4.0 if args.quick else 15.0)
        base_rate = nb / tb
        one_rate, two_rate = n1 / w1, n2 / w2
        print(f"ingest into PostgreSQL: {n_sites} sites x 2 channels, {BATCH} samples a batch, "
              f"{GROUP} batches a transaction; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        print(f"  baseline raw COPY      {nb:>10,} samples  {tb:7.2f} s  {base_rate:>10,.0f} /s")
        print(f"  one consumer           {n1:>10,} samples  {w1:7.2f} s  {one_rate:>10,.0f} /s"
              f"  {n1 / c1:>10,.0f} per CPU-s  {i1:,} interval readings  "
              f"{one_rate / base_rate:.2f} x baseline")  # fmt: skip
        print(f"  two consumers          {n2:>10,} samples  {w2:7.2f} s  {two_rate:>10,.0f} /s"
              f"  {n2 / c2:>10,.0f} per CPU-s  {i2:,} interval readings  "
              f"{two_rate / base_rate:.2f} x baseline")  # fmt: skip
        print(f"  scaling two / one consumer: {two_rate / one_rate:.2f} x (target >= 1.7)")
        print(f"  per consumer core: {n1 / c1:,.0f} samples per CPU-second (target >= 20,000)")
        print(f"  end to end over Mosquitto ({lat['samples']:,.0f} samples): poll -> queryable "
              f"sample p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms; poll -> interval "
              f"reading {lat['reading_ms']:.0f} ms (intervals every 0.5 s)")  # fmt: skip
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
