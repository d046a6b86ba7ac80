"""The scheduling model: parameters -> ``build_model()`` -> ``solve()`` -> a results table.

Staged as in oemof-solph (docs/SOURCES.md, Patterns):

1. :func:`params_from_scenario` turns a :class:`~optimizer.scenario.Scenario` into plain
   arrays (:class:`ModelParams`), including the EV sessions mapped onto steps.
2. :func:`build_model` writes a linear Pyomo model with one block per asset kind
   (``grid``, ``pv``, ``battery``, ``evs``); every number that changes between re-plans is a
   mutable ``Param`` so the persistent HiGHS interface updates it without a rebuild.
3. :class:`Planner` solves it, first as an LP; binaries that forbid simultaneous
   charge/discharge and import/export are added only at steps where a negative price or an
   import price below the export price would make that pay, and wherever the LP still shows
   both at once; binaries that hold a charger at 0 or at least its ``min_power_kw`` (6 A per
   phase) only for cars that have a minimum and only at steps where the plan runs below it. By default it hands HiGHS the model's LP through :mod:`optimizer.lp` (the
   same LP written from arrays straight into a persistent ``highspy.Highs``: building the
   Pyomo model and passing it through Pyomo costs 10-40x the solve); ``engine="pyomo"``
   solves the Pyomo model through ``pyomo.contrib.solver.solvers.highs.Highs`` (persistent,
   Pyomo 6.10), the reference the fast path is tested against.
4. :func:`results_frame` gives the schedule per step.

Conventions: powers [kW] (positive into the asset), energies [kWh], prices [EUR/kWh], one
step lasts ``dt_h`` hours and a storage SoC is written recursively at the END of each step
(``soc[t] = soc[t-1] + dt * (eta_c * charge - discharge / eta_d)``), as docs/SOURCES.md advises
(a running sum grows the matrix quadratically).

An EV is plugged in during a step only if the whole step lies within ``[arrival,
departure)``: arrival is rounded up and departure down to the step grid, so a plan never
counts on a car that is not there. EV variables exist only for plugged-in steps.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
import pandas as pd
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs

from energy.errors import NoaberError
from optimizer.lp import HighsLP
from optimizer.scenario import BatterySpec, EVSession, EVSpec, Scenario

EPS_KW = 1e-6
"""Powers below this are treated as zero when checking simultaneous flows [kW]."""


class InfeasibleScenarioError(NoaberError):
    """The scenario cannot be met; ``reasons`` explains why, one line each."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("infeasible scenario: " + "; ".join(reasons))


class SolveError(NoaberError):
    """The solver ended without a usable plan (time limit without a solution, error).

    The message gives HiGHS's own model status and the error lines of its log.
    """


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class SessionParams:
    """One EV session on the step grid."""

    first_step: int
    last_step: int
    soc_start_kwh: float
    soc_target_kwh: float
    soc_lb_kwh: float
    target_pct: float
    departure: pd.Timestamp
    departs_in_horizon: bool


@dataclass(frozen=True)
class EVParams:
    """An EV in model units. ``steps`` are the plugged-in steps, ``session_of`` their session."""

    name: str
    owner: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    efficiency: float
    v2g: bool
    soc_min_kwh: float
    degradation_eur_per_kwh: float
    sessions: tuple[SessionParams, ...]
    steps: np.ndarray
    session_of: np.ndarray
    min_power_kw: float = 0.0


@dataclass(frozen=True, slots=True)
class BatteryParams:
    """A stationary battery in model units [kWh, kW]."""

    name: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    efficiency_charge: float
    efficiency_discharge: float
    soc_min_kwh: float
    soc_max_kwh: float
    soc_initial_kwh: float
    soc_final_min_kwh: float
    degradation_eur_per_kwh: float


@dataclass(frozen=True, slots=True)
class GroupParams:
    """A charger group in model units: the cars (indices into ``ModelParams.evs``) whose net
    power through one fuse stays within ``limit_kw`` both ways."""

    name: str
    evs: tuple[int, ...]
    limit_kw: float


@dataclass
class ModelParams:
    """All numbers of one plan (arrays have one value per step)."""

    index: pd.DatetimeIndex
    dt_h: float
    timezone: str
    pv_kw: np.ndarray
    load_kw: np.ndarray
    import_price_eur_per_kwh: np.ndarray
    export_price_eur_per_kwh: np.ndarray
    import_limit_kw: np.ndarray
    export_limit_kw: np.ndarray
    capacity_tariff_eur_per_kw: float = 0.0
    peak_floor_kw: float = 0.0
    shortage_price_eur_per_kwh: float = 100.0
    breach_price_eur_per_kwh: float = 1000.0
    battery: BatteryParams | None = None
    evs: tuple[EVParams, ...] = ()
    groups: tuple[GroupParams, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.index)


def _plugged_steps(
    starts: np.ndarray, dt_h: float, arrival: pd.Timestamp, departure: pd.Timestamp
) -> np.ndarray:
    """The steps (UTC starts ``starts`` [ns]) that lie wholly within [arrival, departure)."""
    step_ns = round(dt_h * 3600e9)
    ok = (starts >= arrival.as_unit("ns").value) & (
        starts + step_ns <= departure.as_unit("ns").value
    )
    return np.flatnonzero(ok)


def params_from_scenario(sc: Scenario) -> ModelParams:
    """Model parameters of a scenario (see the module docstring for the step rounding).

    A session that departs after the horizon gets a target at the horizon end that keeps its
    departure target reachable: ``target - (departure - end) * max_charge_kw * efficiency``.
    """
    s = sc.series
    names = [ev.name for ev in sc.evs]
    index = sc.index  # made once: a DatetimeIndex per car and session costs ~1 ms each
    end = index[0] + pd.Timedelta(minutes=sc.step_minutes * len(index))
    return ModelParams(
        index=index,
        dt_h=sc.dt_h,
        timezone=sc.site.timezone,
        pv_kw=s["pv_kw"].to_numpy(float),
        load_kw=s["load_kw"].to_numpy(float),
        import_price_eur_per_kwh=s["import_price_eur_per_kwh"].to_numpy(float),
        export_price_eur_per_kwh=s["export_price_eur_per_kwh"].to_numpy(float),
        import_limit_kw=s["grid_import_limit_kw"].to_numpy(float),
        export_limit_kw=s["grid_export_limit_kw"].to_numpy(float),
        capacity_tariff_eur_per_kw=sc.site.capacity_tariff_eur_per_kw,
        peak_floor_kw=max(sc.peak_so_far_kw, sc.site.contracted_kw),  # sunk (optimizer.tariff)
        battery=None if sc.battery is None else _battery_params(sc.battery),
        evs=tuple(_ev_params(ev, index, sc.dt_h, end) for ev in sc.evs),
        groups=tuple(
            GroupParams(g.name, tuple(names.index(e) for e in g.evs), g.limit_kw)
            for g in sc.charger_groups
        ),
        meta={"site": sc.site.name},
    )


def _battery_params(b: BatterySpec) -> BatteryParams:
    cap = b.capacity_kwh
    return BatteryParams(
        name=b.name,
        capacity_kwh=cap,
        max_charge_kw=b.max_charge_kw,
        max_discharge_kw=b.max_discharge_kw,
        efficiency_charge=b.efficiency_charge,
        efficiency_discharge=b.efficiency_discharge,
        soc_min_kwh=cap * b.soc_min_pct / 100,
        soc_max_kwh=cap * b.soc_max_pct / 100,
        soc_initial_kwh=cap * b.soc_initial_pct / 100,
        soc_final_min_kwh=cap * b.soc_final_min_effective_pct / 100,
        degradation_eur_per_kwh=b.degradation_eur_per_kwh,
    )


