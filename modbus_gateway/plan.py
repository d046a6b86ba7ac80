"""Request coalescing: which read requests fetch a set of registers.

Adjacent registers of one function code (and one unit id) are read in one request; a request never spans a hole
(an address no wanted register covers) unless the profile declares the range readable, and
never exceeds the profile's maximum length (at most 125 registers, Modbus Application Protocol
V1.1b3 clause 6.3/6.4).
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

    @property
    def end(self) -> int:
        return self.address + self.count


def _readable(profile: Profile, function: int, start: int, end: int) -> bool:
    return any(
        r.function == function and r.start <= start and end <= r.end
        for r in profile.readable_ranges
    )


def plan_reads(profile: Profile, names: Iterable[str]) -> list[ReadBlock]:
    """The fewest requests that read ``names`` (plus their scale-factor registers).

    Greedy over registers sorted by address, which is optimal for interval covering with a
    length cap when blocks may not bridge holes: each block is extended while the next register
    starts at the block's end (or inside a declared readable range) and the total stays within
    ``profile.max_read_count``.
    """
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
            contiguous = start <= cur[2] or _readable(profile, spec.function, cur[2], start)
            if contiguous and new_end - cur[1] <= profile.max_read_count:
                cur[2] = new_end
                cur[3].append(name)
                continue
        if cur:
            blocks.append(ReadBlock(cur[0], cur[1], cur[2] - cur[1], tuple(cur[3]), cur[4]))
        cur = [spec.function, start, end, [name], spec.unit_id]
    if cur:
        blocks.append(ReadBlock(cur[0], cur[1], cur[2] - cur[1], tuple(cur[3]), cur[4]))
    return blocks
