"""Simulated Modbus devices for every shipped profile, served by pymodbus on 127.0.0.1.

Each :class:`SimulatedDevice` holds the registers of one profile and a small physical model
chosen by the profile's ``kind`` (a meter whose net power follows a PV day curve, a battery
whose SoC follows the written setpoints, a V2G charger with a car plugged in, a SunSpec storage
system with heartbeat and revert timer). The clock and the random generator are injected, so
one seed replays a run exactly (docs/SOURCES.md, Patterns: TigerBeetle VOPR).

Faults (:class:`~modbus_gateway.config.FaultSpec`) are injected per request: ``timeout`` (no
reply at all), ``busy`` (exception 6), ``exception`` (any code), ``short`` (one register fewer
than asked, sent as a normal reply), ``garbage`` (0xFFFF in every word: NaN for floats,
"not implemented" for SunSpec, out of range elsewhere) and ``disconnect`` (the TCP connection
is closed, no reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from energy.errors import NoaberError
from modbus_gateway import sunspec_models
from modbus_gateway.config import FaultSpec, GatewayConfig
from modbus_gateway.profiles import Profile, decode, encode, resolve_sunspec

log = logging.getLogger(__name__)

SUNSPEC_BASE = 40000


def sunspec_model_length(model_id: int) -> int:
    """A model's length in the simulator's map: the official fixed length
    (:mod:`modbus_gateway.sunspec_models`) plus one repeating block (model 160: one MPPT)."""
    m = sunspec_models.models()[model_id]
    return m.length + m.repeat_length


SUNS_MARKER = [0x5375, 0x6E53]  # "SunS"
#: The simulator's data table of each read function code: coils, discrete inputs, holding
#: and input registers (a write with 5/15 goes to the coils, 6/16 to the holding registers).
TABLES = {1: "c", 2: "d", 3: "h", 4: "i", 5: "c", 15: "c", 6: "h", 16: "h"}


class Silence(Exception):
    """The device does not answer this request."""


@dataclass
class WriteRecord:
    """A register write seen by the simulator."""

    t: float  # simulator clock [s]
    address: int
    words: list[int]
    name: str | None


def sunspec_layout(
    base: int = SUNSPEC_BASE, models: Iterable[int] = (1, 802, 124)
) -> dict[int, int]:
    """Data start address of each model in the simulator's SunSpec map."""
    out = {}
    addr = base + 2
    for m in models:
        out[m] = addr + 2
        addr += 2 + sunspec_model_length(m)
    return out