def _ev_params(ev: EVSpec, index: pd.DatetimeIndex, dt_h: float, end: pd.Timestamp) -> EVParams:
    """An EV with its sessions on the step grid of ``index`` (horizon end ``end``)."""
    cap = ev.capacity_kwh
    sessions: list[SessionParams] = []
    steps: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    starts_ns = index.as_unit("ns").asi8
    for sess in ev.sessions:
        plugged = _plugged_steps(starts_ns, dt_h, sess.arrival, sess.departure)
        if len(plugged) == 0 and not (sess.arrival < end and sess.departure > index[0]):
            continue  # outside the horizon
        sessions.append(_session_params(ev, sess, plugged, end))
        if len(plugged):
            steps.append(plugged)
            owners.append(np.full(len(plugged), len(sessions) - 1))
    return EVParams(
        name=ev.name,
        owner=ev.owner,
        capacity_kwh=cap,
        max_charge_kw=ev.max_charge_kw,
        max_discharge_kw=ev.max_discharge_kw if ev.v2g else 0.0,
        efficiency=ev.efficiency,
        v2g=ev.v2g,
        soc_min_kwh=cap * ev.soc_min_pct / 100,
        degradation_eur_per_kwh=ev.degradation_eur_per_kwh,
        sessions=tuple(sessions),
        steps=np.concatenate(steps) if steps else np.zeros(0, int),
        session_of=np.concatenate(owners) if owners else np.zeros(0, int),
        min_power_kw=ev.min_power_kw,
    )


def _session_params(
    ev: EVSpec, sess: EVSession, plugged: np.ndarray, end: pd.Timestamp
) -> SessionParams:
    """One session on the plugged-in steps ``plugged`` (horizon end ``end``).

    A session in the horizon that is not plugged in for a whole step gets ``first_step = -1``:
    it is kept so the feasibility check can explain it.
    """
    cap = ev.capacity_kwh
    start_kwh = cap * sess.soc_arrival_pct / 100
    target_kwh = cap * sess.soc_departure_pct / 100
    in_horizon = sess.departure <= end
    if len(plugged) == 0:
        return SessionParams(
            -1, -1, start_kwh, target_kwh, 0.0, sess.soc_departure_pct, sess.departure, in_horizon
        )
    if not in_horizon:
        after_h = (sess.departure - end).total_seconds() / 3600
        target_kwh = max(0.0, target_kwh - after_h * ev.max_charge_kw * ev.efficiency)
    return SessionParams(
        first_step=int(plugged[0]),
        last_step=int(plugged[-1]),
        soc_start_kwh=start_kwh,
        soc_target_kwh=min(target_kwh, cap),
        soc_lb_kwh=min(cap * ev.soc_min_pct / 100, start_kwh),
        target_pct=sess.soc_departure_pct,
        departure=sess.departure,
        departs_in_horizon=in_horizon,
    )


# ----------------------------------------------------------------------------- feasibility


def _local_stamp(t: pd.Timestamp, tz: str) -> str:
    return t.tz_convert(tz).strftime("%d-%m-%Y %H:%M")


def explain_infeasibility(p: ModelParams) -> list[str]:
    """Direct checks that find a genuinely broken scenario before the solver does.

    EV targets and the grid import limit are soft (a shortfall or a breach is priced and
    reported by :func:`shortfalls` and :func:`breaches`), so what is left is the battery: its
    final SoC floor must be reachable charging at full power.

    Returns
    -------
    list of str
        One sentence per problem found; empty if none was found.
    """
    return _battery_reasons(p)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A car that leaves (or ends the horizon) below its target: by how much, when and why.

    ``by`` is the departure (or the horizon end for a car that stays), ``by_local`` the same
    as local date and time (``dd-mm-yyyy HH:MM``); ``why`` says what limits the car, from
    the direct checks: the charger's power over the time plugged in, the grid import limit
    after the building load, or the grid limit shared with the other cars plugged in.
    """

    ev: str
    owner: str
    short_kwh: float
    target_pct: float
    reached_pct: float
    by: pd.Timestamp
    by_local: str
    departs_in_horizon: bool
    why: str

    def sentence(self) -> str:
        when = (
            f"by {self.by_local}"
            if self.departs_in_horizon
            else f"by the end of the horizon ({self.by_local}), to stay on course for its departure"
        )
        return (
            f"EV '{self.ev}' reaches {self.reached_pct:.1f} % instead of {self.target_pct:g} % "
            f"{when}, short {self.short_kwh:.1f} kWh: {self.why}"
        )

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["by"] = self.by.isoformat()
        d["sentence"] = self.sentence()
        return d


@dataclass(frozen=True, slots=True)
class Breach:
    """Steps whose import exceeds the grid import limit in the plan (priced, unavoidable)."""

    first: pd.Timestamp
    first_local: str
    n_steps: int
    max_kw: float
    energy_kwh: float

    def sentence(self) -> str:
        return (
            f"the import exceeds the grid import limit from {self.first_local} in "
            f"{self.n_steps} step(s), by up to {self.max_kw:.1f} kW ({self.energy_kwh:.1f} kWh "
            "in all): the load exceeds the limit plus PV and storage"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": self.first.isoformat(),
            "first_local": self.first_local,
            "n_steps": self.n_steps,
            "max_kw": self.max_kw,
            "energy_kwh": self.energy_kwh,
            "sentence": self.sentence(),
        }


#: A shortfall below this is solver noise [kWh].
SHORT_EPS_KWH = 1e-3


def shortfalls(p: ModelParams, flows: pd.DataFrame) -> list[Shortfall]:
    """The EV sessions of a plan that end below their target, with the reason of each."""
    out: list[Shortfall] = []
    headroom_kw = p.import_limit_kw + p.pv_kw - p.load_kw
    if p.battery is not None:
        headroom_kw = headroom_kw + p.battery.max_discharge_kw
    plugged = {ev.name: np.zeros(p.n, bool) for ev in p.evs}
    for ev in p.evs:
        plugged[ev.name][ev.steps] = True
    end = p.index[0] + pd.Timedelta(hours=p.n * p.dt_h)
    for ev in p.evs:
        soc = flows[f"ev:{ev.name}:soc_pct"].to_numpy(float)
        for sess in ev.sessions:
            if sess.first_step < 0:
                reached = sess.soc_start_kwh
            else:
                reached = float(soc[sess.last_step]) * ev.capacity_kwh / 100
            short = sess.soc_target_kwh - reached
            if short <= SHORT_EPS_KWH:
                continue
            by = sess.departure if sess.departs_in_horizon else end
            out.append(
                Shortfall(
                    ev=ev.name,
                    owner=ev.owner,
                    short_kwh=short,
                    target_pct=sess.target_pct,
                    reached_pct=100 * reached / ev.capacity_kwh,
                    by=by,
                    by_local=_local_stamp(by, p.timezone),
                    departs_in_horizon=sess.departs_in_horizon,
                    why=_why_short(p, ev, sess, headroom_kw, plugged),
                )
            )
    return out


def _why_short(
    p: ModelParams,
    ev: EVParams,
    sess: SessionParams,
    headroom_kw: np.ndarray,
    plugged: dict[str, np.ndarray],
) -> str:
    """Why a session cannot reach its target: the first limit of the direct checks it hits."""
    need = sess.soc_target_kwh - sess.soc_start_kwh
    if sess.first_step < 0:
        return "it is not plugged in for a whole step of the plan"
    n_steps = sess.last_step - sess.first_step + 1
    hours = n_steps * p.dt_h
    reach = hours * ev.max_charge_kw * ev.efficiency
    if reach + 1e-6 < need:
        return (
            f"the charger's {ev.max_charge_kw:g} kW over the {hours:g} h it is plugged in "
            f"put at most {reach:.1f} kWh into the battery, {need:.1f} kWh are needed"
        )
    window = slice(sess.first_step, sess.last_step + 1)
    limit = float(p.import_limit_kw[window].min())
    power = np.clip(headroom_kw[window], 0.0, ev.max_charge_kw)
    reach_grid = float(power.sum()) * p.dt_h * ev.efficiency
    if reach_grid + 1e-6 < need:
        return (
            f"under the grid import limit ({limit:g} kW) after the building load there is room "
            f"for {reach_grid:.1f} kWh while it is plugged in, {need:.1f} kWh are needed"
        )
    others = sorted(o.name for o in p.evs if o.name != ev.name and plugged[o.name][window].any())
    if others:
        names = ", ".join(f"'{o}'" for o in others)
        return f"the grid import limit ({limit:g} kW) is shared with {names}, plugged in at the same time"
    return "the grid import limit, the building load and the battery's floor together"


def breaches(p: ModelParams, flows: pd.DataFrame) -> list[Breach]:
    """The steps whose planned import exceeds the import limit, as one entry (or none)."""
    over = flows["grid_import_kw"].to_numpy(float) - p.import_limit_kw
    bad = np.flatnonzero(over > 1e-6)
    if not len(bad):
        return []
    t = int(bad[0])
    return [
        Breach(
            first=p.index[t],
            first_local=_local_stamp(p.index[t], p.timezone),
            n_steps=len(bad),
            max_kw=float(over[bad].max()),
            energy_kwh=float(over[bad].sum()) * p.dt_h,
        )
    ]


def _battery_reasons(p: ModelParams) -> list[str]:
    """The battery's final SoC floor if it is out of reach charging at full power."""
    b = p.battery
    if b is None:
        return []
    reach = min(
        b.soc_max_kwh, b.soc_initial_kwh + p.n * p.dt_h * b.max_charge_kw * b.efficiency_charge
    )
    if reach + 1e-6 >= b.soc_final_min_kwh:
        return []
    return [
        f"battery '{b.name}' cannot reach its final SoC of "
        f"{100 * b.soc_final_min_kwh / b.capacity_kwh:g} %, it is short "
        f"{b.soc_final_min_kwh - reach:.1f} kWh charging at full power"
    ]


