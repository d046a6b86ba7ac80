"""Device profiles as data: one YAML file per device model, validated with pydantic.

A profile names every register the gateway reads or writes: address (0-based), function code
(3 holding / 4 input), type, word and byte order, scale (a fixed multiplier or a SunSpec scale
factor register), sign (to our convention: positive = import/consumption), unit, a plausible range,
and which registers are writable with their limits. One generic driver reads any profile
(docs/SOURCES.md: evcc ``templates/definition/meter/*.yaml``).

Shipped profiles live in ``modbus_gateway/profiles/*.yaml``; a user adds a model by writing a
YAML file with the same schema and passing its path wherever a profile name is accepted.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from energy.errors import NoaberError
from energy.errors import ValidationError as NoaberValidationError
from energy.samples import Quality
from energy.yamlio import load_yaml_file
from modbus_gateway import sunspec_models

PROFILE_DIR = Path(__file__).parent / "profiles"

RegType = Literal[
    "int16",
    "uint16",
    "int32",
    "uint32",
    "float32",
    "int64",
    "uint64",
    "float64",
    "string",
    "sunssf",
    "bool",
]
Order = Literal["big", "little"]

#: Number of 16-bit registers per type (strings give their length explicitly).
TYPE_WORDS: dict[str, int] = {
    "bool": 1,  # one coil or discrete input (function 1/2): a "word" of 0 or 1
    "int16": 1,
    "uint16": 1,
    "sunssf": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
_STRUCT = {
    "int16": "h",
    "sunssf": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "int64": "q",
    "uint64": "Q",
    "float64": "d",
}
#: SunSpec "not implemented" raw values per type (SunSpec Information Model Specification, 4.3).
SUNSPEC_NOT_IMPLEMENTED: dict[str, int] = {
    "int16": 0x8000,
    "sunssf": 0x8000,
    "uint16": 0xFFFF,
    "int32": 0x80000000,
    "uint32": 0xFFFFFFFF,
    "int64": 0x8000000000000000,
    "uint64": 0xFFFFFFFFFFFFFFFF,
}
#: SunSpec units -> the profile's unit names.
SUNSPEC_UNITS = {"Secs": "s", "% WMax": "%", "Pct": "%", "%WHRtg": "%", "% WChaMax": "%"}
#: Capability values a profile can map to a register (see :mod:`modbus_gateway.capabilities`).
CAPABILITY_VALUES = ("power_w", "energy_import_wh", "energy_export_wh", "soc_pct", "grid_power_w")
#: Maximum registers in one read request (Modbus Application Protocol V1.1b3, 6.3: 125).
MODBUS_MAX_READ = 125
#: Function codes of the register kinds: 1 coils, 2 discrete inputs, 3 holding, 4 input.
BIT_FUNCTIONS = (1, 2)
#: Datasheet register numbers (Modicon convention): the leading digit names the table,
#: the rest is the 1-based register number (address = number - 1).
DATASHEET_TABLES = {"0": 1, "1": 2, "3": 4, "4": 3}
DATASHEET_RULE = (
    "a datasheet register number is 0xxxx coil, 1xxxx discrete input, 3xxxx input register "
    "or 4xxxx holding register with xxxx from 0001 to 9999 (5 digits), or the same with "
    "00001 to 65536 (6 digits: 300053); the address is the number minus 1; coil numbers "
    "(leading 0) must be quoted strings"
)


def parse_datasheet_number(number: int | str) -> tuple[int, int]:
    """``30053`` -> (function 4, address 52); ``"000001"`` -> (1, 0); raises ValueError."""
    text = str(number).strip()
    if isinstance(number, bool) or not text.isdigit() or len(text) not in (5, 6):
        raise ValueError(f"{number!r}: {DATASHEET_RULE}")
    function = DATASHEET_TABLES.get(text[0])
    n = int(text[1:])
    if function is None or not 1 <= n <= (9999 if len(text) == 5 else 65536):
        raise ValueError(f"{number!r}: {DATASHEET_RULE}")
    return function, n - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WritableSpec(_Strict):
    """Limits of a writable register, in engineering units (after scale and sign)."""

    min: float
    max: float
    ramp_per_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _order(self) -> WritableSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class TimeoutRange(_Strict):
    """The values a device's watchdog timeout register may be given [s] (0 is never one).

    The device returns to its safe state when it hears nothing for that long; 0 (on most
    devices: no timeout) or a value above ``max`` would weaken that fail-safe, so every write
    outside ``[min, max]`` is refused.
    """

    min: float = Field(gt=0)
    max: float

    @model_validator(mode="after")
    def _order(self) -> TimeoutRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class RegisterSpec(_Strict):
    """One register (or a group of registers holding one value)."""

    address: int = Field(ge=0, le=65535)
    #: 1 coil, 2 discrete input (both type ``bool``), 3 holding, 4 input register.
    function: Literal[1, 2, 3, 4] = 3
    type: RegType = "uint16"
    length: int | None = Field(default=None, ge=1, le=125)  # words, for strings
    word_order: Order | None = None
    byte_order: Order | None = None
    scale: float = 1.0
    scale_register: str | None = None
    sign: Literal[1, -1] = 1
    unit: str = ""
    valid_min: float | None = None
    valid_max: float | None = None
    writable: WritableSpec | None = None
    #: Set on a device's watchdog or idle timeout register [s]: the values writes may give it.
    watchdog_timeout_s: TimeoutRange | None = None
    model: int | None = None  # SunSpec model id: address is then the offset in the model's data
    #: The SunSpec point (``W``, ``WMaxLimPct``): address, type, length and scale factor come
    #: from the official model definition (:mod:`modbus_gateway.sunspec_models`).
    point: str | None = None
    #: The unit id that serves this register when it is not the device's own (a Victron GX
    #: serves its system values on unit 100 and its VE.Bus inverter/charger on another).
    unit_id: int | None = Field(default=None, ge=1, le=247)
    sim_value: float | str | None = None  # constant the simulator serves when it has no model

    @property
    def words(self) -> int:
        if self.type == "string":
            return self.length or 1
        return TYPE_WORDS[self.type]

    @property
    def is_bit(self) -> bool:
        """A coil or a discrete input (one bit, read with function 1 or 2)."""
        return self.function in BIT_FUNCTIONS

    @model_validator(mode="before")
    @classmethod
    def _datasheet_number(cls, data: object) -> object:
        """``number: 30053`` (the datasheet's register number) instead of address + function."""
        if not isinstance(data, dict) or "number" not in data:
            return data
        data = dict(data)
        function, address = parse_datasheet_number(data.pop("number"))
        for key, value in (("address", address), ("function", function)):
            if key in data and data[key] != value:
                raise ValueError(
                    f"number gives {key} {value}, but {key} {data[key]} is also given "
                    "(give one or the other)"
                )
            data[key] = value
        if function in BIT_FUNCTIONS:
            data.setdefault("type", "bool")
        return data

    @model_validator(mode="before")
    @classmethod
    def _sunspec_point(cls, data: object) -> object:
        """``{model: 103, point: W}``: the rest from the generated SunSpec model."""
        if not isinstance(data, dict) or data.get("point") is None:
            return data
        data = dict(data)
        if data.get("model") is None:
            raise ValueError("a SunSpec point needs its model (model: 103)")
        try:
            pt = sunspec_models.point(int(data["model"]), str(data["point"]))
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        derived: dict[str, object] = {"address": pt.offset, "type": pt.type}
        if pt.type == "string":
            derived["length"] = pt.size
        for key, value in derived.items():
            if key in data and data[key] != value:
                raise ValueError(
                    f"SunSpec model {data['model']} point {data['point']} has {key} {value}, "
                    f"not {data[key]} (leave {key} out)"
                )
            data[key] = value
        if pt.sf is not None:
            data.setdefault("scale_register", pt.sf)
        if pt.units and "unit" not in data:
            data["unit"] = SUNSPEC_UNITS.get(pt.units, pt.units)
        if data.get("writable") is not None and pt.access != "RW":
            raise ValueError(
                f"SunSpec model {data['model']} point {data['point']} is read-only "
                "in the model definition; it cannot be writable"
            )
        return data

    @model_validator(mode="after")
    def _check(self) -> RegisterSpec:
        if (self.type == "bool") != self.is_bit:
            raise ValueError(
                "coils and discrete inputs (function 1, 2) have type bool, and only they"
            )
        if self.is_bit and self.scale_register is not None:
            raise ValueError("a coil or discrete input has no scale_register")
        if self.type == "string" and self.length is None:
            raise ValueError("a string register needs length (in registers)")
        if self.type != "string" and self.length is not None:
            raise ValueError(f"length is only for strings, not for {self.type}")
        if self.address + self.words > 65536:
            raise ValueError("address + length runs past 65535")
        if self.writable is not None and self.function not in (1, 3):
            raise ValueError("only holding registers (function 3) and coils (1) can be writable")
        if (
            self.writable is not None
            and self.function == 1
            and (self.writable.min < 0 or self.writable.max > 1)
        ):
            raise ValueError("a writable coil takes 0 or 1 (writable min/max within 0..1)")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        t, w = self.watchdog_timeout_s, self.writable
        if t is not None and (w is None or not w.min <= t.min <= t.max <= w.max):
            raise ValueError(
                "watchdog_timeout_s must lie within the register's writable range"
                + ("" if w is not None else " (the register is not writable)")
            )
        return self


class WriteStep(_Strict):
    """A fixed value (engineering units) written to a register (YAML key ``register``)."""

    reg: str = Field(alias="register")
    value: float


class WatchdogSpec(_Strict):
    """Keeps the device's communication watchdog alive.

    ``mode: value`` writes ``value`` (e.g. the Quasar idle timeout in s) every ``refresh_s``;
    ``mode: counter`` increments the register (SunSpec controller heartbeat).
    """

    reg: str = Field(alias="register")
    mode: Literal["value", "counter"] = "value"
    value: float = 0
    refresh_s: float = Field(gt=0)


class FailsafeSpec(_Strict):
    """How the device returns to a safe state by itself when the controller dies.

    ``kind``:

    - ``device_timeout``: the device reverts when no write reaches it for ``timeout_s``; the
      timeout is held in ``register`` (a register marked ``watchdog_timeout_s``, written by the
      gateway in the enable sequence or the watchdog) or fixed in the firmware (no register);
    - ``controller_heartbeat``: the device reverts when the controller's heartbeat in
      ``register`` stops changing for ``timeout_s`` (SunSpec model 802 ``ControllerHb``);
    - ``none``: the device keeps the last setpoint; it is controlled only where the site
      description accepts that in writing (``accept_no_failsafe: true`` on the device).

    ``safe_state`` says what the device does then, ``source`` where that is documented.
    """

    kind: Literal["device_timeout", "controller_heartbeat", "none"]
    timeout_s: float | None = Field(default=None, gt=0)
    reg: str | None = Field(default=None, alias="register")
    safe_state: str = Field(min_length=1)
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> FailsafeSpec:
        if self.kind != "none" and self.timeout_s is None:
            raise ValueError(f"a {self.kind} fail-safe needs timeout_s")
        if self.kind == "controller_heartbeat" and self.reg is None:
            raise ValueError("a controller_heartbeat fail-safe needs the heartbeat register")
        if self.kind == "none" and (self.timeout_s is not None or self.reg is not None):
            raise ValueError("a fail-safe of kind none has no timeout_s or register")
        return self


class ControlSpec(_Strict):
    """How to command the device's power: control mode first, setpoint, watchdog, safe default,
    and the fail-safe that brings it back to a safe state when the controller dies."""

    setpoint: str  # writable register receiving the power setpoint [W, our sign]
    #: What the setpoint sets: the device's own power (battery, charger) or the power at the
    #: grid connection (Victron ESS grid setpoint); only ``device_power`` is given to a site's
    #: asset automatically.
    #: ``production_limit``: the most the device may produce [W, >= 0] (PV curtailment).
    setpoint_quantity: Literal["device_power", "grid_power", "production_limit"] = "device_power"
    enable: list[WriteStep] = []  # written in order before the first setpoint (control mode)
    watchdog: WatchdogSpec | None = None
    setpoint_refresh_s: float | None = Field(default=None, gt=0)
    #: If set, the setpoint register takes % of this register's value [W] instead of W.
    setpoint_percent_of: str | None = None
    safe_default: list[WriteStep] = []  # written in order on shutdown or lost schedule
    #: Required: how the device becomes safe by itself (see :class:`FailsafeSpec`).
    failsafe: FailsafeSpec
    #: Registers whose value shows the device is under control: their enable value is compared
    #: with what the device reports at every check (default: every enable step's register).
    #: ``status`` names a read-only register and the values it shows while under control.
    status: dict[str, list[float]] = {}


class ReadableRange(_Strict):
    """Addresses ``[start, end)`` of one function code that read without error as one block."""

    function: Literal[1, 2, 3, 4]
    start: int = Field(ge=0, le=65535)
    end: int = Field(ge=1, le=65536)


class Profile(_Strict):
    """A device model: its registers and how to control it."""

    name: str
    description: str = ""
    #: The document the register map was written from: title, version and URL.
    source: str = ""
    kind: Literal["meter", "battery", "charger", "inverter", "storage", "generic"] = "generic"
    default_unit_id: int = Field(default=1, ge=0, le=255)
    word_order: Order = "big"
    byte_order: Order = "big"
    max_read_count: int = Field(default=MODBUS_MAX_READ, ge=1, le=MODBUS_MAX_READ)
    #: The most registers one read may ask for (alias of ``max_read_count``; the smaller wins).
    max_registers: int | None = Field(default=None, ge=1, le=MODBUS_MAX_READ)
    #: Read requests may bridge up to this many undefined registers between two wanted ones
    #: (the device answers them, as an SDM630 does); None: 0, or for SunSpec (whose models
    #: are contiguous) up to the read limit. A device that answers a bridged read with
    #: exception 2 is read without bridging from then on.
    max_gap: int | None = Field(default=None, ge=0, le=MODBUS_MAX_READ)
    #: The device refuses reads over undefined addresses: never bridge (overrides max_gap).
    no_gap_fill: bool = False
    sunspec: bool = False
    sunspec_models: list[int] = []
    readable_ranges: list[ReadableRange] = []
    registers: dict[str, RegisterSpec]
    control: ControlSpec | None = None
    #: Which register serves each capability value (``power_w``, ``energy_import_wh``,
    #: ``energy_export_wh``, ``soc_pct``, ``grid_power_w``: the power at the connection an
    #: ESS regulates; see :mod:`modbus_gateway.capabilities`).
    capabilities: dict[str, str] = {}
    #: True once :func:`resolve_sunspec` gave the SunSpec registers their absolute addresses
    #: (not settable from a profile file: only discovery makes the addresses known)
    _sunspec_resolved: bool = PrivateAttr(default=False)

    @property
    def addresses_known(self) -> bool:
        """Whether every register's address is absolute (a SunSpec profile after discovery)."""
        return not self.sunspec or self._sunspec_resolved

    @model_validator(mode="before")
    @classmethod
    def _sunspec_scale_factors(cls, data: object) -> object:
        """Add the scale-factor point of every SunSpec point that names one and is missing
        (``W`` of model 103 brings ``W_SF``); a register of that name elsewhere is an error."""
        if not isinstance(data, dict) or not isinstance(data.get("registers"), dict):
            return data
        regs = dict(data["registers"])
        for name, r in list(regs.items()):
            if not isinstance(r, dict) or r.get("point") is None or r.get("model") is None:
                continue
            if "scale_register" in r:
                continue
            try:
                pt = sunspec_models.point(int(r["model"]), str(r["point"]))
            except (KeyError, ValueError, TypeError):
                continue  # the register's own validation names the problem
            if pt.sf is None:
                continue
            have = regs.get(pt.sf)
            if have is None:
                regs[pt.sf] = {"model": r["model"], "point": pt.sf}
            elif (
                isinstance(have, dict)
                and have.get("point") is not None
                and (have.get("model"), have.get("point")) != (r["model"], pt.sf)
            ):
                raise ValueError(
                    f"registers.{name}: its scale factor {pt.sf!r} is model {r['model']}'s, "
                    f"but registers.{pt.sf} is model {have.get('model')} point "
                    f"{have.get('point')}; give registers.{name} a scale_register"
                )
        return {**data, "registers": regs}

    @model_validator(mode="after")
    def _refs(self) -> Profile:
        regs = self.registers
        for name, r in regs.items():
            if r.scale_register is not None:
                sf = regs.get(r.scale_register)
                if sf is None:
                    raise ValueError(
                        f"registers.{name}.scale_register: no register {r.scale_register!r}"
                    )
                if sf.type != "sunssf":
                    raise ValueError(
                        f"registers.{name}.scale_register: {r.scale_register!r} must be sunssf"
                    )
            if r.model is not None and r.model not in self.sunspec_models:
                raise ValueError(f"registers.{name}.model: {r.model} not in sunspec_models")
        for cap, reg in self.capabilities.items():
            if cap not in CAPABILITY_VALUES:
                raise ValueError(
                    f"capabilities.{cap}: unknown capability (known: {', '.join(CAPABILITY_VALUES)})"
                )
            if reg not in regs:
                raise ValueError(f"capabilities.{cap}: no register {reg!r}")
        if self.control is not None:
            c = self.control
            refs = [("control.setpoint", c.setpoint)]
            refs += [(f"control.enable[{i}]", s.reg) for i, s in enumerate(c.enable)]
            refs += [(f"control.safe_default[{i}]", s.reg) for i, s in enumerate(c.safe_default)]
            if c.watchdog is not None:
                refs.append(("control.watchdog", c.watchdog.reg))
            fs = c.failsafe
            if fs.reg is not None and fs.reg not in regs:
                raise ValueError(f"control.failsafe.register: no register {fs.reg!r}")
            if fs.reg is not None and fs.kind == "device_timeout":
                t = regs[fs.reg].watchdog_timeout_s
                if t is None:
                    raise ValueError(
                        f"control.failsafe.register: {fs.reg!r} must declare "
                        "watchdog_timeout_s (the values its timeout may be given)"
                    )
                assert fs.timeout_s is not None
                if not t.min <= fs.timeout_s <= t.max:
                    raise ValueError(
                        f"control.failsafe.timeout_s: {fs.timeout_s:g} s outside the register's "
                        f"watchdog range {t.min:g} to {t.max:g} s"
                    )
            if fs.kind != "none":
                assert fs.timeout_s is not None
                refresh = [
                    x for x in (c.setpoint_refresh_s, c.watchdog and c.watchdog.refresh_s) if x
                ]
                if not refresh or min(refresh) >= fs.timeout_s:
                    raise ValueError(
                        "control: the fail-safe times out after "
                        f"{fs.timeout_s:g} s; setpoint_refresh_s or watchdog.refresh_s must be "
                        "shorter, or the device reverts while under control"
                    )
            for reg_name in c.status:
                if reg_name not in regs:
                    raise ValueError(f"control.status: no register {reg_name!r}")
            if c.setpoint_percent_of is not None and c.setpoint_percent_of not in regs:
                raise ValueError(
                    f"control.setpoint_percent_of: no register {c.setpoint_percent_of!r}"
                )
            for where, ref in refs:
                if ref not in regs:
                    raise ValueError(f"{where}: no register {ref!r}")
                if regs[ref].writable is None:
                    raise ValueError(f"{where}: register {ref!r} is not writable")
            writes = [(f"control.enable[{i}]", s) for i, s in enumerate(c.enable)]
            writes += [(f"control.safe_default[{i}]", s) for i, s in enumerate(c.safe_default)]
            if c.watchdog is not None and c.watchdog.mode == "value":
                writes.append(
                    ("control.watchdog", WriteStep(register=c.watchdog.reg, value=c.watchdog.value))
                )
            for where, step in writes:
                t = regs[step.reg].watchdog_timeout_s
                if t is not None and not t.min <= step.value <= t.max:
                    raise ValueError(
                        f"{where}: {step.value} s would weaken the watchdog timeout "
                        f"{step.reg!r} (allowed {t.min:g} to {t.max:g} s)"
                    )
        return self

    @property
    def read_limit(self) -> int:
        """Registers per read request at most (``max_read_count``, ``max_registers``)."""
        return min(self.max_read_count, self.max_registers or MODBUS_MAX_READ)

    @property
    def gap_limit(self) -> int:
        """Undefined registers a read request may bridge (0: none)."""
        if self.no_gap_fill:
            return 0
        if self.max_gap is not None:
            return self.max_gap
        return self.read_limit if self.sunspec else 0

    def words_of(self, spec: RegisterSpec) -> tuple[Order, Order]:
        """Word and byte order of a register (its own, else the profile's)."""
        return spec.word_order or self.word_order, spec.byte_order or self.byte_order


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top)"


