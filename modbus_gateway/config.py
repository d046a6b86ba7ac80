"""The gateway's site configuration: a ``devices:`` section (and ``buses:`` for RS-485).

It is a section of a site description: other top-level keys are ignored, so the same file can
carry the site's assets, tariffs and so on. Example::

    buses:
      rs485-1: {port: /dev/ttyUSB0, baudrate: 9600, inter_frame_pause_s: 0.03}
    devices:
      - name: meter-main
        profile: eastron_sdm630          # shipped name, or a path to the user's own YAML
        transport: tcp
        host: 127.0.0.1
        port: 5020
        unit_id: 1
        poll_interval_s: 1
        channels: {total_power_w: main.power_w, import_energy_kwh: main.import_kwh}
        faults: [{kind: busy, probability: 0.2}]   # only used by ``noaber simulate``
      - name: meter-barn                 # RS-485 behind a serial-to-Ethernet converter
        profile: eastron_sdm120
        host: 192.168.1.40
        port: 4001
        framer: rtu                      # RTU frames (with CRC) over TCP
      - name: ev-1
        profile: wallbox_quasar
        transport: rtu
        bus: rs485-1
        unit_id: 2
        asset: ev-charger-1              # name the optimizer uses for setpoints
        limits: {power_w_min: -3700, power_w_max: 7400, ramp_w_per_s: 2000}  # see LimitsConfig
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from energy.errors import ValidationError as NoaberValidationError
from energy.setpointlimits import LimitsConfig as LimitsConfig  # the schema lives in the core
from energy.yamlio import load_yaml_file
from modbus_gateway.profiles import Profile, _where, get_profile

FaultKind = Literal["timeout", "busy", "exception", "short", "garbage", "disconnect"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultSpec(_Strict):
    """A fault the simulator injects: in a time window, with a probability per request."""

    kind: FaultKind
    code: int = Field(default=4, ge=1, le=255)  # exception code for kind=exception
    start_s: float = Field(default=0.0, ge=0)  # after simulator start
    duration_s: float | None = Field(default=None, gt=0)  # None: until the end
    probability: float = Field(default=1.0, ge=0, le=1)


class BusConfig(_Strict):
    """An RS-485 bus: one master, a lock and a pause between frames."""

    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    inter_frame_pause_s: float = Field(default=0.03, ge=0, le=5)
    timeout_s: float = Field(default=0.5, gt=0, le=30)


class DeviceConfig(_Strict):
    """One Modbus device of the site."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    profile: str
    transport: Literal["tcp", "rtu"] = "tcp"
    #: Frames on a TCP transport: ``socket`` (Modbus TCP, MBAP header) or ``rtu`` (RTU frames
    #: with CRC over TCP: a serial-to-Ethernet converter in transparent mode).
    framer: Literal["socket", "rtu"] = "socket"
    #: Silence between two requests on an RTU-over-TCP link [s] (the RS-485 bus behind it).
    inter_frame_pause_s: float = Field(default=0.0, ge=0, le=5)
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=0, le=65535)
    bus: str | None = None
    serial_port: str | None = None  # RTU without a buses entry: a bus of its own with defaults
    baudrate: int | None = None
    unit_id: int | None = Field(default=None, ge=0, le=255)
    poll_interval_s: float = Field(default=5.0, ge=0.05, le=3600)
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    stale_after_s: float | None = Field(default=None, gt=0)
    asset: str | None = None
    asset_from_site: str | None = None  # the site asset measured by this device (power)
    limits: LimitsConfig = LimitsConfig()
    channels: dict[str, str] | None = None  # register name -> channel key
    #: A profile register's own unit id -> the one this device answers on (a Victron GX's
    #: VE.Bus unit id differs per installation: ``unit_ids: {227: 246}``).
    unit_ids: dict[int, int] = {}
    #: The fail-safe timeout [s]: for a device with a timeout register, the value the gateway
    #: gives it (within the profile's ``watchdog_timeout_s`` range); for a device whose timeout
    #: is fixed in its firmware, that firmware's value where it is shorter than the profile's
    #: (the simulator uses it too). The gateway refreshes within a third of it. None: the
    #: profile's ``control.failsafe.timeout_s``.
    failsafe_timeout_s: float | None = Field(default=None, gt=0)
    #: The site accepts in writing that this device keeps its last setpoint when the
    #: controller dies (a profile whose fail-safe is ``none`` is refused for control otherwise).
    accept_no_failsafe: bool = False
    faults: list[FaultSpec] = []  # simulator only
    seed: int = 0  # simulator only
    sim_role: Literal["grid", "pv", "load"] = "grid"  # simulator only: what a meter measures

    @model_validator(mode="after")
    def _transport(self) -> DeviceConfig:
        if self.transport == "rtu" and not (self.bus or self.serial_port):
            raise ValueError("transport rtu needs bus (an entry in buses) or serial_port")
        if self.unit_id == 0:
            raise ValueError("unit_id 0 is the broadcast address; devices have 1..247")
        if self.transport == "rtu" and self.framer != "socket":
            raise ValueError("framer is for transport tcp (RTU over TCP); rtu is RTU already")
        return self


