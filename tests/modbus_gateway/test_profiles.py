"""Profiles: schema, precise errors, decode/encode of every type and order, quality flags."""

from __future__ import annotations

import math
import struct

import pytest

from energy.errors import NoaberError, ValidationError
from energy.samples import Quality
from modbus_gateway.profiles import (
    bytes_to_words,
    decode,
    encode,
    get_profile,
    load_profile,
    parse_profile,
    resolve_sunspec,
    shipped_profiles,
    words_to_bytes,
)

SHIPPED = [
    "eastron_sdm630",
    "eastron_sdm120",
    "carlo_gavazzi_em24",
    "victron_gx",
    "wallbox_quasar",
    "sunspec_storage",
    "sunspec_inverter",
]


def _profile(**regs):
    return parse_profile({"name": "t", "registers": regs}, "t.yaml")


def test_every_issue_profile_is_shipped():
    assert set(SHIPPED) <= set(shipped_profiles())


def test_sdm630_register_map_matches_the_issue():
    p = shipped_profiles()["eastron_sdm630"]
    addr = {n: r.address for n, r in p.registers.items()}
    assert addr["voltage_l1_v"] == 0x00 and addr["voltage_l3_v"] == 0x04
    assert addr["current_l1_a"] == 0x06 and addr["power_l1_w"] == 0x0C
    assert addr["total_power_w"] == 0x34 and addr["frequency_hz"] == 0x46
    assert addr["import_energy_kwh"] == 0x48 and addr["export_energy_kwh"] == 0x4A
    assert all(r.function == 4 and r.type == "float32" for r in p.registers.values())


def test_quasar_map_and_limits():
    p = shipped_profiles()["wallbox_quasar"]
    sp = p.registers["power_setpoint_w"]
    assert (sp.address, sp.type, sp.writable.min, sp.writable.max) == (260, "int16", -7400, 7400)
    assert p.control.enable[0].reg == "control_mode" and p.control.enable[0].value == 1
    assert p.registers["control_mode"].address == 81
    assert p.control.watchdog.reg == "modbus_idle_timeout_s"
    assert p.registers["modbus_idle_timeout_s"].address == 88
    assert p.registers["actual_power_w"].writable is None


@pytest.mark.parametrize(
    ("type_", "value", "wo", "bo"),
    [
        ("int16", -1234, "big", "big"),
        ("uint16", 54321, "big", "little"),
        ("int32", -123456789, "little", "big"),
        ("uint32", 4000000000, "big", "big"),
        ("float32", 230.5, "big", "big"),
        ("float32", -1.25, "little", "little"),
        ("int64", -(2**40) + 7, "little", "big"),
        ("float64", 12345.678, "big", "big"),
    ],
)
def test_encode_decode_roundtrip(type_, value, wo, bo):
    p = _profile(x={"address": 10, "type": type_, "word_order": wo, "byte_order": bo})
    spec = p.registers["x"]
    words = encode(p, spec, value)
    assert len(words) == spec.words
    d = decode(p, spec, words)
    assert d.quality == Quality.GOOD
    assert d.value == pytest.approx(value)


def test_word_and_byte_order_against_struct():
    raw = struct.pack(">f", 230.5)  # 0x43668000
    big = [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]
    assert big == [0x4366, 0x8000]
    assert words_to_bytes([0x8000, 0x4366], "little", "big") == raw
    assert words_to_bytes([0x6643, 0x0080], "big", "little") == raw
    assert bytes_to_words(raw, "little", "little") == [0x0080, 0x6643]


def test_em24_low_word_first_scaled():
    p = shipped_profiles()["carlo_gavazzi_em24"]
    spec = p.registers["total_power_w"]
    # -1234.5 W = -12345 * 0.1, int32 low word first
    raw = (-12345) & 0xFFFFFFFF
    d = decode(p, spec, [raw & 0xFFFF, raw >> 16])
    assert d.value == pytest.approx(-1234.5)