# ----------------------------------------------------------------------------- model


def _indexed(values: np.ndarray) -> dict[int, float]:
    return {i: float(v) for i, v in enumerate(values)}


#: Penalty of the diagnostic model per kWh of a missed battery floor [EUR/kWh].
SLACK_PENALTY_EUR_PER_KWH = 1000.0


Bound = Callable[[Any], Any]
"""How a variable bound is written: the mutable parameter itself, or its value (``pyo.value``)."""


def _as_expression(x: Any) -> Any:
    return x


@dataclass
class _Bus:
    """The site's power balance and objective, filled in by the asset builders.

    ``supply[t]`` holds the terms of step ``t`` that flow into the site [kW] (import, used PV,
    discharges; export and charges with a minus sign); ``cost`` the objective's terms [EUR].
    """

    supply: list[list[Any]]
    cost: list[Any] = field(default_factory=list)


def build_model(
    p: ModelParams, soft: bool = False, mutable_bounds: bool = True
) -> pyo.ConcreteModel:
    """The Pyomo model of a plan: one block per asset kind, mutable data.

    Blocks: ``grid`` (import/export within time-varying limits, peak for the capacity
    tariff), ``pv`` (used PV <= available PV, the rest curtailed), ``battery`` (recursive SoC,
    final floor), ``evs`` (recursive SoC per session, departure targets, V2G only for cars that
    allow it, within the owner's minimum SoC). Power balance per step:
    ``import - export + pv + discharges - charges = load``. Each block has its builder
    (:func:`_build_grid`, :func:`_build_pv`, :func:`_build_battery`, :func:`_build_evs`); each
    adds its flows to the balance and its costs to the objective, and :func:`_build_building`
    closes the balance against the load.

    Objective [EUR]: ``sum dt * (import_price * (import + breach) - export_price * export)
    + dt * breach_price * breach + shortage_price * short + capacity_tariff * peak
    + battery degradation * dt * (charge + discharge) + EV degradation * dt * discharge``.
    The capacity tariff is the Dutch monthly kW-max: one month's tariff on the part of the
    horizon's peak above the mutable ``peak_floor_kw`` (the month's peak so far, sunk, or the
    contracted kW). ``breach`` and ``short`` are the soft site limit and soft EV targets
    (:func:`_build_building`, :func:`_ev_constraints`).

    With ``mutable_bounds=False`` the variable bounds are plain numbers instead of expressions
    of mutable parameters: a one-shot plan builds faster, but :meth:`Planner.update` (which
    freezes past steps through those bounds) is then not available.

    With ``soft=True`` (diagnosis only) the battery's final floor gets a slack
    ``battery.short_kwh`` penalised by :data:`SLACK_PENALTY_EUR_PER_KWH`, so a scenario whose
    floor cannot be met solves and the slack says by how much (EV targets and the import
    limit are always soft).
    """
    bound: Bound = _as_expression if mutable_bounds else pyo.value
    m = pyo.ConcreteModel(name=f"schedule-{p.meta.get('site', '')}")
    _build_data(m, p)
    bus = _Bus(supply=[[] for _ in range(p.n)])
    _build_grid(m, p, bus, bound)
    _build_pv(m, bus, bound)
    if p.battery is not None:
        _build_battery(m, p, bus, bound, soft=soft)
    if p.evs:
        _build_evs(m, p, bus, bound, soft=soft)
    _build_building(m, p, bus)
    if p.groups:
        _build_groups(m, p)
    m.cost = pyo.Objective(expr=pyo.quicksum(bus.cost), sense=pyo.minimize)
    m._excl_done = set()  # (asset, step) pairs that have an exclusivity binary
    m._excl_blocks = 0
    m._n_binaries = 0
    return m


def _build_data(m: pyo.ConcreteModel, p: ModelParams) -> None:
    """The steps ``T`` and the data per step, mutable (:meth:`Planner.update` sets them)."""
    m.T = pyo.RangeSet(0, p.n - 1)
    m.pv_kw = pyo.Param(m.T, mutable=True, initialize=_indexed(p.pv_kw))
    m.load_kw = pyo.Param(m.T, mutable=True, initialize=_indexed(p.load_kw))
    m.import_price = pyo.Param(m.T, mutable=True, initialize=_indexed(p.import_price_eur_per_kwh))
    m.export_price = pyo.Param(m.T, mutable=True, initialize=_indexed(p.export_price_eur_per_kwh))
    m.import_limit_kw = pyo.Param(m.T, mutable=True, initialize=_indexed(p.import_limit_kw))
    m.export_limit_kw = pyo.Param(m.T, mutable=True, initialize=_indexed(p.export_limit_kw))


def _build_grid(m: pyo.ConcreteModel, p: ModelParams, bus: _Bus, bound: Bound) -> None:
    """Block ``grid``: import and export within the limits of each step, at that step's prices.

    With a capacity tariff, ``peak`` is the horizon's highest import (at least the mutable
    ``peak_floor_kw``, the month's peak so far), charged once at the tariff.
    """
    m.grid = g = pyo.Block()
    # the import beyond the limit (priced, see _build_building); declared here for the peak
    m.breach_kw = pyo.Var(m.T, bounds=(0.0, None))
    g.imp = pyo.Var(m.T, bounds=lambda _b, t: (0.0, bound(m.import_limit_kw[t])))
    g.exp = pyo.Var(m.T, bounds=lambda _b, t: (0.0, bound(m.export_limit_kw[t])))
    dt = p.dt_h
    bus.cost += [dt * (m.import_price[t] * g.imp[t] - m.export_price[t] * g.exp[t]) for t in m.T]
    if p.capacity_tariff_eur_per_kw > 0:
        g.peak_floor_kw = pyo.Param(mutable=True, initialize=p.peak_floor_kw)
        g.peak = pyo.Var(bounds=(0.0, None))
        g.peak_c = pyo.Constraint(m.T, rule=lambda b, t: b.peak >= b.imp[t] + m.breach_kw[t])
        g.peak_floor_c = pyo.Constraint(expr=g.peak >= g.peak_floor_kw)
        bus.cost.append(p.capacity_tariff_eur_per_kw * g.peak)
    for t in m.T:
        bus.supply[t] += [g.imp[t], -g.exp[t]]


def _build_pv(m: pyo.ConcreteModel, bus: _Bus, bound: Bound) -> None:
    """Block ``pv``: the PV used, up to the PV available; the rest is curtailed, at no cost."""
    m.pv = pv = pyo.Block()
    pv.used = pyo.Var(m.T, bounds=lambda _b, t: (0.0, bound(m.pv_kw[t])))
    for t in m.T:
        bus.supply[t].append(pv.used[t])


