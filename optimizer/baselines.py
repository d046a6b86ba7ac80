"""Baselines a plan is compared with, simulated on the same data as the plan, and the value
of each asset.

* :func:`no_control` ("charge on arrival"): what the site does without Noaber. Each car
  charges at full power from arrival until its departure target (not to 100 %: the plan
  delivers the target, so a baseline that charges more would make the plan look better than
  it is), within the grid import limit left after the building load and PV (cars that
  arrived first are served first) and never below the charger's minimum (``min_power_kw``,
  6 A per phase); the battery is idle, PV is never curtailed.
* :func:`self_consumption`: cars as above; the battery charges from surplus PV (what the load
  and the cars do not use) and discharges on deficit, within its power and SoC limits.
* :func:`asset_values`: the value of each asset as a separate line, by re-planning without
  it: smart charging (no control against the optimal plan without battery and V2G), V2G (that
  plan against the one with V2G), the battery (that against the full plan). The lines add up
  to the saving against no control. The plan without the battery is also a baseline column
  (``no_battery``).

The rules do not look at prices; :func:`optimizer.kpis.compute_kpis` counts the steps where a
baseline exceeds a grid limit (the export limit, with uncurtailed PV). Each returns a frame
with the columns of :func:`optimizer.model.results_frame`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optimizer.model import ModelParams, Planner, SolveOptions, flows_frame


def _ev_on_arrival(p: ModelParams, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Charge every car at full power from arrival until its target, within the import limit
    left after the load and PV (first come, first served); returns total EV power [kW]."""
    total = np.zeros(p.n)
    headroom = np.maximum(p.import_limit_kw + p.pv_kw - p.load_kw, 0.0)
    sessions = sorted(
        ((s.first_step, k, j) for k, ev in enumerate(p.evs) for j, s in enumerate(ev.sessions)),
        key=lambda x: (x[0], x[1]),
    )
    ch = {ev.name: np.zeros(p.n) for ev in p.evs}
    soc = {ev.name: np.full(p.n, np.nan) for ev in p.evs}
    plugged = {ev.name: np.zeros(p.n, bool) for ev in p.evs}
    level: dict[tuple[int, int], float] = {}
    for t in range(p.n):
        for first, k, j in sessions:
            ev = p.evs[k]
            sess = ev.sessions[j]
            if first < 0 or not first <= t <= sess.last_step:
                continue
            have = level.get((k, j), sess.soc_start_kwh)
            want = max(0.0, sess.soc_target_kwh - have) / (ev.efficiency * p.dt_h)
            room = headroom[t] - total[t]
            power = max(0.0, min(ev.max_charge_kw, want, room))
            if 0 < power < ev.min_power_kw:  # a charger runs at its minimum or not at all
                fits = have + p.dt_h * ev.efficiency * ev.min_power_kw <= ev.capacity_kwh + 1e-9
                power = ev.min_power_kw if room >= ev.min_power_kw and fits else 0.0
            ch[ev.name][t] = power
            total[t] += power
            have += p.dt_h * ev.efficiency * power
            level[k, j] = have
            soc[ev.name][t] = 100 * have / ev.capacity_kwh
            plugged[ev.name][t] = True
    for ev in p.evs:
        cols[f"ev:{ev.name}:charge_kw"] = ch[ev.name]
        cols[f"ev:{ev.name}:discharge_kw"] = np.zeros(p.n)
        cols[f"ev:{ev.name}:soc_pct"] = soc[ev.name]
        cols[f"ev:{ev.name}:plugged"] = plugged[ev.name]
    return total


def _frame(
    p: ModelParams,
    net_kw: np.ndarray,
    battery: tuple[np.ndarray, ...] | None,
    ev_cols: dict[str, np.ndarray],
) -> pd.DataFrame:
    cols: dict[str, np.ndarray] = {
        "pv_available_kw": p.pv_kw,
        "pv_kw": p.pv_kw.copy(),
        "curtailed_kw": np.zeros(p.n),
        "load_kw": p.load_kw,
        "grid_import_kw": np.maximum(net_kw, 0.0),
        "grid_export_kw": np.maximum(-net_kw, 0.0),
        "import_price_eur_per_kwh": p.import_price_eur_per_kwh,
        "export_price_eur_per_kwh": p.export_price_eur_per_kwh,
        "grid_import_limit_kw": p.import_limit_kw,
        "grid_export_limit_kw": p.export_limit_kw,
    }
    if battery is not None:
        cols["battery_charge_kw"], cols["battery_discharge_kw"], cols["battery_soc_pct"] = battery
    cols.update(ev_cols)
    return flows_frame(p, cols)


def no_control(p: ModelParams) -> pd.DataFrame:
    """Flows without control: cars charge on arrival until their target within the import
    limit, battery idle, no curtailment."""
    ev_cols: dict[str, np.ndarray] = {}
    ev_kw = _ev_on_arrival(p, ev_cols)
    battery = None
    if p.battery is not None:
        soc = np.full(p.n, 100 * p.battery.soc_initial_kwh / p.battery.capacity_kwh)
        battery = (np.zeros(p.n), np.zeros(p.n), soc)
    return _frame(p, p.load_kw + ev_kw - p.pv_kw, battery, ev_cols)


