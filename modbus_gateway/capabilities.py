"""Small protocols per device capability (docs/SOURCES.md: evcc ``api/api.go``, ``api.Cap``).

The core asks what a device can do, not what brand it is::

    dev = device(gateway, writer, "charger-1")
    if isinstance(dev, Meter):            # runtime-checkable protocols
        reading = dev.power_w()           # latest polled value, quality and time
    await dev.set_power_w(-3000, requested_by="mpc")   # PowerControl

A profile names which of its registers serves each capability in ``capabilities:``
(``power_w: total_power_w``); units convert from the register's ``unit`` (kWh -> Wh, kW -> W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from energy.errors import NoaberError
from energy.samples import Quality
from modbus_gateway.poller import DeviceRuntime, Gateway
from modbus_gateway.profiles import Profile
from modbus_gateway.writes import SafeWriter

#: Capability value -> the unit it is given in.
CAPABILITY_UNITS = {
    "power_w": "W",
    "energy_import_wh": "Wh",
    "energy_export_wh": "Wh",
    "soc_pct": "%",
    "grid_power_w": "W",  # at the connection a device regulates (Victron ESS), + = import
}
_TO_BASE = {("kWh", "Wh"): 1000.0, ("kW", "W"): 1000.0, ("MWh", "Wh"): 1e6}


@dataclass(frozen=True, slots=True)
class Reading:
    """The latest polled value with its quality and time (``ts_ns``, UTC; 0 if never read)."""

    value: float
    quality: Quality
    ts_ns: int


@runtime_checkable
class Meter(Protocol):
    def power_w(self) -> Reading: ...


@runtime_checkable
class EnergyMeter(Protocol):
    def energy_import_wh(self) -> Reading: ...

    def energy_export_wh(self) -> Reading: ...


@runtime_checkable
class Battery(Protocol):
    def soc_pct(self) -> Reading: ...


@runtime_checkable
class PowerControl(Protocol):
    async def set_power_w(self, power_w: float, requested_by: str) -> float: ...


def capabilities(profile: Profile) -> set[str]:
    """What a profile can do: the capability values it maps, plus ``set_power_w``."""
    caps: set[str] = set(profile.capabilities)
    if profile.control is not None and profile.control.setpoint_quantity == "device_power":
        caps.add("set_power_w")
    return caps


def _factor(register_unit: str, capability: str) -> float:
    want = CAPABILITY_UNITS[capability]
    if register_unit == want or register_unit == "":
        return 1.0
    try:
        return _TO_BASE[(register_unit, want)]
    except KeyError:
        raise NoaberError(
            f"cannot give {capability} [{want}] from a register in {register_unit}"
        ) from None


class _Base:
    def __init__(self, runtime: DeviceRuntime, writer: SafeWriter | None):
        self._rt = runtime
        self._writer = writer
        self.name = runtime.name

    def _read(self, capability: str) -> Reading:
        prof = self._rt.driver.profile
        reg = prof.capabilities[capability]
        value, quality, ts_ns = self._rt.values.get(reg, (math.nan, Quality.MISSING, 0))
        if isinstance(value, str):
            return Reading(math.nan, Quality.INVALID, ts_ns)
        return Reading(float(value) * _factor(prof.registers[reg].unit, capability), quality, ts_ns)


def device(gateway: Gateway, writer: SafeWriter | None, name: str) -> object:
    """A view of a polled device that has exactly the capability methods its profile allows."""
    rt = gateway.devices.get(name)
    if rt is None:
        raise NoaberError(f"no device {name!r}")
    caps = capabilities(rt.profile)
    ns: dict[str, object] = {}
    for cap in CAPABILITY_UNITS:
        if cap in caps:
            ns[cap] = lambda self, _c=cap: self._read(_c)
    if "set_power_w" in caps and writer is not None:
        asset = next(a for a, c in writer.controls.items() if c.dev is rt)

        async def set_power_w(self, power_w: float, requested_by: str) -> float:
            return await self._writer.apply(asset, power_w, requested_by)

        ns["set_power_w"] = set_power_w
    cls = type(f"Device_{rt.profile.name}", (_Base,), ns)
    return cls(rt, writer)
