"""Request coalescing: which read requests fetch a set of registers.

Adjacent registers of one function code (and one unit id) are read in one request; a request
spans a hole (an address no wanted register covers) only where the profile allows it: a declared
readable range, or a gap of at most ``Profile.gap_limit`` registers (``max_gap``; SunSpec models
are contiguous; ``no_gap_fill`` forbids it). A request never exceeds the profile's maximum length
(``max_read_count``/``max_registers``, at most 125 registers, 2000 coils or discrete inputs:
Modbus Application Protocol V1.1b3 clause 6.1-6.4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modbus_gateway.profiles import Profile


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers from ``address`` with ``function`` (3 or 4)."""

    function: int
    address: int
    count: int
    registers: tuple[str, ...]  # register names decoded from this block
    unit_id: int | None = None  # the register's own unit id (None: the device's)
    gap_filled: bool = False  # spans addresses no register of the profile defines

    @property
    def end(self) -> int:
        return self.address + self.count


def _readable(profile: Profile, function: int, start: int, end: int) -> bool:
    return any(
        r.function == function and r.start <= start and end <= r.end
        for r in profile.readable_ranges
    )


def _defined(profile: Profile, function: int, unit_id: int | None) -> set[int]:
    return {
        a
        for r in profile.registers.values()
        if r.function == function and r.unit_id == unit_id
        for a in range(r.address, r.address + r.words)
    }


def plan_reads(profile: Profile, names: Iterable[str], gap_fill: bool = True) -> list[ReadBlock]:
    """The fewest requests that read ``names`` (plus their scale-factor registers).

    Greedy over registers sorted by address, which is optimal for interval covering with a
    length cap: each block is extended while the next register starts at the block's end, inside
    a declared readable range or (``gap_fill``) within ``profile.gap_limit`` registers of it, and
    the total stays within ``profile.read_limit``. ``gap_fill=False`` bridges no gap (the plan
    for a device that refused a bridged read).
    """
    gap = profile.gap_limit if gap_fill else 0
    limit = profile.read_limit
    wanted = set(names)
    for n in list(wanted):
        sf = profile.registers[n].scale_register
        if sf is not None:
            wanted.add(sf)
    regs = sorted(
        ((profile.registers[n], n) for n in wanted),
        key=lambda x: (x[0].unit_id or 0, x[0].function, x[0].address, x[1]),
    )
    blocks: list[ReadBlock] = []
    cur: list = []  # [function, address, end, names, unit_id]
    for spec, name in regs:
        start, end = spec.address, spec.address + spec.words
        if cur and cur[0] == spec.function and cur[4] == spec.unit_id:
            new_end = max(cur[2], end)
            contiguous = (
                start <= cur[2]
                or start - cur[2] <= gap
                or _readable(profile, spec.function, cur[2], start)
            )
            cap = limit if spec.function in (3, 4) else 2000
            if contiguous and new_end - cur[1] <= cap:
                cur[2] = new_end
                cur[3].append(name)
                continue
        if cur:
            blocks.append(_block(profile, cur))
        cur = [spec.function, start, end, [name], spec.unit_id]
    if cur:
        blocks.append(_block(profile, cur))
    return blocks


def _block(profile: Profile, cur: list) -> ReadBlock:
    function, start, end, names, unit_id = cur
    known = _defined(profile, function, unit_id)
    filled = any(
        a not in known and not _readable(profile, function, a, a + 1) for a in range(start, end)
    )
    return ReadBlock(function, start, end - start, tuple(names), unit_id, filled)
