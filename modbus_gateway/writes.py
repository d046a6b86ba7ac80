"""Safe writes: setpoints within limits and ramps, control mode first, watchdog, safe default.

:class:`SafeWriter` is the write path behind the gateway's
:class:`~modbus_gateway.capabilities.PowerControl` views
(``await writer.apply("ev-charger-1", -3000.0, requested_by="mpc")``) and the only way to
write a register by hand (:meth:`SafeWriter.write_register`). For each write:

1. only registers the profile marks writable, within their range (anything else raises
   :class:`WriteRefused`); a watchdog timeout register (``watchdog_timeout_s`` in the profile)
   is never given a value that weakens it (0 switches most timeouts off);
2. the setpoint is clamped to the profile's and the site's limits, whichever path wrote it (a
   raw write of the setpoint register is a setpoint like any other), and ramped at most
   ``ramp_w_per_s`` per second of real time: a step change goes out as a ramp, one write now
   and the rest by :meth:`SafeWriter.keepalive_once` (every :data:`RAMP_STEP_S`), each at most
   the ramp times the time since the last write, and that time counted at most
   :data:`RAMP_STEP_S` (the first setpoint ramps from 0 over :data:`RAMP_STEP_S`);
3. before the first setpoint the profile's ``control.enable`` steps are written in order
   (Wallbox Quasar: register 81 = 1, remote control, first);
4. every write is read back and compared (:class:`WriteVerifyError` if it differs);
5. the device watchdog is kept alive (Quasar 88 idle timeout, SunSpec controller heartbeat)
   and the setpoint re-written before it expires (an unchanged Victron ESS setpoint is not
   re-written: flash wear);
6. on shutdown, or when no setpoint arrives for ``schedule_timeout_s`` (lost schedule), the
   profile's ``control.safe_default`` is written: control back to the device;
7. every write is logged with who or what asked for it (:attr:`SafeWriter.log`, the Python
   logger ``modbus_gateway.writes`` and optionally a JSON-lines file).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from energy.errors import NoaberError
from modbus_gateway.driver import ModbusError, WriteRefused, WriteVerifyError
from modbus_gateway.poller import Clock, DeviceRuntime, Gateway, wait_or_stop
from modbus_gateway.profiles import ControlSpec, RegisterSpec

log = logging.getLogger(__name__)

RAMP_STEP_S = 1.0
"""A ramp goes out in writes this far apart; the first setpoint ramps from 0 over it [s]."""


@dataclass(frozen=True, slots=True)
class WriteLogEntry:
    """One write: when, where, what, for whom, and how it went."""

    ts_ns: int
    device: str
    register: str
    value: float
    requested_by: str
    result: str  # "ok", "refused: ...", "failed: ..."
    requested_value: float | None = None


@dataclass(frozen=True, slots=True)
class ControlCheck:
    """What a device reported against what was written to it (one check).

    ``mismatches`` names what differed (``"ess_mode: 1 (written 3)"``, ``"setpoint ..."``,
    ``"no reply: ..."``); ``re_enabled`` says the enable sequence and the setpoint were sent
    again; ``in_control`` that after that the device reports the control state and the
    setpoint; ``lost_checks`` counts the checks in a row that ended out of control.
    """

    asset: str
    ts_ns: int
    in_control: bool
    mismatches: tuple[str, ...] = ()
    re_enabled: bool = False
    reported_w: float | None = None  # the device's own power reading [W, our sign]
    lost_checks: int = 0


@dataclass
class _Control:
    dev: DeviceRuntime
    spec: ControlSpec
    enabled: bool = False
    power_w: float | None = None  # last setpoint written [W]
    written_w: float | None = None  # what the device read back of it [W, register resolution]
    target_w: float | None = None  # where the ramp is going, within the limits [W]
    ramp_by: str = ""  # who asked for the target
    read_back: bool = False  # the last apply() wrote the setpoint and read it back
    setpoint_t: float = -math.inf  # monotonic time of the last setpoint write
    apply_t: float = -math.inf  # last apply() from the scheduler
    watchdog_t: float = -math.inf
    heartbeat: int = 0
    percent_ref_w: float | None = None
    lost_checks: int = 0  # checks in a row that ended out of control
    last_check: ControlCheck | None = None


class SafeWriter:
    """Writes setpoints to the gateway's devices safely (see the module docstring).

    Parameters
    ----------
    gateway : Gateway
        Its devices and links are used (one master per bus).
    schedule_timeout_s : float
        No ``apply`` for this long hands control back to the device [s].
    log_path : Path, optional
        JSON-lines audit file of every write.
    """

    def __init__(
        self,
        gateway: Gateway,
        clock: Clock | None = None,
        schedule_timeout_s: float = 900.0,
        log_path: Path | str | None = None,
    ):
        self.gateway = gateway
        self.clock = clock or gateway.clock
        self.schedule_timeout_s = schedule_timeout_s
        self.log_path = Path(log_path) if log_path else None
        #: The most recent writes (the JSON-lines file keeps them all).
        self.log: deque[WriteLogEntry] = deque(maxlen=10_000)
        self.controls: dict[str, _Control] = {}
        #: Checks that found a device out of control (by the loop or before a refresh), until
        #: :meth:`take_events` hands them on.
        self.events: deque[ControlCheck] = deque(maxlen=1000)
        for dev in gateway.devices.values():
            ctrl = dev.profile.control
            if ctrl is None:
                continue
            asset = dev.config.asset
            if asset is None and ctrl.setpoint_quantity != "grid_power":
                asset = dev.config.asset_from_site  # e.g. "ev-1" for her charger
            self.controls[asset or dev.name] = _Control(dev, ctrl)
        self._locks = {a: asyncio.Lock() for a in self.controls}

    # ------------------------------------------------------------------ fail-safe
    def failsafe_timeout_s(self, ctl: _Control) -> float | None:
        """The device's fail-safe timeout at this site [s] (None: the device has none)."""
        fs = ctl.spec.failsafe
        if fs.kind == "none":
            return None
        return ctl.dev.config.failsafe_timeout_s or fs.timeout_s

    def _step_value(self, ctl: _Control, register: str, value: float) -> float:
        """An enable or watchdog value, with the site's fail-safe timeout for its register."""
        fs = ctl.spec.failsafe
        site = ctl.dev.config.failsafe_timeout_s
        if fs.reg == register and fs.kind == "device_timeout" and site is not None:
            return site
        return value

    def _every_s(self, ctl: _Control, profile_s: float | None) -> float | None:
        """A refresh period: the profile's, at most a third of the site's fail-safe timeout."""
        t = self.failsafe_timeout_s(ctl)
        if t is None:
            return profile_s
        return min(profile_s, t / 3) if profile_s is not None else None

    def _check_failsafe(self, ctl: _Control) -> None:
        if ctl.spec.failsafe.kind == "none" and not ctl.dev.config.accept_no_failsafe:
            raise WriteRefused(
                f"{ctl.dev.name}: profile {ctl.dev.driver.profile.name} declares no fail-safe "
                f"(it keeps its last setpoint when the controller dies: "
                f"{ctl.spec.failsafe.safe_state}); control it only with "
                "accept_no_failsafe: true on the device in the site description"
            )

    # ------------------------------------------------------------------ logging
    def _record(
        self,
        dev: DeviceRuntime,
        register: str,
        value: float,
        requested_by: str,
        result: str,
        requested_value: float | None = None,
    ) -> None:
        entry = WriteLogEntry(
            self.clock.time_ns(), dev.name, register, value, requested_by, result, requested_value
        )
        self.log.append(entry)
        level = logging.INFO if result == "ok" else logging.WARNING
        log.log(
            level, "write %s.%s = %s by %s: %s", dev.name, register, value, requested_by, result
        )
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(entry)) + "\n")

    # ------------------------------------------------------------------ primitive
    async def _scale_factor(self, dev: DeviceRuntime, spec: RegisterSpec) -> int | None:
        if spec.scale_register is None:
            return None
        vals = await dev.driver.read_values([spec.scale_register])
        d = vals[spec.scale_register]
        if d.quality != 0:
            raise WriteVerifyError(f"{dev.name}: scale factor {spec.scale_register} unreadable")
        return int(d.value)  # type: ignore[arg-type]

    async def write_register(
        self, device: str, register: str, value: float, requested_by: str
    ) -> float:
        """Write one register by name (engineering units), read it back; returns what was written.

        The setpoint register of a controlled device is a setpoint like any other: clamped to
        the profile's and the site's limits and ramped (see :meth:`apply`; the rest of the
        ramp goes out from :meth:`keepalive_once`), but without the control mode first.

        Raises
        ------
        WriteRefused
            The register is not writable in the profile, the value is outside its range, or it
            would weaken the device's watchdog timeout.
        WriteVerifyError
            The read-back differs from the value written.
        """
        dev = self.gateway.devices.get(device)
        if dev is None:
            raise NoaberError(f"no device {device!r}")
        if not math.isfinite(value):
            raise NoaberError(f"value for {device}.{register} must be finite, got {value}")
        for asset, ctl in self.controls.items():
            if ctl.dev is dev and ctl.spec.setpoint == register:
                async with self._locks[asset]:
                    if ctl.spec.setpoint_percent_of is not None:
                        await self._limits_w(ctl)  # reads the reference power once
                    power_w = self._from_register(ctl, value)
                    return self._to_register(ctl, await self._set_power(ctl, power_w, requested_by))
        await self._write(dev, register, value, requested_by)
        return value

    async def _write(
        self,
        dev: DeviceRuntime,
        register: str,
        value: float,
        requested_by: str,
        requested_value: float | None = None,
    ) -> float:
        """Write ``value`` to ``register`` within the limits and read it back.

        Returns the value the device reports: ``value`` at the register's resolution.
        """
        prof = dev.driver.profile
        spec = prof.registers.get(register)
        try:
            if spec is None or spec.writable is None:
                raise WriteRefused(f"register {register!r} of {prof.name} is not writable")
            t = spec.watchdog_timeout_s
            if t is not None and not t.min <= value <= t.max:
                raise WriteRefused(
                    f"{dev.name}.{register} is the device's watchdog timeout: {value:g} s would "
                    f"weaken it{' (0 switches it off)' if value == 0 else ''}; "
                    f"allowed {t.min:g} to {t.max:g} s"
                )
            limits = dev.config.limits
            if spec.unit == "W" and (
                (limits.power_w_min is not None and value < limits.power_w_min)
                or (limits.power_w_max is not None and value > limits.power_w_max)
            ):
                raise WriteRefused(
                    f"{dev.name}.{register} = {value:g} W is outside the site's limits "
                    f"[{limits.power_w_min}, {limits.power_w_max}] W"
                )
            sf = await self._scale_factor(dev, spec)
            await dev.driver.write_value(register, value, sf)
            back = (await dev.driver.read_values([register]))[register]
            resolution = abs(spec.scale) * (10.0**sf if sf is not None else 1.0)
            if back.quality != 0 or abs(float(back.value) - value) > resolution / 2 + 1e-9:  # type: ignore[arg-type]
                raise WriteVerifyError(
                    f"{dev.name}.{register}: wrote {value}, read back {back.value}"
                )
        except (WriteRefused, WriteVerifyError, ModbusError) as exc:
            kind = "refused" if isinstance(exc, WriteRefused) else "failed"
            self._record(dev, register, value, requested_by, f"{kind}: {exc}", requested_value)
            raise
        self._record(dev, register, value, requested_by, "ok", requested_value)
        return float(back.value)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ setpoints
    def _ctl(self, asset_name: str) -> _Control:
        ctl = self.controls.get(asset_name)
        if ctl is None:
            raise NoaberError(
                f"no controllable asset {asset_name!r} (known: {', '.join(sorted(self.controls))})"
            )
        return ctl

    async def _limits_w(self, ctl: _Control) -> tuple[float, float, float | None]:
        """Setpoint limits [W] and ramp [W/s] from the profile and the site."""
        prof = ctl.dev.driver.profile
        spec = prof.registers[ctl.spec.setpoint]
        assert spec.writable is not None
        lo, hi, ramp = spec.writable.min, spec.writable.max, spec.writable.ramp_per_s
        if ctl.spec.setpoint_percent_of is not None:
            if ctl.percent_ref_w is None:
                ref = ctl.spec.setpoint_percent_of
                d = (await ctl.dev.driver.read_values([ref]))[ref]
                if d.quality != 0 or float(d.value) <= 0:  # type: ignore[arg-type]
                    raise WriteVerifyError(f"{ctl.dev.name}: {ref} unreadable: {d.reason}")
                ctl.percent_ref_w = float(d.value)  # type: ignore[arg-type]
            k = ctl.percent_ref_w / 100.0
            lo, hi = lo * k, hi * k
            ramp = ramp * k if ramp is not None else None
        limits = ctl.dev.config.limits
        if limits.power_w_min is not None:
            lo = max(lo, limits.power_w_min)
        if limits.power_w_max is not None:
            hi = min(hi, limits.power_w_max)
        if limits.ramp_w_per_s is not None:
            ramp = limits.ramp_w_per_s if ramp is None else min(ramp, limits.ramp_w_per_s)
        if lo > hi:
            raise NoaberError(f"{ctl.dev.name}: site limits exclude every setpoint ({lo} > {hi})")
        return lo, hi, ramp

    def _to_register(self, ctl: _Control, power_w: float) -> float:
        if ctl.spec.setpoint_percent_of is not None:
            assert ctl.percent_ref_w is not None
            return power_w / ctl.percent_ref_w * 100.0
        return power_w

    def _from_register(self, ctl: _Control, value: float) -> float:
        if ctl.spec.setpoint_percent_of is not None:
            assert ctl.percent_ref_w is not None
            return value * ctl.percent_ref_w / 100.0
        return value

    async def _enable(self, ctl: _Control, requested_by: str) -> None:
        self._check_failsafe(ctl)
        for step in ctl.spec.enable:
            await self._write(
                ctl.dev, step.reg, self._step_value(ctl, step.reg, step.value), requested_by
            )
        ctl.enabled = True
        await self._watchdog(ctl, requested_by)

    async def _watchdog(self, ctl: _Control, requested_by: str) -> None:
        wd = ctl.spec.watchdog
        if wd is None:
            return
        if wd.mode == "counter":
            spec = ctl.dev.driver.profile.registers[wd.reg]
            top = int(spec.writable.max) if spec.writable else 65534
            ctl.heartbeat = (ctl.heartbeat + 1) % (top + 1)
            value = float(ctl.heartbeat)
        else:
            value = self._step_value(ctl, wd.reg, wd.value)
        await self._write(ctl.dev, wd.reg, value, f"{requested_by} (watchdog)")
        ctl.watchdog_t = self.clock.monotonic()

    async def apply(self, asset_name: str, power_w: float, requested_by: str) -> float:
        """Command a power setpoint [W, + = charging/consumption]; returns what was written.

        The value is clamped to the profile's and the site's limits; what the ramp does not
        allow yet is written later by :meth:`keepalive_once`.
        """
        if not math.isfinite(power_w):
            raise NoaberError(f"setpoint for {asset_name!r} must be finite, got {power_w}")
        ctl = self._ctl(asset_name)
        async with self._locks[asset_name]:
            ctl.apply_t = self.clock.monotonic()
            if not ctl.enabled:
                await self._enable(ctl, requested_by)
            return await self._set_power(ctl, power_w, requested_by)

    def _ramped(
        self, ctl: _Control, target_w: float, ramp: float | None, now: float, hi: float
    ) -> float:
        """The setpoint the ramp allows now on the way from the last one to ``target_w`` [W].

        A first setpoint ramps from rest: 0 W for a device's power, and for a production
        limit what the device produces now (its last polled ``power_w``, else no limit,
        ``hi``), so enabling curtailment never starts by throttling to 0 and its ramp acts
        from the first write: a ramp from no limit spends its first seconds above the
        production (10 kW down to 6 kW at 1 kW/s: 4 s without effect, while a battery or
        charger change of the same step is already done, and the grid overshoots).
        """
        if ramp is None:
            return target_w
        rest = 0.0
        if ctl.spec.setpoint_quantity == "production_limit":
            produced_w = self._reported_w(ctl)
            rest = hi if produced_w is None else min(hi, abs(produced_w))
        last = ctl.power_w if ctl.power_w is not None else rest
        # time since the last write, at most one ramp step: a setpoint at rest for 15 minutes
        # earns no jump, the change goes out at ``ramp`` W/s from now on
        dt = min(now - ctl.setpoint_t, RAMP_STEP_S) if ctl.power_w is not None else RAMP_STEP_S
        step = ramp * max(dt, 0.0)
        return min(last + step, max(last - step, target_w))

    async def _set_power(self, ctl: _Control, power_w: float, requested_by: str) -> float:
        """Clamp ``power_w`` to the limits, make it the ramp's target, write the first step.

        Called with the asset's lock held; returns the setpoint written [W].
        """
        now = self.clock.monotonic()
        lo, hi, ramp = await self._limits_w(ctl)
        ctl.target_w = min(hi, max(lo, power_w))
        ctl.ramp_by = requested_by
        value = self._ramped(ctl, ctl.target_w, ramp, now, hi)
        refresh_s = self._every_s(ctl, ctl.spec.setpoint_refresh_s)
        if ctl.power_w is not None and value == ctl.power_w and refresh_s is None:
            self._record(
                ctl.dev,
                ctl.spec.setpoint,
                value,
                requested_by,
                "ok (unchanged, not re-written)",
                power_w,
            )
            ctl.read_back = False
            return ctl.written_w if ctl.written_w is not None else value
        back = await self._write(
            ctl.dev, ctl.spec.setpoint, self._to_register(ctl, value), requested_by, power_w
        )
        ctl.power_w = value
        ctl.setpoint_t = now
        ctl.read_back = True
        # what the device reports: the setpoint at the register's resolution (2177.7 W → 2178)
        ctl.written_w = self._from_register(ctl, back)
        return ctl.written_w

    async def _ramp_on(self, ctl: _Control) -> None:
        """The next step of a ramp under way (the asset's lock held)."""
        assert ctl.target_w is not None
        _lo, hi, ramp = await self._limits_w(ctl)
        now = self.clock.monotonic()
        value = self._ramped(ctl, ctl.target_w, ramp, now, hi)
        if value == ctl.power_w:
            return
        back = await self._write(
            ctl.dev,
            ctl.spec.setpoint,
            self._to_register(ctl, value),
            f"{ctl.ramp_by} (ramp)",
            ctl.target_w,
        )
        ctl.power_w = value
        ctl.written_w = self._from_register(ctl, back)
        ctl.setpoint_t = now

    async def release(self, asset_name: str, requested_by: str) -> None:
        """Hand control back to the device: write the profile's safe default in order."""
        ctl = self._ctl(asset_name)
        async with self._locks[asset_name]:
            errors = []
            for step in ctl.spec.safe_default:
                try:
                    await self._write(ctl.dev, step.reg, step.value, requested_by)
                except (ModbusError, NoaberError) as exc:
                    errors.append(str(exc))  # keep going: the next step may still help
            ctl.enabled = False
            ctl.power_w = ctl.target_w = ctl.written_w = None
            ctl.read_back = False
            ctl.setpoint_t = -math.inf
            if errors:
                raise NoaberError(f"{ctl.dev.name}: safe default incomplete: {'; '.join(errors)}")

    async def keepalive_once(self) -> None:
        """Ramp on, refresh watchdogs and setpoints that are due; release lost schedules."""
        now = self.clock.monotonic()
        for asset, ctl in self.controls.items():
            try:
                if ctl.enabled and now - ctl.apply_t > self.schedule_timeout_s:
                    await self.release(asset, "gateway (lost schedule)")
                    continue
                async with self._locks[asset]:
                    if ctl.target_w is not None and ctl.target_w != ctl.power_w:
                        await self._ramp_on(ctl)
                    if not ctl.enabled:
                        continue
                    wd = ctl.spec.watchdog
                    wd_every = self._every_s(ctl, wd.refresh_s) if wd is not None else None
                    if wd is not None and wd_every is not None and now - ctl.watchdog_t >= wd_every:
                        await self._watchdog(ctl, "gateway")
                    every = self._every_s(ctl, ctl.spec.setpoint_refresh_s)
                    if (
                        every is not None
                        and ctl.power_w is not None
                        and now - ctl.setpoint_t >= every
                    ):
                        # a device that rebooted or left control mode gets the enable
                        # sequence again before its setpoint (never a refresh it ignores)
                        check = await self._verify(ctl, "gateway (setpoint refresh)")
                        if check.re_enabled or not check.in_control:
                            continue
                        await self._write(
                            ctl.dev,
                            ctl.spec.setpoint,
                            self._to_register(ctl, ctl.power_w),
                            "gateway (setpoint refresh)",
                        )
                        ctl.setpoint_t = now
            except (ModbusError, NoaberError) as exc:
                log.warning("%s: keepalive failed: %s", asset, exc)

    def _tick_s(self) -> float:
        periods = [RAMP_STEP_S]
        for ctl in self.controls.values():
            if ctl.spec.watchdog is not None:
                periods.append(self._every_s(ctl, ctl.spec.watchdog.refresh_s) / 4)  # type: ignore[operator]
            every = self._every_s(ctl, ctl.spec.setpoint_refresh_s)
            if every is not None:
                periods.append(every / 4)
        return max(0.05, min(periods))

    # ------------------------------------------------------------------ checks
    def _status_expected(self, ctl: _Control) -> dict[str, list[float]]:
        if ctl.spec.status:
            return {r: list(v) for r, v in ctl.spec.status.items()}
        out: dict[str, list[float]] = {}
        for step in ctl.spec.enable:  # the last value an enable step writes
            out[step.reg] = [self._step_value(ctl, step.reg, step.value)]
        return out

    async def _read_state(self, ctl: _Control) -> list[str]:
        """What differs between the device's control registers and what was written."""
        prof = ctl.dev.driver.profile
        expected = self._status_expected(ctl)
        names = [*expected, ctl.spec.setpoint]
        vals = await ctl.dev.driver.read_values(names)
        out = []
        for reg, allowed in expected.items():
            d = vals[reg]
            if d.quality != 0 or float(d.value) not in allowed:  # type: ignore[arg-type]
                want = " or ".join(f"{a:g}" for a in allowed)
                out.append(f"{reg}: {d.value} (control needs {want})")
        if ctl.power_w is not None:
            d = vals[ctl.spec.setpoint]
            spec = prof.registers[ctl.spec.setpoint]
            sf = await self._scale_factor(ctl.dev, spec)
            resolution = abs(spec.scale) * (10.0**sf if sf is not None else 1.0)
            want_value = self._to_register(ctl, ctl.power_w)
            if d.quality != 0 or abs(float(d.value) - want_value) > resolution / 2 + 1e-9:  # type: ignore[arg-type]
                out.append(f"{ctl.spec.setpoint}: {d.value} (written {want_value:g})")
        return out

    def _reported_w(self, ctl: _Control) -> float | None:
        reg = ctl.dev.profile.capabilities.get("power_w")
        got = ctl.dev.values.get(reg) if reg else None
        if got is None or got[1] != 0 or isinstance(got[0], str):
            return None
        return float(got[0])

    async def _verify(self, ctl: _Control, requested_by: str) -> ControlCheck:
        """Compare the device's control state and setpoint with what was written; after a
        reboot or a mode change send the enable sequence and the setpoint again (the asset's
        lock held)."""
        asset = next(a for a, c in self.controls.items() if c is ctl)
        re_enabled = False
        in_control = False
        try:
            mismatches = await self._read_state(ctl)
        except (ModbusError, NoaberError) as exc:
            mismatches = [f"no reply: {exc}"]
        else:
            in_control = not mismatches
        if mismatches and not mismatches[0].startswith("no reply"):
            log.warning(
                "%s: device out of control (%s); sending the enable sequence again",
                ctl.dev.name,
                "; ".join(mismatches),
            )
            try:
                await self._enable(ctl, f"{requested_by} (re-enable)")
                if ctl.power_w is not None:
                    await self._write(
                        ctl.dev,
                        ctl.spec.setpoint,
                        self._to_register(ctl, ctl.power_w),
                        f"{requested_by} (re-enable)",
                    )
                    ctl.setpoint_t = self.clock.monotonic()
                re_enabled = True
                still = await self._read_state(ctl)
                in_control = not still
                mismatches += [f"after re-enable {m}" for m in still]
            except (ModbusError, NoaberError) as exc:
                mismatches.append(f"re-enable failed: {exc}")
        ctl.lost_checks = 0 if in_control and not re_enabled else ctl.lost_checks + 1
        check = ControlCheck(
            asset,
            self.clock.time_ns(),
            in_control,
            tuple(mismatches),
            re_enabled,
            self._reported_w(ctl),
            ctl.lost_checks,
        )
        ctl.last_check = check
        if mismatches:
            self.events.append(check)
        return check

    def ramping(self) -> set[str]:
        """The controls (asset names) whose setpoint is still on its ramp to the target."""
        return {
            a
            for a, c in self.controls.items()
            if c.enabled and c.target_w is not None and c.target_w != c.power_w
        }

    def take_events(self) -> list[ControlCheck]:
        """The out-of-control checks since the last call (oldest first)."""
        out = list(self.events)
        self.events.clear()
        return out

    async def check(self, asset_name: str, requested_by: str) -> ControlCheck:
        """One check of a controlled asset (see :class:`ControlCheck`); a device not under
        control (never enabled, or released) is reported in control with nothing to compare."""
        ctl = self._ctl(asset_name)
        async with self._locks[asset_name]:
            if not ctl.enabled:
                return ControlCheck(asset_name, self.clock.time_ns(), True)
            return await self._verify(ctl, requested_by)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep watchdogs alive until ``stop`` is set, then restore every safe default."""
        tick = self._tick_s()
        while not await wait_or_stop(self.clock, stop, tick):
            await self.keepalive_once()
        await self.close()

    async def close(self) -> None:
        """Shutdown: every enabled asset gets its safe default (errors are logged, not raised)."""
        for asset, ctl in self.controls.items():
            if ctl.enabled:
                try:
                    await self.release(asset, "gateway (shutdown)")
                except (ModbusError, NoaberError) as exc:
                    log.error("%s: safe default on shutdown failed: %s", asset, exc)