def _build_battery(
    m: pyo.ConcreteModel, p: ModelParams, bus: _Bus, bound: Bound, *, soft: bool
) -> None:
    """Block ``battery``: charge and discharge within mutable limits, SoC written recursively
    from the mutable ``soc0``, at least the mutable ``soc_final`` at the end (with a slack
    ``short_kwh`` in the soft model), wear priced per kWh through the battery."""
    bp, dt, last = p.battery, p.dt_h, p.n - 1
    assert bp is not None
    m.battery = b = pyo.Block()
    b.ch_max = pyo.Param(m.T, mutable=True, initialize=bp.max_charge_kw)
    b.dis_max = pyo.Param(m.T, mutable=True, initialize=bp.max_discharge_kw)
    b.soc0 = pyo.Param(mutable=True, initialize=bp.soc_initial_kwh)
    b.soc_final = pyo.Param(mutable=True, initialize=bp.soc_final_min_kwh)
    b.ch = pyo.Var(m.T, bounds=lambda bb, t: (0.0, bound(bb.ch_max[t])))
    b.dis = pyo.Var(m.T, bounds=lambda bb, t: (0.0, bound(bb.dis_max[t])))
    b.soc = pyo.Var(m.T, bounds=(bp.soc_min_kwh, bp.soc_max_kwh))
    ec, ed = bp.efficiency_charge, bp.efficiency_discharge

    def _soc(bb: Any, t: int) -> Any:
        prev = bb.soc0 if t == 0 else bb.soc[t - 1]
        return bb.soc[t] == prev + dt * (ec * bb.ch[t] - bb.dis[t] / ed)

    b.soc_c = pyo.Constraint(m.T, rule=_soc)
    if soft:
        b.short_kwh = pyo.Var(bounds=(0.0, None))
        b.final_c = pyo.Constraint(expr=b.soc[last] + b.short_kwh >= b.soc_final)
        bus.cost.append(SLACK_PENALTY_EUR_PER_KWH * b.short_kwh)
    else:
        b.final_c = pyo.Constraint(expr=b.soc[last] >= b.soc_final)
    for t in m.T:
        bus.supply[t] += [b.dis[t], -b.ch[t]]
    if bp.degradation_eur_per_kwh > 0:
        bus.cost += [bp.degradation_eur_per_kwh * dt * (b.ch[t] + b.dis[t]) for t in m.T]


@dataclass(frozen=True)
class _EVIndex:
    """The index sets of the ``evs`` block.

    ``plugged``: (ev, step) where the car is plugged in; ``v2g``: those of cars that may
    discharge; ``sessions``: (ev, session) with plugged-in steps; ``session_at``: the session
    of each plugged-in (ev, step).
    """

    plugged: list[tuple[int, int]]
    v2g: list[tuple[int, int]]
    sessions: list[tuple[int, int]]
    session_at: dict[tuple[int, int], int]

    @classmethod
    def of(cls, evs: tuple[EVParams, ...]) -> _EVIndex:
        return cls(
            plugged=[(k, int(t)) for k, ev in enumerate(evs) for t in ev.steps],
            v2g=[
                (k, int(t)) for k, ev in enumerate(evs) if ev.max_discharge_kw > 0 for t in ev.steps
            ],
            sessions=[
                (k, j)
                for k, ev in enumerate(evs)
                for j, s in enumerate(ev.sessions)
                if s.first_step >= 0
            ],
            session_at={
                (k, int(t)): int(j)
                for k, ev in enumerate(evs)
                for t, j in zip(ev.steps, ev.session_of)
            },
        )


def _build_evs(
    m: pyo.ConcreteModel, p: ModelParams, bus: _Bus, bound: Bound, *, soft: bool
) -> None:
    """Block ``evs``, indexed by (ev, step) and (ev, session): charge, and discharge for V2G
    cars, within mutable per-step limits; SoC per session between its mutable floor
    ``soc_lb`` and the capacity (constraints: :func:`_ev_constraints`; flows and wear:
    :func:`_ev_flows`)."""
    evs, ix = p.evs, _EVIndex.of(p.evs)
    m.evs = e = pyo.Block()
    e.P = pyo.Set(dimen=2, initialize=ix.plugged, ordered=True)
    e.V = pyo.Set(dimen=2, initialize=ix.v2g, ordered=True)
    e.S = pyo.Set(dimen=2, initialize=ix.sessions, ordered=True)
    e.ch_max = pyo.Param(
        e.P, mutable=True, initialize={kt: evs[kt[0]].max_charge_kw for kt in ix.plugged}
    )
    e.dis_max = pyo.Param(
        e.V, mutable=True, initialize={kt: evs[kt[0]].max_discharge_kw for kt in ix.v2g}
    )

    def per_session(attr: str) -> dict[tuple[int, int], float]:
        return {kj: getattr(evs[kj[0]].sessions[kj[1]], attr) for kj in ix.sessions}

    e.soc_start = pyo.Param(e.S, mutable=True, initialize=per_session("soc_start_kwh"))
    e.soc_target = pyo.Param(e.S, mutable=True, initialize=per_session("soc_target_kwh"))
    e.soc_lb = pyo.Param(e.S, mutable=True, initialize=per_session("soc_lb_kwh"))
    e.ch = pyo.Var(e.P, bounds=lambda bb, k, t: (0.0, bound(bb.ch_max[k, t])))
    e.dis = pyo.Var(e.V, bounds=lambda bb, k, t: (0.0, bound(bb.dis_max[k, t])))
    e.soc = pyo.Var(
        e.P,
        bounds=lambda bb, k, t: (bound(bb.soc_lb[k, ix.session_at[k, t]]), evs[k].capacity_kwh),
    )
    _ev_constraints(e, p, ix, bus, soft=soft)
    _ev_flows(e, p, ix, bus)


def _ev_constraints(e: pyo.Block, p: ModelParams, ix: _EVIndex, bus: _Bus, *, soft: bool) -> None:
    """The SoC of each session written recursively from its mutable ``soc_start``, and its
    departure target at the session's last step, soft: ``short_kwh`` (>= 0) is the part of the
    target not met, priced at ``shortage_price_eur_per_kwh`` (as FlexMeasures' shortage price),
    so an unreachable target is met as closely as possible instead of making the plan
    infeasible (:func:`shortfalls` reports it)."""
    evs, dt = p.evs, p.dt_h
    v2g = set(ix.v2g)

    def _ev_soc(bb: Any, k: int, t: int) -> Any:
        ev = evs[k]
        j = ix.session_at[k, t]
        prev = bb.soc_start[k, j] if t == ev.sessions[j].first_step else bb.soc[k, t - 1]
        delta = ev.efficiency * bb.ch[k, t]
        if (k, t) in v2g:
            delta = delta - bb.dis[k, t] / ev.efficiency
        return bb.soc[k, t] == prev + dt * delta

    e.soc_c = pyo.Constraint(e.P, rule=_ev_soc)
    e.short_kwh = pyo.Var(e.S, bounds=(0.0, None))
    e.target_c = pyo.Constraint(
        e.S,
        rule=lambda bb, k, j: (
            bb.soc[k, evs[k].sessions[j].last_step] + bb.short_kwh[k, j] >= bb.soc_target[k, j]
        ),
    )
    if ix.sessions:
        bus.cost += [p.shortage_price_eur_per_kwh * e.short_kwh[kj] for kj in ix.sessions]


def _ev_flows(e: pyo.Block, p: ModelParams, ix: _EVIndex, bus: _Bus) -> None:
    """The cars' charging and V2G discharging in the balance, and their wear in the cost.

    A car's wear (``degradation_eur_per_kwh``) is charged per kWh it discharges (V2G) only:
    charging is what the car is there for, the owner pays for it and it wears the battery no
    more than charging at home; the V2G energy is the extra cycling, and settlement pays the
    owner ``v2g_compensation_eur_per_kwh`` per kWh discharged at the charger
    (:func:`settlement.pricing.v2g_nc_per_wh`), the same energy ``dt * dis`` priced here.
    """
    dt = p.dt_h
    for k, t in ix.plugged:
        bus.supply[t].append(-e.ch[k, t])
    for k, t in ix.v2g:  # wear on what the car gives back only (settlement pays per kWh out)
        bus.supply[t].append(e.dis[k, t])
        deg = p.evs[k].degradation_eur_per_kwh
        if deg > 0:
            bus.cost.append(deg * dt * e.dis[k, t])


