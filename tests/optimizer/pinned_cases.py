"""Plans pinned from main at commit 434732f, before the model was rebuilt for speed (issue 18).

``python -m tests.optimizer.pinned_cases`` printed ``tests/data/optimizer/pinned_plans.json``
with that commit's code: objective, MIP or not, binaries, and the sum over the steps of every
power column, for every scenario in ``optimizer/examples`` and ``tests/data/optimizer``, for
the synthetic benchmark sites, for two MIP cases and for six MPC re-plans.
``test_pinned_plans.py`` compares today's plans with them (1e-6 relative).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimizer.model import ModelParams, Plan, Planner, params_from_scenario, plan
from optimizer.mpc import MPCController, RecordingSink
from optimizer.scenario import BatterySpec, Scenario, load_scenario
from optimizer.synthetic import synthetic_scenario
from tests.optimizer.helpers import DATA, make_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "optimizer" / "examples" / "dorpshuis.yaml"
PINNED = DATA / "pinned_plans.json"
FIXED_COLUMNS = ("pv_available_kw", "load_kw", "grid_import_limit_kw", "grid_export_limit_kw")


def _import_dearer_than_export() -> Scenario:
    """The negative-price day with every fifth step exporting dearer than importing: a MIP."""
    sc = load_scenario(DATA / "negative_day.yaml")
    s = sc.series.copy()
    ip = s["import_price_eur_per_kwh"].to_numpy()
    dear = np.arange(len(s)) % 5 == 2
    s["export_price_eur_per_kwh"] = np.where(dear, ip + 0.02, s["export_price_eur_per_kwh"])
    return sc.replace(series=s)


def _burn_at_negative_price() -> Scenario:
    """A full lossy battery at a negative price (test_model.py): the LP burns energy; a MIP."""
    b = BatterySpec(
        capacity_kwh=4.0,
        max_charge_kw=4.0,
        max_discharge_kw=4.0,
        efficiency_charge=0.9,
        efficiency_discharge=0.9,
        soc_min_pct=0.0,
        soc_max_pct=100.0,
        soc_initial_pct=100.0,
    )
    return make_scenario([-0.1, -0.1], battery=b)


def _tariff_params() -> ModelParams:
    p = params_from_scenario(synthetic_scenario(days=2, n_evs=4, seed=0))
    return dataclasses.replace(p, capacity_tariff_eur_per_kw=3.5, peak_floor_kw=4.0)


#: name -> the scenario (planned with :func:`optimizer.model.plan`) or parameters (Planner).
CASES: dict[str, Callable[[], Scenario | ModelParams]] = {
    "dorpshuis": lambda: load_scenario(EXAMPLE),
    "price_step": lambda: load_scenario(DATA / "price_step.yaml"),
    "car_full": lambda: load_scenario(DATA / "car_full.yaml"),
    "negative_day": lambda: load_scenario(DATA / "negative_day.yaml"),
    "negative_day-import-below-export": _import_dearer_than_export,
    "burn-at-negative-price": _burn_at_negative_price,
    "synthetic-2d-4ev-seed1": lambda: synthetic_scenario(days=2, n_evs=4, seed=1),
    "synthetic-3d-6ev-seed2-negative": lambda: synthetic_scenario(
        days=3, n_evs=6, seed=2, negative_prices=True
    ),
    "synthetic-2d-4ev-seed0-tariff": _tariff_params,
}


def summary(result: Plan) -> dict[str, Any]:
    """What is pinned of a plan: objective, MIP, binaries and each power column's total."""
    totals = {
        c: float(result.flows[c].sum())
        for c in result.flows.columns
        if c.endswith("_kw") and c not in FIXED_COLUMNS
    }
    return {
        "objective": result.objective_eur,
        "mip": result.mip,
        "n_binaries": result.n_binaries,
        "totals": totals,
    }


def plan_case(name: str, **planner_kw: Any) -> Plan:
    """Plan one case as today's code does (``planner_kw`` go to the Planner of a params case)."""
    case = CASES[name]()
    if isinstance(case, Scenario):
        return plan(case, **planner_kw)
    return Planner(case, **planner_kw).solve()


class _Clock:
    def __init__(self, start: pd.Timestamp):
        self.now = start

    def __call__(self) -> pd.Timestamp:
        return self.now


def mpc_run(steps: int = 6, **controller_kw: Any) -> dict[str, Any]:
    """Six MPC steps on the example from 10:00 local (24 h windows, fixed measured SoC)."""
    full = load_scenario(EXAMPLE)
    horizon = pd.Timedelta(hours=24)

    def window(now: pd.Timestamp) -> Scenario:
        s = full.series
        return full.replace(series=s[(s.index >= now) & (s.index < now + horizon)])

    clock = _Clock(full.start + pd.Timedelta(hours=10))

    async def measure() -> dict[str, float]:
        return {"battery": 60.0, "car-1": 50.0, "car-2": 55.0}

    mpc = MPCController(window, measure, RecordingSink(), clock=clock, **controller_kw)
    objectives: list[float | None] = []
    setpoints: list[dict[str, float]] = []

    async def go() -> None:
        for _ in range(steps):
            setpoints.append(await mpc.step())
            objectives.append(mpc.status.last_objective_eur)
            clock.now += pd.Timedelta(minutes=15)

    asyncio.run(go())
    return {"objectives": objectives, "setpoints": setpoints, "rebuilds": mpc.status.rebuilds}


def record() -> dict[str, Any]:
    """Every pinned figure, as written to :data:`PINNED`."""
    out: dict[str, Any] = {name: summary(plan_case(name)) for name in CASES}
    out["mpc-dorpshuis-10h"] = mpc_run()
    return out


if __name__ == "__main__":
    print(json.dumps(record(), indent=1, sort_keys=True))