class GatewayConfig(BaseModel):
    """The gateway section of a site file (``buses:``, ``devices:``, ``spool_path:``)."""

    model_config = ConfigDict(extra="ignore")

    buses: dict[str, BusConfig] = {}
    devices: list[DeviceConfig] = Field(min_length=1)
    spool_path: str | None = None
    base_dir: str = "."
    #: From a site description's ``assets[].channels[]``: device -> register -> channel key,
    #: and the factor (unit conversion times sign) from the register's value to the channel's.
    site_channels: dict[str, dict[str, str]] = {}
    channel_factors: dict[str, dict[str, float]] = {}

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        for d in self.devices:
            if d.transport == "rtu" and d.bus is None and d.serial_port is not None:
                d.bus = f"serial:{d.serial_port}"
                old = self.buses.get(d.bus)
                if old is None:
                    self.buses[d.bus] = BusConfig(port=d.serial_port, baudrate=d.baudrate or 9600)
        seen: set[str] = set()
        for i, d in enumerate(self.devices):
            if d.name in seen:
                raise ValueError(f"devices[{i}].name: duplicate device name {d.name!r}")
            seen.add(d.name)
            if d.bus is not None and d.bus not in self.buses:
                raise ValueError(f"devices[{i}].bus: no bus {d.bus!r} in buses")
        assets = [d.asset for d in self.devices if d.asset]
        if len(assets) != len(set(assets)):
            raise ValueError("devices: an asset name is used by more than one device")
        return self

    @cached_property
    def profiles(self) -> dict[str, Profile]:
        """The profile of each device, by device name."""
        return {d.name: get_profile(d.profile, Path(self.base_dir)) for d in self.devices}

    def unit_id(self, device: DeviceConfig) -> int:
        return (
            device.unit_id
            if device.unit_id is not None
            else self.profiles[device.name].default_unit_id
        )

    def channel_map(self, device: DeviceConfig) -> dict[str, str]:
        """Register name -> channel key (default: every register as ``<device>.<register>``)."""
        prof = self.profiles[device.name]
        if device.channels is None and device.name in self.site_channels:
            return dict(self.site_channels[device.name])
        if device.channels is None:
            return {
                r: f"{device.name}.{r}"
                for r, spec in prof.registers.items()
                if spec.type not in {"sunssf", "string"}
            }
        return dict(device.channels)

    def factors(self, device: DeviceConfig) -> dict[str, float]:
        """Register -> factor from the register's value to its channel's unit and sign."""
        return dict(self.channel_factors.get(device.name, {}))