def _build_building(m: pyo.ConcreteModel, p: ModelParams, bus: _Bus) -> None:
    """The building's load and the balance of the site per step: the supply meets the load.

    ``breach_kw`` is import beyond the step's import limit: it is paid at the import price plus
    ``breach_price_eur_per_kwh`` (as FlexMeasures' breach price), so a load that no plan can
    keep under the limit gives the plan with the least breach instead of no plan
    (:func:`breaches` reports it). Export needs no breach: PV can always be curtailed.
    """
    for t in m.T:
        bus.supply[t].append(m.breach_kw[t])
    dt, price = p.dt_h, p.breach_price_eur_per_kwh
    bus.cost += [dt * (m.import_price[t] + price) * m.breach_kw[t] for t in m.T]
    m.balance = pyo.Constraint(m.T, rule=lambda mm, t: pyo.quicksum(bus.supply[t]) == mm.load_kw[t])


def group_steps(p: ModelParams) -> list[tuple[int, int, list[int]]]:
    """``(group, step, cars plugged in)`` for every group and step with a member plugged in,
    group by group, steps ascending: the rows of the group limits."""
    out = []
    for g, grp in enumerate(p.groups):
        plugged: dict[int, list[int]] = {}
        for k in grp.evs:
            for t in p.evs[k].steps:
                plugged.setdefault(int(t), []).append(k)
        out += [(g, t, sorted(plugged[t])) for t in sorted(plugged)]
    return out


def _build_groups(m: pyo.ConcreteModel, p: ModelParams) -> None:
    """Block ``groups``: per group and step, the net power of its plugged-in cars (charging
    minus V2G discharging) within ``-limit_kw .. limit_kw`` (one fuse both ways)."""
    rows = group_steps(p)
    m.groups = gb = pyo.Block()
    gb.R = pyo.Set(dimen=2, initialize=[(g, t) for g, t, _ in rows], ordered=True)
    cars = {(g, t): ks for g, t, ks in rows}
    e = m.evs

    def _limit(_b: Any, g: int, t: int) -> Any:
        terms = []
        for k in cars[g, t]:
            terms.append(e.ch[k, t])
            if (k, t) in e.V:
                terms.append(-e.dis[k, t])
        net = pyo.quicksum(terms)
        lim = p.groups[g].limit_kw
        return pyo.inequality(-lim, net, lim)

    gb.limit_c = pyo.Constraint(gb.R, rule=_limit)


def steps_needing_binaries(p: ModelParams) -> np.ndarray:
    """Steps where simultaneous charge/discharge or import/export could pay.

    That is where the import price is negative (wasting energy through storage losses earns
    money) or importing is cheaper than exporting (import and export at once would pay). A
    negative export price alone needs none: curtailing PV is free, so wasting energy in
    storage losses or exporting it never beats curtailment. Other steps are covered by the
    check after each solve (:func:`simultaneous_pairs`).
    """
    ip, ep = p.import_price_eur_per_kwh, p.export_price_eur_per_kwh
    return np.flatnonzero((ip < 0) | (ip < ep))


def add_exclusivity(m: pyo.ConcreteModel, p: ModelParams, pairs: set[tuple[str, int]]) -> list[Any]:
    """Add binaries that forbid both directions at once for ``(asset, step)`` pairs.

    ``asset`` is ``"grid"``, ``"battery"`` or an EV name. Pairs that already have a binary
    or have only one direction are skipped. Returns the new constraint data objects (for a
    persistent solver).
    """
    pending = sorted(pr for pr in pairs if pr not in m._excl_done)
    ev_index = {ev.name: k for k, ev in enumerate(p.evs)}
    items: list[tuple[Any, Any, Any, Any]] = []  # (up, up_max, down, down_max)
    for asset, t in pending:
        if asset == "grid":
            items.append((m.grid.imp[t], m.import_limit_kw[t], m.grid.exp[t], m.export_limit_kw[t]))
        elif asset == "battery" and p.battery is not None:
            b = m.battery
            items.append((b.ch[t], b.ch_max[t], b.dis[t], b.dis_max[t]))
        elif asset in ev_index and (ev_index[asset], t) in m.evs.V:
            k = ev_index[asset]
            e = m.evs
            items.append((e.ch[k, t], e.ch_max[k, t], e.dis[k, t], e.dis_max[k, t]))
        m._excl_done.add((asset, t))
    if not items:
        return []
    m._excl_blocks += 1
    m._n_binaries += len(items)
    blk = pyo.Block()
    m.add_component(f"exclusive_{m._excl_blocks}", blk)
    blk.I = pyo.RangeSet(0, len(items) - 1)
    blk.y = pyo.Var(blk.I, domain=pyo.Binary)
    blk.up = pyo.Constraint(blk.I, rule=lambda bb, i: items[i][0] <= items[i][1] * bb.y[i])
    blk.down = pyo.Constraint(blk.I, rule=lambda bb, i: items[i][2] <= items[i][3] * (1 - bb.y[i]))
    return [*blk.up.values(), *blk.down.values()]


def add_min_power(
    m: pyo.ConcreteModel, p: ModelParams, items: list[tuple[int, int, str]]
) -> list[Any]:
    """Binaries that keep a charger's power 0 or at least its ``min_power_kw`` at the given
    ``(car, step, "ch" | "dis")``: ``x <= x_max * y`` and ``min * y <= x``. Returns the new
    constraint data objects (for a persistent solver)."""
    if not items:
        return []
    e = m.evs
    terms = [
        (e.ch[k, t], e.ch_max[k, t]) if d == "ch" else (e.dis[k, t], e.dis_max[k, t])
        for k, t, d in items
    ]
    mins = [p.evs[k].min_power_kw for k, _t, _d in items]
    m._excl_blocks += 1
    m._n_binaries += len(items)
    blk = pyo.Block()
    m.add_component(f"min_power_{m._excl_blocks}", blk)
    blk.I = pyo.RangeSet(0, len(items) - 1)
    blk.y = pyo.Var(blk.I, domain=pyo.Binary)
    blk.cap = pyo.Constraint(blk.I, rule=lambda bb, i: terms[i][0] <= terms[i][1] * bb.y[i])
    blk.floor = pyo.Constraint(blk.I, rule=lambda bb, i: mins[i] * bb.y[i] <= terms[i][0])
    return [*blk.cap.values(), *blk.floor.values()]


def below_minimum(flows: pd.DataFrame, p: ModelParams) -> list[tuple[int, int, str]]:
    """``(car, step, direction)`` where a plan runs a charger between 0 and its minimum."""
    out = []
    for k, ev in enumerate(p.evs):
        if ev.min_power_kw <= 0 or not len(ev.steps):
            continue
        for d, col in (("ch", "charge_kw"), ("dis", "discharge_kw")):
            x = flows[f"ev:{ev.name}:{col}"].to_numpy()[ev.steps]
            bad = (x > EPS_KW) & (x < ev.min_power_kw - 1e-6)
            out += [(k, int(t), d) for t in ev.steps[bad]]
    return out


def _all_min_items(p: ModelParams) -> list[tuple[int, int, str]]:
    out = []
    for k, ev in enumerate(p.evs):
        if ev.min_power_kw > 0:
            for t in ev.steps:
                out.append((k, int(t), "ch"))
                if ev.max_discharge_kw > 0:
                    out.append((k, int(t), "dis"))
    return out


def diagnose_with_slack(p: ModelParams) -> list[str]:
    """Explain an infeasible scenario that the direct checks let through.

    Solves the soft model (:func:`build_model` with ``soft=True``: the battery's final floor
    gets a slack; EV targets and the import limit are soft in every model) and reports the
    battery floor missed.
    """
    m = build_model(p, soft=True)
    solver = Highs()
    solver.config.load_solutions = False
    solver.config.raise_exception_on_nonoptimal_result = False
    res = solver.solve(m)
    if res.incumbent_objective is None or p.battery is None:
        return []
    res.solution_loader.load_vars()
    short = float(m.battery.short_kwh.value or 0.0)
    if short > 1e-3:
        return [
            f"battery '{p.battery.name}' cannot get back to its final SoC floor, short {short:.1f} kWh"
        ]
    return []