@dataclass
class SimulatedDevice:
    """Registers of one profile plus a physical model, faults and a write log.

    Parameters
    ----------
    profile : Profile
        The device model; SunSpec profiles are laid out at 40000 with models 1, 802, 124.
    clock : callable
        Seconds, monotonic (injected for deterministic runs).
    rng : random.Random
        Drives noise and fault probabilities.
    """

    profile: Profile
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    faults: list[FaultSpec] = field(default_factory=list)
    time_of_day_s: float | None = None  # PV curve phase at start; None: 12:00
    frozen: bool = False  # True: the physical model does not advance (values stay put)
    role: str = "grid"  # meters: "grid" (load - PV), "pv" (production only) or "load"
    #: A register's own unit id (profile) -> the one this device answers it on (site file).
    unit_map: dict[int, int] = field(default_factory=dict)
    #: The firmware timeout of a device whose timeout is not a register (Victron ESS mode 3:
    #: 60 s); None: the profile's ``control.failsafe.timeout_s`` [s].
    fixed_timeout_s: float | None = None
    #: Answer a read that spans undefined addresses with exception 2 even where the profile
    #: allows gap filling (a device stricter than its profile says); None: as the profile says
    #: (``Profile.gap_limit`` > 0: the gaps are read as 0, as an SDM630 does).
    refuse_gap_reads: bool | None = None

    def __post_init__(self) -> None:
        self.t0 = self.clock()
        self.words: dict[tuple[str, int], int] = {}
        self.writable: set[int] = set()  # writable holding register addresses
        self.writable_coils: set[int] = set()
        self.write_log: deque[WriteRecord] = deque(maxlen=10_000)
        self.requests = 0
        self.request_times: deque[float] = deque(maxlen=10_000)  # clock at each request
        self.on_disconnect: Callable[[], None] | None = None
        if self.profile.sunspec:
            bases = sunspec_layout(models=self.profile.sunspec_models)
            self.base_profile = self.profile
            self.profile = resolve_sunspec(self.profile, bases)
            end = SUNSPEC_BASE + 2
            self.words[("h", SUNSPEC_BASE)] = SUNS_MARKER[0]
            self.words[("h", SUNSPEC_BASE + 1)] = SUNS_MARKER[1]
            for m, data in bases.items():
                self.words[("h", data - 2)] = m
                self.words[("h", data - 1)] = sunspec_model_length(m)
                for a in range(data, data + sunspec_model_length(m)):
                    self.words[("h", a)] = 0
                end = data + sunspec_model_length(m)
            self.words[("h", end)] = 0xFFFF
            self.words[("h", end + 1)] = 0
        self.name_at: dict[tuple[str, int], str] = {}
        for name, spec in self.profile.registers.items():
            table = TABLES[spec.function]
            for a in range(spec.address, spec.address + spec.words):
                self.words.setdefault((table, a), 0)
                self.name_at[(table, a)] = name
                if spec.writable is not None:
                    (self.writable_coils if table == "c" else self.writable).add(a)
        #: (table, address) -> the unit id it is served on (None: the device's own).
        self.unit_at: dict[tuple[str, int], int | None] = {}
        for spec in self.profile.registers.values():
            table = TABLES[spec.function]
            unit = None if spec.unit_id is None else self.unit_map.get(spec.unit_id, spec.unit_id)
            for a in range(spec.address, spec.address + spec.words):
                self.unit_at[(table, a)] = unit
        self.state: dict[str, float] = {}
        self.last_t = self.clock()
        kind = self.profile.kind
        if not MODEL_NEEDS.get(kind, set()) <= set(self.profile.registers):
            kind = "generic"  # a profile of this kind with other registers: sim_value only
        self.model = MODELS.get(kind, _generic_model)
        self.timers = TIMERS.get(kind)
        self.sim_kind = kind
        self.reboots = 0
        self.model(self, 0.0, True)

    @property
    def extra_units(self) -> set[int]:
        """Unit ids this device answers on besides its own (per-register ``unit_id``)."""
        return {u for u in self.unit_at.values() if u is not None}

    def _wrong_unit(self, table: str, address: int, count: int, unit: int | None) -> bool:
        if unit is None or not self.extra_units:
            return False
        for a in range(address, address + count):
            owner = self.unit_at.get((table, a))
            if (owner is None and unit in self.extra_units) or (
                owner is not None and owner != unit
            ):
                return True
        return False

    def tick(self) -> None:
        """Run the device's own timers (watchdogs, revert timeouts) as a real device does,
        requests or not; the physical model is not advanced (no random draws)."""
        if self.timers is not None and not self.frozen:
            self.timers(self, self.clock())

    def reboot(self) -> None:
        """A power cycle: control registers back to their power-on values, timers cleared,
        every TCP connection dropped (settings and the battery's charge are kept)."""
        for name, value in POWER_ON.get(self.sim_kind, {}).items():
            if self.has(name):
                self.set(name, value)
        for key in [k for k in self.state if k.startswith("written_t:")] + ["last_write_t"]:
            self.state.pop(key, None)
        if "passthru" in self.state:  # a Multi starts in passthru until told otherwise
            self.state["passthru"], self.state["passthru_t"] = 1.0, self.clock()
        self.reboots += 1
        if self.on_disconnect is not None:
            self.on_disconnect()

    # ---------------------------------------------------------------- values by name
    def _sf(self, name: str) -> int | None:
        spec = self.profile.registers[name]
        if spec.scale_register is None:
            return None
        return int(self.get(spec.scale_register))

    def set(self, name: str, value: float | str) -> None:
        """Store an engineering value (our sign) in a register, if the profile has it."""
        spec = self.profile.registers.get(name)
        if spec is None:
            return
        if spec.type == "string":
            data = str(value).encode()[: spec.words * 2].ljust(spec.words * 2, b"\0")
            words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        else:
            words = encode(self.profile, spec, float(value), self._sf(name))
        self.set_words(name, words)

    def set_words(self, name: str, words: list[int]) -> None:
        spec = self.profile.registers[name]
        table = TABLES[spec.function]
        for i, w in enumerate(words):
            self.words[(table, spec.address + i)] = w & 0xFFFF

    def get(self, name: str) -> float:
        """The engineering value of a register (NaN if not decodable)."""
        spec = self.profile.registers[name]
        table = TABLES[spec.function]
        words = [self.words[(table, spec.address + i)] for i in range(spec.words)]
        d = decode(self.profile, spec, words, self._sf(name) if spec.scale_register else None)
        return float(d.value) if not isinstance(d.value, str) else math.nan

    def has(self, name: str) -> bool:
        return name in self.profile.registers

    # ---------------------------------------------------------------- requests
    def _active_fault(self) -> FaultSpec | None:
        t = self.clock() - self.t0
        for f in self.faults:
            if t < f.start_s or (f.duration_s is not None and t >= f.start_s + f.duration_s):
                continue
            if f.probability >= 1.0 or self.rng.random() < f.probability:
                return f
        return None

    def _step(self) -> None:
        if self.frozen:
            return
        now = self.clock()
        dt = max(0.0, now - self.last_t)
        self.last_t = now
        self.model(self, dt, False)

    def _fault_reply(self) -> ExcCodes | str | None:
        f = self._active_fault()
        if f is None:
            return None
        if f.kind == "timeout":
            raise Silence()
        if f.kind == "disconnect":
            if self.on_disconnect is not None:
                self.on_disconnect()
            raise Silence()
        if f.kind == "busy":
            return ExcCodes.DEVICE_BUSY
        if f.kind == "exception":
            try:
                return ExcCodes(f.code)
            except ValueError:
                return ExcCodes.DEVICE_FAILURE
        return f.kind  # "short" / "garbage": shape the reply

    def read(
        self, function: int, address: int, count: int, unit: int | None = None
    ) -> list[int] | ExcCodes:
        """Serve a read of ``count`` registers (function 3 or 4) on ``unit`` (None: any)."""
        self.requests += 1
        self.request_times.append(self.clock())
        fault = self._fault_reply()
        if isinstance(fault, ExcCodes):
            return fault
        table = TABLES[function]
        undefined = [a for a in range(address, address + count) if (table, a) not in self.words]
        if undefined and not (
            self.fills_gaps
            and (table, address) in self.words
            and (table, address + count - 1) in self.words
        ):
            return ExcCodes.ILLEGAL_ADDRESS
        if self._wrong_unit(table, address, count, unit):
            return ExcCodes.ILLEGAL_ADDRESS
        self._step()
        regs = [self.words.get((table, a), 0) for a in range(address, address + count)]
        if fault == "short":
            return regs[:-1]
        if fault == "garbage":
            return [0xFFFF] * count
        return regs

    @property
    def fills_gaps(self) -> bool:
        """Reads over undefined addresses between defined ones answer 0 there."""
        if self.refuse_gap_reads is not None:
            return not self.refuse_gap_reads
        return self.profile.gap_limit > 0 and not self.profile.sunspec

    def write(
        self, function: int, address: int, values: list[int], unit: int | None = None
    ) -> ExcCodes | None:
        """Serve a write (function 6/16: holding registers, 5/15: coils) on ``unit`` (None:
        any): only writable registers and coils."""
        self.requests += 1
        self.request_times.append(self.clock())
        fault = self._fault_reply()
        if isinstance(fault, ExcCodes):
            return fault
        table = TABLES.get(function, "h")
        allowed = self.writable_coils if table == "c" else self.writable
        if any(a not in allowed for a in range(address, address + len(values))):
            return ExcCodes.ILLEGAL_ADDRESS
        if self._wrong_unit(table, address, len(values), unit):
            return ExcCodes.ILLEGAL_ADDRESS
        self._step()
        values = [int(v) for v in values]  # coils arrive as bools
        name = self.name_at.get((table, address))
        spec = self.profile.registers[name] if name else None
        if spec is not None and spec.words == len(values) and spec.writable is not None:
            d = decode(
                self.profile, spec, values, self._sf(name) if name and spec.scale_register else None
            )
            if d.quality != 0 or not (spec.writable.min <= float(d.value) <= spec.writable.max):
                return ExcCodes.ILLEGAL_VALUE
        for i, w in enumerate(values):
            self.words[(table, address + i)] = int(w) & 0xFFFF
        self.write_log.append(WriteRecord(self.clock(), address, list(values), name))
        self.state["last_write_t"] = self.clock()
        if name is not None:
            self.state[f"written_t:{name}"] = self.clock()
        self.model(self, 0.0, False)
        return None

    def writes_to(self, name: str) -> list[WriteRecord]:
        return [w for w in self.write_log if w.name == name]