def _from_site_document(data: dict, source: str) -> dict:
    """The gateway view of a full site description (``energy.siteconfig``): its ``devices``,
    its ``gateway:`` section (buses, spool) and the channel keys of ``assets[].channels[]``."""
    from energy.siteconfig import UNIT_FACTORS, parse_site_document

    doc = parse_site_document(data, source)
    site_channels: dict[str, dict[str, str]] = {}
    factors: dict[str, dict[str, float]] = {}
    for asset in doc.assets:
        for ch in asset.channels:
            if ch.device is None or ch.register_name is None:
                continue
            key = doc.channel_key(asset, ch)
            site_channels.setdefault(ch.device, {})[ch.register_name] = key
            unit_factor = UNIT_FACTORS.get(ch.quantity, {}).get(ch.unit or "", 1.0)
            factors.setdefault(ch.device, {})[ch.register_name] = unit_factor * ch.sign
    devices = [{k: v for k, v in d.items() if v is not None} for d in data.get("devices") or []]
    # the asset whose power a device measures is the asset its setpoints are for
    power_asset = {
        ch.device: a.name
        for a in doc.assets
        for ch in a.channels
        if ch.device is not None and ch.quantity.value == "power"
    }
    for d in devices:
        if "asset" not in d and d.get("name") in power_asset:
            d["asset_from_site"] = power_asset[d["name"]]
    out = dict(data.get("gateway") or {})
    out.update(devices=devices, site_channels=site_channels, channel_factors=factors)
    return out


def parse_config(data: object, source: str, base_dir: Path | None = None) -> GatewayConfig:
    """Validate a site document; errors name the file and the path (``devices[2].port``).

    Two shapes are accepted: the gateway's own (``buses``, ``devices``, ``spool_path`` at the
    top) and a whole site description with a ``site:`` section (see ``energy.siteconfig``),
    where the gateway settings live under ``gateway:`` and the channels under ``assets:``.
    """
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise NoaberValidationError("a site file must be a mapping", source)
    data = _from_site_document(data, source) if "site" in data else dict(data)
    data.setdefault("base_dir", str(base_dir or Path(".")))
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] != "value_error":
            msg = f"{msg} (got {err.get('input')!r})"
        raise NoaberValidationError(msg, source, _where(err["loc"])) from None
    for i, d in enumerate(cfg.devices):
        try:
            prof = cfg.profiles[d.name]
        except Exception as exc:
            raise NoaberValidationError(str(exc), source, f"devices[{i}].profile") from None
        if d.failsafe_timeout_s is not None:
            fs = prof.control.failsafe if prof.control is not None else None
            where = f"devices[{i}].failsafe_timeout_s"
            if fs is None or fs.kind == "none" or fs.timeout_s is None:
                raise NoaberValidationError(
                    f"profile {prof.name} declares no fail-safe timeout", source, where
                )
            if fs.reg is not None:
                t = prof.registers[fs.reg].watchdog_timeout_s
                lo, hi = (t.min, t.max) if t is not None else (fs.timeout_s, fs.timeout_s)
                what = f"{prof.name}.{fs.reg}"
            else:
                lo, hi, what = 0.0, fs.timeout_s, f"{prof.name}'s firmware timeout"
            if not lo <= d.failsafe_timeout_s <= hi:
                raise NoaberValidationError(
                    f"{d.failsafe_timeout_s:g} s outside {lo:g} to {hi:g} s ({what})",
                    source,
                    where,
                )
        for reg in {**cfg.site_channels.get(d.name, {}), **(d.channels or {})}:
            if reg not in prof.registers:
                raise NoaberValidationError(
                    f"profile {prof.name} has no register {reg!r}", source, f"devices[{i}].channels"
                )
    return cfg


def load_config(path: Path | str) -> GatewayConfig:
    """Load the gateway section of a site YAML file."""
    path = Path(path)
    return load_yaml_file(
        path, "site file", lambda data: parse_config(data, str(path), path.parent)
    )
