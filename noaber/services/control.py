"""Closed-loop control: the optimizer's MPC drives the gateway's safe-write path.

``noaber control run SITE.yaml --prices PRICES.csv`` (composition root: the only place that
wires :mod:`modbus_gateway` and :mod:`optimizer` together) runs, in one event loop:

* the gateway service (:class:`modbus_gateway.service.GatewayService`): it polls the site's
  devices and delivers every sample through store-and-forward to the
  :class:`~energy.samples.SampleStore`, keeps the device watchdogs alive and hands out a
  capability view per device (:mod:`modbus_gateway.capabilities`), the only way this loop
  reaches a device;
* the MPC loop (:class:`optimizer.mpc.MPCController`), which re-plans every step (15 min by
  default) from the scenario of the store (:func:`optimizer.sitestore.scenario_from_store`,
  the EV sessions file re-read every step) and the measured SoC: the latest GOOD SoC the
  gateway polled from the device of each asset's ``soc`` channel (its ``Battery`` view), else
  the latest interval reading;
* :class:`GatewaySetpoints`, the :class:`optimizer.mpc.ReleasableSink` between the two: the
  MPC's asset names (``battery``, ``ev-1``) are routed to the devices'
  :class:`~modbus_gateway.capabilities.PowerControl` views, which take the asset's power (a
  battery behind an ESS that regulates its grid connection gets the grid setpoint for it
  inside the gateway);
* on a planning failure the MPC hands every asset back to its safe default (``release``) and
  this loop releases whatever control is still enabled, logs it and prints a red status line;
  after a good plan, a device the plan no longer drives (the car left) is released too, so a
  stale V2G setpoint never meets the next car;
* before every step each device under control is checked (:meth:`GatewaySetpoints.check_all`:
  its control registers and setpoint against what was written; after a reboot or a mode change
  the gateway sends the enable sequence again); a device still out of control after
  :data:`LOST_AFTER_CHECKS` checks in a row raises an :class:`Alarm` (log, the run's
  ``alarms``, a red status line, the site's alarm table :mod:`energy.alarms` read by
  ``GET /alarms/sites/{site}``), is released (best effort) and excluded: the loop sends it
  nothing more and the plan is made without it (its asset is left out of the scenario);
* on Ctrl-C/SIGTERM, after ``steps`` steps, or when the gateway stops, the service stops and
  the writer restores every safe default (and the spool gets its last flush). A controller
  that dies without that (SIGKILL, power cut) leaves each device to its own fail-safe
  (``control.failsafe`` of its profile: the device's timeout reverts it).

Planning runs in the event loop: a solve of a 24 h horizon takes well under a second, far
below the devices' watchdog refresh (20 s), so polling pauses only briefly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pydantic
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from energy.alarms import record_alarm
from energy.audit import Actor
from energy.db import transaction
from energy.errors import NoaberError, ValidationError
from energy.models import Asset, Channel, Quantity, Site
from energy.samples import Quality, SampleStore
from energy.siteconfig import load_site_file
from modbus_gateway.capabilities import Battery, PowerControl, PowerLimit, Written
from modbus_gateway.config import GatewayConfig, LimitsConfig
from modbus_gateway.poller import Clock, wait_or_stop
from modbus_gateway.profiles import Profile, get_profile
from modbus_gateway.service import GatewayService
from modbus_gateway.spool import SampleSink, SampleStoreSink
from modbus_gateway.writes import RAMP_STEP_S, ControlCheck
from noaber.console import console
from noaber.services.ocpp import OcppService, OcppSite, ocpp_site
from noaber.services.ocpp_control import (
    OcppPowerControl,
    keep_profiles,
    ocpp_controls,
    ocpp_writer_limits,
    wait_ready,
)
from optimizer.forecast import read_columns_csv
from optimizer.limits import WriterLimit, apply_writer_limits
from optimizer.model import SolveOptions
from optimizer.mpc import MPCController, MPCStatus
from optimizer.report import compare
from optimizer.scenario import Scenario
from optimizer.sitestore import ev_sessions_from_yaml, measured_soc_pct, scenario_from_store
from optimizer.store import save_plan

log = logging.getLogger("noaber.services.control")

REQUESTED_BY = "noaber control"
#: Checks in a row that end out of control before a device raises an alarm and is excluded.
LOST_AFTER_CHECKS = 2


class ControlClock(Clock):
    """The loop's clock: the gateway's (timestamps, scheduling, sleep) and :meth:`planning`.

    The wall clock by default. A simulated one (a test's accelerated day) runs the
    simulators, the gateway's poller and writer and the MPC on the same seconds.
    """

    def now(self) -> pd.Timestamp:
        """The MPC's time (UTC)."""
        return pd.Timestamp(self.time_ns(), unit="ns", tz="UTC")

    def planning(self) -> contextlib.AbstractContextManager[None]:
        """The context the loop's work at a step (checks, plan, setpoints, report) runs in.

        Nothing for the wall clock: that work takes about a second of a 15-minute step. A
        simulated clock stops its time there, so an accelerated day does not count a solve
        that blocks the event loop as hundreds of simulated seconds.
        """
        return contextlib.nullcontext()


FORECAST_COLUMNS = ("load_kw", "pv_kw")
"""The columns of a forecast CSV (``--forecast``): the building's load and the PV [kW]."""


def with_forecast(sc: Scenario, forecast_csv: Path) -> Scenario:
    """``sc`` with the load and PV of a forecast CSV (``timestamp, load_kw, pv_kw``, every step
    of the horizon) instead of the store's time-of-week profile and clear-sky forecast (an
    external forecast service's, or a simulation's own).

    Raises
    ------
    ValidationError
        The file misses a column or a step of the horizon, naming the file and the step.
    """
    f = read_columns_csv(forecast_csv, sc.series.index, FORECAST_COLUMNS)
    series = sc.series.copy()
    for col in FORECAST_COLUMNS:
        series[col] = f[col].to_numpy(float)
    return sc.replace(series=series)


GRID_LIMIT_MARGIN_KW = 0.1
"""What the loop keeps below the site's grid import and export limits in its plans [kW].

A plan made in ISP means sits exactly on a binding limit (the export limit at noon, with the
PV curtailed to it), while what flows through the meter differs from the plan by what the
plan cannot see (figures from ``tests/noaber/test_closed_loop.py``, 2 kW export limit):

* a setpoint change ramps, each device at its own rate, so for seconds after a step the
  faster device has moved and the slower not yet: 0.02 kW of an ISP's mean when a charger
  drops 6 kW at 3.7 kW/s while the PV limit follows at 1 kW/s;
* the load and PV vary about their forecast within the ISP: the simulators' noise gives
  about 0.012 kW (one standard deviation) of an ISP's mean, so 0.04 kW at three;
* the setpoints are rounded to their registers (the PV limit to 0.1 % of 10 kW: 0.01 kW).

Together 0.07 kW; 0.1 kW (5 % of a 2 kW limit, less of a larger one) keeps the metered ISP
means within the limits. A real site's forecast error is larger; a site that must hold its
limit against that too needs the inverter's own export control.
"""


def with_limit_margin(sc: Scenario, margin_kw: float) -> Scenario:
    """``sc`` with its grid import and export limits [kW] lowered by ``margin_kw`` (not below
    0), so that the plan keeps :data:`GRID_LIMIT_MARGIN_KW` from each limit.

    Raises
    ------
    ValueError
        ``margin_kw`` is negative or not finite.
    """
    if not math.isfinite(margin_kw) or margin_kw < 0:
        raise ValueError(f"grid_limit_margin_kw must be >= 0 kW, got {margin_kw}")
    if margin_kw == 0:
        return sc
    series = sc.series.copy()
    for col in ("grid_import_limit_kw", "grid_export_limit_kw"):
        series[col] = (series[col].to_numpy(float) - margin_kw).clip(min=0.0)
    return sc.replace(series=series)


@dataclass(frozen=True, slots=True)
class Alarm:
    """A device the loop lost control of: when (``ts_ns``, UTC), what, and what was done."""

    ts_ns: int
    site: str
    asset: str
    device: str
    kind: str  # "control_lost"
    message: str


@dataclass(frozen=True)
class SiteWiring:
    """How a site's assets map to the gateway's devices (from the channels in the store).

    Attributes
    ----------
    site : str
        Site name.
    channel_ids : dict
        Channel key -> channel id, for every channel the gateway polls.
    soc_sources : dict
        Asset name -> (device, register) of its ``soc`` channel [%].
    power_devices : dict
        Asset name -> the device measuring its ``power`` channel.
    """

    site: str
    channel_ids: dict[str, int]
    soc_sources: dict[str, tuple[str, str]]
    power_devices: dict[str, str]


def site_wiring(session: Session, cfg: GatewayConfig) -> SiteWiring:
    """The wiring of the site whose channels the gateway config polls.

    Raises
    ------
    NoaberError
        A polled channel is not in the store (import the site first), or the channels belong
        to more than one site.
    """
    where: dict[str, tuple[str, str]] = {}  # channel key -> (device, register)
    for d in cfg.devices:
        for reg, key in cfg.channel_map(d).items():
            where[key] = (d.name, reg)
    rows = session.execute(
        select(Channel.key, Channel.id, Channel.quantity, Asset.name, Site.name)
        .join(Asset, Channel.asset_id == Asset.id)
        .join(Site, Asset.site_id == Site.id)
        .where(Channel.key.in_(list(where)))
    ).all()
    missing = sorted(set(where) - {r[0] for r in rows})
    if missing:
        raise NoaberError(
            f"channels not in the database: {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''} (import the site: noaber site import FILE)"
        )
    sites = sorted({r[4] for r in rows})
    if len(sites) != 1:
        raise NoaberError(f"the gateway's channels must belong to one site, got {sites}")
    soc: dict[str, tuple[str, str]] = {}
    power: dict[str, str] = {}
    for key, _cid, quantity, asset, _site in rows:
        dev, reg = where[key]
        if quantity == Quantity.SOC:
            soc[asset] = (dev, reg)
        elif quantity == Quantity.POWER:
            power[asset] = dev
    return SiteWiring(sites[0], {r[0]: r[1] for r in rows}, soc, power)


def writer_limits(cfg: GatewayConfig, power_devices: Mapping[str, str]) -> list[WriterLimit]:
    """The setpoint range the safe writer enforces per controlled asset, for the optimiser.

    The same numbers ``SafeWriter`` clamps to: the profile's writable range of the setpoint
    register (skipped for a setpoint in % of a register the device reports, known only when
    it is read) and the site's ``devices[].limits``, whichever is tighter. The asset is the
    device's ``asset`` or the site asset whose power it measures (``power_devices``).
    """
    out: list[WriterLimit] = []
    for d in cfg.devices:
        assets = [d.asset] if d.asset else [a for a, dev in power_devices.items() if dev == d.name]
        if not assets and d.asset_from_site:
            assets = [d.asset_from_site]
        out += device_writer_limits(d.name, d.profile, cfg.profiles[d.name], d.limits, assets)
    return out


def device_writer_limits(
    device: str, profile_name: str, profile: Profile, limits: LimitsConfig, assets: list[str]
) -> list[WriterLimit]:
    """:func:`writer_limits` of one device (none for a device without a power setpoint or
    with a production limit, which caps PV and bounds no planned power)."""
    ctrl = profile.control
    if ctrl is None or ctrl.setpoint_quantity == "production_limit":
        return []
    lo = hi = None
    spec = profile.registers[ctrl.setpoint].writable
    if spec is not None and ctrl.setpoint_percent_of is None:
        lo, hi = spec.min, spec.max
    if limits.power_w_min is not None:
        lo = limits.power_w_min if lo is None else max(lo, limits.power_w_min)
    if limits.power_w_max is not None:
        hi = limits.power_w_max if hi is None else min(hi, limits.power_w_max)
    source = f"devices[{device}]: profile {profile_name} and site limits"
    return [WriterLimit(a, device, lo, hi, ctrl.setpoint_quantity, source) for a in assets]


def stored_writer_limits(session: Session, site_name: str) -> list[WriterLimit]:
    """:func:`writer_limits` from the store: the site's devices as imported from its site file
    (profile, ``limits`` and ``asset`` in the device's params), each routed to its ``asset``
    or to the asset whose ``power`` channel it measures. ``noaber optimize run`` and the
    worker plan within these, as ``noaber control run`` does with the site file's.

    Raises
    ------
    ValidationError
        A stored device's ``limits`` are malformed, naming the device.
    NoaberError
        A device's profile cannot be found (a user's profile path is resolved from the
        working directory).
    """
    site = session.scalars(select(Site).where(Site.name == site_name)).first()
    if site is None:
        raise NoaberError(f"site {site_name!r} does not exist")
    power_of: dict[int, list[str]] = {}
    for asset in site.assets:
        for ch in session.scalars(select(Channel).where(Channel.asset_id == asset.id)):
            if ch.quantity == Quantity.POWER and ch.device_id is not None:
                power_of.setdefault(ch.device_id, []).append(asset.name)
    out: list[WriterLimit] = []
    for dev in sorted(site.devices, key=lambda d: d.name):
        params = dict(dev.params or {})
        try:
            limits = LimitsConfig.model_validate(params.get("limits") or {})
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"device {dev.name!r}: limits {params.get('limits')!r}: {exc.errors()[0]['msg']}",
                f"store:{site_name}",
                f"devices[{dev.name}].limits",
            ) from None
        named = params.get("asset")
        assets = [str(named)] if named else power_of.get(dev.id, [])
        out += device_writer_limits(dev.name, dev.profile, get_profile(dev.profile), limits, assets)
    return out