# -------------------------------------------------------------------- physical models


def _pv_w(dev: SimulatedDevice, peak_w: float) -> float:
    tod = (
        (dev.time_of_day_s if dev.time_of_day_s is not None else 43200.0) + dev.clock() - dev.t0
    ) % 86400
    return peak_w * max(0.0, math.sin(math.pi * (tod - 6 * 3600) / (12 * 3600)))


def _current(dev: SimulatedDevice, name: str, amps: float) -> float:
    """A meter with an unsigned current register reports the magnitude (ABB B23, Socomec)."""
    spec = dev.profile.registers.get(name)
    return abs(amps) if spec is not None and spec.type.startswith("uint") else amps


def _meter_model(dev: SimulatedDevice, dt: float, init: bool) -> None:
    """Net power at a connection = building load - PV (positive = import)."""
    st = dev.state
    if init:
        st.update(import_wh=1_234_000.0, export_wh=567_000.0)
    t = dev.clock() - dev.t0
    load_w = 1800 + 400 * math.sin(2 * math.pi * t / 600) + dev.rng.gauss(0, 30)
    pv_w = _pv_w(dev, 4000) * (1 + dev.rng.gauss(0, 0.01))
    net_w = {"grid": load_w - pv_w, "pv": -pv_w, "load": load_w}[dev.role]
    if net_w >= 0:
        st["import_wh"] += net_w * dt / 3600
    else:
        st["export_wh"] += -net_w * dt / 3600
    phases = [n for n in ("1", "2", "3") if dev.has(f"power_l{n}_w")]
    for n in phases:
        v = 230 + dev.rng.gauss(0, 0.5)
        p = net_w / len(phases)
        dev.set(f"voltage_l{n}_v", v)
        dev.set(f"current_l{n}_a", _current(dev, f"current_l{n}_a", p / v))
        dev.set(f"power_l{n}_w", p)
    if dev.has("voltage_v"):
        v = 230 + dev.rng.gauss(0, 0.5)
        dev.set("voltage_v", v)
        dev.set("current_a", _current(dev, "current_a", net_w / v))
    dev.set("total_power_w", net_w)
    dev.set("frequency_hz", 50 + dev.rng.gauss(0, 0.01))
    dev.set("import_energy_kwh", round(st["import_wh"] / 1000, 1))
    dev.set("export_energy_kwh", round(st["export_wh"] / 1000, 1))


