"""The generic driver: one Modbus read or one write over a link, which returns or raises.

Timing, retries and backoff belong to the core loop (:mod:`modbus_gateway.poller`), not here
(docs/SOURCES.md, Patterns: evcc). A :class:`Link` is one physical path — a TCP endpoint or an RS-485 bus — with
one master: a lock serialises requests and, on RTU, a pause separates frames.

pymodbus 3.10+ API: ``device_id=``; a reply with fewer registers than asked is returned as a
success by pymodbus, so the count is checked here and raised as :class:`ShortReply`.

Register kinds: function 1 coils and 2 discrete inputs (one bit each, returned as words of 0
or 1; written with function 5 for one coil, 15 for several), 3 holding and 4 input registers
(written with 6 for one, 16 for several). A TCP link may carry RTU frames (``framer="rtu"``:
a serial-to-Ethernet converter that passes the RS-485 frames through unchanged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from energy.errors import NoaberError
from modbus_gateway.plan import ReadBlock, plan_reads
from modbus_gateway.profiles import Decoded, Profile, decode, encode

log = logging.getLogger(__name__)

# Modbus exception codes (Modbus Application Protocol V1.1b3, clause 7).
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_FAILURE = 4
DEVICE_BUSY = 6
GATEWAY_PATH_UNAVAILABLE = 0x0A
GATEWAY_TARGET_NO_RESPONSE = 0x0B


class ModbusError(Exception):
    """A failed Modbus transaction."""


class DeviceTimeout(ModbusError):
    """No reply within the timeout (a dead slave on RS-485 is silence)."""


class LinkDown(ModbusError):
    """The TCP connection or serial port cannot be opened or was lost."""


class ExceptionReply(ModbusError):
    """The device answered with a Modbus exception code."""

    def __init__(self, code: int, what: str):
        self.code = code
        super().__init__(f"{what}: exception code {code}")


class DeviceBusy(ExceptionReply):
    """Exception 6, slave device busy: retry later with backoff."""


class ShortReply(ModbusError):
    """A reply with fewer registers than requested (pymodbus returns it as success)."""


class WriteRefused(NoaberError):
    """A write the profile does not allow (register not writable, value out of its limits)."""


class WriteVerifyError(NoaberError):
    """The read-back after a write does not show the written value."""


class Link:
    """One master on one physical path, shared by every device (unit id) behind it.

    Parameters
    ----------
    client : pymodbus async client
        Created with ``retries=0`` and ``reconnect_delay=0``: the core loop owns retries.
    timeout_s : float
        Per-request timeout [s].
    inter_frame_pause_s : float
        Minimum silence between the end of one transaction and the next request [s]
        (RS-485: 30 ms is a common default; 0 on TCP).
    """

    def __init__(self, client: Any, name: str, timeout_s: float, inter_frame_pause_s: float = 0.0):
        self.client = client
        self.name = name
        self.timeout_s = timeout_s
        self.inter_frame_pause_s = inter_frame_pause_s
        self.lock = asyncio.Lock()
        self._last_end = 0.0
        self.requests = 0  # transactions attempted

    @classmethod
    def tcp(
        cls,
        host: str,
        port: int,
        timeout_s: float,
        framer: str = "socket",
        inter_frame_pause_s: float = 0.0,
    ) -> Link:
        """A Modbus TCP link; ``framer="rtu"``: RTU frames (with CRC) over TCP, as a
        serial-to-Ethernet converter in transparent mode passes them."""
        kind = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        client = AsyncModbusTcpClient(
            host, port=port, framer=kind, timeout=timeout_s, retries=0, reconnect_delay=0
        )
        scheme = "rtu-over-tcp" if framer == "rtu" else "tcp"
        return cls(client, f"{scheme}://{host}:{port}", timeout_s, inter_frame_pause_s)

    @classmethod
    def rtu(
        cls,
        port: str,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout_s: float = 0.5,
        inter_frame_pause_s: float = 0.03,
    ) -> Link:
        client = AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            bytesize=bytesize,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
        )
        return cls(client, f"rtu://{port}", timeout_s, inter_frame_pause_s)

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        try:
            ok = await asyncio.wait_for(self.client.connect(), self.timeout_s + 1.0)
        except (TimeoutError, OSError) as exc:
            raise LinkDown(f"{self.name}: cannot connect: {exc}") from None
        if not ok:
            raise LinkDown(f"{self.name}: cannot connect")

    async def _pause(self) -> None:
        if self.inter_frame_pause_s > 0:
            wait = self._last_end + self.inter_frame_pause_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    async def _call(self, what: str, coro_fn, *args, **kwargs):
        async with self.lock:
            await self._ensure_connected()
            await self._pause()
            self.requests += 1
            try:
                return await asyncio.wait_for(coro_fn(*args, **kwargs), self.timeout_s * 2 + 0.5)
            except ConnectionException as exc:
                self.client.close()
                raise LinkDown(f"{self.name} {what}: {exc}") from None
            except (ModbusIOException, TimeoutError):
                if not self.client.connected:
                    raise LinkDown(f"{self.name} {what}: connection closed") from None
                raise DeviceTimeout(f"{self.name} {what}: no reply") from None
            except ModbusException as exc:
                raise ModbusError(f"{self.name} {what}: {exc}") from None
            finally:
                self._last_end = time.monotonic()

    def _raise_for(self, rr: Any, what: str) -> None:
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            if code == DEVICE_BUSY:
                raise DeviceBusy(code, f"{self.name} {what}")
            raise ExceptionReply(code, f"{self.name} {what}")

    async def read(self, unit: int, function: int, address: int, count: int) -> list[int]:
        """Read ``count`` registers (function 3/4) or bits (1/2, as words of 0 or 1); raises on
        timeout, exception reply or short reply."""
        what = f"unit {unit} fc{function} {address}+{count}"
        fns = {
            1: self.client.read_coils,
            2: self.client.read_discrete_inputs,
            3: self.client.read_holding_registers,
            4: self.client.read_input_registers,
        }
        if function not in fns:
            raise NoaberError(f"function code {function} is not a read (1, 2, 3 or 4)")
        rr = await self._call(what, fns[function], address, count=count, device_id=unit)
        self._raise_for(rr, what)
        if function in (1, 2):
            # bits come padded to a whole byte; fewer than asked is a short reply
            bits = list(rr.bits)
            if len(bits) < count:
                raise ShortReply(f"{self.name} {what}: got {len(bits)} bits")
            return [1 if b else 0 for b in bits[:count]]
        regs = list(rr.registers)
        if len(regs) < count:
            raise ShortReply(f"{self.name} {what}: got {len(regs)} registers")
        return regs[:count]

    async def write_coils(self, unit: int, address: int, bits: Sequence[int]) -> None:
        """Write coils: function 5 for one coil, 15 for several."""
        what = f"unit {unit} write coil {address}={list(bits)}"
        if len(bits) == 1:
            rr = await self._call(
                what, self.client.write_coil, address, bool(bits[0]), device_id=unit
            )
        else:
            rr = await self._call(
                what, self.client.write_coils, address, [bool(b) for b in bits], device_id=unit
            )
        self._raise_for(rr, what)

    async def write(self, unit: int, address: int, words: Sequence[int]) -> None:
        """Write registers: function 6 for one register (some devices reject 16 for one), else 16."""
        what = f"unit {unit} write {address}={list(words)}"
        if len(words) == 1:
            rr = await self._call(
                what, self.client.write_register, address, words[0], device_id=unit
            )
        else:
            rr = await self._call(
                what, self.client.write_registers, address, list(words), device_id=unit
            )
        self._raise_for(rr, what)

    def close(self) -> None:
        self.client.close()


def decode_words(profile: Profile, words: dict[str, list[int]]) -> dict[str, Decoded]:
    """Decode registers read (by name), applying SunSpec scale factors read alongside."""
    out: dict[str, Decoded] = {}
    sfs: dict[str, int | None] = {}
    for name, w in words.items():
        spec = profile.registers[name]
        if spec.type == "sunssf":
            d = decode(profile, spec, w)
            out[name] = d
            sfs[name] = int(d.value) if d.quality == 0 else None  # type: ignore[arg-type]
    for name, w in words.items():
        spec = profile.registers[name]
        if spec.type == "sunssf":
            continue
        sf = sfs.get(spec.scale_register) if spec.scale_register else None
        out[name] = decode(profile, spec, w, sf)
    return out


def split_block(profile: Profile, block: ReadBlock, regs: list[int]) -> dict[str, list[int]]:
    """The words of each register of a block."""
    out = {}
    for name in block.registers:
        spec = profile.registers[name]
        off = spec.address - block.address
        out[name] = regs[off : off + spec.words]
    return out


class Driver:
    """Reads and writes one device (a unit id behind a link) by register name."""

    def __init__(
        self, link: Link, unit_id: int, profile: Profile, unit_map: dict[int, int] | None = None
    ):
        self.link = link
        self.unit_id = unit_id
        self.profile = profile
        #: A register's own unit id (profile) -> the one this site's device answers on.
        self.unit_map = dict(unit_map or {})

    def unit_of(self, unit_id: int | None) -> int:
        """The unit id a request for a register with ``unit_id`` (None: the device's) goes to."""
        if unit_id is None:
            return self.unit_id
        return self.unit_map.get(unit_id, unit_id)

    async def read_block(self, block: ReadBlock) -> dict[str, list[int]]:
        """One read request; the words per register name."""
        unit = self.unit_of(block.unit_id)
        regs = await self.link.read(unit, block.function, block.address, block.count)
        return split_block(self.profile, block, regs)

    async def read_values(self, names: Iterable[str]) -> dict[str, Decoded]:
        """Read and decode registers (one request per coalesced block); raises on failure."""
        words: dict[str, list[int]] = {}
        for block in plan_reads(self.profile, names):
            words.update(await self.read_block(block))
        return decode_words(self.profile, words)

    async def write_value(
        self, name: str, value: float, scale_factor: int | None = None
    ) -> list[int]:
        """Write an engineering value to a writable register; returns the words written.

        Raises :class:`WriteRefused` for a register the profile does not mark writable or a
        value outside its limits (callers clamp first).
        """
        spec = self.profile.registers.get(name)
        if spec is None:
            raise WriteRefused(f"profile {self.profile.name} has no register {name!r}")
        if spec.writable is None:
            raise WriteRefused(f"register {name!r} of {self.profile.name} is not writable")
        if spec.model is not None and not self.profile.addresses_known:
            # a SunSpec register's address is relative to its model until discovery found
            # the model's base: writing it now would hit whatever sits at that address
            raise WriteRefused(
                f"{name} of {self.profile.name}: SunSpec model {spec.model} not discovered "
                "on the device yet (its address is unknown); nothing written"
            )
        if not spec.writable.min <= value <= spec.writable.max:
            raise WriteRefused(
                f"{name} = {value} outside [{spec.writable.min}, {spec.writable.max}]"
            )
        words = encode(self.profile, spec, value, scale_factor)
        if spec.function == 1:
            await self.link.write_coils(self.unit_of(spec.unit_id), spec.address, words)
        else:
            await self.link.write(self.unit_of(spec.unit_id), spec.address, words)
        return words
