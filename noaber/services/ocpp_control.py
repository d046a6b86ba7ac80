"""OCPP chargers under the closed loop: a charge point as one more power control of
``noaber control run``.

:class:`OcppPowerControl` gives one charge point of the site's central system
(:class:`~noaber.services.ocpp.OcppService`) the gateway's
:class:`~modbus_gateway.capabilities.PowerControl` shape, so :class:`GatewaySetpoints
<noaber.services.control.GatewaySetpoints>` routes the MPC's setpoint for the charger's asset
to it as it routes a Modbus device's:

* ``write(power_w)``: a TxProfile through the central system, clamped as a Modbus setpoint is
  (the charger's ``max_power_w``/``min_power_w``, its ``limits``, the site's connection and the
  asset's rating); ``read_back`` only when the charger reports the limit back in its composite
  schedule (``GetCompositeSchedule``), not merely "Accepted". Each profile goes to the write
  log (JSON lines, as a Modbus write) and the audit log (``device.setpoint``, ``control:
  ocpp``) as it is sent.
* ``check()``: the composite schedule against the limit sent; a charger that rebooted or lost
  its profile gets it again (``re_enabled``: the loop's ``control_restored`` alarm), one that is
  not connected any more is lost at once (``lost_checks`` at the loop's threshold: a
  ``control_lost`` alarm, released and excluded), since nothing can reach it.
* ``keepalive()``: every TxProfile expires (``validTo`` and the schedule's ``duration``, the
  charger's ``profile_duration_s``); while the controller lives it checks the charger and
  re-sends the limit when half of that has passed (what it finds out of control goes to the
  loop's next check, as the gateway writer's findings do), so a living loop never lets it lapse and a dead one leaves the
  charger on its TxDefaultProfile (``fallback_power_w``) within ``profile_duration_s``.
* ``release()``: ClearChargingProfile of its TxProfile: the charger is back on its default.

:func:`ocpp_writer_limits` gives the optimiser the same range the central system clamps to, as
:func:`~noaber.services.control.writer_limits` does for the Modbus devices.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque

import websockets

from energy.errors import NoaberError
from modbus_gateway.capabilities import Written
from modbus_gateway.driver import WriteRefused
from modbus_gateway.ocpp.config import ChargePointConfig
from modbus_gateway.poller import Clock, wait_or_stop
from modbus_gateway.writes import ControlCheck
from noaber.services.ocpp import OcppService
from optimizer.limits import WriterLimit

log = logging.getLogger("noaber.services.ocpp_control")

#: Tolerance of a composite schedule's limit against the limit sent (its 0.1 resolution).
LIMIT_TOLERANCE = 0.05 + 1e-9


class OcppPowerControl:
    """One charge point as a :class:`~modbus_gateway.capabilities.PowerControl` (see the
    module docstring).

    Parameters
    ----------
    service : OcppService
        The site's central system (started: chargers connect to it).
    cp : ChargePointConfig
        The charge point; setpoints are addressed by its ``asset``.
    clock : Clock
        The loop's clock: when the profile was sent, for :meth:`keepalive`.
    lost_after_checks : int
        The loop's threshold: a charger found disconnected is reported with this many
        ``lost_checks`` (lost at once; nothing can be sent to it).
    """

    kind = "ev_charger"

    def __init__(
        self, service: OcppService, cp: ChargePointConfig, clock: Clock, lost_after_checks: int
    ):
        self.service = service
        self.cp = cp
        self.name = cp.id
        self.asset = cp.asset
        self.clock = clock
        self.lost_after_checks = lost_after_checks
        self.power_w: float | None = None  # the last setpoint asked [W]
        self.limit: float | None = None  # the limit sent for it, in the profile's unit
        self.sent_t = -math.inf  # clock.monotonic() of the last profile sent
        self.lost_checks = 0
        self._enabled = False
        self._lock = asyncio.Lock()
        #: Out-of-control checks (from :meth:`check` and :meth:`keepalive`) not handed on yet.
        self.events: deque[ControlCheck] = deque(maxlen=100)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def ready(self) -> bool:
        """Connected and booted: a profile can go to it."""
        return self.service.central.ready(self.cp.id)

    async def write(self, power_w: float, requested_by: str) -> Written:
        """A TxProfile for ``power_w`` [W, + = charging] within the limits.

        Raises
        ------
        WriteRefused
            Not connected, or a discharge on OCPP 1.6 / 2.0.1: nothing was sent.
        WriteVerifyError
            Not ``Accepted``, or the composite schedule reports another limit.
        """
        async with self._lock:
            return await self._send(power_w, requested_by)

    async def _send(self, power_w: float, requested_by: str) -> Written:
        before = (self._enabled, self.power_w)
        # under control from here: a profile the charger may have taken is cleared on release
        self._enabled, self.power_w = True, power_w
        try:
            result = await self.service.apply(self.asset, power_w, requested_by)
        except WriteRefused:
            self._enabled, self.power_w = before  # nothing went out
            raise
        self.limit = result.limit
        self.sent_t = self.clock.monotonic()
        return Written(power_w, result.sent_w, result.composite_limit is not None)

    async def keepalive(self, requested_by: str) -> bool:
        """When half of ``profile_duration_s`` has passed since the last profile: check the
        charger (as :meth:`check`) and re-send the setpoint, so its profile does not lapse
        while the controller lives (True: sent). A check that finds it out of control is
        kept for :meth:`take_events`, as the gateway's writer keeps its own."""
        async with self._lock:
            due = self.clock.monotonic() - self.sent_t >= self.cp.profile_duration_s / 2
            if not (self._enabled and self.power_w is not None and due):
                return False
            check = await self._verify(requested_by)
            if check.re_enabled or not check.in_control or self.power_w is None:
                return check.re_enabled
            try:
                await self._send(self.power_w, f"{requested_by} (refresh)")
            except NoaberError as exc:
                log.warning("%s: profile refresh failed: %s", self.cp.id, exc)
                return False
            return True

    def take_events(self) -> list[ControlCheck]:
        """The out-of-control checks since the last call (oldest first)."""
        out = list(self.events)
        self.events.clear()
        return out

    async def release(self, requested_by: str) -> None:
        """Clear its TxProfile: the charger runs on its TxDefaultProfile (``fallback_power_w``).

        Raises
        ------
        NoaberError
            The charger did not accept the clear (a disconnected one is not an error: its
            TxProfile expires by itself).
        """
        async with self._lock:
            if not self._enabled:
                return
            self._enabled, self.power_w, self.limit = False, None, None
            result = await self.service.release(self.asset, requested_by)
            if result.startswith("failed"):
                raise NoaberError(f"{self.cp.id}: ClearChargingProfile {result}")

    async def check(self, requested_by: str) -> ControlCheck:
        """The charger's composite schedule against the limit sent (see the module docstring);
        not under control: in control with nothing to compare."""
        async with self._lock:
            if not self._enabled:
                return ControlCheck(self.asset, self.clock.time_ns(), True)
            return await self._verify(requested_by)

    async def _verify(self, requested_by: str) -> ControlCheck:
        state = self.service.central.chargers[self.cp.id]
        unit = self.cp.rate_unit
        mismatches: list[str] = []
        re_enabled = in_control = False
        if not self.ready:
            mismatches.append(
                f"no reply: {self.cp.id} is not connected (its TxProfile expires by itself, "
                f"then it runs on its TxDefaultProfile, {self.cp.fallback_power_w:g} W)"
            )
            self.lost_checks = max(self.lost_checks + 1, self.lost_after_checks)
            self._enabled = False  # nothing reaches it; the loop excludes it
        else:
            try:
                reported = await self.service.central.composite_limit(self.cp.id)
            except (NoaberError, TimeoutError, websockets.ConnectionClosed) as exc:
                mismatches.append(f"no reply: GetCompositeSchedule: {exc!r}")
            else:
                if (
                    reported is not None
                    and self.limit is not None
                    and abs(reported - self.limit) > LIMIT_TOLERANCE
                ):
                    mismatches.append(
                        f"composite schedule {reported:g} {unit} (sent {self.limit:g} {unit})"
                    )
            in_control = not mismatches
            if mismatches and not mismatches[0].startswith("no reply") and self.power_w is not None:
                log.warning(
                    "%s: charger out of control (%s); sending its profile again",
                    self.cp.id,
                    "; ".join(mismatches),
                )
                try:
                    await self._send(self.power_w, f"{requested_by} (re-enable)")
                    re_enabled = in_control = True
                except NoaberError as exc:
                    mismatches.append(f"re-send failed: {exc}")
            self.lost_checks = 0 if in_control and not re_enabled else self.lost_checks + 1
        check = ControlCheck(
            self.asset,
            self.clock.time_ns(),
            in_control,
            tuple(mismatches),
            re_enabled,
            state.power_w,
            self.lost_checks,
        )
        if mismatches:
            self.events.append(check)
        return check


