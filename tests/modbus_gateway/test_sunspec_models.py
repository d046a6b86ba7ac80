"""SunSpec register maps generated from the official definitions (pysunspec2)."""

from __future__ import annotations

import pytest

from modbus_gateway import sunspec_models
from modbus_gateway.profiles import parse_profile, shipped_profiles

pytest.importorskip("sunspec2")


def test_checked_in_models_are_what_pysunspec2_generates():
    """Regenerating from the installed package gives the checked-in file byte for byte."""
    fresh = sunspec_models.render(sunspec_models.generate())
    assert sunspec_models.MODELS_FILE.read_text(encoding="utf-8") == fresh
    assert sunspec_models.main(["--check"]) == 0


def test_generated_offsets_match_the_hand_typed_maps_they_replace():
    """The offsets typed by hand from the SunSpec models before the generator (git history of
    sunspec_inverter.yaml / sunspec_storage.yaml) are the generated ones."""
    hand = {
        (1, "Mn"): (0, "string"), (1, "Md"): (16, "string"), (1, "SN"): (48, "string"),
        (103, "W"): (12, "int16"), (103, "W_SF"): (13, "sunssf"), (103, "WH"): (22, "uint32"),
        (103, "WH_SF"): (24, "sunssf"), (103, "St"): (36, "uint16"),
        (121, "WMax"): (0, "uint16"), (121, "WMax_SF"): (20, "sunssf"),
        (123, "WMaxLimPct"): (3, "uint16"), (123, "WMaxLimPct_RvrtTms"): (5, "uint16"),
        (123, "WMaxLim_Ena"): (7, "uint16"), (123, "WMaxLimPct_SF"): (21, "sunssf"),
        (802, "WHRtg"): (1, "uint16"), (802, "SoC"): (9, "uint16"), (802, "CtrlHb"): (17, "uint16"),
        (802, "V"): (32, "uint16"), (802, "A"): (42, "int16"), (802, "W"): (45, "int16"),
        (802, "W_SF"): (61, "sunssf"), (124, "WChaMax"): (0, "uint16"),
        (124, "StorCtl_Mod"): (3, "uint16"), (124, "OutWRte"): (10, "int16"),
        (124, "InOutWRte_RvrtTms"): (13, "uint16"), (124, "InOutWRte_SF"): (23, "sunssf"),
    }  # fmt: skip
    for (model, name), (offset, type_) in hand.items():
        pt = sunspec_models.point(model, name)
        assert (pt.offset, pt.type) == (offset, type_), (model, name)
    lengths = {1: 66, 802: 62, 124: 24, 103: 50, 121: 30, 123: 24}  # the simulator's old table
    assert {m: sunspec_models.models()[m].length for m in lengths} == lengths


def test_der_models_701_to_704_and_the_active_power_limit():
    ms = sunspec_models.models()
    assert {701, 702, 703, 704, 111, 113, 120, 122} <= set(ms)
    # 704 DER AC controls: the active power limit in % of WMaxRtg, enable and revert time
    wset = sunspec_models.point(704, "WMaxLimPct")
    assert wset.access == "RW" and wset.sf == "WMaxLimPct_SF"
    assert sunspec_models.point(704, "WMaxLimPctEna").access == "RW"
    assert sunspec_models.point(704, "WMaxLimPctRvrtTms").type == "uint32"
    # 701 measurements: total active power with its scale factor
    assert sunspec_models.point(701, "W").sf == "W_SF"
    # 113 is the float form of 103: no scale factors
    assert sunspec_models.point(113, "W").type == "float32"
    assert sunspec_models.point(113, "W").sf is None
    # a repeating block (160 MPPT modules) is not flattened
    assert ms[160].repeat_length == 20


def test_a_point_fills_address_type_and_scale_factor():
    p = parse_profile(
        {
            "name": "pt",
            "sunspec": True,
            "sunspec_models": [103],
            "registers": {"power": {"model": 103, "point": "W", "sign": -1}},
        },
        "pt.yaml",
    )
    r = p.registers["power"]
    assert (r.address, r.type, r.scale_register, r.unit) == (12, "int16", "W_SF", "W")
    assert p.registers["W_SF"].address == 13 and p.registers["W_SF"].type == "sunssf"


@pytest.mark.parametrize(
    ("reg", "match"),
    [
        ({"model": 103, "point": "Nope"}, "has no point 'Nope'"),
        ({"model": 999, "point": "W"}, "model 999 is not generated"),
        ({"point": "W"}, "needs its model"),
        ({"model": 103, "point": "W", "address": 5}, "has address 12, not 5"),
        ({"model": 103, "point": "W", "writable": {"min": 0, "max": 1}}, "read-only"),
    ],
)
def test_bad_points_are_named(reg, match):
    from energy.errors import ValidationError

    with pytest.raises(ValidationError, match=match):
        parse_profile(
            {"name": "pt", "sunspec": True, "sunspec_models": [103], "registers": {"x": reg}},
            "pt.yaml",
        )


def test_shipped_sunspec_profiles_name_their_points():
    for name, prof in shipped_profiles().items():
        if not prof.sunspec:
            continue
        for rname, r in prof.registers.items():
            assert r.model is not None and r.point is not None, (name, rname)
            pt = sunspec_models.point(r.model, r.point)
            assert (r.address, r.type) == (pt.offset, pt.type), (name, rname)


def test_a_sunspec_register_is_never_written_before_discovery():
    """Until discovery gave its model a base address, a SunSpec register's address is relative
    (WMaxLimPct at 3 of model 123): writing it would hit whatever the device keeps at 3."""
    import asyncio

    from modbus_gateway.driver import Driver, WriteRefused
    from modbus_gateway.profiles import get_profile, resolve_sunspec

    class Link:
        def __init__(self) -> None:
            self.writes: list[tuple[int, int, list[int]]] = []

        async def write(self, unit, address, words):
            self.writes.append((unit, address, list(words)))

    prof = get_profile("sunspec_inverter")
    link = Link()
    raw = Driver(link, 1, prof)  # type: ignore[arg-type]
    with pytest.raises(WriteRefused, match="not discovered"):
        asyncio.run(raw.write_value("limit_enabled", 1))
    assert link.writes == [] and not prof.addresses_known
    resolved = resolve_sunspec(
        prof, {m: 40_000 + 100 * i for i, m in enumerate(prof.sunspec_models)}
    )
    assert resolved.addresses_known and not prof.addresses_known  # the original stays relative
    asyncio.run(Driver(link, 1, resolved).write_value("limit_enabled", 1))  # type: ignore[arg-type]
    addr = resolved.registers["limit_enabled"].address
    assert link.writes == [(1, addr, [1])] and addr > 40_000
    # a plain (non-SunSpec) profile's addresses are absolute from the file
    assert get_profile("wallbox_quasar").addresses_known
