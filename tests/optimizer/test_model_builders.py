"""``build_model`` composed of one builder per asset kind writes the model it wrote before.

The figures are recorded from commit 0995acc, before ``build_model`` was split into
``_build_grid``, ``_build_pv``, ``_build_battery``, ``_build_evs`` and ``_build_building``:
the same components with the same sizes, and on the example scenario the same optimum and
the same schedule.

Re-recorded for issue 11 where the model's meaning changed: an EV's wear is charged on what it
discharges (V2G) only, no longer on its charging (the example's car-1 and car-2 have
0.03 EUR/kWh: the objective falls by about 0.03 x 0.25 h x 550 kW of charging, and car-2 now
cycles a little more), and every model has the soft limits (``breach_kw`` per step,
``evs.short_kwh`` per session); the soft model keeps only the battery floor's slack.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyomo.environ as pyo
import pytest

from optimizer.model import Planner, build_model, params_from_scenario, plan
from optimizer.scenario import load_scenario
from optimizer.synthetic import synthetic_scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"

EXAMPLE_OBJECTIVE_EUR = -8.897456548582506
EXAMPLE_TOTALS_KW = {  # sum over the steps of each power column of the schedule [kW]
    "pv_kw": 2453.3351963983678,
    "curtailed_kw": 213.32880360163176,
    "grid_import_kw": 243.48688888888893,
    "grid_export_kw": 926.4807620137301,
    "battery_charge_kw": 357.8947368421053,
    "battery_discharge_kw": 323.0,
    "ev:car-1:charge_kw": 365.2173913043477,
    "ev:car-1:discharge_kw": 143.51999999999998,
    "ev:car-2:charge_kw": 195.65217391304338,
    "ev:car-2:discharge_kw": 55.20000000000002,
    "ev:car-3:charge_kw": 88.88888888888893,
    "ev:car-3:discharge_kw": 0.0,
    "ev:car-4:charge_kw": 88.29513232514176,
    "ev:car-4:discharge_kw": 56.333,
}

#: Variables and constraints (with their sizes) of the synthetic 48 h scenario with 4 V2G cars
#: and a capacity tariff; the soft model adds the battery floor's slack.
SIZES = {
    "balance": 192,
    "grid.imp": 192,
    "grid.exp": 192,
    "grid.peak": 1,
    "grid.peak_c": 192,
    "grid.peak_floor_c": 1,
    "pv.used": 192,
    "battery.ch": 192,
    "battery.dis": 192,
    "battery.soc": 192,
    "battery.soc_c": 192,
    "battery.final_c": 1,
    "evs.ch": 348,
    "evs.dis": 348,
    "evs.soc": 348,
    "evs.soc_c": 348,
    "evs.target_c": 8,
    "evs.short_kwh": 8,
    "breach_kw": 192,
}
SOFT_SLACKS = {"battery.short_kwh": 1}


def test_example_plan_is_the_one_recorded_before_the_split() -> None:
    result = plan(load_scenario(EXAMPLE))
    assert result.objective_eur == pytest.approx(EXAMPLE_OBJECTIVE_EUR, rel=1e-9)
    assert not result.mip
    for column, total in EXAMPLE_TOTALS_KW.items():
        assert float(result.flows[column].sum()) == pytest.approx(total, rel=1e-9, abs=1e-9)


def test_model_has_the_components_recorded_before_the_split() -> None:
    p = params_from_scenario(synthetic_scenario(days=2, n_evs=4, seed=0))
    p = dataclasses.replace(p, capacity_tariff_eur_per_kw=3.5, peak_floor_kw=4.0)
    for soft, expected in ((False, SIZES), (True, SIZES | SOFT_SLACKS)):
        m = build_model(p, soft=soft)
        sizes = {
            c.name: len(c)
            for c in m.component_objects((pyo.Var, pyo.Constraint), descend_into=True)
        }
        assert sizes == expected
    assert Planner(p).solve().objective_eur == pytest.approx(32.054073909793985, rel=1e-9)