@dataclass(frozen=True, slots=True)
class SetpointRecord:
    """One setpoint the MPC asked for and what the device took [W]."""

    asset: str
    control: str  # the device control's name (PowerControl.asset: asset or device name)
    planned_w: float  # the MPC's asset power, + = charging
    requested_w: float  # the setpoint asked of the device (a grid setpoint for an ESS)
    written_w: float  # after the profile's and site's limits and the ramp
    requested_by: str
    read_back: bool  # the device read the written setpoint back (False: unchanged)
    via: str = "modbus"  # "ocpp": a charging profile through the site's central system


class GatewaySetpoints:
    """The MPC's :class:`~optimizer.mpc.ReleasableSink` over the gateway's power controls.

    Parameters
    ----------
    service : GatewayService
        Its devices' :class:`~modbus_gateway.capabilities.PowerControl` views.
    power_devices : dict
        Asset name -> device measuring its power (:attr:`SiteWiring.power_devices`): routes a
        site asset to a device whose control is named after the device (an ESS).
    """

    def __init__(
        self,
        service: GatewayService,
        power_devices: dict[str, str],
        ocpp: Mapping[str, OcppPowerControl] | None = None,
    ):
        self.controls: dict[str, PowerControl] = {}
        #: The site's OCPP chargers by asset (:mod:`noaber.services.ocpp_control`): routed
        #: and checked as the gateway's devices are.
        self.ocpp: dict[str, OcppPowerControl] = dict(ocpp or {})
        self.routes: dict[str, str] = {}
        #: PV curtailment: asset -> its inverter's :class:`PowerLimit` view (:meth:`limit`).
        self.limits: dict[str, PowerLimit] = {}
        for dev_name, view in service.devices().items():
            if isinstance(view, PowerLimit):
                self.limits[view.asset] = view
            if not isinstance(view, PowerControl):
                continue
            self.controls[view.asset] = view
            self.routes[view.asset] = view.asset
            for asset, dev in power_devices.items():
                if dev == dev_name:
                    self.routes.setdefault(asset, view.asset)
        for asset, charger in self.ocpp.items():
            if asset in self.routes:
                raise NoaberError(
                    f"asset {asset!r} is driven by gateway device {self.routes[asset]!r} and by "
                    f"OCPP charge point {charger.name!r}: give it one"
                )
            self.controls[asset] = charger
            self.routes[asset] = asset
        self.records: list[SetpointRecord] = []
        self.checks: list[ControlCheck] = []
        #: Control name -> why it is excluded (the loop sends it nothing more).
        self.excluded: dict[str, str] = {}
        self._service = service
        self._device_of = {
            v.asset: n
            for n, v in service.devices().items()
            if isinstance(v, PowerControl | PowerLimit)
        }
        self._device_of.update({a: c.name for a, c in self.ocpp.items()})

    def offline_assets(self) -> set[str]:
        """The assets of OCPP chargers that are not connected and booted now (planned
        without: nothing could reach them)."""
        return {a for a, c in self.ocpp.items() if not c.ready}

    def excluded_assets(self) -> set[str]:
        """The site assets whose device is excluded (routes to an excluded control)."""
        return {a for a, key in self.routes.items() if key in self.excluded} | (
            set(self.limits) & set(self.excluded)
        )

    async def check_all(self, requested_by: str) -> list[ControlCheck]:
        """Check every control under way (see :class:`~modbus_gateway.writes.ControlCheck`);
        returns, oldest first, what the gateway found out of control since the last call (its
        checks before setpoint refreshes) and these checks."""
        out = []
        for key, view in self._views().items():
            if not view.enabled or key in self.excluded:
                continue
            check = await view.check(requested_by)
            self.checks.append(check)
            if not check.mismatches:  # those out of control come with the events
                out.append(check)
        events = self._service.writer.take_events()
        for charger in self.ocpp.values():  # an OCPP charger keeps its own (its keepalive's)
            events += charger.take_events()
        return [*sorted(events, key=lambda c: c.ts_ns), *out]

    async def exclude(self, key: str, reason: str, requested_by: str) -> None:
        """Stop driving control ``key``: release it (best effort) and send it nothing more."""
        self.excluded[key] = reason
        try:
            await self._views()[key].release(requested_by)
        except NoaberError as exc:
            log.error("%s: safe default after losing control failed: %s", key, exc)

    def controlled_devices(self) -> list[str]:
        """The gateway devices of every control not excluded (power controls and PV limits;
        not the OCPP chargers, whose meter values come on their own)."""
        return sorted(
            {
                self.device_of(k)
                for k in self._views()
                if k not in self.excluded and k not in self.ocpp
            }
        )

    def device_of(self, key: str) -> str:
        return self._device_of.get(key, key)

    def control_of(self, asset_name: str) -> str:
        key = self.routes.get(asset_name)
        if key is None:
            raise NoaberError(
                f"no gateway device controls asset {asset_name!r} "
                f"(controlled: {', '.join(sorted(self.routes)) or 'none'})"
            )
        return key

    async def apply(self, asset_name: str, power_w: float, requested_by: str) -> Written | None:
        """Command the asset's power [W, + = charging]; returns what the device took (None:
        the device is excluded after an alarm, nothing is sent)."""
        key = self.control_of(asset_name)
        if key in self.excluded:
            log.info("%s is excluded (%s): setpoint not sent", key, self.excluded[key])
            return None
        written = await self.controls[key].write(power_w, requested_by)
        self.records.append(
            SetpointRecord(
                asset_name,
                key,
                power_w,
                written.requested_w,
                written.written_w,
                requested_by,
                written.read_back,
                "ocpp" if key in self.ocpp else "modbus",
            )
        )
        return written

    async def limit(
        self, asset_name: str, max_production_w: float, requested_by: str
    ) -> Written | None:
        """Cap a PV asset's production [W, >= 0] through its inverter's active-power limit
        (None: excluded after an alarm, nothing sent)."""
        view = self.limits.get(asset_name)
        if view is None:
            raise NoaberError(
                f"no gateway device limits the production of {asset_name!r} "
                f"(limited: {', '.join(sorted(self.limits)) or 'none'})"
            )
        if asset_name in self.excluded:
            return None
        written = await view.limit_w(max_production_w, requested_by)
        self.records.append(
            SetpointRecord(
                asset_name,
                asset_name,
                -max_production_w,
                written.requested_w,
                written.written_w,
                requested_by,
                written.read_back,
            )
        )
        return written

    def _views(self) -> dict[str, PowerControl | PowerLimit]:
        return {**self.limits, **self.controls}

    async def release(self, asset_name: str, requested_by: str) -> None:
        """Hand the asset's device back to its safe default."""
        await self.controls[self.control_of(asset_name)].release(requested_by)

    async def release_all(self, requested_by: str, keep: Collection[str] = ()) -> list[str]:
        """Release every control still enabled except those of the assets in ``keep``;
        returns their names (errors are logged)."""
        kept = {self.routes[a] for a in keep if a in self.routes} | (set(keep) & set(self.limits))
        released = []
        for key, view in self._views().items():
            if view.enabled and key not in kept and key not in self.excluded:
                try:
                    await view.release(requested_by)
                    released.append(key)
                except NoaberError as exc:
                    log.error("%s: safe default failed: %s", key, exc)
        return released


