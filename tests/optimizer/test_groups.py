"""Charger groups behind one fuse (issue 11, point 7): the cars' net power stays within it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from energy.errors import ValidationError
from optimizer.model import Planner, params_from_scenario
from optimizer.scenario import ChargerGroup, Scenario, load_scenario, scenario_from_dict
from tests.optimizer.test_lp import assert_same_lp

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"
CARS = ("car-1", "car-2", "car-4")


@pytest.fixture(scope="module")
def grouped() -> Scenario:
    sc = load_scenario(EXAMPLE)
    return sc.replace(charger_groups=(ChargerGroup("fuse-a", CARS, 12.0),))


def _net(flows) -> np.ndarray:
    return sum(
        (flows[f"ev:{c}:charge_kw"] - flows[f"ev:{c}:discharge_kw"]).to_numpy() for c in CARS
    )


def test_the_group_limit_holds_both_ways_and_binds(grouped: Scenario) -> None:
    free = Planner(params_from_scenario(grouped.replace(charger_groups=()))).solve()
    assert _net(free.flows).max() > 12.0 + 1e-6 and _net(free.flows).min() < -12.0 - 1e-6
    result = Planner(params_from_scenario(grouped)).solve()
    net = _net(result.flows)
    assert net.max() <= 12.0 + 1e-7 and net.min() >= -12.0 - 1e-7
    assert result.objective_eur >= free.objective_eur - 1e-9  # a limit never makes it cheaper
    assert result.shortfalls == []  # every car still reaches its target


def test_both_engines_write_the_same_group_rows_also_after_a_replan(grouped: Scenario) -> None:
    p = params_from_scenario(grouped)
    fast, ref = Planner(p, engine="highs"), Planner(p, engine="pyomo")
    assert_same_lp(fast, ref)
    assert fast.solve().objective_eur == pytest.approx(ref.solve().objective_eur, rel=1e-9)
    assert fast.params.groups[0].evs == (0, 1, 3)
    later = dataclasses.replace(p, load_kw=p.load_kw * 1.1)
    for planner in (fast, ref):
        planner.update(later, frozen_steps=40)
    a, b = fast.solve(), ref.solve()  # Pyomo pushes its parameters in this solve
    assert a.objective_eur == pytest.approx(b.objective_eur, rel=1e-9)
    assert_same_lp(fast, ref)
    assert _net(a.flows).max() <= 12.0 + 1e-7


def test_a_group_naming_an_unknown_car_is_refused() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["charger_groups"] = [{"name": "fuse-a", "limit_kw": 12, "evs": ["car-1", "car-9"]}]
    with pytest.raises(ValidationError, match=r"charger_groups\[0\]\.evs\[1\].*unknown EV 'car-9'"):
        scenario_from_dict(data, EXAMPLE.parent, "dorpshuis.yaml")
    data["charger_groups"] = [{"name": "fuse-a", "limit_kw": 12, "evs": ["car-1", "car-4"]}]
    sc = scenario_from_dict(data, EXAMPLE.parent, "dorpshuis.yaml")
    assert sc.charger_groups == (ChargerGroup("fuse-a", ("car-1", "car-4"), 12.0),)
