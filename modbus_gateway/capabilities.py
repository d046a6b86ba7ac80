"""Small protocols per device capability (docs/SOURCES.md: evcc ``api/api.go``, ``api.Cap``).

The core asks what a device can do, not what brand it is::

    dev = service.devices()["charger-1"]   # or device(gateway, writer, "charger-1")
    if isinstance(dev, Meter):            # runtime-checkable protocols
        reading = dev.power_w()           # latest polled value, quality and time
    if isinstance(dev, PowerControl):
        written = await dev.write(-3000, requested_by="mpc")   # clamped, read back
        check = await dev.check(requested_by="mpc")             # reports what was written?
        await dev.release(requested_by="mpc")                   # the device's safe default
    if isinstance(dev, PowerLimit):                             # a PV inverter
        await dev.limit_w(4000, requested_by="mpc")             # produce at most 4 kW

A profile names which of its registers serves each capability in ``capabilities:``
(``power_w: total_power_w``); units convert from the register's ``unit`` (kWh -> Wh, kW -> W).
A :class:`PowerControl` always takes the device's own power [W, + = charging]; what a device
means by its setpoint register is translated here: a Victron ESS regulates the power at its
grid connection, so it is given the grid setpoint that leaves the asked battery power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from energy.errors import NoaberError
from energy.samples import Quality
from modbus_gateway.poller import DeviceRuntime, Gateway
from modbus_gateway.profiles import Profile
from modbus_gateway.writes import ControlCheck, SafeWriter

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
class Device(Protocol):
    """Every view: the device's ``name`` and its profile's ``kind`` (meter, battery, charger, ...)."""

    name: str
    kind: str


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


@dataclass(frozen=True, slots=True)
class Written:
    """A power setpoint as it went to a device [W].

    ``requested_w`` is the setpoint asked of the device: the power asked for, or for a device
    that regulates its grid connection (Victron ESS) the grid setpoint that gives it;
    ``written_w`` is what was written, ``requested_w`` within the profile's and the site's
    limits and the ramp; ``read_back`` says the device read ``written_w`` back (False: the
    setpoint was unchanged and not re-written).
    """

    requested_w: float
    written_w: float
    read_back: bool


@runtime_checkable
class PowerControl(Device, Protocol):
    """A device that takes a power setpoint [W, + = charging/consumption].

    ``asset`` is the name its setpoints are addressed by (the site asset it drives, else the
    device's name); ``enabled`` is True while it is under control (from the first write until
    :meth:`release`); ``release`` writes the profile's safe default: control back to the device.
    """

    asset: str

    @property
    def enabled(self) -> bool: ...

    async def write(self, power_w: float, requested_by: str) -> Written: ...

    async def release(self, requested_by: str) -> None: ...

    async def check(self, requested_by: str) -> ControlCheck: ...


@runtime_checkable
class PowerLimit(Device, Protocol):
    """A producer whose output can be capped: PV curtailment [W, >= 0, the most it may produce].

    ``limit_w(max_production_w)`` writes the active-power limit (SunSpec model 123
    ``WMaxLimPct`` in % of ``WMax``, enabled with ``WMaxLim_Ena`` and a revert timeout) within
    the profile's and the site's limits and the ramp, read back; ``release`` drops the limit
    (the profile's safe default). The device drops it by itself when the controller dies.
    """

    asset: str

    @property
    def enabled(self) -> bool: ...

    async def limit_w(self, max_production_w: float, requested_by: str) -> Written: ...

    async def release(self, requested_by: str) -> None: ...

    async def check(self, requested_by: str) -> ControlCheck: ...


def capabilities(profile: Profile) -> set[str]:
    """What a profile can do: the capability values it maps, plus ``power_control``."""
    caps: set[str] = set(profile.capabilities)
    if profile.control is not None:
        caps.add("power_control")
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
    def __init__(self, runtime: DeviceRuntime):
        self._rt = runtime
        self.name = runtime.name
        self.kind = runtime.profile.kind

    def _read(self, capability: str) -> Reading:
        prof = self._rt.driver.profile
        reg = prof.capabilities[capability]
        value, quality, ts_ns = self._rt.values.get(reg, (math.nan, Quality.MISSING, 0))
        if isinstance(value, str):
            return Reading(math.nan, Quality.INVALID, ts_ns)
        return Reading(float(value) * _factor(prof.registers[reg].unit, capability), quality, ts_ns)


class _PowerControlView(_Base):
    """:class:`PowerControl` through the gateway's :class:`SafeWriter` (limits, read-back)."""

    def __init__(self, runtime: DeviceRuntime, writer: SafeWriter, asset: str):
        super().__init__(runtime)
        self._writer = writer
        self.asset = asset

    @property
    def enabled(self) -> bool:
        return self._writer.controls[self.asset].enabled

    async def _local_net_w(self) -> float:
        """An ESS's own net consumption [W]: its grid power minus its battery power.

        Read from the device at the time of the setpoint (its profile's capabilities
        ``grid_power_w`` and ``power_w``; both must be GOOD), through the device's link.
        """
        prof = self._rt.driver.profile
        caps = prof.capabilities
        if "grid_power_w" not in caps or "power_w" not in caps:
            raise NoaberError(
                f"{self.name}: a grid-power setpoint needs the capabilities grid_power_w and "
                f"power_w in profile {prof.name}"
            )
        grid_reg, battery_reg = caps["grid_power_w"], caps["power_w"]
        values = await self._rt.driver.read_values([grid_reg, battery_reg])
        grid, battery = values[grid_reg], values[battery_reg]
        if grid.quality != Quality.GOOD or battery.quality != Quality.GOOD:
            raise NoaberError(
                f"{self.name}: no good grid and battery power reading to set the ESS grid "
                f"setpoint from ({grid.quality.name.lower()}, {battery.quality.name.lower()})"
            )
        grid_w = float(grid.value) * _factor(prof.registers[grid_reg].unit, "grid_power_w")  # type: ignore[arg-type]
        battery_w = float(battery.value) * _factor(prof.registers[battery_reg].unit, "power_w")  # type: ignore[arg-type]
        return grid_w - battery_w

    async def write(self, power_w: float, requested_by: str) -> Written:
        """Command the device's power [W, + = charging]; see :class:`Written`.

        A device that regulates its grid connection (``setpoint_quantity: grid_power``, a
        Victron ESS) gets the grid setpoint ``power_w`` plus its own measured net consumption
        (``grid - battery``), so that ``battery = setpoint - net`` is ``power_w``.
        """
        ctl = self._writer.controls[self.asset]
        requested = power_w
        if ctl.spec.setpoint_quantity == "grid_power":
            requested = round(power_w + await self._local_net_w(), 1)
        written = await self._writer.apply(self.asset, requested, requested_by)
        return Written(requested, written, ctl.read_back)

    async def release(self, requested_by: str) -> None:
        await self._writer.release(self.asset, requested_by)

    async def check(self, requested_by: str) -> ControlCheck:
        """Compare what the device reports with what was written (re-enable if it left
        control); see :class:`~modbus_gateway.writes.ControlCheck`."""
        return await self._writer.check(self.asset, requested_by)


class _PowerLimitView(_Base):
    """:class:`PowerLimit` through the gateway's :class:`SafeWriter`."""

    def __init__(self, runtime: DeviceRuntime, writer: SafeWriter, asset: str):
        super().__init__(runtime)
        self._writer = writer
        self.asset = asset

    @property
    def enabled(self) -> bool:
        return self._writer.controls[self.asset].enabled

    async def limit_w(self, max_production_w: float, requested_by: str) -> Written:
        """Cap production at ``max_production_w`` [W, >= 0]; see :class:`Written`."""
        if not math.isfinite(max_production_w) or max_production_w < 0:
            raise NoaberError(
                f"{self.name}: a production limit is a power >= 0 W, got {max_production_w}"
            )
        written = await self._writer.apply(self.asset, max_production_w, requested_by)
        ctl = self._writer.controls[self.asset]
        return Written(max_production_w, written, ctl.read_back)

    async def release(self, requested_by: str) -> None:
        await self._writer.release(self.asset, requested_by)

    async def check(self, requested_by: str) -> ControlCheck:
        return await self._writer.check(self.asset, requested_by)


def device(gateway: Gateway, writer: SafeWriter | None, name: str) -> Device:
    """A view of a polled device that has exactly the capability methods its profile allows.

    With a ``writer``, a device that takes a power setpoint is a :class:`PowerControl`.
    """
    rt = gateway.devices.get(name)
    if rt is None:
        raise NoaberError(f"no device {name!r}")
    caps = capabilities(rt.profile)
    ns: dict[str, object] = {}
    for cap in CAPABILITY_UNITS:
        if cap in caps:
            ns[cap] = lambda self, _c=cap: self._read(_c)
    cls_name = f"Device_{rt.profile.name}"
    if "power_control" in caps and writer is not None:
        asset = next(a for a, c in writer.controls.items() if c.dev is rt)
        assert rt.profile.control is not None
        if rt.profile.control.setpoint_quantity == "production_limit":
            return type(cls_name, (_PowerLimitView,), ns)(rt, writer, asset)
        return type(cls_name, (_PowerControlView,), ns)(rt, writer, asset)
    return type(cls_name, (_Base,), ns)(rt)
