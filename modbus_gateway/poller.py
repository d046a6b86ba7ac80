"""The core loop: polls every device on its interval, owns timing, retries and backoff.

Quality of each value (``energy.samples.Quality``):

- GOOD: decoded and within the profile's plausible range.
- INVALID: the device answered but the value cannot be trusted: a short reply (fewer registers
  than asked), an exception reply (illegal address/value, device failure), NaN, a value out of
  range or a bad scale factor. The value is NaN.
- STALE: no answer this time (timeout, lost link, busy after retries, exception 0x0A/0x0B from
  a Modbus gateway whose target is silent), and the last good value
  is younger than ``stale_after_s`` (default three poll intervals): that value, flagged.
- MISSING: no answer and no recent good value, or SunSpec "not implemented". The value is NaN.

A device that fails ``dead_after`` polls in a row is backed off (exponentially, up to
``backoff_max_s``), so a dead slave cannot stall an RS-485 bus; it is picked up again on the
first poll that succeeds. A poll fails when no block brought data or a real exception: silence,
a lost link, busy after its retries (exception 6: a device that is always busy is backed off
too) and 0x0A/0x0B from a Modbus gateway whose target is unreachable or silent. The device's
transitions are logged once each (``up``, ``down`` after ``dead_after`` failed polls,
``recovered``) and kept in :attr:`DeviceRuntime.transitions`, not logged per poll.

Reads are coalesced (:func:`modbus_gateway.plan.plan_reads`), bridging gaps where the profile
allows it; a device that answers a bridged read with exception 2 (illegal address) is read
without bridging from then on, in the same poll.

"On time": the share of the device's due slots (one per ``poll_interval_s``) polled within
``on_time_s`` of the slot; slots skipped (an overrun, or backoff) count as not on time.
No exception escapes the loop (docs/SOURCES.md: evcc ``Site.Run``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from energy.errors import NoaberError
from energy.samples import Quality
from modbus_gateway.config import DeviceConfig, GatewayConfig
from modbus_gateway.driver import (
    GATEWAY_PATH_UNAVAILABLE,
    GATEWAY_TARGET_NO_RESPONSE,
    ILLEGAL_ADDRESS,
    DeviceBusy,
    DeviceTimeout,
    Driver,
    ExceptionReply,
    Link,
    LinkDown,
    ModbusError,
    ShortReply,
    decode_words,
)
from modbus_gateway.plan import ReadBlock, plan_reads
from modbus_gateway.profiles import Decoded, Profile, resolve_sunspec
from modbus_gateway.spool import Sample
from modbus_gateway.sunspec import NotSunSpec, discover, model_bases

log = logging.getLogger(__name__)


class Clock:
    """Wall time for timestamps, monotonic time and sleep for scheduling (injectable)."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def wait_or_stop(clock: Clock, stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` on ``clock`` (an injected clock's seconds, e.g. a simulated day's)
    unless ``stop`` is set first; True: stopped."""
    if stop.is_set():
        return True
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
    return stop.is_set()


@dataclass(frozen=True)
class RetryPolicy:
    """Retries and backoff of the core loop."""

    busy_retries: int = 2  # extra attempts after exception 6
    busy_backoff_s: float = 0.05  # first wait after busy, doubled per attempt
    dead_after: int = 3  # failed polls in a row before backing off
    backoff_max_s: float = 60.0
    on_time_s: float = 0.1  # a poll that starts within this of its slot is on time


@dataclass
class DeviceRuntime:
    """A configured device at run time: driver, read plan, last values and counters."""

    config: DeviceConfig
    profile: Profile
    driver: Driver
    channels: dict[str, str]  # register -> channel key
    factors: dict[str, float] = field(default_factory=dict)  # register -> unit/sign factor
    blocks: list[ReadBlock] = field(default_factory=list)
    discovered: bool = False
    values: dict[str, tuple[float | str, Quality, int]] = field(default_factory=dict)
    last_good: dict[str, tuple[float | str, int]] = field(default_factory=dict)
    failures: int = 0  # failed polls in a row
    polls: int = 0
    polls_on_time: int = 0
    polls_failed: int = 0
    polls_skipped: int = 0  # due slots passed without a poll (overrun or backoff)
    requests: int = 0
    #: Blocks bridging gaps are not used: the device refused one with exception 2.
    gap_fill_refused: bool = False
    #: ``None`` (not polled yet), True (answering) or False (down: ``dead_after`` failures).
    up: bool | None = None
    #: (monotonic time, "up" | "down" | "recovered", reason): one entry per transition.
    transitions: list[tuple[float, str, str]] = field(default_factory=list)
    status: str = "starting"
    last_error: str = ""
    next_due: float = 0.0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def on_time_pct(self) -> float:
        """Due slots polled on time, skipped slots counted as late [%]."""
        due = self.polls + self.polls_skipped
        return 100.0 * self.polls_on_time / due if due else 0.0

    @property
    def stale_after_ns(self) -> int:
        s = self.config.stale_after_s or 3 * self.config.poll_interval_s
        return int(s * 1e9)


class Gateway:
    """Polls the devices of a site and hands sample batches to ``on_samples``.

    Parameters
    ----------
    config : GatewayConfig
        Devices and buses.
    on_samples : callable, optional
        Receives the samples of each poll (e.g. :meth:`StoreAndForward.put`).
    clock : Clock, optional
        Injected time source.
    """

    def __init__(
        self,
        config: GatewayConfig,
        on_samples: Callable[[list[Sample]], None] | None = None,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
    ):
        self.config = config
        self.on_samples = on_samples
        self.clock = clock or Clock()
        self.policy = policy or RetryPolicy()
        self.links: dict[str, Link] = {}
        self.devices: dict[str, DeviceRuntime] = {}
        for d in config.devices:
            link = self._link_for(d)
            prof = config.profiles[d.name]
            rt = DeviceRuntime(
                d,
                prof,
                Driver(link, config.unit_id(d), prof, d.unit_ids),
                config.channel_map(d),
                config.factors(d),
            )
            if not prof.sunspec:
                rt.blocks = plan_reads(prof, rt.channels)
                rt.discovered = True
            self.devices[d.name] = rt
        self._stop = asyncio.Event()

    def _link_for(self, d: DeviceConfig) -> Link:
        if d.transport == "rtu":
            assert d.bus is not None
            key = f"rtu:{d.bus}"
            if key not in self.links:
                b = self.config.buses[d.bus]
                self.links[key] = Link.rtu(
                    b.port,
                    b.baudrate,
                    b.parity,
                    b.stopbits,
                    b.bytesize,
                    b.timeout_s,
                    b.inter_frame_pause_s,
                )
        else:
            key = f"{d.framer}:{d.host}:{d.port}"
            if key not in self.links:
                self.links[key] = Link.tcp(
                    d.host, d.port, d.timeout_s, d.framer, d.inter_frame_pause_s
                )
        return self.links[key]

    @property
    def channels(self) -> list[str]:
        return [c for dev in self.devices.values() for c in dev.channels.values()]

    # ------------------------------------------------------------------ one poll
    async def _discover(self, dev: DeviceRuntime) -> None:
        models = await discover(dev.driver.link, dev.driver.unit_id)
        bases = model_bases(models)
        missing = [m for m in dev.profile.sunspec_models if m not in bases]
        if missing:
            log.warning("%s: SunSpec models %s not found", dev.name, missing)
        prof = resolve_sunspec(dev.profile, bases)
        dev.driver.profile = prof
        dev.blocks = plan_reads(
            prof, [r for r in dev.channels if r in prof.registers], not dev.gap_fill_refused
        )
        dev.discovered = True

    async def _read(self, dev: DeviceRuntime, block: ReadBlock) -> dict[str, list[int]]:
        for attempt in range(self.policy.busy_retries + 1):
            try:
                dev.requests += 1
                return await dev.driver.read_block(block)
            except DeviceBusy:
                if attempt == self.policy.busy_retries:
                    raise
                await self.clock.sleep(self.policy.busy_backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    async def poll_once(self, dev: DeviceRuntime) -> list[Sample]:
        """Read a device once; every channel gets a sample with a quality flag."""
        ts_ns = self.clock.time_ns()  # request time
        words: dict[str, list[int]] = {}
        no_answer: set[str] = set()
        invalid: dict[str, str] = {}
        errors: list[str] = []
        answered = False
        if not dev.discovered:
            try:
                await self._discover(dev)
            except (ModbusError, NotSunSpec) as exc:
                errors.append(str(exc))
                no_answer.update(dev.channels)
        silent = False
        queue = list(dev.blocks)
        while queue:
            block = queue.pop(0)
            if silent:
                no_answer.update(block.registers)
                continue
            try:
                words.update(await self._read(dev, block))
                answered = True
            except ExceptionReply as exc:
                if exc.code == ILLEGAL_ADDRESS and block.gap_filled:
                    # the device refuses reads over undefined addresses: split, read again
                    log.info("%s: %s; reading without gap filling", dev.name, exc)
                    dev.gap_fill_refused = True
                    dev.blocks = plan_reads(
                        dev.driver.profile, [r for b in dev.blocks for r in b.registers], False
                    )
                    queue[:0] = plan_reads(dev.driver.profile, block.registers, False)
                    continue
                self._exception(exc, block, no_answer, invalid, errors)
                if not isinstance(exc, DeviceBusy) and exc.code not in (
                    GATEWAY_PATH_UNAVAILABLE,
                    GATEWAY_TARGET_NO_RESPONSE,
                ):
                    answered = True
            except (DeviceTimeout, LinkDown) as exc:
                silent = True  # the device is not answering: do not wait on every block
                no_answer.update(block.registers)
                errors.append(str(exc))
            except (ShortReply, ModbusError) as exc:
                answered = True
                for r in block.registers:
                    invalid[r] = str(exc)
                errors.append(str(exc))
        decoded = decode_words(dev.driver.profile, words)
        samples = []
        for reg, channel in dev.channels.items():
            d = decoded.get(reg)
            if d is None:
                if reg in no_answer or reg not in invalid:
                    d = self._carry(dev, reg, ts_ns)
                else:
                    d = Decoded(math.nan, Quality.INVALID, invalid[reg])
            value = d.value
            if d.quality == Quality.GOOD:
                dev.last_good[reg] = (value, ts_ns)
            dev.values[reg] = (value, d.quality, ts_ns)
            if not isinstance(value, str):
                value = float(value) * dev.factors.get(reg, 1.0)
                samples.append(Sample(channel, ts_ns, value, int(d.quality)))
        ok = answered and not errors
        dev.last_error = "; ".join(errors[-2:])
        if answered:
            dev.failures = 0
            dev.status = "ok" if ok else "degraded"
            if dev.up is not True:
                self._transition(dev, "up" if dev.up is None else "recovered", dev.last_error)
        else:
            dev.failures += 1
            dev.polls_failed += 1
            dead = dev.failures >= self.policy.dead_after
            dev.status = "backoff" if dead else "no reply"
            if dead and dev.up is not False:
                self._transition(dev, "down", dev.last_error)
            if dev.profile.sunspec and dead:
                dev.discovered = False  # rediscover: it may come back with another map
                dev.blocks = []
        return samples

    def _exception(
        self,
        exc: ExceptionReply,
        block: ReadBlock,
        no_answer: set[str],
        invalid: dict[str, str],
        errors: list[str],
    ) -> None:
        """Busy (after its retries) and 0x0A/0x0B from a gateway are no answer; any other
        exception makes the block's values INVALID (the device answered)."""
        if isinstance(exc, DeviceBusy) or exc.code in (
            GATEWAY_PATH_UNAVAILABLE,
            GATEWAY_TARGET_NO_RESPONSE,
        ):
            no_answer.update(block.registers)
        else:
            for r in block.registers:
                invalid[r] = str(exc)
        errors.append(str(exc))

    def _transition(self, dev: DeviceRuntime, what: str, reason: str) -> None:
        """Log a device going up, down or recovering: once per transition."""
        dev.up = what != "down"
        dev.transitions.append((self.clock.monotonic(), what, reason))
        if what == "down":
            log.warning(
                "%s: down after %d failed polls (backing off): %s", dev.name, dev.failures, reason
            )
        elif what == "recovered":
            log.warning("%s: recovered", dev.name)
        else:
            log.info("%s: up", dev.name)

    def _carry(self, dev: DeviceRuntime, reg: str, ts_ns: int) -> Decoded:
        last = dev.last_good.get(reg)
        if last is not None and ts_ns - last[1] <= dev.stale_after_ns:
            return Decoded(last[0], Quality.STALE, "last good value")
        return Decoded(math.nan, Quality.MISSING, "no reply")

    # ------------------------------------------------------------------ loop
    def _interval(self, dev: DeviceRuntime) -> float:
        base = dev.config.poll_interval_s
        over = dev.failures - self.policy.dead_after
        if over < 0:
            return base
        return min(self.policy.backoff_max_s, base * 2 ** (over + 1))

    async def _device_loop(self, dev: DeviceRuntime, until: float | None) -> None:
        clock = self.clock
        dev.next_due = clock.monotonic()
        while not self._stop.is_set():
            now = clock.monotonic()
            if until is not None and dev.next_due >= until:
                return
            if dev.next_due > now and await wait_or_stop(clock, self._stop, dev.next_due - now):
                return
            start = clock.monotonic()
            dev.polls += 1
            if start - dev.next_due <= self.policy.on_time_s:
                dev.polls_on_time += 1
            try:
                samples = await self.poll_once(dev)
            except Exception as exc:  # never let one device stop the gateway
                log.exception("%s: poll failed", dev.name)
                dev.last_error = f"{type(exc).__name__}: {exc}"
                dev.status = "error"
                ts_ns = clock.time_ns()
                samples = [
                    Sample(c, ts_ns, math.nan, int(Quality.MISSING)) for c in dev.channels.values()
                ]
            self._deliver(dev, samples)
            interval = self._interval(dev)
            base = dev.config.poll_interval_s
            dev.next_due += interval
            dev.polls_skipped += max(0, round(interval / base) - 1)  # backoff
            now = clock.monotonic()
            if dev.next_due < now:  # overran: skip the missed slots, keep the grid
                missed = math.ceil((now - dev.next_due) / interval)
                dev.next_due += missed * interval
                dev.polls_skipped += round(missed * interval / base)

    def _deliver(self, dev: DeviceRuntime, samples: list[Sample]) -> None:
        if samples and self.on_samples is not None:
            try:
                self.on_samples(samples)
            except Exception:
                log.exception("%s: sample consumer failed", dev.name)

    async def poll_now(self, names: Iterable[str]) -> int:
        """Poll these devices once now, besides their schedule; returns the samples handed on.

        For a caller that changes a device's power at a known moment (the closed loop at a
        setpoint step): a sample right before and right after the change bracket it, so the
        interval pipeline's trapezoid integrates the step where it happened instead of as a
        linear ramp between two scheduled polls (up to ``poll_interval_s`` of the change
        counted in the wrong ISP). Not counted in the schedule's counters; a device that does
        not answer gets its usual STALE/MISSING samples.
        """
        n = 0
        for name in names:
            dev = self.devices.get(name)
            if dev is None:
                raise NoaberError(f"no device {name!r} to poll (known: {', '.join(self.devices)})")
            try:
                samples = await self.poll_once(dev)
            except Exception:  # as in the schedule: one device never stops the caller
                log.exception("%s: poll failed", dev.name)
                continue
            self._deliver(dev, samples)
            n += len(samples)
        return n

    async def run(self, duration_s: float | None = None) -> None:
        """Poll every device until :meth:`stop` (or for ``duration_s`` seconds)."""
        self._stop.clear()
        until = None if duration_s is None else self.clock.monotonic() + duration_s
        tasks = [
            asyncio.create_task(self._device_loop(d, until), name=f"poll:{d.name}")
            for d in self.devices.values()
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    def status_rows(self) -> list[dict[str, object]]:
        """One row per device for the live table: status, errors and last values."""
        rows = []
        for dev in self.devices.values():
            rows.append(
                {
                    "device": dev.name,
                    "status": dev.status,
                    "polls": dev.polls,
                    "on_time_pct": dev.on_time_pct,
                    "skipped": dev.polls_skipped,
                    "values": {r: (v, q) for r, (v, q, _) in dev.values.items()},
                    "error": dev.last_error,
                }
            )
        return rows
