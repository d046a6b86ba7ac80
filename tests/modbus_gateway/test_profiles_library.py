"""The device library: every shipped profile cites its source, is served by the simulator and
read back with mbpoll (a Modbus master we did not write), which must agree with the driver.

mbpoll reads the raw registers (``-t 3:hex`` / ``-t 4:hex``) and, for 32-bit integers and
floats, decodes them itself (``-t 4:int`` / ``-t 4:float``, ``-B`` for big-endian word
order); the test turns those into engineering units with the profile's scale (and the scale
factor register, also read with mbpoll) and compares with :class:`Driver`'s decoded value.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct

import pytest

from energy.samples import Quality
from modbus_gateway.driver import Driver, Link
from modbus_gateway.profiles import (
    SUNSPEC_NOT_IMPLEMENTED,
    Profile,
    RegisterSpec,
    resolve_sunspec,
    shipped_profiles,
)
from modbus_gateway.simulator import SimServer, SimulatedDevice
from modbus_gateway.sunspec import discover, model_bases
from tests.conftest import need_executable

PROFILES = sorted(shipped_profiles())
#: Registers compared per profile (a handful keeps the whole run short).
PER_PROFILE = 4
#: Vendors and device classes the issue names: each has at least one profile.
NAMED = {
    "sma": "sma_", "fronius": "fronius_", "solaredge": "solaredge_", "huawei inverter": "huawei_sun2000",
    "janitza": "janitza_", "socomec": "socomec_", "abb meter": "abb_b23", "siemens pac": "siemens_pac",
    "alfen": "alfen_", "second charger": "abb_terra_ac", "second battery": "huawei_luna2000",
    "sunspec der": "sunspec_der_inverter",
}  # fmt: skip


def test_at_least_30_profiles_each_with_its_source():
    profs = shipped_profiles()
    assert len(profs) >= 30
    for name, p in profs.items():
        assert len(p.source) > 20, f"{name}: no source document"
        assert p.source != p.description, name
    for what, prefix in NAMED.items():
        assert any(n.startswith(prefix) for n in profs), what


def test_controllable_profiles_declare_a_failsafe_and_the_rest_are_read_only():
    for name, p in shipped_profiles().items():
        if p.control is None:
            continue
        fs = p.control.failsafe
        assert fs.kind != "none" and fs.timeout_s and fs.source, name


def _pick(prof: Profile) -> list[str]:
    """Capability registers first, then the others; numbers only (no strings, bits, SFs)."""
    ok = [
        n
        for n, r in prof.registers.items()
        if r.type not in ("string", "sunssf", "bool") and r.unit_id is None
    ]
    first = [n for n in prof.capabilities.values() if n in ok]
    rest = [n for n in ok if n not in first]
    return list(dict.fromkeys(first + rest))[:PER_PROFILE]


async def _mbpoll(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        need_executable("mbpoll"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


def _values(out: str) -> dict[int, str]:
    return {int(a): v for a, v in re.findall(r"\[(\d+)\]:\s+(\S+)", out)}


async def _read(port: int, unit: int, spec: RegisterSpec, kind: str = "hex") -> dict[int, str]:
    table = "4" if spec.function == 3 else "3"
    count = spec.words if kind == "hex" else 1
    args = ["-m", "tcp", "-p", str(port), "-a", str(unit), "-t", f"{table}:{kind}", "-0"]
    args += ["-r", str(spec.address), "-c", str(count), "-1", "-o", "5"]
    return _values(await _mbpoll(*args, "127.0.0.1"))


def _from_words(prof: Profile, spec: RegisterSpec, words: list[int]) -> float:
    """Our own decoding of mbpoll's raw words (struct, not :func:`profiles.decode`)."""
    wo, bo = prof.words_of(spec)
    ws = words if wo == "big" else list(reversed(words))
    data = b"".join(w.to_bytes(2, "big" if bo == "big" else "little") for w in ws)
    code = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
            "int64": ">q", "uint64": ">Q", "float64": ">d"}[spec.type]  # fmt: skip
    return float(struct.unpack(code, data)[0])