def _failsafe_timeout_s(dev: SimulatedDevice) -> float:
    """The firmware timeout of a device whose timeout is not a register [s]."""
    if dev.fixed_timeout_s is not None:
        return dev.fixed_timeout_s
    ctrl = dev.profile.control
    t = ctrl.failsafe.timeout_s if ctrl is not None else None
    return t if t is not None else math.inf


def _victron_timers(dev: SimulatedDevice, now: float) -> None:
    """ESS mode 3: the Multi stops following a setpoint that is not refreshed (passthru).

    A mode 1/2 grid setpoint (2700) is kept forever: the GX stores it (no timer at all).
    """
    st = dev.state
    if dev.get("ess_mode") != 3:
        return
    last = st.get("written_t:ess_setpoint_l1_w", -math.inf)
    if not st.get("passthru") and now - last > _failsafe_timeout_s(dev):
        st["passthru"], st["passthru_t"] = 1.0, now
        st["watchdog_expired"] = st.get("watchdog_expired", 0) + 1


def _victron_model(dev: SimulatedDevice, dt: float, init: bool) -> None:
    """GX + Multi. ESS mode 1/2: the battery covers what the grid setpoint 2700 leaves (kept
    forever). Mode 3: the battery takes the AC-input setpoint 37 (nothing on AC-out), within
    the disable-charge/feed-in flags, until it is not refreshed for the firmware's timeout;
    then passthru (0 W) until the next write. SoC integrates the battery power."""
    st = dev.state
    if init:
        st.update(soc=55.0, capacity_wh=10_000.0, passthru=1.0, passthru_t=dev.clock())
        # the GX accepts the mode 1/2 grid setpoint; the profile only never writes it
        dev.writable.add(dev.profile.registers["grid_setpoint_w"].address)
        dev.set("grid_setpoint_w", 0)
        dev.set("ess_mode", 1)
    now = dev.clock()
    if st.get("written_t:ess_setpoint_l1_w", -math.inf) >= st["passthru_t"]:
        st["passthru"] = 0.0  # a setpoint since passthru began: the Multi follows it again
    _victron_timers(dev, now)
    t = now - dev.t0
    net_w = 1500 + 300 * math.sin(2 * math.pi * t / 600) - _pv_w(dev, 3000)
    if dev.get("ess_mode") == 3:
        battery_w = 0.0 if st["passthru"] else dev.get("ess_setpoint_l1_w")
        if dev.get("disable_charge") == 1:
            battery_w = min(battery_w, 0.0)
        if dev.get("disable_feed_in") == 1:
            battery_w = max(battery_w, 0.0)
    else:
        battery_w = dev.get("grid_setpoint_w") - net_w
    battery_w = max(-5000.0, min(5000.0, battery_w))  # + = charging
    if (st["soc"] >= 100 and battery_w > 0) or (st["soc"] <= 0 and battery_w < 0):
        battery_w = 0.0
    st["soc"] = min(100.0, max(0.0, st["soc"] + battery_w * dt / 3600 / st["capacity_wh"] * 100))
    v = 52.0 + (st["soc"] - 50) * 0.04
    dev.set("battery_voltage_v", v)
    dev.set("battery_current_a", battery_w / v)
    dev.set("battery_power_w", battery_w)
    dev.set("battery_soc_pct", round(st["soc"]))
    dev.set("battery_state", 1 if battery_w > 0 else (2 if battery_w < 0 else 0))
    dev.set("vebus_state", 3 if battery_w > 0 else (9 if battery_w < 0 else 8))
    dev.set("grid_power_l1_w", net_w + battery_w)


