"""Replay a plan through the loop in process: the MPC's setpoints drive a plant, and what the
plant's grid meter measured is priced against what the first plan said.

The plant is the scenario itself taken as reality (PV available, load, prices): each step it
takes the MPC's setpoints as they were sent (battery and charger power [W], the PV production
limits of :func:`optimizer.mpc.curtailment_limits_w`), clamps them to the assets' ratings,
integrates the SoCs (the efficiencies of the scenario) and meters the grid as what balances the
site: ``grid = load + battery + cars - PV produced`` [kW], + = import. The MPC plans on a
shrinking window to the scenario's end with the plant's SoC measured each step, so with a
perfect forecast the realised cost must equal the plan's: :func:`replay` reports both, the
steps where the grid limits did not hold, and is what ``bench/optimizer_bench.py`` prints
("realised vs planned"). The replay through the gateway and the simulators is
``tests/noaber/test_gateway_to_plan.py``'s part; this one needs no devices.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.model import SolveOptions
from optimizer.mpc import Measured, MPCController, RecordingSink
from optimizer.scenario import Scenario


@dataclass(frozen=True)
class Replay:
    """What a replay measured: costs [EUR] of grid energy, and the limits in every step."""

    steps: int
    planned_eur: float
    realised_eur: float
    import_over_limit_steps: int
    export_over_limit_steps: int
    curtailed_kwh: float
    failures: int

    @property
    def ratio(self) -> float:
        """Realised over planned cost (1.0: the plan was carried out as made)."""
        return self.realised_eur / self.planned_eur if self.planned_eur else float("nan")


def replay(sc: Scenario, options: SolveOptions | None = None) -> Replay:
    """Run the MPC over every step of ``sc`` against the plant (module docstring)."""
    return asyncio.run(_replay(sc, options))


async def _replay(sc: Scenario, options: SolveOptions | None) -> Replay:
    s, dt = sc.series, sc.dt_h
    n = len(s)
    now = [sc.start]
    soc = {}
    if sc.battery is not None:
        soc[sc.battery.name] = sc.battery.soc_initial_pct
    for ev in sc.evs:
        soc[ev.name] = ev.sessions[0].soc_arrival_pct if ev.sessions else 0.0
    sink = RecordingSink()
    pv_share = dict(sc.pv_assets)

    def window(t: pd.Timestamp) -> Scenario:
        return sc.replace(series=s[s.index >= t])

    async def measure() -> Measured:
        out = Measured()
        if sc.battery is not None:
            out.soc_pct[sc.battery.name] = soc[sc.battery.name]
        for ev in sc.evs:
            here = [x for x in ev.sessions if x.arrival <= now[0] < x.departure]
            if here:
                if now[0] - here[0].arrival < pd.Timedelta(minutes=sc.step_minutes):
                    soc[ev.name] = here[0].soc_arrival_pct  # it just arrived
                out.soc_pct[ev.name] = soc[ev.name]
                out.at[ev.name] = now[0]
        return out

    mpc = MPCController(window, measure, sink, clock=lambda: now[0], options=options)
    planned = None
    realised = 0.0
    over_imp = over_exp = 0
    curtailed = 0.0
    for i in range(n):
        sink.calls.clear()
        sink.limits.clear()
        await mpc.step()
        if i == 0 and mpc.last_plan is not None:
            f = mpc.last_plan.flows
            planned = float(
                dt
                * (
                    f["grid_import_kw"] @ f["import_price_eur_per_kwh"]
                    - f["grid_export_kw"] @ f["export_price_eur_per_kwh"]
                )
            )
        row = s.iloc[i]
        sent = {name: w / 1000 for name, w, _by in sink.calls}
        site_kw = float(row["load_kw"])
        if sc.battery is not None:
            b = sc.battery
            p = float(np.clip(sent.get(b.name, 0.0), -b.max_discharge_kw, b.max_charge_kw))
            site_kw += p
            e = p * b.efficiency_charge if p >= 0 else p / b.efficiency_discharge
            soc[b.name] += 100 * dt * e / b.capacity_kwh
        for ev in sc.evs:
            if ev.name not in sent:
                continue
            p = float(np.clip(sent[ev.name], -ev.max_discharge_kw, ev.max_charge_kw))
            site_kw += p
            e = p * ev.efficiency if p >= 0 else p / ev.efficiency
            soc[ev.name] += 100 * dt * e / ev.capacity_kwh
        pv_kw = float(row["pv_kw"])
        if sink.limits and pv_share:
            cap = sum(w for _n, w, _by in sink.limits) / 1000
            curtailed += dt * max(0.0, pv_kw - cap)
            pv_kw = min(pv_kw, cap)
        grid_kw = site_kw - pv_kw
        imp, exp = max(grid_kw, 0.0), max(-grid_kw, 0.0)
        over_imp += imp > float(row["grid_import_limit_kw"]) + 1e-3
        over_exp += exp > float(row["grid_export_limit_kw"]) + 1e-3
        realised += dt * (
            imp * float(row["import_price_eur_per_kwh"])
            - exp * float(row["export_price_eur_per_kwh"])
        )
        now[0] = now[0] + pd.Timedelta(minutes=sc.step_minutes)
    return Replay(
        n,
        float("nan") if planned is None else planned,
        realised,
        over_imp,
        over_exp,
        curtailed,
        mpc.status.failures,
    )