# ----------------------------------------------------------------------------- results


def _values(var: Any, keys: Any) -> np.ndarray:
    return np.fromiter((var[k].value or 0.0 for k in keys), float, count=len(keys))


def results_frame(m: pyo.ConcreteModel, p: ModelParams) -> pd.DataFrame:
    """The schedule per step (index: UTC step start), wide, from the solved Pyomo model.

    Columns: ``pv_available_kw, pv_kw, curtailed_kw, load_kw, grid_import_kw,
    grid_export_kw, import_price_eur_per_kwh, export_price_eur_per_kwh,
    grid_import_limit_kw, grid_export_limit_kw``; with a battery ``battery_charge_kw,
    battery_discharge_kw, battery_soc_pct``; per EV ``ev:<name>:charge_kw``,
    ``ev:<name>:discharge_kw``, ``ev:<name>:soc_pct`` (SoC at the end of the step; NaN when
    not plugged in) and ``ev:<name>:plugged``.
    """
    T = list(range(p.n))
    battery = None
    if p.battery is not None:
        battery = (
            _values(m.battery.ch, T),
            _values(m.battery.dis, T),
            _values(m.battery.soc, T),
        )
    evs: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
    for k, ev in enumerate(p.evs):
        keys = [(k, int(t)) for t in ev.steps]
        dis = _values(m.evs.dis, keys) if keys and ev.max_discharge_kw > 0 else None
        ch = _values(m.evs.ch, keys) if keys else np.zeros(0)
        soc = _values(m.evs.soc, keys) if keys else np.zeros(0)
        evs.append((ch, dis, soc))
    imp = _values(m.grid.imp, T) + _values(m.breach_kw, T)  # the breach is import too
    return schedule_frame(p, imp, _values(m.grid.exp, T), _values(m.pv.used, T), battery, evs)


def schedule_frame(
    p: ModelParams,
    grid_import_kw: np.ndarray,
    grid_export_kw: np.ndarray,
    pv_used_kw: np.ndarray,
    battery: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    evs: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]],
) -> pd.DataFrame:
    """The schedule frame of :func:`results_frame` from the solved values of either engine.

    ``battery`` is (charge, discharge, SoC [kWh]) per step; ``evs`` one (charge, discharge or
    None, SoC [kWh]) per car over its plugged-in steps ``ev.steps``.
    """
    pv_used = np.minimum(pv_used_kw, p.pv_kw)
    cols: dict[str, np.ndarray] = {
        "pv_available_kw": p.pv_kw,
        "pv_kw": pv_used,
        "curtailed_kw": p.pv_kw - pv_used,
        "load_kw": p.load_kw,
        "grid_import_kw": grid_import_kw,
        "grid_export_kw": grid_export_kw,
        "import_price_eur_per_kwh": p.import_price_eur_per_kwh,
        "export_price_eur_per_kwh": p.export_price_eur_per_kwh,
        "grid_import_limit_kw": p.import_limit_kw,
        "grid_export_limit_kw": p.export_limit_kw,
    }
    if p.battery is not None and battery is not None:
        cols["battery_charge_kw"] = battery[0]
        cols["battery_discharge_kw"] = battery[1]
        cols["battery_soc_pct"] = 100 * battery[2] / p.battery.capacity_kwh
    for ev, (ev_ch, ev_dis, ev_soc) in zip(p.evs, evs, strict=True):
        ch = np.zeros(p.n)
        dis = np.zeros(p.n)
        soc = np.full(p.n, np.nan)
        plugged = np.zeros(p.n, bool)
        if len(ev.steps):
            ch[ev.steps] = ev_ch
            soc[ev.steps] = 100 * ev_soc / ev.capacity_kwh
            plugged[ev.steps] = True
            if ev_dis is not None:
                dis[ev.steps] = ev_dis
        cols[f"ev:{ev.name}:charge_kw"] = ch
        cols[f"ev:{ev.name}:discharge_kw"] = dis
        cols[f"ev:{ev.name}:soc_pct"] = soc
        cols[f"ev:{ev.name}:plugged"] = plugged
    return flows_frame(p, cols)