def _charger_timers(dev: SimulatedDevice, now: float) -> None:
    """The Modbus idle timeout (register 88) hands control back to the user (81 = 0) when no
    write arrives for that many seconds (0: no timeout)."""
    st = dev.state
    timeout = dev.get("modbus_idle_timeout_s")
    idle_s = now - st.get("last_write_t", -math.inf)
    if dev.get("control_mode") == 1 and timeout > 0 and idle_s > timeout:
        dev.set("control_mode", 0)
        dev.set("power_setpoint_w", 0)
        st["watchdog_expired"] = st.get("watchdog_expired", 0) + 1


def _charger_model(dev: SimulatedDevice, dt: float, init: bool) -> None:
    """Wallbox Quasar with a car plugged in: in remote mode the power follows the setpoint;
    the idle timeout (:func:`_charger_timers`) and a reboot leave remote mode."""
    st = dev.state
    if init:
        st.update(ev_soc=40.0, capacity_wh=40_000.0, started=0.0)
        dev.set("charger_state", 1)  # connected, waiting
        dev.set("ev_soc_pct", 40)
    _charger_timers(dev, dev.clock())
    remote = dev.get("control_mode") == 1
    if dev.get("action") == 1:
        st["started"] = 1.0
    elif dev.get("action") == 2:
        st["started"] = 0.0
    power = dev.get("power_setpoint_w") if remote and st["started"] else 0.0
    if (st["ev_soc"] >= 100 and power > 0) or (st["ev_soc"] <= 5 and power < 0):
        power = 0.0
    st["ev_soc"] = min(100.0, max(0.0, st["ev_soc"] + power * dt / 3600 / st["capacity_wh"] * 100))
    dev.set("actual_power_w", power)
    dev.set("ev_soc_pct", round(st["ev_soc"]))
    dev.set("charger_state", 2 if power > 0 else (3 if power < 0 else 1))


def _storage_timers(dev: SimulatedDevice, now: float) -> None:
    """Model 124 revert timer: InOutWRte_RvrtTms after the last rate (or mode) write, or the
    last change of the 802 controller heartbeat, control reverts (0: no timer)."""
    st = dev.state
    hb = dev.get("controller_heartbeat")
    if hb != st.get("ctrl_hb"):
        st["ctrl_hb"], st["ctrl_hb_t"] = hb, now
    rvrt = dev.get("revert_timeout_s")
    mode_t = st.get("written_t:storage_control_mode", -math.inf)
    last_sp = max(st.get("written_t:discharge_rate_pct", -math.inf), mode_t)
    last_hb = max(st.get("ctrl_hb_t", -math.inf), mode_t)
    expired = rvrt > 0 and (now - last_sp > rvrt or now - last_hb > rvrt)
    if dev.get("storage_control_mode") and expired:
        dev.set("storage_control_mode", 0)
        dev.set("discharge_rate_pct", 0)
        st["reverted"] = st.get("reverted", 0) + 1


