"""The core loop against simulators over real TCP on 127.0.0.1: every profile, faults, backoff."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from energy.samples import Quality
from modbus_gateway.poller import Gateway, RetryPolicy
from modbus_gateway.profiles import shipped_profiles
from modbus_gateway.spool import MemorySink
from tests.modbus_gateway.conftest import config_for

PLAUSIBLE = {
    "voltage": (200, 260),
    "frequency_hz": (49, 51),
    "soc_pct": (0, 100),
    "battery_soc_pct": (0, 100),
    "ev_soc_pct": (0, 100),
}


@pytest.mark.parametrize("name", sorted(shipped_profiles()))
async def test_every_shipped_profile_end_to_end_over_tcp(serve, name):
    srv, sim = await serve(name)
    sim.frozen = True  # compare with exactly what the simulator serves
    # a generous timeout: this test is about the values, and a loaded machine (two suites on
    # two cores) can answer a healthy request later than the default 1 s
    cfg = config_for([{"name": "dev", "profile": name, "port": srv.port, "timeout_s": 10.0}])
    sink = MemorySink()
    gw = Gateway(cfg, sink.write)
    try:
        samples = await gw.poll_once(gw.devices["dev"])
    finally:
        gw.close()
    assert samples, "no samples"
    by_reg = {s.channel.removeprefix("dev."): s for s in samples}
    missing_ok = {"dod_pct"}  # SunSpec "not implemented" in the simulator
    for reg, s in by_reg.items():
        if reg in missing_ok:
            assert s.quality == Quality.MISSING and math.isnan(s.value)
            continue
        assert s.quality == Quality.GOOD, (reg, s)
        assert s.value == pytest.approx(sim.get(reg), rel=1e-6, abs=1e-6), reg
        for key, (lo, hi) in PLAUSIBLE.items():
            dc = key == "voltage" and shipped_profiles()[name].kind != "meter"
            if reg.startswith(key) and not dc:
                assert lo <= s.value <= hi, (reg, s.value)
    assert len(samples) == len(gw.devices["dev"].channels)
    # one request per coalesced block: never more
    assert gw.devices["dev"].requests == len(gw.devices["dev"].blocks)


async def test_timestamps_at_request_time_and_interval(serve):
    srv, _ = await serve("eastron_sdm120")
    cfg = config_for(
        [{"name": "m", "profile": "eastron_sdm120", "port": srv.port, "poll_interval_s": 0.1}]
    )
    sink = MemorySink()
    gw = Gateway(cfg, sink.write)
    t0 = gw.clock.time_ns()
    await gw.run(0.55)
    gw.close()
    ts = sorted({k[1] for k in sink.samples})
    assert 4 <= len(ts) <= 7  # slots at 0, 0.1, ..., 0.5 s (a late poll skips a slot)
    assert ts[0] >= t0
    # on the 0.1 s grid: each poll in a slot of its own (a poll may start late within its slot
    # on a loaded machine, so two polls can be closer than 0.1 s, never in one slot), no
    # stretch without a poll longer than a few slots
    slots = [(t - t0) // 100_000_000 for t in ts]
    assert slots == sorted(set(slots)), (slots, ts)
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    assert all(0 < g < 0.35e9 for g in gaps), gaps


FAULTS = [
    ({"kind": "busy"}, Quality.MISSING),
    ({"kind": "exception", "code": 2}, Quality.INVALID),
    ({"kind": "exception", "code": 4}, Quality.INVALID),
    ({"kind": "exception", "code": 11}, Quality.MISSING),
    ({"kind": "short"}, Quality.INVALID),
    ({"kind": "garbage"}, Quality.INVALID),
    ({"kind": "timeout"}, Quality.MISSING),
    ({"kind": "disconnect"}, Quality.MISSING),
]


@pytest.mark.parametrize(
    ("fault", "quality"), FAULTS, ids=[f[0]["kind"] + str(f[0].get("code", "")) for f in FAULTS]
)
async def test_each_fault_gives_its_quality_and_others_keep_polling(serve, fault, quality):
    bad_srv, _bad = await serve("eastron_sdm630", faults=[fault])
    good_srv, _ = await serve("victron_gx")
    cfg = config_for(
        [
            {"name": "bad", "profile": "eastron_sdm630", "port": bad_srv.port, "timeout_s": 0.2},
            {"name": "good", "profile": "victron_gx", "port": good_srv.port},
        ]
    )
    gw = Gateway(cfg, policy=RetryPolicy(busy_retries=1, busy_backoff_s=0.01))
    try:
        bad_samples = await gw.poll_once(gw.devices["bad"])
        good_samples = await gw.poll_once(gw.devices["good"])
    finally:
        gw.close()
    assert {s.quality for s in bad_samples} == {quality}
    assert all(math.isnan(s.value) for s in bad_samples)
    assert {s.quality for s in good_samples} == {Quality.GOOD}


async def test_busy_is_retried_with_backoff(serve):
    srv, sim = await serve("eastron_sdm120", faults=[{"kind": "busy", "probability": 0.5}], seed=3)
    cfg = config_for([{"name": "m", "profile": "eastron_sdm120", "port": srv.port}])
    gw = Gateway(cfg, policy=RetryPolicy(busy_retries=6, busy_backoff_s=0.001))
    dev = gw.devices["m"]
    try:
        results = [await gw.poll_once(dev) for _ in range(10)]
    finally:
        gw.close()
    assert all(s.quality == Quality.GOOD for r in results for s in r)
    assert dev.requests > len(dev.blocks) * 10  # some requests were retries
    assert sim.requests == dev.requests


async def test_stale_then_missing_then_recovered(serve):
    srv, sim = await serve("eastron_sdm120")
    cfg = config_for(
        [
            {
                "name": "m",
                "profile": "eastron_sdm120",
                "port": srv.port,
                "stale_after_s": 2.0,
                "timeout_s": 0.6,  # a healthy answer comes in time on a loaded machine too
            }
        ]
    )
    gw = Gateway(cfg)
    dev = gw.devices["m"]
    try:
        first = await gw.poll_once(dev)
        assert {s.quality for s in first} == {Quality.GOOD}
        from modbus_gateway.config import FaultSpec

        sim.faults.append(FaultSpec(kind="timeout"))
        stale = await gw.poll_once(dev)
        assert {s.quality for s in stale} == {Quality.STALE}
        assert [s.value for s in stale] == [s.value for s in first]
        await asyncio.sleep(2.0)  # past stale_after_s since the last good poll
        missing = await gw.poll_once(dev)
        assert {s.quality for s in missing} == {Quality.MISSING}
        sim.faults.clear()
        back = await gw.poll_once(dev)
        assert {s.quality for s in back} == {Quality.GOOD}
        assert dev.failures == 0 and dev.status == "ok"
    finally:
        gw.close()


async def test_dead_device_backs_off_and_comes_back_while_others_poll(serve):
    """A server that is stopped (device gone) and restarted on the same port is picked up."""
    dead_srv, _ = await serve("eastron_sdm630")
    live_srv, _ = await serve("eastron_sdm120")
    cfg = config_for(
        [
            {
                "name": "dead",
                "profile": "eastron_sdm630",
                "port": dead_srv.port,
                "poll_interval_s": 0.05,
                "timeout_s": 0.2,
            },
            {
                "name": "live",
                "profile": "eastron_sdm120",
                "port": live_srv.port,
                "poll_interval_s": 0.1,
            },
        ]
    )
    sink = MemorySink()
    gw = Gateway(cfg, sink.write, policy=RetryPolicy(dead_after=2, backoff_max_s=0.4))
    run = asyncio.create_task(gw.run())
    try:
        await asyncio.sleep(0.3)
        await dead_srv.stop()
        await asyncio.sleep(1.2)
        dead = gw.devices["dead"]
        assert dead.status == "backoff" and dead.failures >= 2
        polls_while_dead = dead.polls
        await dead_srv.start()  # same port: the device comes back
        for _ in range(100):  # bounded: 5 s
            await asyncio.sleep(0.05)
            if dead.status == "ok":
                break
        assert dead.status == "ok"
        assert dead.polls > polls_while_dead
        assert gw.devices["live"].polls >= 8  # never stalled by the dead one
        assert not run.done()  # no exception escaped the loop
    finally:
        gw.stop()
        await asyncio.wait_for(run, 5)
        gw.close()
    live_q = [s.quality for (c, _), s in sink.samples.items() if c.startswith("live.")]
    assert set(live_q) == {Quality.GOOD}
    dead_q = {s.quality for (c, _), s in sink.samples.items() if c.startswith("dead.")}
    assert Quality.GOOD in dead_q and Quality.MISSING in dead_q


async def test_faults_by_config_window_and_loop_survives(serve):
    """Faults selected by configuration time windows; the loop keeps every device going."""
    srv, _sim = await serve(
        "eastron_sdm630",
        faults=[
            {"kind": "garbage", "start_s": 0.2, "duration_s": 0.3},
            {"kind": "exception", "code": 11, "start_s": 0.6, "duration_s": 0.3},
        ],
    )
    cfg = config_for(
        [{"name": "m", "profile": "eastron_sdm630", "port": srv.port, "poll_interval_s": 0.05}]
    )
    sink = MemorySink()
    gw = Gateway(cfg, sink.write)
    await gw.run(1.2)
    gw.close()
    qs = [
        s.quality
        for (c, _), s in sorted(sink.samples.items(), key=lambda kv: kv[0][1])
        if c == "m.total_power_w"
    ]
    assert qs[0] == Quality.GOOD and qs[-1] == Quality.GOOD
    assert Quality.INVALID in qs


async def test_disconnect_window_then_reconnect(serve):
    """The device drops the TCP connection for a while; the gateway reconnects after it."""
    srv, _ = await serve(
        "eastron_sdm120", faults=[{"kind": "disconnect", "start_s": 0.3, "duration_s": 0.5}]
    )
    cfg = config_for(
        [
            {
                "name": "m",
                "profile": "eastron_sdm120",
                "port": srv.port,
                "poll_interval_s": 0.1,
                "timeout_s": 0.2,
            }
        ]
    )
    sink = MemorySink()
    gw = Gateway(cfg, sink.write, policy=RetryPolicy(backoff_max_s=0.2))  # retry soon after
    await gw.run(2.0)
    gw.close()
    qs = [
        s.quality
        for (c, _), s in sorted(sink.samples.items(), key=lambda kv: kv[0][1])
        if c == "m.total_power_w"
    ]
    assert qs[0] == Quality.GOOD
    assert Quality.MISSING in qs or Quality.STALE in qs
    assert qs[-1] == Quality.GOOD  # reconnected