def test_scale_sign_and_range_quality():
    p = _profile(
        w={
            "address": 0,
            "type": "int16",
            "sign": -1,
            "scale": 10,
            "valid_min": -1000,
            "valid_max": 1000,
        }
    )
    spec = p.registers["w"]
    assert decode(p, spec, [5]).value == -50
    bad = decode(p, spec, [200])  # -2000 < -1000
    assert bad.quality == Quality.INVALID and math.isnan(bad.value)


def test_nan_is_invalid_and_short_is_invalid():
    p = shipped_profiles()["eastron_sdm630"]
    spec = p.registers["total_power_w"]
    assert decode(p, spec, [0x7FC0, 0x0000]).quality == Quality.INVALID
    assert decode(p, spec, [0xFFFF, 0xFFFF]).quality == Quality.INVALID
    assert decode(p, spec, [0x4366]).quality == Quality.INVALID  # one word of two


@pytest.mark.parametrize(
    ("type_", "words"),
    [
        ("int16", [0x8000]),
        ("uint16", [0xFFFF]),
        ("uint32", [0xFFFF, 0xFFFF]),
        ("int32", [0x8000, 0x0000]),
        ("float32", [0x7FC0, 0x0000]),
    ],
)
def test_sunspec_not_implemented_is_missing(type_, words):
    p = parse_profile(
        {"name": "s", "sunspec": True, "registers": {"x": {"address": 0, "type": type_}}}, "s.yaml"
    )
    d = decode(p, p.registers["x"], words)
    assert d.quality == Quality.MISSING and math.isnan(d.value)


def test_sunspec_scale_factor_and_resolution():
    p = shipped_profiles()["sunspec_storage"]
    soc = p.registers["soc_pct"]
    assert decode(p, soc, [655], scale_factor=-1).value == pytest.approx(65.5)
    assert decode(p, soc, [655], scale_factor=None).quality == Quality.INVALID
    r = resolve_sunspec(p, {1: 40004, 802: 40072, 124: 40136})
    assert r.registers["soc_pct"].address == 40072 + 9
    assert r.registers["SoC_SF"].address == 40072 + 54
    assert r.control is not None
    only_802 = resolve_sunspec(p, {802: 100})
    assert "discharge_rate_pct" not in only_802.registers and only_802.control is None


def test_string_register():
    p = _profile(s={"address": 0, "type": "string", "length": 4})
    words = [0x4E6F, 0x6162, 0x6572, 0x0000]
    assert decode(p, p.registers["s"], words).value == "Noaber"


