"""The installer's toolkit: datasheet register numbers, coils and discrete inputs (checked
with mbpoll), RTU over TCP (mbpoll over a socat pty bridged to TCP, a serial-to-Ethernet
converter), gap-filling reads counted at the simulator, busy/silent-gateway backoff with
logged transitions, and the "on time" share counting skipped slots."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from energy.errors import ValidationError
from energy.samples import Quality
from modbus_gateway.config import FaultSpec, parse_config
from modbus_gateway.driver import Driver, Link
from modbus_gateway.plan import plan_reads
from modbus_gateway.poller import Gateway, RetryPolicy
from modbus_gateway.profiles import (
    load_profile,
    parse_datasheet_number,
    parse_profile,
    shipped_profiles,
)
from modbus_gateway.simulator import SimServer, SimulatedDevice
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import FakeClock, config_for
from tests.net import wait_until

# --------------------------------------------------------------- datasheet register numbers


def test_datasheet_numbers_convert_to_table_and_address():
    # Eastron SDM630 Modbus protocol: "30053 Total system power" is input register 0x34
    assert parse_datasheet_number(30053) == (4, 0x34)
    assert parse_datasheet_number(300053) == (4, 52)
    assert parse_datasheet_number(40001) == (3, 0)
    assert parse_datasheet_number("400001") == (3, 0)
    assert parse_datasheet_number(465536) == (3, 65535)
    assert parse_datasheet_number(10001) == (2, 0)
    assert parse_datasheet_number("00001") == (1, 0)
    assert parse_datasheet_number("000017") == (1, 16)
    for bad in (20001, 30000, 50001, 1, "4000x", 466000, 3000530, True):
        with pytest.raises(ValueError, match="datasheet register number"):
            parse_datasheet_number(bad)


def test_profile_in_datasheet_numbers_matches_the_shipped_address_form(tmp_path: Path):
    shipped = shipped_profiles()["eastron_sdm630"]
    doc = {
        "name": "sdm630_numbers",
        "registers": {
            "total_power_w": {"number": 30053, "type": "float32", "unit": "W"},
            "frequency_hz": {"number": 300071, "type": "float32", "unit": "Hz"},
            "relay": {"number": "00002", "writable": {"min": 0, "max": 1}},
            "alarm": {"number": 10003},
        },
    }
    path = tmp_path / "sdm630_numbers.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    p = load_profile(path)
    for name in ("total_power_w", "frequency_hz"):
        assert p.registers[name].address == shipped.registers[name].address
        assert p.registers[name].function == shipped.registers[name].function == 4
    assert (p.registers["relay"].function, p.registers["relay"].address) == (1, 1)
    assert p.registers["relay"].type == "bool"
    assert (p.registers["alarm"].function, p.registers["alarm"].address) == (2, 2)


@pytest.mark.parametrize(
    ("reg", "match"),
    [
        ({"number": 20001}, r"registers\.x.*20001.*0xxxx coil"),
        ({"number": 30053, "address": 53}, r"registers\.x.*number gives address 52"),
        ({"number": 30053, "function": 3}, r"registers\.x.*number gives function 4"),
        ({"number": 10001, "type": "uint16"}, r"registers\.x.*type bool"),
        ({"number": 30001, "writable": {"min": 0, "max": 1}}, r"registers\.x.*writable"),
    ],
)
def test_bad_datasheet_numbers_name_file_register_and_rule(reg, match):
    with pytest.raises(ValidationError, match=match) as ei:
        parse_profile({"name": "p", "registers": {"x": reg}}, "site/mine.yaml")
    assert "site/mine.yaml" in str(ei.value)


# --------------------------------------------------------------- coils and discrete inputs

COILS_DOC = {
    "name": "relay_box",
    "kind": "generic",
    "registers": {
        "relay_1": {"number": "00001", "writable": {"min": 0, "max": 1}, "sim_value": 1},
        "relay_2": {"number": "00002", "writable": {"min": 0, "max": 1}, "sim_value": 0},
        "relay_3": {"number": "00003", "writable": {"min": 0, "max": 1}, "sim_value": 1},
        "door_open": {"number": 10001, "sim_value": 0},
        "overheat": {"number": 10002, "sim_value": 1},
        "fault": {"number": 10003, "sim_value": 1},
        "temperature_c": {"number": 30001, "type": "int16", "scale": 0.1, "sim_value": 21.5},
    },
}


async def _mbpoll(*args: str) -> str:
    mbpoll = need_executable("mbpoll")
    proc = await asyncio.create_subprocess_exec(
        mbpoll, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


def _mbpoll_values(out: str) -> dict[int, int]:
    return {int(a): int(v) for a, v in re.findall(r"\[(\d+)\]:\s+(-?\d+)", out)}


async def test_coils_and_discrete_inputs_against_mbpoll():
    prof = parse_profile(COILS_DOC, "relay_box.yaml")
    sim = SimulatedDevice(prof)
    srv = await SimServer({1: sim}).start()
    link = Link.tcp("127.0.0.1", srv.port, 5.0)
    drv = Driver(link, 1, prof)
    try:
        blocks = plan_reads(prof, prof.registers)
        assert sorted((b.function, b.address, b.count) for b in blocks) == [
            (1, 0, 3),
            (2, 0, 3),
            (4, 0, 1),
        ]
        values = await drv.read_values(prof.registers)
        assert {n: v.value for n, v in values.items()} == {
            "relay_1": 1.0, "relay_2": 0.0, "relay_3": 1.0, "door_open": 0.0,
            "overheat": 1.0, "fault": 1.0, "temperature_c": 21.5,
        }  # fmt: skip
        assert all(v.quality == Quality.GOOD for v in values.values())
        port = str(srv.port)
        # mbpoll -t 0: coils, -t 1: discrete inputs (0-based with -0)
        coils = _mbpoll_values(
            await _mbpoll(
                "-m", "tcp", "-p", port, "-t", "0", "-0", "-r", "0", "-c", "3", "-1", "127.0.0.1"
            )
        )
        assert coils == {0: 1, 1: 0, 2: 1}
        inputs = _mbpoll_values(
            await _mbpoll(
                "-m", "tcp", "-p", port, "-t", "1", "-0", "-r", "0", "-c", "3", "-1", "127.0.0.1"
            )
        )
        assert inputs == {0: 0, 1: 1, 2: 1}
        # the driver writes one coil (function 5), mbpoll reads it back
        await drv.write_value("relay_2", 1)
        assert sim.write_log[-1].name == "relay_2" and sim.get("relay_2") == 1
        out = await _mbpoll("-m", "tcp", "-p", port, "-t", "0", "-0", "-r", "1", "-1", "127.0.0.1")
        assert _mbpoll_values(out) == {1: 1}
        # several coils at once (function 15)
        await link.write_coils(1, 0, [0, 0, 0])
        assert [sim.get(f"relay_{i}") for i in (1, 2, 3)] == [0, 0, 0]
        # mbpoll writes a coil, the driver reads it
        await _mbpoll("-m", "tcp", "-p", port, "-t", "0", "-0", "-r", "2", "127.0.0.1", "1")
        assert (await drv.read_values(["relay_3"]))["relay_3"].value == 1.0
        # a discrete input is read-only: the device refuses a write there
        with pytest.raises(Exception, match="writable"):
            await drv.write_value("door_open", 1)
    finally:
        link.close()
        await srv.stop()


# --------------------------------------------------------------- RTU over TCP


async def test_rtu_over_tcp_gateway_and_mbpoll_through_a_serial_bridge(tmp_path: Path):
    """The simulator serves RTU frames on a TCP port (a serial-to-Ethernet converter); the
    gateway reads it with ``framer: rtu``; mbpoll -m rtu reads it through socat, which turns
    a pseudo-terminal into the TCP connection (an RTU peer we did not write)."""
    socat = need_executable("socat")
    sim = SimulatedDevice(shipped_profiles()["eastron_sdm630"])
    sim.frozen = True
    srv = await SimServer({7: sim}, framer="rtu").start()
    cfg = config_for(
        [
            {
                "name": "m",
                "profile": "eastron_sdm630",
                "port": srv.port,
                "unit_id": 7,
                "framer": "rtu",
                "timeout_s": 5.0,
            }
        ]
    )
    gw = Gateway(cfg)
    assert next(iter(gw.links.values())).name.startswith("rtu-over-tcp://")
    tty = tmp_path / "ttyRTU"
    bridge = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={tty}", f"tcp:127.0.0.1:{srv.port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        samples = {s.channel: s for s in await gw.poll_once(gw.devices["m"])}
        assert samples["m.total_power_w"].quality == Quality.GOOD
        assert samples["m.total_power_w"].value == pytest.approx(sim.get("total_power_w"))
        wait_until(tty.exists, "socat's pty", interval_s=0.02, proc=bridge)
        out = await _mbpoll(
            "-m", "rtu", "-b", "9600", "-P", "none", "-a", "7", "-t", "3:float", "-B", "-0",
            "-r", str(0x34), "-1", "-o", "5", str(tty),
        )  # fmt: skip
        total = float(re.findall(r"\[52\]:\s+(-?[\d.]+)", out)[0])
        assert total == pytest.approx(sim.get("total_power_w"), rel=1e-5)
    finally:
        gw.close()
        bridge.terminate()
        bridge.wait(5)
        await srv.stop()


def test_framer_is_only_for_tcp():
    with pytest.raises(ValidationError, match="framer is for transport tcp"):
        parse_config(
            {"devices": [{"name": "x", "profile": "eastron_sdm120", "transport": "rtu",
                          "serial_port": "/dev/ttyUSB0", "framer": "rtu"}]},
            "site.yaml",
        )  # fmt: skip


# --------------------------------------------------------------- coalescing with gap filling


async def _requests_per_poll(profile: str, polls: int = 3, **sim_kwargs) -> tuple[list[int], dict]:
    sim = SimulatedDevice(shipped_profiles()[profile], **sim_kwargs)
    srv = await SimServer({1: sim}).start()
    cfg = config_for([{"name": "d", "profile": profile, "port": srv.port, "timeout_s": 5.0}])
    gw = Gateway(cfg)
    counts, last = [], {}
    try:
        for _ in range(polls):
            before = sim.requests
            last = {s.channel: s for s in await gw.poll_once(gw.devices["d"])}
            counts.append(sim.requests - before)
    finally:
        gw.close()
        await srv.stop()
    return counts, last


async def test_sdm630_is_read_in_one_request_the_simulator_fills_the_gaps():
    counts, last = await _requests_per_poll("eastron_sdm630")
    assert counts == [1, 1, 1]
    assert {s.quality for s in last.values()} == {Quality.GOOD}


async def test_sunspec_inverter_every_register_in_two_requests():
    prof = shipped_profiles()["sunspec_inverter"]
    sim = SimulatedDevice(prof)
    srv = await SimServer({1: sim}).start()
    cfg = config_for(
        [
            {
                "name": "inv",
                "profile": "sunspec_inverter",
                "port": srv.port,
                "timeout_s": 5.0,
                "channels": {
                    n: f"inv.{n}" for n, r in prof.registers.items() if r.type not in {"sunssf"}
                },
            }
        ]
    )
    gw = Gateway(cfg)
    try:
        await gw.poll_once(gw.devices["inv"])  # discovery + first read
        before = sim.requests
        values = await gw.poll_once(gw.devices["inv"])
        assert sim.requests - before == 2
        assert len(gw.devices["inv"].blocks) == 2
        assert all(s.quality == Quality.GOOD for s in values)
    finally:
        gw.close()
        await srv.stop()


async def test_a_device_refusing_gap_reads_is_split_and_stays_split():
    counts, last = await _requests_per_poll("eastron_sdm630", refuse_gap_reads=True)
    # the bridged read is refused with exception 2, then three exact reads, every time after
    assert counts == [4, 3, 3]
    assert {s.quality for s in last.values()} == {Quality.GOOD}


def test_no_gap_fill_and_max_registers_settings():
    regs = {f"r{a}": {"address": a, "function": 3} for a in (0, 1, 5, 6, 20)}
    base = {"name": "g", "registers": regs}
    spans = lambda p: [(b.address, b.count) for b in plan_reads(p, p.registers)]  # noqa: E731
    assert spans(parse_profile(base, "g.yaml")) == [(0, 2), (5, 2), (20, 1)]
    assert spans(parse_profile({**base, "max_gap": 3}, "g.yaml")) == [(0, 7), (20, 1)]
    assert spans(parse_profile({**base, "max_gap": 20}, "g.yaml")) == [(0, 21)]
    assert spans(parse_profile({**base, "max_gap": 20, "max_registers": 10}, "g.yaml")) == [
        (0, 7),
        (20, 1),
    ]
    assert spans(parse_profile({**base, "max_gap": 20, "no_gap_fill": True}, "g.yaml")) == [
        (0, 2),
        (5, 2),
        (20, 1),
    ]


# --------------------------------------------------------------- busy / silent gateway


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "busy"},
        {"kind": "exception", "code": 0x0A},
        {"kind": "exception", "code": 0x0B},
    ],
)
async def test_busy_or_silent_gateway_is_backed_off_and_transitions_logged_once(fault, caplog):
    clock = FakeClock()
    sim = SimulatedDevice(
        shipped_profiles()["eastron_sdm120"],
        clock=clock,
        faults=[FaultSpec(**fault, start_s=10, duration_s=100)],
    )
    srv = await SimServer({1: sim}).start()
    cfg = config_for([{"name": "m", "profile": "eastron_sdm120", "port": srv.port,
                       "poll_interval_s": 1.0, "timeout_s": 5.0}])  # fmt: skip
    policy = RetryPolicy(busy_retries=1, busy_backoff_s=0.001, dead_after=3, backoff_max_s=30)
    gw = Gateway(cfg, clock=clock, policy=policy)
    dev = gw.devices["m"]
    caplog.set_level(logging.INFO, logger="modbus_gateway.poller")
    try:
        await gw.poll_once(dev)
        assert dev.up is True and [t[1] for t in dev.transitions] == ["up"]
        clock.advance(10)  # the fault starts
        intervals = []
        for _ in range(6):
            samples = await gw.poll_once(dev)
            intervals.append(gw._interval(dev))
            assert {s.quality for s in samples} <= {Quality.STALE, Quality.MISSING}
        assert dev.status == "backoff" and dev.failures == 6
        assert intervals == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0]  # exponential after dead_after
        clock.advance(100)  # the fault is over
        await gw.poll_once(dev)
        assert dev.status == "ok" and gw._interval(dev) == 1.0
    finally:
        gw.close()
        await srv.stop()
    assert [t[1] for t in dev.transitions] == ["up", "down", "recovered"]
    msgs = [r.getMessage() for r in caplog.records if r.name == "modbus_gateway.poller"]
    assert sum("down after" in m for m in msgs) == 1
    assert sum(m.endswith("recovered") for m in msgs) == 1


async def test_on_time_counts_slots_skipped_by_backoff():
    # nobody listens on this port: every poll fails, the device is backed off
    from tests.net import pick_port

    port = pick_port()
    cfg = config_for(
        [
            {
                "name": "gone",
                "profile": "eastron_sdm120",
                "port": port,
                "poll_interval_s": 0.1,
                "timeout_s": 0.2,
            }
        ]
    )
    gw = Gateway(cfg, policy=RetryPolicy(dead_after=1, backoff_max_s=0.8))
    try:
        await gw.run(3.0)
    finally:
        gw.close()
    dev = gw.devices["gone"]
    assert dev.polls_skipped > 0
    assert dev.on_time_pct == pytest.approx(
        100.0 * dev.polls_on_time / (dev.polls + dev.polls_skipped)
    )
    assert dev.on_time_pct < 100.0 * dev.polls_on_time / dev.polls
    row = gw.status_rows()[0]
    assert row["skipped"] == dev.polls_skipped and row["on_time_pct"] == dev.on_time_pct


# --------------------------------------------------------------- one-shot read and bus scan


@pytest.mark.parametrize("framer", ["socket", "rtu"])
async def test_cli_bus_scan_finds_the_unit_ids_that_answer(framer):
    import typer
    from typer.testing import CliRunner

    from noaber.cli.gateway import register

    profs = shipped_profiles()
    srv = await SimServer(
        {3: SimulatedDevice(profs["eastron_sdm120"]), 9: SimulatedDevice(profs["victron_gx"])},
        framer=framer,
    ).start()
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    args = ["gateway", "scan", f"127.0.0.1:{srv.port}", "--units", "1-4,8-10", "--timeout", "0.3",
            "--framer", framer]  # fmt: skip
    try:
        res = await asyncio.to_thread(CliRunner().invoke, app, args)
        read = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["gateway", "read", f"127.0.0.1:{srv.port}", "--profile", "eastron_sdm120",
             "--unit", "3", "--framer", framer, "--timeout", "5"],
        )  # fmt: skip
    finally:
        await srv.stop()
    assert res.exit_code == 0, res.output
    rows = re.findall(r"│\s*(\d+)\s*│\s*(answers[^│]*?)\s*│", res.output)
    assert [int(u) for u, _ in rows] == [3, 9], res.output
    assert "2 of 7" in res.output
    assert read.exit_code == 0, read.output
    assert "voltage_v" in read.output and "GOOD" in read.output


def test_units_range_errors():
    from energy.errors import NoaberError
    from noaber.cli.gateway import _unit_range

    assert _unit_range("1-3,7,2") == [1, 2, 3, 7]
    for bad in ("0-5", "1-248", "5-2", "x"):
        with pytest.raises(NoaberError, match="--units"):
            _unit_range(bad)
