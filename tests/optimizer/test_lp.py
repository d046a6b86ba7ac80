"""The highspy path writes the Pyomo model's LP: the same matrix, costs and bounds, in order.

Pyomo's persistent HiGHS interface hands the model to HiGHS; ``Highs.getLp()`` reads back what
it got. :mod:`optimizer.lp` must hand over exactly that, on every pinned scenario, after
re-plans (numbers changed, steps frozen) and after binaries were added, so the fast path and
the Pyomo reference cannot drift apart.
"""

from __future__ import annotations

import dataclasses

import highspy
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from optimizer.model import ModelParams, Planner, params_from_scenario
from optimizer.scenario import Scenario
from optimizer.synthetic import synthetic_scenario
from tests.optimizer.pinned_cases import CASES
from tests.optimizer.test_properties import scenarios


def _params(name: str) -> ModelParams:
    case = CASES[name]()
    return params_from_scenario(case) if isinstance(case, Scenario) else case


def _lp(h: highspy.Highs) -> dict[str, np.ndarray]:
    """The LP a HiGHS instance holds (its matrix row-wise as passed, column-wise once solved)."""
    lp = h.getLp()
    a = lp.a_matrix_
    start, index, value = np.asarray(a.start_), np.asarray(a.index_), np.asarray(a.value_)
    if a.format_ == highspy.MatrixFormat.kRowwise:
        # the order within a row is Pyomo's expression order (it changes with dt == 1); HiGHS
        # turns rows into columns in row order, so only the set of entries per row matters
        order = np.lexsort((index, np.repeat(np.arange(len(start) - 1), np.diff(start))))
        index, value = index[order], value[order]
    return {
        "format": np.array([int(a.format_)]),
        "col_cost": np.asarray(lp.col_cost_),
        "col_lower": np.asarray(lp.col_lower_),
        "col_upper": np.asarray(lp.col_upper_),
        "row_lower": np.asarray(lp.row_lower_),
        "row_upper": np.asarray(lp.row_upper_),
        "start": start,
        "index": index,
        "value": value,
        "integrality": np.asarray([int(v) for v in lp.integrality_]),
    }


def assert_same_lp(fast: Planner, ref: Planner) -> None:
    got, want = _lp(fast.highs), _lp(ref.highs)
    for key, expected in want.items():
        assert got[key].shape == expected.shape, key
        if key in ("format", "start", "index", "integrality"):
            assert (got[key] == expected).all(), key
        else:
            assert got[key] == pytest.approx(expected, rel=1e-15, abs=1e-15), key


@pytest.mark.parametrize(
    ("name", "mutable_bounds"),
    [(name, True) for name in sorted(CASES)]
    + [("negative_day-import-below-export", False), ("dorpshuis", False)],
)
def test_highs_path_writes_the_pyomo_lp(name: str, mutable_bounds: bool) -> None:
    p = _params(name)
    fast = Planner(p, mutable_bounds=mutable_bounds, engine="highs")
    ref = Planner(p, mutable_bounds=mutable_bounds, engine="pyomo")
    assert_same_lp(fast, ref)
    a, b = fast.solve(), ref.solve()  # adds the same binaries where a case needs them
    assert (a.n_binaries, a.mip) == (b.n_binaries, b.mip)
    assert a.objective_eur == pytest.approx(b.objective_eur, rel=1e-9, abs=1e-9)
    assert_same_lp(fast, ref)
    # the same LP with the same options: HiGHS walks the same path to the same vertex
    fi, ri = fast.highs.getInfo(), ref.highs.getInfo()
    assert (fi.simplex_iteration_count, fi.mip_node_count) == (
        ri.simplex_iteration_count,
        ri.mip_node_count,
    )
    assert a.flows.equals(b.flows)


def _replanned(p: ModelParams, shift: int) -> ModelParams:
    """The data of a later re-plan: prices and load moved, other start SoC, a tariff floor."""
    roll = np.roll
    battery = p.battery
    if battery is not None:
        battery = dataclasses.replace(battery, soc_initial_kwh=battery.soc_max_kwh * 1.2)
    evs = tuple(
        dataclasses.replace(
            ev,
            sessions=tuple(
                dataclasses.replace(s, soc_start_kwh=s.soc_start_kwh * 0.9) for s in ev.sessions
            ),
        )
        for ev in p.evs
    )
    return dataclasses.replace(
        p,
        import_price_eur_per_kwh=roll(p.import_price_eur_per_kwh, shift),
        export_price_eur_per_kwh=roll(p.export_price_eur_per_kwh, shift),
        load_kw=roll(p.load_kw, shift) * 0.9,
        pv_kw=roll(p.pv_kw, -shift),
        peak_floor_kw=p.peak_floor_kw + 1.0,
        battery=battery,
        evs=evs,
    )


@pytest.mark.parametrize(
    "name", ["dorpshuis", "negative_day-import-below-export", "synthetic-2d-4ev-seed0-tariff"]
)
def test_replans_change_the_same_numbers(name: str) -> None:
    p = _params(name)
    fast, ref = Planner(p, engine="highs"), Planner(p, engine="pyomo")
    fast.solve(), ref.solve()
    for step, frozen in enumerate((1, 3, p.n // 2)):
        later = _replanned(p, step + 1)
        fast.update(later, frozen_steps=frozen)
        ref.update(later, frozen_steps=frozen)
        a, b = fast.solve(), ref.solve()  # Pyomo pushes its parameters in this solve
        assert a.objective_eur == pytest.approx(b.objective_eur, rel=1e-9, abs=1e-9)
        assert a.n_binaries == b.n_binaries
        assert_same_lp(fast, ref)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_scenarios_have_the_same_lp(sc: Scenario) -> None:
    p = params_from_scenario(sc)
    fast = Planner(p, engine="highs", check=False)
    ref = Planner(p, engine="pyomo", check=False)
    assert_same_lp(fast, ref)


def test_a_larger_site_has_the_same_lp() -> None:
    p = params_from_scenario(synthetic_scenario(days=2, n_evs=12, seed=7))
    assert_same_lp(Planner(p, engine="highs"), Planner(p, engine="pyomo"))