def gateway_soc_pct(
    service: GatewayService, soc_sources: dict[str, tuple[str, str]]
) -> dict[str, float]:
    """The latest GOOD SoC [%] the gateway polled per asset, from the ``Battery`` view of the
    device of its ``soc`` channel (assets without one are left out)."""
    devices = service.devices()
    out: dict[str, float] = {}
    for asset, (dev_name, _reg) in soc_sources.items():
        view = devices.get(dev_name)
        if not isinstance(view, Battery):
            continue
        soc = view.soc_pct()
        if soc.quality == Quality.GOOD and math.isfinite(soc.value):
            out[asset] = soc.value
    return out


def report_step(
    controller: MPCController,
    setpoints: dict[str, float],
    i: int,
    steps: int,
    store_to: sessionmaker[Session] | None = None,
) -> int | None:
    """Print one MPC step's status line; store an ok step's plan when ``store_to`` is given.

    ``controller`` is after ``step()``; returns the stored schedule's id (None: not stored).
    A failed step is printed in red with the error, the assets released to their safe default
    and any fallback setpoints, so a failure is visible.
    """
    st = controller.status
    shown = ", ".join(f"{k} {v / 1000:+.1f} kW" for k, v in setpoints.items()) or "none"
    if not st.last_ok:
        released = ", ".join(st.released) or "none"
        console.print(
            f"[red]step {i + 1}/{steps}: planning failed: {st.last_error}; released to their "
            f"safe default: {released}; fallback setpoints: {shown}[/red]"
        )
        return None
    console.print(f"step {i + 1}/{steps} at {st.last_step_at}: planned, setpoints {shown}")
    plan_now, sc_now = controller.last_plan, controller.last_scenario
    for line in plan_now.warnings if plan_now is not None else []:  # a short car, a breach
        console.print(f"[yellow]  warning: {line}[/yellow]", highlight=False)
        log.warning("step %d/%d: %s", i + 1, steps, line)
    if store_to is None or plan_now is None or sc_now is None:
        return None
    with transaction(store_to) as s:
        sid = save_plan(s, sc_now, plan_now, compare(sc_now, plan_now))
    console.print(f"  stored as schedule {sid}")
    return sid