def flows_frame(p: ModelParams, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """A flows frame (index: the UTC step starts ``timestamp``) from its columns, with solver
    noise (|x| < 1e-7 kW) in the power columns rounded to zero.

    The rounding is done on the arrays before the frame is made: setting 18 columns of a
    frame one by one costs more than solving the LP.
    """
    clean: dict[str, np.ndarray] = {}
    for c, v in cols.items():
        if c.endswith("_kw"):
            v = np.asarray(v, float)
            v = np.where(np.abs(v) < 1e-7, 0.0, v)
        clean[c] = v
    return pd.DataFrame(clean, index=p.index.rename("timestamp"))


def simultaneous_pairs(flows: pd.DataFrame, p: ModelParams) -> set[tuple[str, int]]:
    """``(asset, step)`` pairs where a plan imports and exports, or charges and discharges, at once."""
    found: set[tuple[str, int]] = set()
    pairs = [("grid", "grid_import_kw", "grid_export_kw")]
    if p.battery is not None:
        pairs.append(("battery", "battery_charge_kw", "battery_discharge_kw"))
    pairs += [(ev.name, f"ev:{ev.name}:charge_kw", f"ev:{ev.name}:discharge_kw") for ev in p.evs]
    for asset, up, down in pairs:
        both = (flows[up].to_numpy() > EPS_KW) & (flows[down].to_numpy() > EPS_KW)
        found.update((asset, int(t)) for t in np.flatnonzero(both))
    return found


# ----------------------------------------------------------------------------- solving


@dataclass
class Plan:
    """A solved schedule and how it was obtained."""

    flows: pd.DataFrame
    objective_eur: float
    build_s: float
    solve_s: float
    status: str
    mip: bool
    gap: float | None
    n_binaries: int
    params: ModelParams
    shortfalls: list[Shortfall] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """One sentence per car short of its target and per breach of the import limit."""
        return [s.sentence() for s in self.shortfalls] + [b.sentence() for b in self.breaches]


@dataclass(frozen=True)
class SolveOptions:
    """Solver settings: relative MIP gap, time limit [s], threads (None: HiGHS default).

    ``threads`` may differ from one solve to the next in the same process (see
    :func:`use_threads`).
    """

    mip_gap: float = 0.005
    time_limit_s: float = 60.0
    threads: int | None = None


_UNSET = object()
_scheduler = threading.local()  # .threads: the count this thread's HiGHS scheduler started with


def use_threads(threads: int | None) -> None:
    """Prepare HiGHS in this thread for a solve with ``threads`` (None: HiGHS's default).

    HiGHS starts one task scheduler per calling thread, with the ``threads`` option of that
    thread's first run, and refuses a run asking for another count ("Option 'threads' is set to
    1 but the scheduler has already been initialized to use 2 threads"), leaving the model
    status Not Set. So when the count changes, this thread's scheduler is shut down first
    (``highspy.Highs.resetGlobalScheduler(True)``, blocking until its workers have stopped); the
    next run starts a new one with the count asked for. The reset is per thread: HiGHS keeps
    the scheduler handle thread-local.
    """
    last = getattr(_scheduler, "threads", _UNSET)
    if last != threads and not (last is _UNSET and threads is None):
        highspy.Highs.resetGlobalScheduler(True)
    _scheduler.threads = threads


def highs_message(highs: highspy.Highs, log_text: str | None) -> str:
    """HiGHS's own account of a run: its model status and the error/warning lines of its log."""
    parts = [f"HiGHS model status {highs.modelStatusToString(highs.getModelStatus())!r}"]
    lines = [
        " ".join(line.split())
        for line in (log_text or "").splitlines()
        if line.lstrip().startswith(("ERROR", "WARNING"))
    ]
    if lines:
        parts.append("; ".join(lines))
    return ": ".join(parts)


#: How a plan is solved: ``"highs"`` writes the LP straight into highspy (:mod:`optimizer.lp`,
#: the fast path); ``"pyomo"`` builds the Pyomo model and solves it through Pyomo's
#: persistent HiGHS interface (the reference the fast path is tested against).
ENGINES = ("highs", "pyomo")

_TERMINATION = {
    highspy.HighsModelStatus.kOptimal: TerminationCondition.convergenceCriteriaSatisfied,
    highspy.HighsModelStatus.kInfeasible: TerminationCondition.provenInfeasible,
    highspy.HighsModelStatus.kUnboundedOrInfeasible: TerminationCondition.infeasibleOrUnbounded,
    highspy.HighsModelStatus.kUnbounded: TerminationCondition.unbounded,
    highspy.HighsModelStatus.kObjectiveBound: TerminationCondition.objectiveLimit,
    highspy.HighsModelStatus.kObjectiveTarget: TerminationCondition.objectiveLimit,
    highspy.HighsModelStatus.kTimeLimit: TerminationCondition.maxTimeLimit,
    highspy.HighsModelStatus.kIterationLimit: TerminationCondition.iterationLimit,
    highspy.HighsModelStatus.kSolutionLimit: TerminationCondition.iterationLimit,
    highspy.HighsModelStatus.kLoadError: TerminationCondition.error,
    highspy.HighsModelStatus.kModelError: TerminationCondition.error,
    highspy.HighsModelStatus.kPresolveError: TerminationCondition.error,
    highspy.HighsModelStatus.kSolveError: TerminationCondition.error,
    highspy.HighsModelStatus.kPostsolveError: TerminationCondition.error,
}
"""HiGHS model status -> Pyomo's termination condition, as Pyomo's HiGHS interface maps it."""


@dataclass(frozen=True, slots=True)
class _Run:
    """One solver run as the solve loop sees it, from either engine."""

    termination: TerminationCondition
    objective: float | None
    bound: float | None
    log_text: str


class Planner:
    """Builds the model once and solves it, and again after :meth:`update` of the data.

    The solver keeps the model: a re-plan changes numbers (prices, PV, load, limits, start SoC,
    targets, per-step power limits) and re-solves without rebuilding, from the last basis.
    Structural changes (a new EV session) need a new Planner. ``engine`` (:data:`ENGINES`)
    chooses the fast highspy path (default) or the Pyomo reference; both solve the same LP.
    """

    def __init__(
        self,
        params: ModelParams,
        options: SolveOptions | None = None,
        *,
        check: bool = True,
        mutable_bounds: bool = True,
        engine: str = "highs",
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.params = params
        self.structure = structure_of(params)  # what update() may not change
        self.options = options or SolveOptions()
        self.engine = engine
        if check:
            reasons = explain_infeasibility(params)
            if reasons:
                raise InfeasibleScenarioError(reasons)
        t0 = time.perf_counter()
        self.mutable_bounds = mutable_bounds
        self.model: Any = None
        self.solver: Any = None
        self.lp: HighsLP | None = None
        self._excl_done: set[tuple[str, int]] = set()
        self._min_done: set[tuple[int, int, str]] = set()
        self._n_binaries = 0
        if engine == "highs":
            self.lp = HighsLP(params)
        else:
            self._build_pyomo()
        self.build_s = time.perf_counter() - t0

    def _build_pyomo(self) -> None:
        self.model = build_model(self.params, mutable_bounds=self.mutable_bounds)
        self.solver = Highs()
        cfg = self.solver.config
        cfg.load_solutions = False
        cfg.raise_exception_on_nonoptimal_result = False
        au = cfg.auto_updates
        au.check_for_new_or_removed_constraints = False
        au.check_for_new_or_removed_vars = False
        au.check_for_new_or_removed_params = False
        au.check_for_new_objective = False
        au.update_constraints = False
        au.update_vars = False
        au.update_named_expressions = False
        au.update_objective = False
        au.update_parameters = True
        self.solver.set_instance(self.model)
        self._fresh = True  # the solver holds exactly the model's data: no parameter pass needed

    @property
    def highs(self) -> highspy.Highs:
        """The ``highspy.Highs`` that holds the model (either engine)."""
        if self.lp is not None:
            return self.lp.highs
        return self.solver._solver_model

    def update(self, params: ModelParams, frozen_steps: int = 0) -> None:
        """Load new data into the built model (no rebuild) and freeze the first steps.

        ``params`` must have the structure of the built model (:func:`structure_of`): the same
        steps, battery and EV sessions; only numbers differ. Steps before ``frozen_steps`` are
        in the past: their flows are forced to zero by zero limits, so storage carries its
        start SoC through them unchanged. Set the measured SoC as the battery's
        ``soc_initial_kwh`` and as ``soc_start_kwh`` of the session in progress.

        Raises
        ------
        ValueError
            If the structure differs (a new EV session needs a new Planner).
        """
        if not self.mutable_bounds:
            raise ValueError(
                "this Planner was built with fixed bounds; build it with mutable_bounds=True"
            )
        if structure_of(params) != self.structure:
            raise ValueError(
                "the structure of the plan changed (steps, battery or EV sessions); build a new Planner"
            )
        if self.lp is not None:
            self.lp.update(params, frozen_steps)
        else:
            _update_pyomo(self.model, params, frozen_steps)
        self.params = params

    def _add_binaries(self, pairs: set[tuple[str, int]]) -> int:
        if self.lp is None:
            cons = add_exclusivity(self.model, self.params, pairs)
            if cons:
                self.solver.add_constraints(cons)
            return len(cons) // 2
        ev_index = {ev.name: k for k, ev in enumerate(self.params.evs)}
        items: list[tuple[int, int]] = []
        for asset, t in sorted(pr for pr in pairs if pr not in self._excl_done):
            cols = self.lp.columns_of(asset, t, ev_index)
            if cols is not None:
                items.append(cols)
            self._excl_done.add((asset, t))
        if items:
            self.lp.add_exclusivity(items)
            self._n_binaries += len(items)
        return len(items)

    def _add_min_power(self, items: list[tuple[int, int, str]]) -> int:
        new = sorted(set(items) - self._min_done)
        if not new:
            return 0
        self._min_done.update(new)
        if self.lp is None:
            cons = add_min_power(self.model, self.params, new)
            self.solver.add_constraints(cons)
            return len(new)
        cols = []
        for k, t, d in new:
            up, down = self.lp.ev_columns(k, t)
            col = up if d == "ch" else down
            assert col is not None
            cols.append((col, self.params.evs[k].min_power_kw))
        self.lp.add_min_power(cols)
        self._n_binaries += len(new)
        return len(new)

    @property
    def n_binaries(self) -> int:
        return self._n_binaries if self.lp is not None else self.model._n_binaries

    def _assets(self) -> list[str]:
        names = ["grid"]
        if self.params.battery is not None:
            names.append("battery")
        names += [ev.name for ev in self.params.evs if ev.max_discharge_kw > 0]
        return names

    def _run(self, push_data: bool) -> _Run:
        """One solver run with the options (``push_data``: Pyomo passes changed parameters)."""
        o = self.options
        if self.lp is not None:
            out = self.lp.run(o.threads, o.time_limit_s, o.mip_gap)
            tc = _TERMINATION.get(out.status, TerminationCondition.unknown)
            return _Run(tc, out.objective, out.bound, out.log_text)
        self.solver.config.auto_updates.update_parameters = push_data
        res = self.solver.solve(
            self.model, rel_gap=o.mip_gap, time_limit=o.time_limit_s, threads=o.threads
        )
        return _Run(
            res.termination_condition,
            res.incumbent_objective,
            res.objective_bound,
            res.solver_log or "",
        )

    def _flows(self) -> pd.DataFrame:
        """The schedule of the last run."""
        p = self.params
        if self.lp is None:
            self.solver._load_vars()
            return results_frame(self.model, p)
        x, lay = self.lp.values(), self.lp.layout
        battery = None
        if lay.bat_ch is not None and lay.bat_dis is not None and lay.bat_soc is not None:
            battery = (x[lay.bat_ch], x[lay.bat_dis], x[lay.bat_soc])
        evs = []
        for k, ev in enumerate(p.evs):
            mine = lay.ev_k == k
            dis = None
            if ev.max_discharge_kw > 0 and len(ev.steps):
                dis = x[lay.ev_dis[lay.ev_dis_of[mine]]]
            evs.append((x[lay.ev_ch[mine]], dis, x[lay.ev_soc[mine]]))
        imp = x[lay.imp] + x[lay.breach]  # the breach is import too
        return schedule_frame(p, imp, x[lay.exp], x[lay.used], battery, evs)

    def solve(self) -> Plan:
        """Solve (LP first; binaries only where needed) and return the plan.

        The LP is solved first. Where its solution imports and exports, or charges and
        discharges, at once (which pays only where :func:`steps_needing_binaries` says), binaries
        forbidding that are added for every asset at those steps and the model is solved again
        (at most three times; the last time with binaries at every step).

        Raises
        ------
        InfeasibleScenarioError
            When the solver proves infeasibility; the reasons come from
            :func:`explain_infeasibility` or, failing that, say which checks passed.
        SolveError
            When the solver stops without a feasible plan (time limit, numerical error).
        """
        p = self.params
        t0 = time.perf_counter()
        flows = None
        # Pyomo: re-plans (after update() or a direct change of mutable parameters) push the
        # data once; the first solve after set_instance need not (saves a pass over every helper)
        push_data = not getattr(self, "_fresh", False)
        self._fresh = False
        use_threads(self.options.threads)
        for _round in range(4):
            run = self._run(push_data and _round == 0)
            tc = run.termination
            if tc in (
                TerminationCondition.provenInfeasible,
                TerminationCondition.infeasibleOrUnbounded,
                TerminationCondition.locallyInfeasible,
            ):
                raise _infeasible(p)
            if tc != TerminationCondition.convergenceCriteriaSatisfied and run.objective is None:
                raise SolveError(
                    f"no plan for site {p.meta.get('site', '?')!r}: solver stopped with {tc.name} "
                    f"after {time.perf_counter() - t0:.1f} s (time limit "
                    f"{self.options.time_limit_s:g} s); {highs_message(self.highs, run.log_text)}"
                )
            flows = self._flows()
            both = simultaneous_pairs(flows, p)
            low = below_minimum(flows, p)
            if not both and not low:
                break
            steps = {t for _a, t in both}
            if _round == 2:  # give up on being selective: binaries everywhere
                steps = set(range(p.n)) if both else set()
                low = _all_min_items(p) if low else []
            pairs = {(a, t) for a in self._assets() for t in steps}
            # a V2G charger held to its minimum could charge and discharge at once to get
            # round it: those steps get the car's exclusivity binary too
            pairs |= {(p.evs[k].name, t) for k, t, _d in low if p.evs[k].max_discharge_kw > 0}
            if pairs:
                self._add_binaries(pairs)
            self._add_min_power(low)
        else:  # pragma: no cover - four rounds always end with exclusivity everywhere
            raise SolveError("simultaneous flows remained after adding binaries everywhere")
        assert flows is not None and run.objective is not None
        n_bin = self.n_binaries
        gap = _relative_gap(run.objective, run.bound) if n_bin else None
        status = "optimal" if tc == TerminationCondition.convergenceCriteriaSatisfied else tc.name
        return Plan(
            flows=flows,
            objective_eur=float(run.objective),
            build_s=self.build_s,
            solve_s=time.perf_counter() - t0,
            status=status,
            mip=n_bin > 0,
            gap=gap,
            n_binaries=n_bin,
            params=p,
            shortfalls=shortfalls(p, flows),
            breaches=breaches(p, flows),
        )


def _update_pyomo(m: pyo.ConcreteModel, params: ModelParams, k: int) -> None:
    """:meth:`Planner.update` on the Pyomo model: set every mutable parameter."""
    live = np.arange(params.n) >= k
    for t in range(params.n):
        on = bool(live[t])
        m.pv_kw[t] = float(params.pv_kw[t]) if on else 0.0
        m.load_kw[t] = float(params.load_kw[t]) if on else 0.0
        m.import_price[t] = float(params.import_price_eur_per_kwh[t])
        m.export_price[t] = float(params.export_price_eur_per_kwh[t])
        m.import_limit_kw[t] = float(params.import_limit_kw[t]) if on else 0.0
        m.export_limit_kw[t] = float(params.export_limit_kw[t]) if on else 0.0
    if params.battery is not None:
        b, bp = m.battery, params.battery
        for t in range(params.n):
            b.ch_max[t] = bp.max_charge_kw if live[t] else 0.0
            b.dis_max[t] = bp.max_discharge_kw if live[t] else 0.0
        b.soc0 = float(np.clip(bp.soc_initial_kwh, bp.soc_min_kwh, bp.soc_max_kwh))
        b.soc_final = bp.soc_final_min_kwh
    if params.capacity_tariff_eur_per_kw > 0:
        m.grid.peak_floor_kw = params.peak_floor_kw
    if params.evs:
        e = m.evs
        for kk, ev in enumerate(params.evs):
            for t in ev.steps:
                e.ch_max[kk, int(t)] = ev.max_charge_kw if live[t] else 0.0
                if (kk, int(t)) in e.V:
                    e.dis_max[kk, int(t)] = ev.max_discharge_kw if live[t] else 0.0
            for j, sess in enumerate(ev.sessions):
                if sess.first_step < 0:
                    continue
                if sess.last_step < k:  # gone: no constraint left
                    start = target = lb = 0.0
                else:
                    start, target = sess.soc_start_kwh, sess.soc_target_kwh
                    lb = min(ev.soc_min_kwh, start)
                e.soc_start[kk, j] = start
                e.soc_target[kk, j] = target
                e.soc_lb[kk, j] = lb


def _infeasible(p: ModelParams) -> InfeasibleScenarioError:
    """The error for a plan the solver proved infeasible, with the best reasons found."""
    return InfeasibleScenarioError(
        explain_infeasibility(p)
        or diagnose_with_slack(p)
        or [
            "the solver proved the plan infeasible although every direct check passed "
            "(EV targets at full power and under the grid limit, load against the grid "
            "limit, battery final SoC); the combination of EV targets, battery floor and "
            "grid limit cannot be met together"
        ]
    )


def _relative_gap(objective: float, bound: float | None) -> float | None:
    """The MIP gap of a run relative to its objective (None without a bound)."""
    if bound is None or not objective:
        return None
    return abs(objective - bound) / max(1e-9, abs(objective))


def structure_of(p: ModelParams) -> tuple[Any, ...]:
    """What fixes the shape of the model: steps, battery, tariff, penalty prices, EVs and their
    sessions."""
    evs = tuple(
        (
            ev.name,
            ev.capacity_kwh,
            ev.max_discharge_kw > 0,
            ev.efficiency,
            ev.degradation_eur_per_kwh,
            ev.min_power_kw,
            tuple(ev.steps.tolist()),
            tuple((s.first_step, s.last_step) for s in ev.sessions),
        )
        for ev in p.evs
    )
    battery = None
    if p.battery is not None:  # everything but the start SoC and the final floor (mutable)
        battery = dataclasses.replace(p.battery, soc_initial_kwh=0.0, soc_final_min_kwh=0.0)
    prices = (p.shortage_price_eur_per_kwh, p.breach_price_eur_per_kwh)
    return (p.n, p.dt_h, battery, p.capacity_tariff_eur_per_kw, prices, evs, p.groups)


def plan(scenario: Scenario, options: SolveOptions | None = None, engine: str = "highs") -> Plan:
    """Plan a scenario once: parameters, feasibility check, model, solve, results.

    A one-shot plan builds its model with fixed bounds; the MPC loop keeps a
    :class:`Planner` with mutable bounds instead. ``engine``: see :data:`ENGINES`.
    """
    opts = options or SolveOptions(mip_gap=scenario.mip_gap, time_limit_s=scenario.time_limit_s)
    return Planner(
        params_from_scenario(scenario), opts, mutable_bounds=False, engine=engine
    ).solve()