def ocpp_controls(
    service: OcppService, clock: Clock, lost_after_checks: int
) -> dict[str, OcppPowerControl]:
    """A control per charge point of the service's site, by the asset it drives."""
    return {
        cp.asset: OcppPowerControl(service, cp, clock, lost_after_checks)
        for cp in service.site.config.charge_points
    }


def ocpp_writer_limits(service: OcppService) -> list[WriterLimit]:
    """The range [W] the central system clamps each charger's setpoint to (its own, its
    ``limits``, the site's bounds), for the optimiser: the plan stays within what is sent."""
    out = []
    for cp in service.site.config.charge_points:
        lo, hi = service.central.limits_w(cp.id)
        source = f"ocpp.charge_points[{cp.id}]: the charger's and the site's limits"
        out.append(WriterLimit(cp.asset, cp.id, lo, hi, "device_power", source))
    return out


async def wait_ready(
    controls: dict[str, OcppPowerControl], timeout_s: float, stop: asyncio.Event
) -> None:
    """Wait (at most ``timeout_s``) until every charger has booted and taken its
    TxDefaultProfile; one that has not is planned without until it connects."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    central = {c.cp.id: c.service.central for c in controls.values()}
    while loop.time() < deadline and not stop.is_set():
        if all(central[i].chargers[i].default_profile_ok for i in central):
            return
        await asyncio.sleep(0.05)
    missing = [i for i in central if not central[i].chargers[i].default_profile_ok]
    if missing:
        log.warning(
            "OCPP charger(s) %s not booted within %.0f s: planned without until they connect",
            ", ".join(missing),
            timeout_s,
        )


async def keep_profiles(
    controls: dict[str, OcppPowerControl], clock: Clock, stop: asyncio.Event, requested_by: str
) -> None:
    """Until ``stop``: refresh each charger's TxProfile before it expires (see
    :meth:`OcppPowerControl.keepalive`), checking every tenth of the shortest duration."""
    if not controls:
        return
    tick = max(0.05, min(c.cp.profile_duration_s for c in controls.values()) / 10)
    while not await wait_or_stop(clock, stop, tick):
        for c in controls.values():
            await c.keepalive(requested_by)