def _storage_model(dev: SimulatedDevice, dt: float, init: bool) -> None:
    """SunSpec storage: model 124 rate control with revert timer, 802 heartbeat and SoC."""
    st = dev.state
    if init:
        st.update(soc=60.0, hb=0.0)
        for sf, v in {
            "WHRtg_SF": 1, "SoC_SF": -1, "SoH_SF": 0, "V_SF": -1, "A_SF": -1, "W_SF": 0,
            "WChaMax_SF": 0, "ChaState_SF": -1, "InOutWRte_SF": -1,
        }.items():  # fmt: skip
            dev.set(sf, v)
        dev.set("manufacturer", "Noaber")
        dev.set("device_model", "SimStorage 10")
        dev.set("serial_number", "SIM-0001")
        dev.set("capacity_wh", 10_000)
        dev.set("soh_pct", 98)
        dev.set("max_charge_w", 5000)
        dev.set("revert_timeout_s", 0)
        if dev.has("dod_pct"):
            dev.set_words("dod_pct", [0xFFFF])  # not implemented
        st["ctrl_hb"] = dev.get("controller_heartbeat")
        st["ctrl_hb_t"] = dev.clock()
    st["hb"] = (st["hb"] + dt) % 65535
    dev.set("battery_heartbeat", int(st["hb"]))
    _storage_timers(dev, dev.clock())
    mode: int = int(dev.get("storage_control_mode"))
    power: float = 0.0  # + = charging (our convention)
    if mode:
        power = dev.get("discharge_rate_pct") / 100 * dev.get("max_charge_w")
        if (not mode & 1 and power > 0) or (not mode & 2 and power < 0):
            power = 0.0
    if (st["soc"] >= 100 and power > 0) or (st["soc"] <= 0 and power < 0):
        power = 0.0
    st["soc"] = min(100.0, max(0.0, st["soc"] + power * dt / 3600 / 10_000 * 100))
    volt_v = 400 + (st["soc"] - 50) * 0.5
    dev.set("soc_pct", round(st["soc"], 1))
    dev.set("charge_state_pct", round(st["soc"], 1))
    dev.set("voltage_v", volt_v)
    dev.set("current_a", power / volt_v)
    dev.set("power_w", power)
    dev.set("charge_status", 4 if power > 0 else (3 if power < 0 else 2))
    dev.set("battery_state", 2)


def _inverter_timers(dev: SimulatedDevice, now: float) -> None:
    """Model 123: WMaxLimPct_RvrtTms after the last limit write the limit is dropped."""
    st = dev.state
    rvrt = dev.get("limit_revert_timeout_s")
    last = max(
        st.get("written_t:limit_pct", -math.inf), st.get("written_t:limit_enabled", -math.inf)
    )
    if dev.get("limit_enabled") == 1 and rvrt > 0 and now - last > rvrt:
        dev.set("limit_enabled", 0)
        st["reverted"] = st.get("reverted", 0) + 1


def _inverter_model(dev: SimulatedDevice, dt: float, init: bool) -> None:
    """SunSpec PV inverter: production follows the PV day curve, capped by the model 123
    active-power limit while it is enabled; the energy counter integrates production."""
    st = dev.state
    if init:
        for sf, v in {"W_SF": 0, "WH_SF": 0, "WMax_SF": 1, "WMaxLimPct_SF": -1}.items():
            dev.set(sf, v)
        dev.set("manufacturer", "Noaber")
        dev.set("device_model", "SimInverter 10")
        dev.set("serial_number", "SIM-INV-0001")
        dev.set("max_power_w", 10_000)
        dev.set("limit_pct", 100)
        dev.set("limit_revert_timeout_s", 0)
        st["energy_wh"] = 5_000_000.0
    _inverter_timers(dev, dev.clock())
    available_w = _pv_w(dev, 8000) * (1 + dev.rng.gauss(0, 0.005))
    produced_w = available_w
    if dev.get("limit_enabled") == 1:
        produced_w = min(produced_w, dev.get("limit_pct") / 100 * dev.get("max_power_w"))
    produced_w = max(0.0, produced_w)
    st["available_w"] = available_w
    st["energy_wh"] += produced_w * dt / 3600
    dev.set("ac_power_w", -produced_w)  # our sign: production is negative
    dev.set("energy_total_wh", round(st["energy_wh"]))
    dev.set("operating_state", 5 if produced_w < available_w - 1 else 4)