def parse_profile(data: object, source: str) -> Profile:
    """Validate a profile document; errors name the file and the path inside it."""
    if not isinstance(data, dict):
        raise NoaberValidationError("a profile must be a mapping", source)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _where(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise NoaberValidationError(
            f"{msg} (got {err.get('input')!r})" if err["type"] != "value_error" else msg,
            source,
            loc,
        ) from None


def load_profile(path: Path | str) -> Profile:
    """Load and validate one profile YAML file."""
    path = Path(path)
    return load_yaml_file(path, "profile file", lambda data: parse_profile(data, str(path)))


@cache
def shipped_profiles() -> dict[str, Profile]:
    """Every profile shipped in ``modbus_gateway/profiles/``, by name."""
    out = {}
    for p in sorted(PROFILE_DIR.glob("*.yaml")):
        prof = load_profile(p)
        out[prof.name] = prof
    return out


def get_profile(name_or_path: str, base_dir: Path | None = None) -> Profile:
    """A shipped profile by name, or a user's profile by path (relative to ``base_dir``)."""
    shipped = shipped_profiles()
    if name_or_path in shipped:
        return shipped[name_or_path]
    p = Path(name_or_path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.suffix in {".yaml", ".yml"} and p.is_file():
        return load_profile(p)
    raise NoaberError(
        f"unknown profile {name_or_path!r}: not a shipped profile ({', '.join(sorted(shipped))}) "
        "nor a YAML file"
    )


# --------------------------------------------------------------------------- decode / encode


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded value in engineering units and our sign convention, with its quality."""

    value: float | str
    quality: Quality
    reason: str = ""


def words_to_bytes(words: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    """Registers to a big-endian byte string, undoing the device's word and byte order."""
    ws = list(words) if word_order == "big" else list(reversed(words))
    if byte_order == "big":
        return b"".join(w.to_bytes(2, "big") for w in ws)
    return b"".join(w.to_bytes(2, "little") for w in ws)


def bytes_to_words(data: bytes, word_order: Order, byte_order: Order) -> list[int]:
    """Inverse of :func:`words_to_bytes`."""
    bo: Literal["big", "little"] = "big" if byte_order == "big" else "little"
    ws = [int.from_bytes(data[i : i + 2], bo) for i in range(0, len(data), 2)]
    return ws if word_order == "big" else list(reversed(ws))


def raw_value(profile: Profile, spec: RegisterSpec, words: Sequence[int]) -> int | float | str:
    """The raw (unscaled) value of a register from its words."""
    if spec.type == "bool":
        return 1 if words[0] else 0
    wo, bo = profile.words_of(spec)
    data = words_to_bytes(words, wo, bo)
    if spec.type == "string":
        return data.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    return struct.unpack(">" + _STRUCT[spec.type], data)[0]


def decode(
    profile: Profile,
    spec: RegisterSpec,
    words: Sequence[int],
    scale_factor: int | None = None,
) -> Decoded:
    """Decode a register's words to engineering units with a quality flag.

    A SunSpec "not implemented" value is MISSING; NaN or infinity, a value outside
    ``[valid_min, valid_max]`` or a missing/invalid scale factor is INVALID. The value of a
    non-GOOD result is NaN, never a number that could be mistaken for a measurement.

    Parameters
    ----------
    scale_factor : int, optional
        The decoded SunSpec scale factor (power of ten) when ``spec.scale_register`` is set.
    """
    if len(words) != spec.words:
        return Decoded(math.nan, Quality.INVALID, f"got {len(words)} registers, need {spec.words}")
    if spec.type == "string":
        return Decoded(str(raw_value(profile, spec, words)), Quality.GOOD)
    raw = raw_value(profile, spec, words)
    assert not isinstance(raw, str)
    if profile.sunspec and spec.type in SUNSPEC_NOT_IMPLEMENTED:
        wo, bo = profile.words_of(spec)
        unsigned = int.from_bytes(words_to_bytes(words, wo, bo), "big")
        if unsigned == SUNSPEC_NOT_IMPLEMENTED[spec.type]:
            return Decoded(math.nan, Quality.MISSING, "not implemented")
    if isinstance(raw, float) and not math.isfinite(raw):
        if profile.sunspec and math.isnan(raw):
            return Decoded(math.nan, Quality.MISSING, "not implemented (NaN)")
        return Decoded(math.nan, Quality.INVALID, f"not finite: {raw}")
    value = float(raw) * spec.scale
    if spec.scale_register is not None:
        if scale_factor is None or not -10 <= scale_factor <= 10:
            return Decoded(math.nan, Quality.INVALID, f"bad scale factor {scale_factor}")
        value *= 10.0**scale_factor
    value = value * spec.sign + 0.0  # + 0.0 turns -0.0 into 0.0
    if (spec.valid_min is not None and value < spec.valid_min) or (
        spec.valid_max is not None and value > spec.valid_max
    ):
        return Decoded(math.nan, Quality.INVALID, f"out of range: {value}")
    return Decoded(value, Quality.GOOD)


def encode(
    profile: Profile, spec: RegisterSpec, value: float, scale_factor: int | None = None
) -> list[int]:
    """Engineering value (our sign) to the register words; rounds to the register's resolution."""
    if spec.type == "string":
        raise NoaberError("writing strings is not supported")
    if spec.type == "bool":
        if value not in (0, 1):
            raise NoaberError(f"a coil takes 0 or 1, not {value}")
        return [int(value)]
    raw = value * spec.sign / spec.scale
    if spec.scale_register is not None:
        if scale_factor is None:
            raise NoaberError(f"scale factor {spec.scale_register} unknown")
        raw /= 10.0**scale_factor
    code = _STRUCT[spec.type]
    if code in "fd":
        data = struct.pack(">" + code, raw)
    else:
        iv = round(raw)
        try:
            data = struct.pack(">" + code, iv)
        except struct.error:
            raise NoaberError(f"value {value} does not fit {spec.type}") from None
    wo, bo = profile.words_of(spec)
    return bytes_to_words(data, wo, bo)


def resolve_sunspec(profile: Profile, model_bases: dict[int, int]) -> Profile:
    """A copy of a SunSpec profile with absolute addresses.

    ``model_bases`` maps a model id to the address of its first data register (after ID and L),
    as found by discovery. Registers of models the device does not have are dropped.
    """
    regs = {}
    for name, r in profile.registers.items():
        if r.model is None:
            regs[name] = r
        elif r.model in model_bases:
            regs[name] = r.model_copy(update={"address": model_bases[r.model] + r.address})
    # drop registers whose scale register disappeared with its model
    regs = {n: r for n, r in regs.items() if r.scale_register is None or r.scale_register in regs}
    ctrl = profile.control
    if ctrl is not None:
        needed = [ctrl.setpoint, *(s.reg for s in ctrl.enable + ctrl.safe_default)]
        if ctrl.watchdog is not None:
            needed.append(ctrl.watchdog.reg)
        if ctrl.failsafe.reg is not None:
            needed.append(ctrl.failsafe.reg)
        if any(n not in regs for n in needed):
            ctrl = None
    out = profile.model_copy(update={"registers": regs, "control": ctrl})
    out._sunspec_resolved = True
    return out
