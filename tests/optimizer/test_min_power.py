"""The charger's minimum current (issue 11, point 7): 0 or at least 6 A per phase, with
binaries only for chargers that have a minimum and only where the LP breaks it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optimizer.model import Planner, params_from_scenario, plan
from tests.optimizer.helpers import ev, make_scenario
from tests.optimizer.test_lp import assert_same_lp

THREE_PHASE_6A_KW = 3 * 230 * 6 / 1000  # 4.14 kW


def _day(min_power_kw: float, v2g: bool = False):
    # a 10 kWh car (efficiency 1) needs 5 kWh in 4 h; 3 kW of room under the 4 kW limit
    # (1 kW of load), cheapest at 01:00-03:00: the LP charges 3 kW there, 2 kW then 0
    car = ev(
        "car-1",
        "2026-03-02T00:00:00+01:00",
        "2026-03-02T04:00:00+01:00",
        0,
        50,
        max_charge_kw=11.0,
        max_discharge_kw=11.0,
        v2g=v2g,
        min_power_kw=min_power_kw,
    )
    return make_scenario([0.30, 0.10, 0.12, 0.30], load_kw=1.0, import_limit_kw=6.0, evs=(car,))


def test_without_a_minimum_there_are_no_binaries() -> None:
    result = plan(_day(0.0))
    assert not result.mip and result.n_binaries == 0
    assert result.flows["ev:car-1:charge_kw"].tolist() == pytest.approx([0.0, 5.0, 0.0, 0.0])


def test_a_minimum_the_lp_already_keeps_adds_nothing() -> None:
    result = plan(_day(THREE_PHASE_6A_KW))
    assert result.n_binaries == 0  # 5 kW >= 4.14 kW: the LP's answer stands
    assert result.flows["ev:car-1:charge_kw"].tolist() == pytest.approx([0.0, 5.0, 0.0, 0.0])


def test_a_binding_minimum_by_hand() -> None:
    # with 7 kWh to go and 5 kW of room, the LP charges 5 kW at 0.10 and 2 kW at 0.12; a
    # 4.14 kW minimum forbids the 2 kW and one hour cannot take 7 kWh: both cheap hours at
    # the minimum (8.28 kWh, the car ends at 82.8 %) is the cheapest way to 70 %
    sc = _day(THREE_PHASE_6A_KW)
    car = dataclasses.replace(
        sc.evs[0], sessions=(dataclasses.replace(sc.evs[0].sessions[0], soc_departure_pct=70),)
    )
    lp = plan(sc.replace(evs=(dataclasses.replace(car, min_power_kw=0.0),)))
    assert lp.flows["ev:car-1:charge_kw"].tolist() == pytest.approx([0.0, 5.0, 2.0, 0.0])
    result = plan(sc.replace(evs=(car,)))
    assert result.mip and 0 < result.n_binaries <= 4
    m = THREE_PHASE_6A_KW
    assert result.flows["ev:car-1:charge_kw"].tolist() == pytest.approx([0.0, m, m, 0.0])
    load = 1.0 * (0.30 + 0.10 + 0.12 + 0.30)
    assert result.objective_eur == pytest.approx(m * 0.10 + m * 0.12 + load, abs=1e-6)


def test_both_engines_add_the_same_min_power_binaries() -> None:
    sc = _day(THREE_PHASE_6A_KW, v2g=True)
    car = dataclasses.replace(
        sc.evs[0], sessions=(dataclasses.replace(sc.evs[0].sessions[0], soc_departure_pct=70),)
    )
    p = params_from_scenario(sc.replace(evs=(car,)))
    fast, ref = Planner(p, engine="highs"), Planner(p, engine="pyomo")
    a, b = fast.solve(), ref.solve()
    assert a.n_binaries == b.n_binaries > 0
    assert a.objective_eur == pytest.approx(b.objective_eur, rel=1e-9)
    assert_same_lp(fast, ref)
    later = dataclasses.replace(p, load_kw=np.array([1.0, 1.5, 1.0, 1.0]))
    fast.update(later, frozen_steps=1)
    ref.update(later, frozen_steps=1)
    a, b = fast.solve(), ref.solve()
    assert a.objective_eur == pytest.approx(b.objective_eur, rel=1e-9)
    assert_same_lp(fast, ref)
