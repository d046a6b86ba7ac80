"""Model-predictive control: re-plan every step from measured SoC and the latest forecasts.

Each step (15 minutes by default) :class:`MPCController`:

1. asks ``scenario_at(now)`` for the scenario of the horizon starting now (latest PV, load
   and price forecasts and the known EV sessions);
2. reads the measured SoC of the battery and of the plugged-in cars (``measure()``: a
   :class:`Measured` with when each value was measured and why one is absent, or a plain
   ``{asset: soc_pct}``). Where a value is absent, stale or from before the car arrived, the
   plan starts from the site file's ``soc_initial_pct`` (battery) or the session's stated
   arrival SoC (car), and :attr:`MPCStatus.warnings` says what it fell back to and why
   (``"battery bat-1: no SoC reading since 10:15, using 50 % from the site file"``);
3. re-plans. The model is anchored: it is built once for ``horizon`` steps and re-used while
   the structure (EV sessions) stays the same; the steps already past are frozen by zero
   limits (see :meth:`optimizer.model.Planner.update`), so a re-plan only changes data in the
   persistent HiGHS model. It is rebuilt when less than half the horizon remains or when an
   EV session appears, leaves or changes;
4. hands the first step's battery and charger setpoints [W] (positive = charging) to a
   :class:`SetpointSink` (the closed loop's sink over the gateway's devices) with
   ``requested_by``; where the plan curtails PV (an export limit, a negative export price),
   a :class:`LimitingSink` gets each limitable PV asset's production limit
   (:func:`curtailment_limits_w`; the inverter's active-power limit), and the step's
   setpoints list it as ``-max_production_w`` (production is negative at a meter), so the
   loop keeps that limit and drops it in the first step without curtailment.

A fallback warning (no SoC measured) is logged once per run at WARNING (repeats at DEBUG);
:attr:`MPCStatus.warnings` lists every step's warnings, so nothing is lost for the user.

If planning fails (an infeasible scenario, a solver error, a missing measurement), every
controlled asset falls back to its safe default: when the sink is a :class:`ReleasableSink`
(``release(asset_name, requested_by)``; the closed loop's sink over the gateway is one: it
writes the device profile's safe default, control back to the device) that is used;
otherwise, or for an asset with an explicit ``safe_default_w``, a setpoint is sent: the
battery idles (0 W) and a charger charges at full power as it would without control, so no
car leaves emptier than without Noaber.
The failure is logged and kept in :attr:`MPCController.status`.

The clock, the sleep and the sink are injected (docs/SOURCES.md, Patterns: TigerBeetle), so a test replays a day
without waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from energy.clock import utc_now
from optimizer.model import Plan, Planner, SolveOptions, params_from_scenario, structure_of
from optimizer.scenario import Scenario

log = logging.getLogger("optimizer.mpc")

REQUESTED_BY = "optimizer.mpc"


class SetpointSink(Protocol):
    """Where setpoints go: the gateway's safe-write path provides one."""

    async def apply(self, asset_name: str, power_w: float, requested_by: str) -> Any:
        """Apply ``power_w`` [W] (positive = charging) to an asset; raise if refused."""
        ...


@runtime_checkable
class ReleasableSink(SetpointSink, Protocol):
    """A sink that can also hand an asset back to its device's safe default."""

    async def release(self, asset_name: str, requested_by: str) -> None:
        """Write the safe default of the asset's device (control back to the device)."""
        ...


@runtime_checkable
class LimitingSink(SetpointSink, Protocol):
    """A sink that can also cap a PV asset's production (the inverter's active-power limit)."""

    async def limit(self, asset_name: str, max_production_w: float, requested_by: str) -> Any:
        """Cap the production of PV asset ``asset_name`` at ``max_production_w`` [W, >= 0]."""
        ...


#: Curtailment below this is not sent as a limit [kW] (solver noise, rounding).
CURTAIL_EPS_KW = 1e-3


def curtailment_limits_w(sc: Scenario, row: pd.Series) -> dict[str, float]:
    """The production limits [W] that carry out one step's planned curtailment.

    The plan curtails ``curtailed_kw`` of the site's PV (``pv_kw`` used of
    ``pv_available_kw``). Each PV asset of ``sc.pv_assets`` ({name: peak share}) gets its share
    of the PV used as its production limit; a step without curtailment gives no limits (the
    inverters run free). Empty without PV assets in the scenario.
    """
    shares = sc.pv_assets
    if not shares or float(row["curtailed_kw"]) <= CURTAIL_EPS_KW:
        return {}
    used_kw = max(0.0, float(row["pv_kw"]))
    total = sum(shares.values())
    return {name: 1000.0 * used_kw * share / total for name, share in shares.items()}


