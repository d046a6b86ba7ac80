"""Peers we did not write and a real serial line: mbpoll against the SDM630 simulator, and
Modbus RTU over a socat pseudo-terminal pair with two unit ids on one bus."""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
from pathlib import Path

import pytest

from energy.samples import Quality
from modbus_gateway.config import parse_config
from modbus_gateway.poller import Gateway, RetryPolicy
from modbus_gateway.profiles import shipped_profiles
from modbus_gateway.simulator import SimServer, SimulatedDevice
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import config_for
from tests.net import wait_until


async def test_mbpoll_reads_the_same_floats_the_gateway_logs(serve):
    mbpoll = need_executable("mbpoll")
    srv, sim = await serve("eastron_sdm630")
    sim.frozen = True
    gw = Gateway(config_for([{"name": "m", "profile": "eastron_sdm630", "port": srv.port}]))
    try:
        samples = {s.channel: s for s in await gw.poll_once(gw.devices["m"])}
    finally:
        gw.close()
    # input registers 0x00..0x11 (V, I, P per phase) as big-endian float32, 0-based addresses
    proc = await asyncio.create_subprocess_exec(
        mbpoll, "-m", "tcp", "-p", str(srv.port), "-a", "1", "-t", "3:float", "-B", "-0",
        "-r", "0", "-c", "9", "-1", "-o", "2", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    values = {
        int(a): float(v)
        for a, v in re.findall(r"\[(\d+)\]:\s+(-?[\d.]+(?:e[-+]?\d+)?)", out.decode())
    }
    names = ["voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "current_l1_a", "current_l2_a",
             "current_l3_a", "power_l1_w", "power_l2_w", "power_l3_w"]  # fmt: skip
    assert len(values) == 9, out.decode()
    for i, name in enumerate(names):
        s = samples[f"m.{name}"]
        assert s.quality == Quality.GOOD
        assert values[2 * i] == pytest.approx(s.value, rel=1e-5, abs=1e-3), name
    # and the total power register 0x34
    proc = await asyncio.create_subprocess_exec(
        mbpoll, "-m", "tcp", "-p", str(srv.port), "-t", "3:float", "-B", "-0", "-r", str(0x34),
        "-1", "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    total = float(re.findall(r"\[52\]:\s+(-?[\d.]+)", out.decode())[0])
    assert total == pytest.approx(samples["m.total_power_w"].value, rel=1e-5)


@pytest.fixture
def pty_pair(tmp_path: Path):
    socat = need_executable("socat")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: a.exists() and b.exists(), "socat's pty pair", interval_s=0.02, proc=proc)
    assert a.exists() and b.exists(), "socat did not create the pty pair"
    yield str(a), str(b)
    proc.terminate()
    proc.wait(5)


async def test_rtu_two_unit_ids_on_one_bus_with_a_dead_third(pty_pair):
    server_side, client_side = pty_pair
    profs = shipped_profiles()
    meter = SimulatedDevice(profs["eastron_sdm120"])
    em24 = SimulatedDevice(profs["carlo_gavazzi_em24"])
    meter.frozen = em24.frozen = True
    srv = await SimServer({1: meter, 2: em24}, serial_port=server_side, baudrate=38400).start()
    cfg = parse_config(
        {
            "buses": {"rs485": {"port": client_side, "baudrate": 38400, "inter_frame_pause_s": 0.005, "timeout_s": 0.5}},
            "devices": [
                {"name": "sdm", "profile": "eastron_sdm120", "transport": "rtu", "bus": "rs485", "unit_id": 1, "poll_interval_s": 0.2},
                {"name": "em", "profile": "carlo_gavazzi_em24", "transport": "rtu", "bus": "rs485", "unit_id": 2, "poll_interval_s": 0.2},
                # unit 3 does not exist: silence on the bus, like a dead slave
                {"name": "gone", "profile": "eastron_sdm120", "transport": "rtu", "bus": "rs485", "unit_id": 3, "poll_interval_s": 0.2},
            ],
        },
        "rtu-site.yaml",
    )  # fmt: skip
    got: list = []
    gw = Gateway(cfg, got.extend, policy=RetryPolicy(dead_after=1, backoff_max_s=5))
    assert len(gw.links) == 1  # one master for the bus
    try:
        await gw.run(2.5)
    finally:
        gw.close()
        await srv.stop()
    by_dev: dict[str, set] = {}
    for s in got:
        by_dev.setdefault(s.channel.split(".")[0], set()).add(s.quality)
    assert by_dev["sdm"] == {Quality.GOOD} and by_dev["em"] == {Quality.GOOD}
    assert by_dev["gone"] == {Quality.MISSING}
    last = {s.channel: s for s in got}
    assert last["sdm.voltage_v"].value == pytest.approx(meter.get("voltage_v"))
    assert last["em.total_power_w"].value == pytest.approx(em24.get("total_power_w"))
    assert gw.devices["sdm"].polls >= 3 and gw.devices["em"].polls >= 3
    assert gw.devices["gone"].status == "backoff"


async def test_rtu_inter_frame_pause_is_kept(pty_pair):
    """One master per bus: requests to two units never come closer than the pause."""
    server_side, client_side = pty_pair
    profs = shipped_profiles()
    a, b = SimulatedDevice(profs["eastron_sdm630"]), SimulatedDevice(profs["eastron_sdm120"])
    srv = await SimServer({1: a, 2: b}, serial_port=server_side, baudrate=115200).start()
    pause = 0.04
    cfg = parse_config(
        {
            "buses": {"bus": {"port": client_side, "baudrate": 115200, "inter_frame_pause_s": pause}},
            "devices": [
                {"name": "a", "profile": "eastron_sdm630", "transport": "rtu", "bus": "bus", "unit_id": 1, "poll_interval_s": 0.1},
                {"name": "b", "profile": "eastron_sdm120", "transport": "rtu", "bus": "bus", "unit_id": 2, "poll_interval_s": 0.1},
            ],
        },
        "pause.yaml",
    )  # fmt: skip
    gw = Gateway(cfg)
    try:
        await gw.run(0.8)
    finally:
        gw.close()
        await srv.stop()
    times = sorted([*a.request_times, *b.request_times])
    assert len(a.request_times) >= 6 and len(b.request_times) >= 6
    gaps = [t1 - t0 for t0, t1 in itertools.pairwise(times)]
    assert min(gaps) >= pause * 0.9, min(gaps)