def test_errors_name_file_and_path(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\nregisters:\n  p: {address: 70000, type: int16}\n", encoding="utf-8")
    with pytest.raises(ValidationError) as ei:
        load_profile(bad)
    assert "mine.yaml" in str(ei.value) and "registers.p.address" in str(ei.value)
    bad.write_text("name: mine\nregisters:\n  p: {address: 1, type: int17}\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"registers\.p\.type"):
        load_profile(bad)
    bad.write_text(
        "name: mine\nregisters:\n  p: {address: 1, function: 4, writable: {min: 0, max: 1}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="only holding registers"):
        load_profile(bad)
    bad.write_text(
        "name: mine\nregisters:\n  p: {address: 1, scale_register: q}\n", encoding="utf-8"
    )
    with pytest.raises(ValidationError, match=r"registers\.p\.scale_register"):
        load_profile(bad)
    bad.write_text(
        "name: mine\nregisters:\n  p: {address: 1}\ncontrol: {setpoint: p}\n", encoding="utf-8"
    )
    with pytest.raises(ValidationError, match=r"control\.failsafe: Field required"):
        load_profile(bad)  # a controllable profile must say how it fails safe
    bad.write_text(
        "name: mine\nregisters:\n  p: {address: 1}\ncontrol: {setpoint: p, failsafe: "
        "{kind: none, safe_state: keeps the last setpoint}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="not writable"):
        load_profile(bad)
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="line"):
        load_profile(bad)


def test_user_profile_without_code(tmp_path):
    f = tmp_path / "acme.yaml"
    f.write_text(
        "name: acme_meter\nkind: generic\nregisters:\n"
        "  power_w: {address: 3, type: int32, word_order: little, sim_value: 42}\n",
        encoding="utf-8",
    )
    p = get_profile("acme.yaml", tmp_path)
    assert p.name == "acme_meter" and p.registers["power_w"].words == 2
    with pytest.raises(NoaberError, match="unknown profile"):
        get_profile("no_such_profile")


def test_every_controllable_profile_declares_its_failsafe():
    """Each shipped profile that takes setpoints says how it becomes safe by itself, and keeps
    its watchdog alive well within that time."""
    controllable = {n: p for n, p in shipped_profiles().items() if p.control is not None}
    assert set(controllable) == {
        "victron_gx",
        "wallbox_quasar",
        "sunspec_storage",
        "sunspec_inverter",
        "fronius_symo",
        "sunspec_der_inverter",
    }
    for name, p in controllable.items():
        fs = p.control.failsafe
        assert fs.kind == "device_timeout" and fs.timeout_s is not None and fs.timeout_s <= 120, (
            name
        )
        assert fs.safe_state and fs.source, name
        refresh = min(
            x
            for x in (
                p.control.setpoint_refresh_s,
                p.control.watchdog and p.control.watchdog.refresh_s,
            )
            if x
        )
        assert refresh <= fs.timeout_s / 3, name
    gx = controllable["victron_gx"]
    # ESS mode 3 (external control) on the VE.Bus unit; the persisted grid setpoint is read-only
    assert gx.registers["ess_mode"].address == 2902 and gx.registers["ess_mode"].unit_id is None
    assert gx.control.enable[0].reg == "ess_mode" and gx.control.enable[0].value == 3
    assert (
        gx.registers["ess_setpoint_l1_w"].address,
        gx.registers["ess_setpoint_l1_w"].unit_id,
    ) == (37, 227)
    assert gx.registers["grid_setpoint_w"].writable is None
    assert gx.control.failsafe.reg is None  # fixed in the firmware
    inv = controllable["sunspec_inverter"]
    assert inv.control.setpoint_quantity == "production_limit"
    assert inv.control.failsafe.reg == "limit_revert_timeout_s"


def test_failsafe_declarations_are_checked():
    base = {
        "name": "t",
        "registers": {
            "p": {"address": 1, "type": "int16", "writable": {"min": -1000, "max": 1000}},
            "t": {
                "address": 2,
                "writable": {"min": 0, "max": 600},
                "watchdog_timeout_s": {"min": 1, "max": 120},
            },
            "u": {"address": 3, "writable": {"min": 0, "max": 600}},
        },
    }

    def prof(failsafe, **control):
        return parse_profile(
            {**base, "control": {"setpoint": "p", "failsafe": failsafe, **control}}, "t.yaml"
        )

    with pytest.raises(ValidationError, match="needs timeout_s"):
        prof({"kind": "device_timeout", "safe_state": "x"}, setpoint_refresh_s=5)
    with pytest.raises(ValidationError, match="must be shorter"):
        prof({"kind": "device_timeout", "timeout_s": 10, "safe_state": "x"}, setpoint_refresh_s=10)
    with pytest.raises(ValidationError, match="must declare watchdog_timeout_s"):
        prof(
            {"kind": "device_timeout", "register": "u", "timeout_s": 10, "safe_state": "x"},
            setpoint_refresh_s=2,
        )
    with pytest.raises(ValidationError, match="outside the register's watchdog range"):
        prof(
            {"kind": "device_timeout", "register": "t", "timeout_s": 300, "safe_state": "x"},
            setpoint_refresh_s=2,
        )
    with pytest.raises(ValidationError, match="needs the heartbeat register"):
        prof(
            {"kind": "controller_heartbeat", "timeout_s": 10, "safe_state": "x"},
            setpoint_refresh_s=2,
        )
    ok = prof(
        {"kind": "device_timeout", "register": "t", "timeout_s": 30, "safe_state": "x"},
        setpoint_refresh_s=5,
    )
    assert ok.control.failsafe.reg == "t"
    assert (
        prof({"kind": "none", "safe_state": "keeps the last setpoint"}).control.failsafe.kind
        == "none"
    )