class RecordingSink:
    """A sink that records every setpoint (for dry runs and tests); no ``release``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, str]] = []
        #: Production limits asked for: (PV asset, max production [W], requested_by).
        self.limits: list[tuple[str, float, str]] = []

    async def apply(self, asset_name: str, power_w: float, requested_by: str) -> None:
        self.calls.append((asset_name, power_w, requested_by))

    async def limit(self, asset_name: str, max_production_w: float, requested_by: str) -> None:
        self.limits.append((asset_name, max_production_w, requested_by))


class LoggingSink(RecordingSink):
    """A dry-run sink: records and logs setpoints, writes nothing to devices."""

    async def apply(self, asset_name: str, power_w: float, requested_by: str) -> None:
        await super().apply(asset_name, power_w, requested_by)
        log.info("dry run: %s -> %.0f W (%s)", asset_name, power_w, requested_by)

    async def limit(self, asset_name: str, max_production_w: float, requested_by: str) -> None:
        await super().limit(asset_name, max_production_w, requested_by)
        log.info(
            "dry run: %s production <= %.0f W (%s)", asset_name, max_production_w, requested_by
        )


@dataclass
class Measured:
    """The measured state at a step: SoC per asset, when it was measured, why one is absent.

    Attributes
    ----------
    soc_pct : dict
        Asset name -> state of charge [%].
    at : dict
        Asset name -> when that value was measured (UTC); an asset without an entry counts
        as measured now.
    why_not : dict
        Asset name -> why it has no value (``"no SoC reading since 10:15"``), for the warning.
    """

    soc_pct: dict[str, float] = field(default_factory=dict)
    at: dict[str, pd.Timestamp] = field(default_factory=dict)
    why_not: dict[str, str] = field(default_factory=dict)


def _local(ts: pd.Timestamp, now: pd.Timestamp, tz: str) -> str:
    """``HH:MM`` local, with the date when it is not the day of ``now``."""
    t, n = ts.tz_convert(tz), now.tz_convert(tz)
    return f"{t:%H:%M}" if t.date() == n.date() else f"{t:%d-%m-%Y %H:%M}"


@dataclass
class MPCStatus:
    """What the loop did last; exposed to the API/CLI so a failure is visible."""

    steps: int = 0
    plans: int = 0
    rebuilds: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_step_at: str | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    last_objective_eur: float | None = None
    last_setpoints_w: dict[str, float] = field(default_factory=dict)
    #: What the last plan could not do: a car short of its target, a priced breach.
    last_warnings: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    fallback_active: bool = False
    warnings: list[str] = field(default_factory=list)
    """What the last step fell back to for lack of a measurement, and why."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def with_measurements(
    sc: Scenario, soc_pct: dict[str, float] | Measured, now: pd.Timestamp
) -> Scenario:
    """The scenario with the measured SoC [%]: the battery's start SoC and, for a car plugged
    in at ``now``, the SoC at the start of its session (the session then starts now)."""
    return apply_measurements(sc, soc_pct, now)[0]