def _generic_model(dev: SimulatedDevice, dt: float, init: bool) -> None:
    """A profile without a model serves its registers' ``sim_value`` (user profiles)."""
    if init:
        for name, spec in dev.profile.registers.items():
            if spec.sim_value is not None:
                dev.set(name, spec.sim_value)


MODELS: dict[str, Callable[[SimulatedDevice, float, bool], None]] = {
    "meter": _meter_model,
    "battery": _victron_model,
    "charger": _charger_model,
    "storage": _storage_model,
    "inverter": _inverter_model,
}
#: The device's own timers, run by :meth:`SimulatedDevice.tick` whether or not it is asked.
TIMERS: dict[str, Callable[[SimulatedDevice, float], None]] = {
    "battery": _victron_timers,
    "charger": _charger_timers,
    "storage": _storage_timers,
    "inverter": _inverter_timers,
}
#: The registers each physical model reads (a profile without them gets the generic model).
MODEL_NEEDS: dict[str, set[str]] = {
    "battery": {"ess_mode", "ess_setpoint_l1_w", "grid_setpoint_w", "disable_charge",
                "disable_feed_in"},
    "charger": {"control_mode", "modbus_idle_timeout_s", "action", "power_setpoint_w"},
    "storage": {"controller_heartbeat", "revert_timeout_s", "storage_control_mode",
                "discharge_rate_pct", "max_charge_w"},
    "inverter": {"limit_revert_timeout_s", "limit_enabled", "limit_pct", "max_power_w"},
}  # fmt: skip
#: Control registers after a power cycle (settings such as the ESS mode or the charger's
#: idle timeout are kept).
POWER_ON: dict[str, dict[str, float]] = {
    "battery": {"ess_setpoint_l1_w": 0, "disable_charge": 0, "disable_feed_in": 0},
    "charger": {"control_mode": 0, "setpoint_type": 0, "power_setpoint_w": 0, "action": 0},
    "storage": {"storage_control_mode": 0, "discharge_rate_pct": 0, "revert_timeout_s": 0},
    "inverter": {"limit_enabled": 0, "limit_pct": 100, "limit_revert_timeout_s": 0},
}


# -------------------------------------------------------------------- pymodbus server glue


class SimContext(ModbusServerContext):
    """A pymodbus server context that serves :class:`SimulatedDevice` objects by unit id."""

    def __init__(self, devices: dict[int, SimulatedDevice]):  # deliberately no super().__init__
        self.sim = devices
        self._devices = {}
        self.simdevices = []
        self.old_simulator = True  # pymodbus then calls our async_getValues/async_setValues
        self.server: ModbusTcpServer | ModbusSerialServer | None = None

    def _device(self, device_id: int) -> SimulatedDevice:
        dev = self.sim.get(device_id)
        if dev is None:
            raise NoSuchIdException(f"no unit {device_id}")  # silence on a bus
        return dev

    async def async_getValues(self, device_id, func_code, address, count=1):
        dev = self._device(device_id)
        try:
            if func_code in (5, 6, 16, 22, 23):  # the echo after a write: no new fault roll
                table = TABLES.get(func_code, "h")
                return [dev.words.get((table, a), 0) for a in range(address, address + count)]
            return dev.read(func_code, address, count, device_id)
        except Silence:
            raise NoSuchIdException("silence") from None

    async def async_setValues(self, device_id, func_code, address, values):
        dev = self._device(device_id)
        try:
            return dev.write(func_code, address, list(values), device_id)
        except Silence:
            raise NoSuchIdException("silence") from None

    def device_ids(self):
        return list(self.sim)


