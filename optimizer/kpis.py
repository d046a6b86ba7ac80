"""Key figures of a plan or a baseline, from its flows frame (see :func:`optimizer.model.results_frame`).

Definitions (energies [kWh] = power [kW] x step length [h]):

* ``cost_eur`` = energy cost (import x import price - export x export price) + capacity
  tariff x peak import + degradation (battery: x its throughput; EV: x what it discharges,
  V2G, as the model charges it) + ``terminal_adjustment_eur``. Penalties of the soft limits
  are apart: ``shortage_kwh`` (EV targets missed), ``breach_kwh`` (import above the limit)
  and ``penalty_eur`` (their prices), so plan objective = ``cost_eur + penalty_eur``.
  The terminal adjustment values a battery that ends below its final SoC floor (a baseline
  rule can leave it emptier than the plan may) at the mean import price divided by the charge
  efficiency: the cost of buying that energy back at an average moment. A plan always meets
  the floor, so its adjustment is 0.
* ``self_consumption_pct`` = PV used on site / PV produced after curtailment, with PV used on
  site = PV - export (export may include storage energy, so this is a lower bound).
* ``self_sufficiency_pct`` = (demand - import) / demand, demand = load + EV charging -
  V2G discharging, clipped to 0..100.
* ``co2_kg`` = import x the emission factor of the scenario (``co2_kg_per_kwh``; default from
  co2emissiefactoren.nl, see :data:`optimizer.scenario.CO2_KG_PER_KWH_DEFAULT`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from optimizer.model import ModelParams


def ev_names(flows: pd.DataFrame) -> list[str]:
    """Names of the EVs in a flows frame."""
    return [
        c.split(":")[1] for c in flows.columns if c.startswith("ev:") and c.endswith(":charge_kw")
    ]


def compute_kpis(flows: pd.DataFrame, p: ModelParams, co2_kg_per_kwh: float) -> dict[str, Any]:
    """Key figures of one flows frame (plan or baseline); see the module docstring."""
    dt = p.dt_h
    imp = flows["grid_import_kw"].to_numpy()
    exp = flows["grid_export_kw"].to_numpy()
    energy_cost = float(dt * (imp @ p.import_price_eur_per_kwh - exp @ p.export_price_eur_per_kwh))
    peak = float(max(imp.max(initial=0.0), p.peak_floor_kw))
    capacity_cost = p.capacity_tariff_eur_per_kw * peak if p.capacity_tariff_eur_per_kw > 0 else 0.0
    degradation = 0.0
    terminal = 0.0
    storage_in = 0.0
    storage_out = 0.0
    if p.battery is not None and "battery_charge_kw" in flows:
        b = p.battery
        ch = flows["battery_charge_kw"].to_numpy()
        dis = flows["battery_discharge_kw"].to_numpy()
        degradation += b.degradation_eur_per_kwh * dt * float(ch.sum() + dis.sum())
        final_kwh = float(flows["battery_soc_pct"].iloc[-1]) * b.capacity_kwh / 100
        short = max(0.0, b.soc_final_min_kwh - final_kwh)
        if short > 1e-6:
            terminal = short / b.efficiency_charge * float(np.mean(p.import_price_eur_per_kwh))
    shortage_kwh = 0.0
    v2g_kwh: dict[str, float] = {}
    departures: list[dict[str, Any]] = []
    for ev in p.evs:
        ch = flows[f"ev:{ev.name}:charge_kw"].to_numpy()
        dis = flows[f"ev:{ev.name}:discharge_kw"].to_numpy()
        storage_in += dt * float(ch.sum())
        storage_out += dt * float(dis.sum())
        degradation += ev.degradation_eur_per_kwh * dt * float(dis.sum())  # V2G out only
        v2g_kwh[ev.name] = round(dt * float(dis.sum()), 3)
        soc = flows[f"ev:{ev.name}:soc_pct"].to_numpy()
        for sess in ev.sessions:
            if sess.first_step < 0:
                continue
            final = float(soc[sess.last_step])
            short_kwh = max(0.0, sess.soc_target_kwh - final * ev.capacity_kwh / 100)
            if short_kwh > 1e-3:
                shortage_kwh += short_kwh
            departures.append(
                {
                    "ev": ev.name,
                    "owner": ev.owner,
                    "departure": sess.departure.isoformat(),
                    "in_horizon": sess.departs_in_horizon,
                    "target_pct": sess.target_pct,
                    "soc_pct": round(final, 2),
                    "met": bool(final + 1e-4 >= 100 * sess.soc_target_kwh / ev.capacity_kwh),
                    "short_kwh": round(short_kwh, 3),
                }
            )
    pv_used = dt * float(flows["pv_kw"].sum())
    export_kwh = dt * float(exp.sum())
    import_kwh = dt * float(imp.sum())
    demand = dt * float(flows["load_kw"].sum()) + storage_in - storage_out
    over_imp = imp > p.import_limit_kw + 1e-6
    breach_kwh = dt * float(np.clip(imp - p.import_limit_kw, 0.0, None).sum())
    penalty = p.breach_price_eur_per_kwh * breach_kwh + p.shortage_price_eur_per_kwh * shortage_kwh
    over_exp = exp > p.export_limit_kw + 1e-6
    return {
        "cost_eur": round(energy_cost + capacity_cost + degradation + terminal, 4),
        "energy_cost_eur": round(energy_cost, 4),
        "capacity_cost_eur": round(capacity_cost, 4),
        "degradation_eur": round(degradation, 4),
        "terminal_adjustment_eur": round(terminal, 4),
        "shortage_kwh": round(shortage_kwh, 3),
        "breach_kwh": round(breach_kwh, 3),
        "penalty_eur": round(penalty, 4),
        "peak_import_kw": round(peak, 3),
        "import_kwh": round(import_kwh, 3),
        "export_kwh": round(export_kwh, 3),
        "pv_kwh": round(dt * float(flows["pv_available_kw"].sum()), 3),
        "curtailed_kwh": round(dt * float(flows["curtailed_kw"].sum()), 3),
        "self_consumption_pct": round(100 * max(0.0, pv_used - export_kwh) / pv_used, 2)
        if pv_used > 0
        else 0.0,
        "self_sufficiency_pct": round(
            float(np.clip(100 * (demand - import_kwh) / demand, 0, 100)), 2
        )
        if demand > 0
        else 0.0,
        "co2_kg": round(import_kwh * co2_kg_per_kwh, 3),
        "v2g_kwh": v2g_kwh,
        "departures": departures,
        "grid_limit_violations": int(over_imp.sum() + over_exp.sum()),
    }