def apply_measurements(
    sc: Scenario, measured: dict[str, float] | Measured, now: pd.Timestamp
) -> tuple[Scenario, list[str]]:
    """:func:`with_measurements`, and a warning for each asset that falls back, saying to
    what and why.

    The battery without a value starts at its ``soc_initial_pct`` from the site file; a car
    plugged in at ``now`` without a value measured since it arrived keeps its session's stated
    ``soc_arrival_pct``. A measured value outside the asset's SoC limits is clamped to them,
    with a warning.
    """
    m = measured if isinstance(measured, Measured) else Measured(dict(measured))
    tz = sc.site.timezone
    warnings: list[str] = []
    battery = sc.battery
    if battery is not None:
        if battery.name in m.soc_pct:
            raw = m.soc_pct[battery.name]
            value = min(max(raw, battery.soc_min_pct), battery.soc_max_pct)
            if abs(value - raw) > 1e-6:  # not the rounding of a value at its limit
                warnings.append(
                    f"battery {battery.name}: measured SoC {raw:g} % lies outside its limits "
                    f"{battery.soc_min_pct:g}-{battery.soc_max_pct:g} %, planning from {value:g} %"
                )
            battery = dataclasses.replace(
                battery,
                soc_initial_pct=value,
                soc_final_min_pct=battery.soc_final_min_effective_pct,
            )
        else:
            why = m.why_not.get(battery.name, "no SoC measurement")
            warnings.append(
                f"battery {battery.name}: {why}, using {battery.soc_initial_pct:g} % from the "
                "site file"
            )
    evs = []
    for ev in sc.evs:
        sessions = []
        for s in ev.sessions:
            if s.arrival <= now < s.departure:
                at = m.at.get(ev.name)
                if ev.name in m.soc_pct and (at is None or at >= s.arrival):
                    s = dataclasses.replace(
                        s, arrival=min(s.arrival, now), soc_arrival_pct=m.soc_pct[ev.name]
                    )
                else:
                    if ev.name in m.soc_pct and at is not None:
                        why = (
                            f"the last SoC reading ({_local(at, now, tz)}) is from before the "
                            f"car arrived at {_local(s.arrival, now, tz)}"
                        )
                    else:
                        why = m.why_not.get(ev.name, "the charger reports no SoC")
                    warnings.append(
                        f"EV {ev.name}: {why}, using the session's arrival SoC "
                        f"{s.soc_arrival_pct:g} %"
                    )
            sessions.append(s)
        evs.append(dataclasses.replace(ev, sessions=tuple(sessions)))
    return sc.replace(battery=battery, evs=tuple(evs)), warnings


