"""Baselines a plan is compared with, simulated on the same data as the plan.

* :func:`no_control`: cars charge at full power from arrival until full, the battery is idle,
  PV is never curtailed and the grid takes the rest.
* :func:`self_consumption`: cars as above; the battery charges from surplus PV (what the load
  and the cars do not use) and discharges on deficit, within its power and SoC limits.

Neither rule looks at prices or at the grid limit; :func:`optimizer.kpis.compute_kpis`
counts the steps where a baseline exceeds the limit. Both return a frame with the columns of
:func:`optimizer.model.results_frame`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.model import ModelParams, flows_frame


def _ev_full_power(p: ModelParams, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Charge every car at full power from arrival until full; returns total EV power [kW]."""
    total = np.zeros(p.n)
    for ev in p.evs:
        ch = np.zeros(p.n)
        soc = np.full(p.n, np.nan)
        plugged = np.zeros(p.n, bool)
        for sess in ev.sessions:
            if sess.first_step < 0:
                continue
            level = sess.soc_start_kwh
            for t in range(sess.first_step, sess.last_step + 1):
                power = min(
                    ev.max_charge_kw, max(0.0, ev.capacity_kwh - level) / (ev.efficiency * p.dt_h)
                )
                ch[t] = power
                level += p.dt_h * ev.efficiency * power
                soc[t] = 100 * level / ev.capacity_kwh
                plugged[t] = True
        cols[f"ev:{ev.name}:charge_kw"] = ch
        cols[f"ev:{ev.name}:discharge_kw"] = np.zeros(p.n)
        cols[f"ev:{ev.name}:soc_pct"] = soc
        cols[f"ev:{ev.name}:plugged"] = plugged
        total += ch
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
    """Flows without control: cars at full power on arrival, battery idle, no curtailment."""
    ev_cols: dict[str, np.ndarray] = {}
    ev_kw = _ev_full_power(p, ev_cols)
    battery = None
    if p.battery is not None:
        soc = np.full(p.n, 100 * p.battery.soc_initial_kwh / p.battery.capacity_kwh)
        battery = (np.zeros(p.n), np.zeros(p.n), soc)
    return _frame(p, p.load_kw + ev_kw - p.pv_kw, battery, ev_cols)


def self_consumption(p: ModelParams) -> pd.DataFrame:
    """Flows of the self-consumption rule (battery follows the PV surplus), cars at full power."""
    ev_cols: dict[str, np.ndarray] = {}
    ev_kw = _ev_full_power(p, ev_cols)
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
"""The baselines by name."""
