"""PV curtailment is planned (export limit, negative export price) the same way by both engines,
and the MPC hands it to the sink as the PV assets' production limits."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from optimizer.model import Planner, params_from_scenario
from optimizer.mpc import MPCController, RecordingSink, curtailment_limits_w
from optimizer.scenario import BatterySpec, Scenario
from tests.optimizer.helpers import balance_residual_kw, ev, make_scenario


def export_limited() -> Scenario:
    """PV 10 kW, load 2 kW, export limit 3 kW: 5 kW curtailed in each of 4 hours."""
    return make_scenario([0.2] * 4, pv_kw=10.0, load_kw=2.0, export_price=0.05, export_limit_kw=3.0)


def negative_export() -> Scenario:
    """A negative feed-in price: only the load is served from PV, the rest (8 kW) curtailed."""
    return make_scenario([0.2] * 4, pv_kw=10.0, load_kw=2.0, export_price=-0.05)


def with_battery() -> Scenario:
    """Four sunny hours under an export limit of 3 kW, then an evening hour of 4 kW load at
    0.30 EUR/kWh: the battery stores 4 kWh for the evening (its end SoC must be back at the
    start), exports 12 kWh, the other 16 kWh are curtailed."""
    return make_scenario(
        [0.2, 0.2, 0.2, 0.2, 0.3],
        pv_kw=[10.0, 10.0, 10.0, 10.0, 0.0],
        load_kw=[2.0, 2.0, 2.0, 2.0, 4.0],
        export_price=0.05,
        export_limit_kw=3.0,
        battery=BatterySpec(
            capacity_kwh=10,
            max_charge_kw=4,
            max_discharge_kw=4,
            efficiency_charge=1.0,
            efficiency_discharge=1.0,
            soc_min_pct=0,
        ),
    )


def negative_import_and_v2g() -> Scenario:
    """Negative import and export prices with a V2G car: binaries, curtailment and a car."""
    car = ev("car", "2026-03-02T00:00+01:00", "2026-03-02T04:00+01:00", 50, 60)
    return make_scenario(
        [-0.05, -0.02, 0.1, 0.3],
        pv_kw=[8.0, 9.0, 6.0, 0.0],
        load_kw=1.0,
        export_price=[-0.1, -0.05, 0.02, 0.05],
        export_limit_kw=2.0,
        evs=(car,),
    )


# hand-worked: (objective [EUR], curtailed over the horizon [kWh])
CASES = {
    "export_limited": (export_limited, -4 * 3 * 0.05, 4 * 5.0),
    "negative_export": (negative_export, 0.0, 4 * 8.0),
    "with_battery": (with_battery, -12 * 0.05, 16.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_curtailment_is_planned_alike_by_both_engines(name: str) -> None:
    make, objective, curtailed_kwh = CASES[name]
    p = params_from_scenario(make())
    fast, ref = Planner(p, engine="highs").solve(), Planner(p, engine="pyomo").solve()
    for plan in (fast, ref):
        assert plan.objective_eur == pytest.approx(objective, abs=1e-6)
        f = plan.flows
        assert f["curtailed_kw"].sum() * p.dt_h == pytest.approx(curtailed_kwh, abs=1e-6)
        # PV used never exceeds the forecast, the export limit holds, the balance closes
        assert (f["pv_kw"] <= f["pv_available_kw"] + 1e-9).all()
        assert (f["grid_export_kw"] <= f["grid_export_limit_kw"] + 1e-9).all()
        assert np.abs(balance_residual_kw(f)).max() < 1e-6
    assert fast.objective_eur == pytest.approx(ref.objective_eur, abs=1e-6)


def test_curtailment_with_binaries_is_the_same_in_both_engines() -> None:
    p = params_from_scenario(negative_import_and_v2g())
    fast, ref = Planner(p, engine="highs").solve(), Planner(p, engine="pyomo").solve()
    assert fast.objective_eur == pytest.approx(ref.objective_eur, abs=1e-6)
    assert fast.flows["curtailed_kw"].sum() > 0 and ref.flows["curtailed_kw"].sum() > 0


def test_limits_share_the_pv_used_by_peak() -> None:
    sc = export_limited().replace(pv_assets={"pv-west": 6.0, "pv-east": 4.0})
    plan = Planner(params_from_scenario(sc)).solve()
    row = plan.flows.iloc[0]
    limits = curtailment_limits_w(sc, row)
    assert limits == pytest.approx({"pv-west": 3000.0, "pv-east": 2000.0})  # 5 kW used, 6:4
    free = make_scenario([0.2] * 4, pv_kw=1.0, load_kw=2.0).replace(pv_assets={"pv": 4.0})
    row = Planner(params_from_scenario(free)).solve().flows.iloc[0]
    assert curtailment_limits_w(free, row) == {}  # nothing curtailed: the inverter runs free
    assert curtailment_limits_w(export_limited(), plan.flows.iloc[0]) == {}  # no PV asset


async def test_the_mpc_sends_the_limit_and_warns_once(caplog) -> None:
    sc = with_battery().replace(pv_assets={"pv": 10.0})
    sink = RecordingSink()
    steps = iter(sc.index)
    now = [next(steps)]

    async def measure() -> dict[str, float]:
        return {}  # no SoC: the site file's value, with a warning

    def window(t):
        return sc.replace(series=sc.series[sc.series.index >= t])

    mpc = MPCController(window, measure, sink, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="optimizer.mpc"):
        for _ in range(3):
            setpoints = await mpc.step()
            assert mpc.status.last_ok, mpc.status.last_error
            assert len(mpc.status.warnings) == 1  # every step's status says it
            now[0] = next(steps)
    # the plan's PV used becomes the inverter's production limit, each step
    assert [name for name, _w, _by in sink.limits] == ["pv"] * 3
    assert all(0 < w < 10_000 for _n, w, _by in sink.limits)
    assert setpoints["pv"] == -sink.limits[-1][1]  # listed, so the loop keeps the limit
    warned = [r for r in caplog.records if "battery battery" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