class MPCController:
    """Re-plans each step and drives the battery and chargers; see the module docstring.

    Parameters
    ----------
    scenario_at : callable
        ``scenario_at(now) -> Scenario`` for the horizon starting at ``now`` (UTC step start).
    measure : async callable
        ``await measure() -> Measured`` (or ``{asset_name: soc_pct}``) for the battery and
        the plugged-in cars; see :func:`apply_measurements` for what is used where a value
        is absent.
    sink : SetpointSink
        Where the setpoints go (a :class:`ReleasableSink` is released on failure).
    clock : callable
        ``clock() -> pandas.Timestamp`` (UTC); injected for tests.
    options : SolveOptions
        Solver settings (gap, time limit) for every re-plan.
    safe_default_w : dict, optional
        Setpoint per asset on failure [W]; default: battery 0 W, chargers full power.
    """

    def __init__(
        self,
        scenario_at: Callable[[pd.Timestamp], Scenario],
        measure: Callable[[], Awaitable[dict[str, float] | Measured]],
        sink: SetpointSink,
        clock: Callable[[], pd.Timestamp] | None = None,
        options: SolveOptions | None = None,
        safe_default_w: dict[str, float] | None = None,
        requested_by: str = REQUESTED_BY,
    ):
        self.scenario_at = scenario_at
        self.measure = measure
        self.sink = sink
        self.clock = clock or (lambda: pd.Timestamp(utc_now()))
        self.options = options or SolveOptions(time_limit_s=60.0)
        self.safe_default_w = dict(safe_default_w or {})
        self.requested_by = requested_by
        self.status = MPCStatus()
        self.planner: Planner | None = None
        self.anchor: pd.Timestamp | None = None
        self.last_plan: Plan | None = None
        self.last_scenario: Scenario | None = None
        self._assets: list[str] = []
        #: Fallback warnings already logged at WARNING in this run (each is logged once;
        #: a repeat goes to DEBUG and stays in :attr:`MPCStatus.warnings` of its step).
        self._warned: set[str] = set()

    def _defaults(self, sc: Scenario | None) -> dict[str, float]:
        out: dict[str, float] = {}
        if sc is not None:
            if sc.battery is not None:
                out[sc.battery.name] = 0.0
            for ev in sc.evs:
                out[ev.name] = ev.max_charge_kw * 1000.0
        out.update(self.safe_default_w)
        return out

    def _plan(self, sc: Scenario, now: pd.Timestamp) -> tuple[Plan, int]:
        """Plan on the anchored model; returns the plan and the index of ``now`` in it."""
        step = pd.Timedelta(minutes=sc.step_minutes)
        n = len(sc.series)
        if self.planner is not None and self.anchor is not None:
            k = int((now - self.anchor) / step)
            if 0 <= k <= n // 2:
                index = pd.date_range(self.anchor, periods=n, freq=step).as_unit("ns")
                series = sc.series.reindex(index).ffill().bfill()
                params = params_from_scenario(sc.replace(series=series))
                if structure_of(params) == self.planner.structure:
                    self.planner.update(params, frozen_steps=k)
                    return self.planner.solve(), k
        self.planner = Planner(params_from_scenario(sc), self.options)
        self.anchor = now
        self.status.rebuilds += 1
        return self.planner.solve(), 0

    async def step(self) -> dict[str, float]:
        """One control step: plan and apply, or fall back. Returns the setpoints sent [W]."""
        now = self.clock()
        st = self.status
        st.steps += 1
        st.last_step_at = now.isoformat()
        st.warnings = []
        sc: Scenario | None = None
        try:
            sc = self.scenario_at(now)
            now = sc.start
            soc = await self.measure()
            sc, st.warnings = apply_measurements(sc, soc, now)
            for w in st.warnings:
                if w in self._warned:
                    log.debug("%s (again)", w)
                else:
                    self._warned.add(w)
                    log.warning("%s (said once per run; every step's status lists it)", w)
            result, k = self._plan(sc, now)
            row = result.flows.iloc[k]
            setpoints: dict[str, float] = {}
            if sc.battery is not None:
                setpoints[sc.battery.name] = 1000.0 * float(
                    row["battery_charge_kw"] - row["battery_discharge_kw"]
                )
            for ev in sc.evs:
                if bool(row[f"ev:{ev.name}:plugged"]):
                    setpoints[ev.name] = 1000.0 * float(
                        row[f"ev:{ev.name}:charge_kw"] - row[f"ev:{ev.name}:discharge_kw"]
                    )
            for name, power_w in setpoints.items():
                await self.sink.apply(name, round(power_w, 1), self.requested_by)
            curtail = curtailment_limits_w(sc, row)
            if curtail and isinstance(self.sink, LimitingSink):
                for name, max_w in curtail.items():
                    await self.sink.limit(name, round(max_w, 1), self.requested_by)
                    setpoints[name] = -round(max_w, 1)
            elif curtail:
                log.warning(
                    "the plan curtails PV (%s) but the sink cannot limit production",
                    ", ".join(f"{n} <= {w:.0f} W" for n, w in curtail.items()),
                )
        except Exception as exc:  # any failure: safe defaults, visibly
            st.failures += 1
            st.consecutive_failures += 1
            st.last_ok = False
            st.last_error = f"{type(exc).__name__}: {exc}"
            st.fallback_active = True
            log.error(
                "planning failed at %s, devices fall back to safe defaults: %s",
                now.isoformat(),
                st.last_error,
            )
            defaults = self._defaults(sc)
            sent: dict[str, float] = {}
            released: list[str] = []
            by = f"{self.requested_by}:fallback"
            for name, power_w in defaults.items():
                try:
                    if isinstance(self.sink, ReleasableSink) and name not in self.safe_default_w:
                        await self.sink.release(name, by)
                        released.append(name)
                    else:
                        await self.sink.apply(name, power_w, by)
                        sent[name] = power_w
                except Exception as sink_exc:
                    log.error("safe default for %s was refused: %s", name, sink_exc)
            st.last_setpoints_w = sent
            st.released = released
            self.planner = None  # rebuild from scratch next time
            return sent
        st.plans += 1
        st.consecutive_failures = 0
        st.last_ok = True
        st.last_error = None
        st.fallback_active = False
        st.last_objective_eur = result.objective_eur
        st.last_setpoints_w = setpoints
        st.last_warnings = result.warnings
        for line in result.warnings:
            log.warning("plan at %s: %s", now.isoformat(), line)
        # the plan from now on, with the scenario of exactly those steps (for storing/reporting)
        rest = len(result.flows) - k
        self.last_scenario = sc.replace(series=sc.series.iloc[:rest])
        if k:
            result = dataclasses.replace(
                result, flows=result.flows.iloc[k:], params=params_from_scenario(self.last_scenario)
            )
        self.last_plan = result
        return setpoints

    async def run(
        self,
        max_steps: int,
        step_s: float = 900.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> MPCStatus:
        """Run at most ``max_steps`` steps, sleeping until the next step boundary in between."""
        for i in range(max_steps):
            await self.step()
            if i + 1 < max_steps:
                now = self.clock()
                wait = step_s - (now.value / 1e9) % step_s
                await sleep(wait)
        return self.status