@pytest.mark.parametrize("name", PROFILES)
async def test_profile_read_back_with_mbpoll(name: str):
    prof = shipped_profiles()[name]
    sim = SimulatedDevice(prof, frozen=True)  # values stay put between the two masters
    unit = prof.default_unit_id or 1
    srv = await SimServer({unit: sim}).start()
    link = Link.tcp("127.0.0.1", srv.port, 5.0)
    try:
        p = prof
        if prof.sunspec:
            p = resolve_sunspec(prof, model_bases(await discover(link, unit)))
            marker = await _read(srv.port, unit, RegisterSpec(address=40000, type="uint32"))
            assert [int(marker[40000], 16), int(marker[40001], 16)] == [0x5375, 0x6E53]
        names = _pick(p)
        assert names, f"{name}: nothing numeric to compare"
        got = await Driver(link, unit, p).read_values(names)
        for reg in names:
            spec = p.registers[reg]
            raw = await _read(srv.port, unit, spec)
            words = [int(raw[spec.address + i], 16) for i in range(spec.words)]
            if p.sunspec and int.from_bytes(
                b"".join(w.to_bytes(2, "big") for w in words), "big"
            ) == SUNSPEC_NOT_IMPLEMENTED.get(spec.type):
                assert got[reg].quality == Quality.MISSING, (name, reg)  # "not implemented"
                continue
            value = _from_words(p, spec, words)
            if spec.type in ("int32", "uint32", "float32"):
                # mbpoll's own 32-bit decoding agrees with ours
                args = ("float" if spec.type == "float32" else "int",)
                wo = p.words_of(spec)[0]
                out = await _mbpoll(
                    "-m", "tcp", "-p", str(srv.port), "-a", str(unit),
                    "-t", f"{'4' if spec.function == 3 else '3'}:{args[0]}", "-0",
                    *(["-B"] if wo == "big" else []),
                    "-r", str(spec.address), "-c", "1", "-1", "-o", "5", "127.0.0.1",
                )  # fmt: skip
                theirs = float(_values(out)[spec.address])
                if spec.type == "uint32" and theirs < 0:
                    theirs += 2**32  # mbpoll prints 32-bit integers signed
                assert theirs == pytest.approx(value, rel=1e-5), (name, reg)  # mbpoll: 6 digits
            scale = spec.scale
            if spec.scale_register is not None:
                sf_spec = p.registers[spec.scale_register]
                sf_raw = await _read(srv.port, unit, sf_spec)
                sf = struct.unpack(">h", int(sf_raw[sf_spec.address], 16).to_bytes(2, "big"))[0]
                scale *= 10.0**sf
            expected = value * scale * spec.sign
            d = got[reg]
            assert d.quality == Quality.GOOD, (name, reg, d)
            assert isinstance(d.value, float) and math.isfinite(d.value)
            assert d.value == pytest.approx(expected, rel=1e-6, abs=1e-9), (name, reg, words)
    finally:
        link.close()
        await srv.stop()


async def test_mbpoll_comparison_catches_a_wrong_scale():
    """The comparison can fail: a profile with a scale the simulator did not encode with
    disagrees with what mbpoll reads."""
    prof = shipped_profiles()["abb_b23"]
    sim = SimulatedDevice(prof, frozen=True)
    srv = await SimServer({1: sim}).start()
    try:
        spec = prof.registers["voltage_l1_v"]
        raw = await _read(srv.port, 1, spec)
        words = [int(raw[spec.address + i], 16) for i in range(spec.words)]
        right = _from_words(prof, spec, words) * spec.scale
        assert right == pytest.approx(sim.get("voltage_l1_v"))
        assert right * 10 != pytest.approx(sim.get("voltage_l1_v"))
        assert 200 < right < 260  # 0.1 V per count: a real mains voltage
    finally:
        await srv.stop()


@pytest.mark.parametrize("name", ["fronius_symo", "sunspec_der_inverter"])
async def test_new_controllable_inverters_limit_and_fail_safe_by_themselves(serve, name):
    """Fronius (model 123) and the SunSpec DER inverter (model 704): the production limit
    goes out through SafeWriter, ramps, reads back; when the gateway stops refreshing, the
    inverter's own revert timer drops the limit (the profile's declared fail-safe)."""
    from modbus_gateway.capabilities import PowerLimit, device
    from modbus_gateway.poller import Gateway
    from modbus_gateway.writes import SafeWriter
    from tests.modbus_gateway.conftest import FakeClock, config_for

    clock = FakeClock()
    srv, sim = await serve(name, clock=clock)
    sim.time_of_day_s = 12 * 3600.0  # noon: about 8 kW available
    dev = {"name": "inv", "profile": name, "port": srv.port, "asset": "pv"}
    gw = Gateway(config_for([dev]), clock=clock)
    writer = SafeWriter(gw)
    try:
        await gw.poll_once(gw.devices["inv"])  # SunSpec discovery
        view = device(gw, writer, "inv")
        assert isinstance(view, PowerLimit)
        inv = gw.devices["inv"]
        produced = abs(float(inv.values[inv.profile.capabilities["power_w"]][0]))
        assert 3000 < produced < 10_000
        first = await view.limit_w(3000, requested_by="mpc")
        # ramps down at 1 kW/s from what the inverter produces now, not from no limit
        assert first.read_back and first.written_w == pytest.approx(
            produced - 1000, abs=10
        )  # 0.1 % of WMax
        for _ in range(8):
            clock.advance(1)
            await writer.keepalive_once()
        assert sim.get("limit_pct") == 30.0 and sim.get("limit_enabled") == 1
        assert sim.get("limit_revert_timeout_s") == 60
        sim.read(3, 40000, 2)
        assert sim.get("ac_power_w") == -3000
        # no refresh for longer than the fail-safe timeout: the inverter drops the limit
        clock.advance(61)
        sim.tick()
        assert sim.get("limit_enabled") == 0
        sim.read(3, 40000, 2)
        assert sim.get("ac_power_w") < -7000
    finally:
        gw.close()