@dataclass
class ControlRun:
    """What a control run did: the MPC status, the setpoints and the gateway's counters."""

    status: MPCStatus
    setpoints: list[SetpointRecord]
    controller: MPCController
    service: GatewayService
    polls: int = 0
    samples_delivered: int = 0
    samples_spooled: int = 0
    released: list[list[str]] = field(default_factory=list)  # per step, by this loop
    alarms: list[Alarm] = field(default_factory=list)
    checks: list[ControlCheck] = field(default_factory=list)
    ocpp_port: int | None = None  # where the site's OCPP central system listened


async def _check_controls(
    sink: GatewaySetpoints,
    site: str,
    alarms: list[Alarm],
    i: int,
    steps: int,
    store: Callable[[Alarm], None] | None = None,
) -> None:
    """Before step ``i``: check every device under control; one that stays out of control
    raises an alarm and is excluded. Every alarm goes to ``alarms`` and to ``store``."""
    first = len(alarms)
    try:
        await _check_all(sink, site, alarms, i, steps)
    finally:
        for alarm in alarms[first:]:
            if store is not None:
                store(alarm)


async def _check_all(
    sink: GatewaySetpoints, site: str, alarms: list[Alarm], i: int, steps: int
) -> None:
    lost: dict[str, ControlCheck] = {}
    for check in await sink.check_all(f"{REQUESTED_BY} (check)"):
        key = check.asset
        if check.re_enabled and check.in_control:
            message = (
                f"{key} ({sink.device_of(key)}) had left control "
                f"({'; '.join(check.mismatches)}): a reboot or a mode change; the enable "
                "sequence and the setpoint were sent again and it reports them"
            )
            alarms.append(
                Alarm(check.ts_ns, site, key, sink.device_of(key), "control_restored", message)
            )
            log.warning("step %d/%d: ALARM %s", i + 1, steps, message)
            console.print(f"[yellow]alarm: {message}[/yellow]")
        if not check.in_control:
            lost[key] = check  # the latest of each device
    for key, check in lost.items():
        if check.lost_checks < LOST_AFTER_CHECKS or key in sink.excluded:
            log.warning("step %d/%d: %s out of control: %s", i + 1, steps, key, check.mismatches)
            continue
        message = (
            f"{key} ({sink.device_of(key)}) out of control for {check.lost_checks} checks in "
            f"a row: {'; '.join(check.mismatches) or 'does not report what was written'}; "
            "released and excluded, the plan is made without it"
        )
        alarm = Alarm(check.ts_ns, site, key, sink.device_of(key), "control_lost", message)
        alarms.append(alarm)
        log.error("ALARM %s", message)
        console.print(f"[red]alarm: {message}[/red]")
        await sink.exclude(key, message, f"{REQUESTED_BY} (control lost)")


