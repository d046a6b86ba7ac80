"""Request coalescing: adjacent registers in one request, never across holes or too long."""

from __future__ import annotations

from modbus_gateway.plan import plan_reads
from modbus_gateway.profiles import parse_profile, shipped_profiles


def test_sdm630_one_request_with_gaps_filled_three_without():
    p = shipped_profiles()["eastron_sdm630"]
    blocks = plan_reads(p, p.registers)
    assert [(b.function, b.address, b.count, b.gap_filled) for b in blocks] == [
        (4, 0x00, 0x4C, True)
    ]
    blocks = plan_reads(p, p.registers, gap_fill=False)
    assert [(b.function, b.address, b.count) for b in blocks] == [
        (4, 0x00, 0x12),
        (4, 0x34, 2),
        (4, 0x46, 6),
    ]


def test_quasar_holes_are_never_read():
    p = shipped_profiles()["wallbox_quasar"]
    blocks = plan_reads(p, p.registers)
    spans = [(b.address, b.end) for b in blocks]
    assert spans == [(81, 82), (83, 84), (88, 89), (257, 258), (260, 261), (526, 527), (537, 539)]
    defined = {a for r in p.registers.values() for a in range(r.address, r.address + r.words)}
    for b in blocks:
        assert set(range(b.address, b.end)) <= defined


def test_max_length_and_function_codes_split():
    regs = {f"r{i}": {"address": i * 2, "type": "float32", "function": 4} for i in range(50)}
    regs["h"] = {"address": 0, "type": "uint16", "function": 3}
    p = parse_profile({"name": "x", "max_read_count": 30, "registers": regs}, "x.yaml")
    blocks = plan_reads(p, p.registers)
    assert all(b.count <= 30 for b in blocks)
    assert sum(b.count for b in blocks if b.function == 4) == 100
    assert [b.function for b in blocks].count(3) == 1
    assert len(blocks) == 1 + 4  # ceil(100 / 30) = 4: the minimum


def test_readable_range_bridges_declared_gaps_only():
    p = parse_profile(
        {
            "name": "x",
            "readable_ranges": [{"function": 3, "start": 0, "end": 20}],
            "registers": {
                "a": {"address": 0},
                "b": {"address": 10},
                "c": {"address": 30},
            },
        },
        "x.yaml",
    )
    blocks = plan_reads(p, ["a", "b", "c"])
    assert [(b.address, b.count) for b in blocks] == [(0, 11), (30, 1)]


def test_scale_factor_registers_are_added():
    p = shipped_profiles()["sunspec_storage"]
    blocks = plan_reads(p, ["soc_pct"])
    names = {n for b in blocks for n in b.registers}
    assert names == {"soc_pct", "SoC_SF"}