def self_consumption(p: ModelParams) -> pd.DataFrame:
    """Flows of the self-consumption rule (battery follows the PV surplus), cars charging on
    arrival as in :func:`no_control`."""
    ev_cols: dict[str, np.ndarray] = {}
    ev_kw = _ev_on_arrival(p, ev_cols)
    net = p.load_kw + ev_kw - p.pv_kw
    battery = None
    if p.battery is not None:
        b = p.battery
        ch, dis, soc = np.zeros(p.n), np.zeros(p.n), np.zeros(p.n)
        level = b.soc_initial_kwh
        dt = p.dt_h
        for t in range(p.n):
            if net[t] < 0:
                ch[t] = min(
                    -net[t],
                    b.max_charge_kw,
                    max(0.0, b.soc_max_kwh - level) / (b.efficiency_charge * dt),
                )
                level += dt * b.efficiency_charge * ch[t]
            elif net[t] > 0:
                dis[t] = min(
                    net[t],
                    b.max_discharge_kw,
                    max(0.0, level - b.soc_min_kwh) * b.efficiency_discharge / dt,
                )
                level -= dt * dis[t] / b.efficiency_discharge
            soc[t] = 100 * level / b.capacity_kwh
        net = net + ch - dis
        battery = (ch, dis, soc)
    return _frame(p, net, battery, ev_cols)


BASELINES = {"no_control": no_control, "self_consumption": self_consumption}
"""The rule baselines by name."""


def without_battery(p: ModelParams) -> ModelParams:
    """The parameters of the same site without its battery."""
    return dataclasses.replace(p, battery=None)


def without_v2g(p: ModelParams) -> ModelParams:
    """The parameters of the same site with no car discharging."""
    evs = tuple(dataclasses.replace(ev, max_discharge_kw=0.0, v2g=False) for ev in p.evs)
    return dataclasses.replace(p, evs=evs)


def _planned(p: ModelParams, options: SolveOptions | None) -> pd.DataFrame:
    return Planner(p, options, mutable_bounds=False).solve().flows


@dataclass(frozen=True)
class AssetValues:
    """The value of each asset over the horizon [EUR], each line by re-planning without it.

    ``no_battery`` is the optimal plan's flows without the battery (a baseline column).
    Values are differences of ``cost_eur`` (:func:`optimizer.kpis.compute_kpis`, penalties
    apart); ``comparable`` is False when a car is short or the import limit breached in one
    of the plans but not in the others (a plan that delivers less looks cheaper).
    """

    smart_charging_eur: float
    v2g_eur: float
    battery_eur: float
    no_battery: pd.DataFrame
    comparable: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "smart_charging_eur": round(self.smart_charging_eur, 4),
            "v2g_eur": round(self.v2g_eur, 4),
            "battery_eur": round(self.battery_eur, 4),
            "total_eur": round(self.smart_charging_eur + self.v2g_eur + self.battery_eur, 4),
            "comparable": self.comparable,
        }


def asset_values(
    p: ModelParams,
    plan_flows: pd.DataFrame,
    co2_kg_per_kwh: float,
    options: SolveOptions | None = None,
) -> AssetValues:
    """The value of smart charging, V2G and the battery (see the module docstring).

    ``plan_flows`` is the full plan's schedule; two more plans are solved (without the
    battery; without the battery and V2G). The three lines add up to ``no_control``'s cost
    minus the plan's cost, because no control keeps the battery idle.
    """
    from optimizer.kpis import compute_kpis

    bare = without_v2g(without_battery(p))
    no_batt = without_battery(p)
    f_bare = _planned(bare, options)
    f_no_batt = f_bare if not any(ev.max_discharge_kw > 0 for ev in p.evs) else None
    if f_no_batt is None:
        f_no_batt = _planned(no_batt, options)
    k = {
        "none": compute_kpis(no_control(p), p, co2_kg_per_kwh),
        "bare": compute_kpis(f_bare, bare, co2_kg_per_kwh),
        "no_batt": compute_kpis(f_no_batt, no_batt, co2_kg_per_kwh),
        "plan": compute_kpis(plan_flows, p, co2_kg_per_kwh),
    }
    short = {n: (v["shortage_kwh"], v["breach_kwh"]) for n, v in k.items()}
    comparable = len(set(short.values())) == 1
    return AssetValues(
        smart_charging_eur=k["none"]["cost_eur"] - k["bare"]["cost_eur"],
        v2g_eur=k["bare"]["cost_eur"] - k["no_batt"]["cost_eur"],
        battery_eur=k["no_batt"]["cost_eur"] - k["plan"]["cost_eur"],
        no_battery=f_no_batt,
        comparable=comparable,
    )