OnStep = Callable[[int, MPCController], Awaitable[None]]


async def _first_values(
    service: GatewayService, devices: set[str], timeout_s: float, stop: asyncio.Event
) -> None:
    """Wait (at most ``timeout_s``) until every device in ``devices`` answered a poll (a poll
    under way is not enough: a SunSpec device's register map is known only once it answered,
    and a write before that would go to the model-relative address)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        status = service.counters().statuses
        if all(status[d] in ("ok", "degraded") for d in devices if d in status):
            return
        await asyncio.sleep(0.05)
    log.warning("not every device answered within %.0f s; planning with what is there", timeout_s)


async def _release_after(
    sink: GatewaySetpoints,
    controller: MPCController,
    setpoints: Mapping[str, float],
    i: int,
    steps: int,
) -> list[str]:
    """After step ``i``: every device to its safe default if planning failed, else the devices
    the plan no longer drives (the car left); returns the devices released."""
    st = controller.status
    if not st.last_ok:
        released = await sink.release_all(f"{REQUESTED_BY}:fallback")
        st.released = [*st.released, *released]
        log.error(
            "step %d/%d: planning failed (%s); safe defaults: %s",
            i + 1,
            steps,
            st.last_error,
            ", ".join(st.released) or "none",
        )
        return released
    released = await sink.release_all(f"{REQUESTED_BY} (no longer planned)", keep=set(setpoints))
    if released:
        log.info("step %d/%d: released %s", i + 1, steps, ", ".join(released))
    return released


#: The longest a step's ramps are waited for before the sample after them [s].
RAMPS_WAIT_MAX_S = 120.0


async def sample_after_ramps(
    service: GatewayService, clock: Clock, stop: asyncio.Event, devices: list[str]
) -> None:
    """Poll ``devices`` once the writer's ramps have ended (at least :data:`RAMP_STEP_S` after
    the step, at most :data:`RAMPS_WAIT_MAX_S`).

    With the poll right before the step's setpoints, this brackets each change: the pipeline
    integrates power by the trapezoid rule between samples, so a setpoint step between two
    scheduled polls (60 s apart) would count as a linear ramp over that minute, moving up to
    ``dP * 60 / 2`` J of the change into the other ISP (a 6 kW step: up to 0.2 kW of an ISP's
    mean). Bracketed, the samples follow the step and its ramp (linear, so the trapezoid is
    exact at its ends), and the grid connection derived from the devices is metered as it
    flowed.
    """
    waited = 0.0
    while waited < RAMPS_WAIT_MAX_S:
        if await wait_or_stop(clock, stop, RAMP_STEP_S):
            return
        waited += RAMP_STEP_S
        if not service.writer.ramping():
            break
    await service.gateway.poll_now(devices)


async def run_control(
    cfg: GatewayConfig,
    sessions: sessionmaker[Session],
    sample_store: SampleStore,
    prices_csv: Path | None,
    spool_path: Path,
    steps: int,
    step_s: float = 900.0,
    sessions_file: Path | None = None,
    horizon_hours: float = 24.0,
    cloud_factor: float = 1.0,
    store_plans: bool = True,
    stop: asyncio.Event | None = None,
    on_step: OnStep | None = None,
    flush_interval_s: float = 5.0,
    write_log_path: Path | None = None,
    first_poll_timeout_s: float = 10.0,
    price_series: tuple[str, str] | None = None,
    clock: ControlClock | None = None,
    sample_sink: SampleSink | None = None,
    forecast_csv: Path | None = None,
    until: pd.Timestamp | None = None,
    ocpp: OcppSite | None = None,
    actor: Actor | None = None,
    grid_limit_margin_kw: float = GRID_LIMIT_MARGIN_KW,
) -> ControlRun:
    """Run the gateway and the MPC together for at most ``steps`` steps (see module doc).

    Parameters
    ----------
    cfg : GatewayConfig
        The site's devices (its channels must be in the store).
    sessions : sessionmaker
        The SQL store: site, assets, load history and SoC readings; plans are saved there.
    sample_store : SampleStore
        Where the polled samples go (through the spool at ``spool_path``).
    prices_csv : Path or None
        Import/export prices covering every horizon [EUR/kWh]; None: ``price_series``.
    steps : int
        Control steps; the loop stops by itself after them.
    step_s : float
        Seconds between re-plans, aligned to multiples of it (900: the ISP grid) [s].
    sessions_file : Path, optional
        EV sessions YAML, re-read every step (an owner's change is used at the next step).
    stop : asyncio.Event, optional
        Set it (a signal handler does) to stop early; safe defaults are restored.
    on_step : async callable, optional
        ``await on_step(i, controller)`` after each step's report (a test's probe).
    clock : ControlClock, optional
        The gateway's and the MPC's clock (default: the wall clock); steps wait on it.
    sample_sink : SampleSink, optional
        Where the gateway delivers its samples (default: ``sample_store`` directly; an
        :class:`~modbus_gateway.mqtt.MqttSampleSink` sends them to the centre's ``consume``).
    forecast_csv : Path, optional
        Load and PV per step (:func:`with_forecast`) instead of the store's forecast.
    until : Timestamp, optional
        The horizon ends there at the latest (a plan for the rest of the day, shrinking each
        step, as :func:`optimizer.replay.replay` does); a step at or after it stops the loop.
    ocpp : OcppSite, optional
        The site's ``ocpp:`` section: with ``listen_port`` the loop starts the site's OCPP
        central system itself and drives its chargers (:mod:`noaber.services.ocpp_control`);
        their meter values go through the centre's checks into ``sample_store``.
    actor : Actor, optional
        Who the OCPP setpoints are audited as (default ``noaber-control``, cli).
    grid_limit_margin_kw : float
        Kept below the site's grid import and export limits in every plan
        (:data:`GRID_LIMIT_MARGIN_KW`, :func:`with_limit_margin`) [kW].

    Returns
    -------
    ControlRun
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if step_s <= 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    if not math.isfinite(grid_limit_margin_kw) or grid_limit_margin_kw < 0:
        raise ValueError(f"grid_limit_margin_kw must be >= 0 kW, got {grid_limit_margin_kw}")
    stop = stop or asyncio.Event()
    clock = clock or ControlClock()
    with sessions() as s:
        wiring = site_wiring(s, cfg)
    site = wiring.site
    limits = writer_limits(cfg, wiring.power_devices)  # plan within what the writer lets through

    excluded: set[str] = set()  # assets whose device raised an alarm
    offline: set[str] = set()  # assets of OCPP chargers not connected at this step
    #: PV assets whose inverter the gateway can limit (filled once the sink exists): only
    #: their curtailment is planned to be sent; other PV runs free
    limitable: set[str] = set()

    def scenario_at(now: pd.Timestamp) -> Scenario:
        ev = ev_sessions_from_yaml(sessions_file) if sessions_file is not None else None
        hours = horizon_hours
        if until is not None:
            hours = min(hours, (until - pd.Timestamp(now).floor("15min")) / pd.Timedelta(hours=1))
            if hours <= 0:
                raise NoaberError(f"the horizon ended at {until.isoformat()}")
        with sessions() as s:
            sc = scenario_from_store(
                s,
                site,
                now,
                hours,
                prices_csv,
                ev,
                cloud_factor,
                price_series=price_series,
            )
        if forecast_csv is not None:
            sc = with_forecast(sc, forecast_csv)
        sc = with_limit_margin(apply_writer_limits(sc, limits), grid_limit_margin_kw)
        sc = sc.replace(
            pv_assets={a: kw for a, kw in sc.pv_assets.items() if a in limitable - excluded}
        )
        left_out = excluded | offline
        if not left_out:
            return sc
        battery = sc.battery if sc.battery is None or sc.battery.name not in left_out else None
        return sc.replace(battery=battery, evs=tuple(e for e in sc.evs if e.name not in left_out))

    scenario_at(clock.now())  # fail early: bad prices, sessions, forecast, no history

    service = GatewayService(
        cfg,
        sample_sink or SampleStoreSink(sample_store, wiring.channel_ids),
        spool_path,
        flush_interval_s=flush_interval_s,
        schedule_timeout_s=max(2.0 * step_s, 60.0),
        write_log_path=write_log_path,
        clock=clock,
    )
    central: OcppService | None = None
    chargers: dict[str, OcppPowerControl] = {}
    if ocpp is not None and ocpp.config.listen_port is not None:
        if ocpp.doc.site.name != site:
            service.close()
            raise NoaberError(
                f"the ocpp: section is of site {ocpp.doc.site.name!r}, the devices of {site!r}"
            )
        engine = sessions.kw.get("bind")
        if not isinstance(engine, Engine):
            service.close()
            raise NoaberError("the OCPP central system needs the session factory's engine")
        central = OcppService(
            ocpp,
            engine,
            sample_store,
            spool_path.with_name(f"ocpp-{site}-spool.sqlite"),
            actor or Actor("noaber-control", "cli"),
            log_path=write_log_path,
            flush_interval_s=flush_interval_s,
        )
        chargers = ocpp_controls(central, clock, LOST_AFTER_CHECKS)
        limits += ocpp_writer_limits(central)
    sink = GatewaySetpoints(service, wiring.power_devices, chargers)
    limitable.update(sink.limits)

    async def measure() -> dict[str, float]:
        with sessions() as s:
            soc = measured_soc_pct(s, site)  # latest interval readings ...
        soc.update(gateway_soc_pct(service, wiring.soc_sources))  # ... the live samples first
        return soc

    options = SolveOptions(time_limit_s=min(60.0, max(5.0, step_s / 2)))
    controller = MPCController(
        scenario_at, measure, sink, clock=clock.now, options=options, requested_by=REQUESTED_BY
    )
    run = ControlRun(controller.status, sink.records, controller, service)

    def store_alarm(alarm: Alarm) -> None:
        """The alarm into the site's alarm table (``GET /alarms/sites/{site}``)."""
        at = pd.Timestamp(alarm.ts_ns, unit="ns", tz="UTC").to_pydatetime()
        try:
            with transaction(sessions) as s:
                record_alarm(s, site, at, alarm.asset, alarm.device, alarm.kind, alarm.message)
        except Exception as exc:  # the loop goes on; the log has the alarm
            log.error("alarm not stored: %s", exc)

    task = asyncio.create_task(service.run())
    keeper: asyncio.Task | None = None
    try:
        if central is not None:
            assert ocpp is not None and ocpp.config.listen_port is not None
            port = await central.start(ocpp.config.listen_host, ocpp.config.listen_port)
            run.ocpp_port = port
            log.info(
                "OCPP central system of %s on %s://%s:%d/<charge point id> (security profile %d)",
                site,
                "wss" if ocpp.config.security_profile >= 2 else "ws",
                ocpp.config.listen_host,
                port,
                ocpp.config.security_profile,
            )
            keeper = asyncio.create_task(keep_profiles(chargers, clock, stop, REQUESTED_BY))
        devices = {d for d, _reg in wiring.soc_sources.values()}
        # every device the loop writes to, PV inverters too: a SunSpec device's addresses
        # are known only after its first poll
        devices |= {
            d for d, v in service.devices().items() if isinstance(v, PowerControl | PowerLimit)
        }
        await _first_values(service, devices, first_poll_timeout_s, stop)
        if chargers:
            await wait_ready(chargers, first_poll_timeout_s, stop)
        after: asyncio.Task[None] | None = None  # the sample after the last step's ramps
        for i in range(steps):
            if stop.is_set() or task.done():
                break
            if until is not None and clock.now() >= until:
                log.info("step %d/%d: the horizon ended at %s", i + 1, steps, until.isoformat())
                break
            with clock.planning():
                await _check_controls(sink, site, run.alarms, i, steps, store_alarm)
                excluded |= sink.excluded_assets()
                now_offline = sink.offline_assets() - excluded
                for a in sorted(now_offline - offline):
                    log.warning(
                        "step %d/%d: OCPP charger %s of %s not connected: planned without it",
                        i + 1, steps, sink.device_of(a), a,
                    )  # fmt: skip
                offline.clear()
                offline.update(now_offline)
                if after is not None:
                    after.cancel()
                # a sample of every controlled device right before the step's setpoints (and
                # one once their ramps ended, below): see bracket_samples
                await service.gateway.poll_now(sink.controlled_devices())
                setpoints = await controller.step()
                run.released.append(await _release_after(sink, controller, setpoints, i, steps))
                report_step(controller, setpoints, i, steps, sessions if store_plans else None)
                if on_step is not None:
                    await on_step(i, controller)
            after = asyncio.create_task(
                sample_after_ramps(service, clock, stop, sink.controlled_devices())
            )
            if i + 1 < steps:
                wait = step_s - (clock.time_ns() / 1e9) % step_s
                await wait_or_stop(clock, stop, wait)
        if task.done() and not stop.is_set():
            log.error("the gateway stopped during control: %s", task.exception() or "ended")
    finally:
        if after is not None:
            after.cancel()
        service.stop()  # the writer restores every safe default; last flush to the store
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await keeper
        if central is not None:
            try:  # TxProfiles cleared: each charger back on its TxDefaultProfile
                await central.stop()
            except Exception as exc:
                log.error("OCPP central system: stop failed: %s", exc)
            finally:
                central.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        counters = service.counters()
        run.polls = counters.total_polls
        run.samples_delivered = counters.samples_delivered
        run.samples_spooled = counters.samples_spooled
        run.checks = list(sink.checks)
        service.close()
    return run


def setup_logging(log_file: Path | None) -> None:
    """Control, MPC and gateway logs at INFO to ``log_file``; warnings and errors to stderr."""
    loggers = [
        logging.getLogger(n) for n in ("noaber.services.control", "optimizer", "modbus_gateway")
    ]
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    handlers: list[logging.Handler] = []
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    handlers.append(stderr)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for lg in loggers:
        lg.setLevel(logging.INFO)
        for old in [h for h in lg.handlers if getattr(h, "_noaber_control", False)]:
            lg.removeHandler(old)
            old.close()
    for h in handlers:
        h.setFormatter(fmt)
        h._noaber_control = True  # type: ignore[attr-defined]
        for lg in loggers:
            lg.addHandler(h)


def run_site(
    site_file: Path,
    prices_csv: Path | None,
    sessions_file: Path | None,
    steps: int,
    step_s: float,
    horizon_hours: float,
    cloud_factor: float,
    store_plans: bool,
    spool: Path | None,
    price_series: tuple[str, str] | None = None,
    forecast_csv: Path | None = None,
    actor: Actor | None = None,
) -> ControlRun:
    """``noaber control run``: the store of the settings, signal handlers, the loop (blocking).

    A site file whose ``ocpp:`` section has ``listen_port`` gets its OCPP central system
    started by the loop (validated against the file's assets first)."""
    import signal

    from energy.db import make_engine, session_factory, upgrade
    from energy.settings import get_settings
    from modbus_gateway.config import load_config

    settings = get_settings()
    cfg = load_config(site_file)
    doc = load_site_file(site_file)
    ocpp = None
    if doc.ocpp is not None and doc.ocpp.get("listen_port") is not None:
        ocpp = ocpp_site(doc, str(site_file))
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    spool_path = spool or Path(cfg.spool_path or settings.data_dir / "gateway-spool.sqlite")
    setup_logging(spool_path.with_name("control.log"))

    async def main() -> ControlRun:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: safe defaults, last flush
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        return await run_control(
            cfg,
            session_factory(engine),
            SampleStore(settings.samples_dir),
            prices_csv,
            spool_path,
            steps,
            step_s,
            sessions_file,
            horizon_hours,
            cloud_factor,
            store_plans,
            stop,
            write_log_path=spool_path.with_name("gateway-writes.jsonl"),
            price_series=price_series,
            forecast_csv=forecast_csv,
            ocpp=ocpp,
            actor=actor,
        )

    try:
        return asyncio.run(main())
    finally:
        engine.dispose()


def summary_line(run: ControlRun) -> str:
    """One line on a finished run (printed by the CLI)."""
    st = run.status
    return (
        f"{st.steps} step(s): {st.plans} planned, {st.failures} failed; "
        f"{len(run.setpoints)} setpoints written; {run.polls} polls, "
        f"{run.samples_delivered} samples stored, {run.samples_spooled} spooled; "
        f"{len(run.alarms)} alarm(s); safe defaults restored"
    )