class SimServer:
    """A Modbus TCP server (or RTU server on a serial port) for simulated devices.

    ``port=0`` picks a free port; :attr:`port` holds the one bound after :meth:`start`.
    """

    def __init__(
        self,
        devices: dict[int, SimulatedDevice],
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 9600,
        tick_s: float = 0.1,
        framer: str = "socket",
    ):
        self.devices = dict(devices)
        for dev in devices.values():  # a device that serves registers on more unit ids
            for unit in dev.extra_units:
                self.devices.setdefault(unit, dev)
        devices = self.devices
        self.tick_s = tick_s
        self._ticker: asyncio.Task | None = None
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.baudrate = baudrate
        #: ``rtu`` on TCP: RTU frames over TCP (a serial-to-Ethernet converter's port).
        self.framer = framer
        self.context = SimContext(devices)
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        for dev in devices.values():
            dev.on_disconnect = self.drop_connections

    async def start(self) -> SimServer:
        if self.serial_port is not None:
            self.server = ModbusSerialServer(
                self.context,
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.baudrate,
                ignore_missing_devices=True,
            )
        else:
            self.server = ModbusTcpServer(
                self.context,
                address=(self.host, self.port),
                framer=FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET,
                ignore_missing_devices=True,
            )
        self.context.server = self.server
        try:
            await self.server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus: "Could not start listen"
            where = self.serial_port or f"{self.host}:{self.port}"
            raise NoaberError(f"simulator cannot listen on {where} (in use?): {exc}") from None
        if self.serial_port is None:
            transport = self.server.transport
            self.port = transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def _tick(self) -> None:
        """The devices' own timers run in real time, whether anyone asks them or not."""
        while True:
            await asyncio.sleep(self.tick_s)
            for dev in {id(d): d for d in self.devices.values()}.values():
                try:
                    dev.tick()
                except Exception:  # a broken model must not stop the server
                    log.exception("simulator tick failed")

    def drop_connections(self) -> None:
        """Close every client connection (the ``disconnect`` fault)."""
        if self.server is None:
            return
        for conn in list(self.server.active_connections.values()):
            with contextlib.suppress(Exception):
                conn.close()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.server is not None:
            self.drop_connections()
            await self.server.shutdown()
            self.server = None
            await asyncio.sleep(0)


def device_from_config(
    cfg: GatewayConfig,
    name: str,
    clock: Callable[[], float] = time.monotonic,
    time_of_day_s: float | None = None,
) -> SimulatedDevice:
    """A simulated device for a configured device, with its faults and seed."""
    dev_cfg = next(d for d in cfg.devices if d.name == name)
    return SimulatedDevice(
        cfg.profiles[name],
        clock=clock,
        rng=random.Random(dev_cfg.seed),
        faults=list(dev_cfg.faults),
        role=dev_cfg.sim_role,
        time_of_day_s=time_of_day_s,
        unit_map=dict(dev_cfg.unit_ids),
        fixed_timeout_s=dev_cfg.failsafe_timeout_s,
    )


async def serve_config(
    cfg: GatewayConfig,
    clock: Callable[[], float] = time.monotonic,
    time_of_day_s: float | None = None,
) -> tuple[list[SimServer], dict[str, SimulatedDevice]]:
    """Start simulators for every device of a site: one TCP server per host:port, one RTU
    server per bus (several unit ids each). Returns the servers and the devices by name."""
    devices = {d.name: device_from_config(cfg, d.name, clock, time_of_day_s) for d in cfg.devices}
    groups: dict[tuple, dict[int, SimulatedDevice]] = {}
    for d in cfg.devices:
        key: tuple
        if d.transport == "rtu":
            key = ("rtu", str(d.bus))
        elif d.port == 0:  # a free port of its own
            key = (d.host, f"0:{d.name}", d.framer)
        else:
            key = (d.host, d.port, d.framer)
        unit = cfg.unit_id(d)
        group = groups.setdefault(key, {})
        for u in {unit} | devices[d.name].extra_units:
            if u in group:
                raise ValueError(f"devices: unit id {u} used twice on {key[0]}:{key[1]}")
            group[u] = devices[d.name]
    servers: list[SimServer] = []
    for key, devs in groups.items():
        if key[0] == "rtu":
            bus = cfg.buses[str(key[1])]
            srv = SimServer(devs, serial_port=bus.port, baudrate=bus.baudrate)
        else:
            port = key[1] if isinstance(key[1], int) else 0
            srv = SimServer(devs, host=str(key[0]), port=port, framer=key[2])
        servers.append(await srv.start())
    return servers, devices
