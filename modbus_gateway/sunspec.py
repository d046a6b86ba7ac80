"""SunSpec auto-discovery: find "SunS", then walk the model blocks until 0xFFFF.

Source: SunSpec Information Model Specification (base addresses 40000, 50000 and 0; each model
is ID, L, then L data registers; the end model has ID 0xFFFF).
"""

from __future__ import annotations

from dataclasses import dataclass

from modbus_gateway.driver import ExceptionReply, Link, ShortReply

SUNSPEC_BASES = (40000, 50000, 0)
SUNS = [0x5375, 0x6E53]
MAX_MODELS = 64


@dataclass(frozen=True, slots=True)
class SunSpecModel:
    """One model block: ``model_id``, the address of its first data register, its length."""

    model_id: int
    data_address: int
    length: int


class NotSunSpec(Exception):
    """No "SunS" marker at any base address."""


async def discover(
    link: Link, unit_id: int, bases: tuple[int, ...] = SUNSPEC_BASES
) -> list[SunSpecModel]:
    """The model blocks of a SunSpec device, in map order.

    Raises :class:`NotSunSpec` when no base holds "SunS"; timeouts and lost links propagate.
    """
    for base in bases:
        try:
            regs = await link.read(unit_id, 3, base, 2)
        except (ExceptionReply, ShortReply):
            continue
        if regs == SUNS:
            break
    else:
        raise NotSunSpec(f"{link.name} unit {unit_id}: no SunSpec marker at {bases}")
    models = []
    addr = base + 2
    for _ in range(MAX_MODELS):
        model_id, length = await link.read(unit_id, 3, addr, 2)
        if model_id == 0xFFFF:
            break
        models.append(SunSpecModel(model_id, addr + 2, length))
        addr += 2 + length
    return models


def model_bases(models: list[SunSpecModel]) -> dict[int, int]:
    """Model id -> data address (the first block of a model id wins)."""
    out: dict[int, int] = {}
    for m in models:
        out.setdefault(m.model_id, m.data_address)
    return out
