"""The scheduling model: optima known by hand, explanations, negative prices, limits, balance."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.baselines import BASELINES
from optimizer.kpis import compute_kpis
from optimizer.model import (
    Planner,
    explain_infeasibility,
    params_from_scenario,
    plan,
    results_frame,
    simultaneous_pairs,
    steps_needing_binaries,
)
from optimizer.scenario import BatterySpec, load_scenario
from tests.optimizer.helpers import DATA, balance_residual_kw, ev, make_scenario

SCENARIOS = ["price_step.yaml", "car_full.yaml", "negative_day.yaml"]


def _battery(**kw: float) -> BatterySpec:
    args = dict(
        capacity_kwh=4.0,
        max_charge_kw=4.0,
        max_discharge_kw=4.0,
        efficiency_charge=1.0,
        efficiency_discharge=1.0,
        soc_min_pct=0.0,
        soc_max_pct=100.0,
        soc_initial_pct=0.0,
    )
    args.update(kw)
    return BatterySpec(**args)  # type: ignore[arg-type]


def test_price_step_optimum_by_hand() -> None:
    result = plan(load_scenario(DATA / "price_step.yaml"))
    assert result.objective_eur == pytest.approx(0.80, abs=1e-6)
    f = result.flows
    assert f["battery_charge_kw"].iloc[:4].sum() == pytest.approx(4.0)
    assert f["battery_discharge_kw"].iloc[4:].sum() == pytest.approx(4.0)
    assert f["grid_import_kw"].iloc[4:].sum() == pytest.approx(0.0, abs=1e-6)
    assert not result.mip


def test_full_battery_optimum_by_hand() -> None:
    # 2 kWh battery starts full and may end empty; load 1 kW for 4 h at 0.20 EUR/kWh:
    # the battery covers 2 kWh (wear 0.01 EUR/kWh), the grid the other 2: 0.40 + 0.02 EUR.
    sc = make_scenario(
        [0.2] * 4,
        load_kw=1.0,
        battery=_battery(
            capacity_kwh=2.0,
            soc_initial_pct=100.0,
            soc_final_min_pct=0.0,
            degradation_eur_per_kwh=0.01,
        ),
    )
    result = plan(sc)
    assert result.objective_eur == pytest.approx(0.42, abs=1e-6)
    assert result.flows["battery_charge_kw"].sum() == pytest.approx(0.0, abs=1e-9)
    assert result.flows["battery_soc_pct"].iloc[-1] == pytest.approx(0.0, abs=1e-6)


def test_full_battery_is_not_charged_further() -> None:
    # a full battery with a price step: it can only discharge into the dear hours.
    sc = make_scenario(
        [0.1, 0.1, 0.3, 0.3],
        load_kw=1.0,
        battery=_battery(capacity_kwh=1.0, soc_initial_pct=100.0, soc_final_min_pct=100.0),
    )
    result = plan(sc)
    # must end full again: buy 1 kWh back in a cheap hour (before), spend it in a dear one.
    # Cheap hours come first, so the battery cannot be emptied and refilled usefully: 0.1*2+0.3*2.
    assert result.objective_eur == pytest.approx(0.80, abs=1e-6)


def test_car_that_must_leave_full_by_hand() -> None:
    result = plan(load_scenario(DATA / "car_full.yaml"))
    assert result.objective_eur == pytest.approx(1.00, abs=1e-6)
    ch = result.flows["ev:car-1:charge_kw"].to_numpy()
    assert ch.tolist() == pytest.approx([0, 5, 0, 5, 0], abs=1e-6)
    assert result.flows["ev:car-1:soc_pct"].iloc[3] == pytest.approx(100.0)
    # the car is gone at 22:00: nothing planned for it in that step
    assert np.isnan(result.flows["ev:car-1:soc_pct"].iloc[4])


def test_unreachable_departure_is_met_as_closely_as_possible_and_reported() -> None:
    # the file's comment works it out by hand: 2.5 h x 7.2 kW x 0.9 = 16.2 kWh of 20 kWh
    result = plan(load_scenario(DATA / "unreachable.yaml"))
    assert result.status == "optimal"
    assert result.flows["ev:car-3:charge_kw"].sum() * 0.25 == pytest.approx(18.0)  # 7.2 x 2.5
    [short] = result.shortfalls
    assert (short.ev, short.by_local) == ("car-3", "02-03-2026 07:30")
    assert short.short_kwh == pytest.approx(3.8, abs=1e-6)
    assert short.reached_pct == pytest.approx(70.5)  # 30 % + 16.2 kWh of 40 kWh
    assert short.sentence() == (
        "EV 'car-3' reaches 70.5 % instead of 80 % by 02-03-2026 07:30, short 3.8 kWh: the "
        "charger's 7.2 kW over the 2.5 h it is plugged in put at most 16.2 kWh into the "
        "battery, 20.0 kWh are needed"
    )
    assert result.breaches == []


def test_departure_unreachable_under_grid_limit_is_reported() -> None:
    car = ev("car-1", "2026-03-02T00:00:00+01:00", "2026-03-02T02:00:00+01:00", 0, 100, v2g=False)
    sc = make_scenario([0.2, 0.2, 0.2], load_kw=2.0, import_limit_kw=5.0, evs=(car,))
    result = plan(sc)
    [short] = result.shortfalls
    # 2 h x (5 - 2) kW x efficiency 1 = 6 kWh of the 10 kWh the car needs
    assert short.short_kwh == pytest.approx(4.0, abs=1e-6)
    assert "under the grid import limit (5 kW) after the building load" in short.why
    assert (result.flows["grid_import_kw"] <= 5.0 + 1e-7).all()  # no breach for a car


def test_load_above_all_supply_is_a_priced_breach() -> None:
    sc = make_scenario([0.2, 0.2], load_kw=[3.0, 12.0], import_limit_kw=10.0)
    result = plan(sc)
    assert result.flows["grid_import_kw"].tolist() == pytest.approx([3.0, 12.0])
    [breach] = result.breaches
    assert (breach.first_local, breach.n_steps) == ("02-03-2026 01:00", 1)
    assert breach.max_kw == pytest.approx(2.0)
    p = result.params
    # energy at the import price, the 2 kWh over the limit at the breach price on top
    assert result.objective_eur == pytest.approx(0.2 * 15.0 + p.breach_price_eur_per_kwh * 2.0)


def test_negative_price_day_has_no_simultaneous_flows() -> None:
    sc = load_scenario(DATA / "negative_day.yaml")
    result = plan(sc)
    f = result.flows
    assert simultaneous_pairs(f, result.params) == set()
    neg = f["import_price_eur_per_kwh"] < 0
    # where import is paid for, the plan takes from the grid rather than exporting
    assert (f.loc[neg, "grid_export_kw"] == 0).all()
    assert (f.loc[neg, "grid_import_kw"] > 0).any()
    params = result.params
    needed = set(steps_needing_binaries(params).tolist())
    assert needed == {11, 12, 13, 14}  # only the negative-price hours could need binaries
    assert result.n_binaries <= len(needed) * 3  # at most: grid, battery, the V2G car there


def test_lp_alone_would_burn_energy_at_a_negative_price() -> None:
    # A full battery at a negative import price: the LP charges and discharges at once to
    # waste imported energy in its losses (0.9 x 0.9); the plan must not.
    sc = make_scenario(
        [-0.1, -0.1],
        battery=_battery(efficiency_charge=0.9, efficiency_discharge=0.9, soc_initial_pct=100.0),
    )
    lp = Planner(params_from_scenario(sc), engine="pyomo")
    lp.solver.solve(lp.model).solution_loader.load_vars()  # plain LP, no binaries
    assert simultaneous_pairs(results_frame(lp.model, lp.params), lp.params) != set()
    result = plan(sc)
    assert result.mip and result.n_binaries > 0
    assert simultaneous_pairs(result.flows, result.params) == set()
    # what it may do: export 3.24 kWh in hour 1 (price 0) and buy 4 kWh back in hour 2,
    # earning 4 x 0.1 EUR; the battery ends full again (3.24 / 0.9 = 3.6 = 0.9 x 4).
    assert result.objective_eur == pytest.approx(-0.4, abs=1e-9)
    assert result.flows["battery_discharge_kw"].iloc[0] == pytest.approx(3.24)


def test_grid_limits_never_exceeded_also_when_time_varying() -> None:
    limit = np.array([6.0] * 4 + [3.0] * 4)
    car = ev(
        "car-1",
        "2026-03-02T00:00:00+01:00",
        "2026-03-02T08:00:00+01:00",
        0,
        100,
        capacity_kwh=20.0,
        max_charge_kw=11.0,
        v2g=False,
    )
    sc = make_scenario(
        [0.3] * 4 + [0.1] * 4,
        load_kw=1.0,
        pv_kw=[0, 0, 0, 0, 9, 9, 0, 0],
        import_limit_kw=limit,
        export_limit_kw=2.0,
        evs=(car,),
    )
    result = plan(sc)
    f = result.flows
    assert (f["grid_import_kw"].to_numpy() <= limit + 1e-7).all()
    assert (f["grid_export_kw"].to_numpy() <= 2.0 + 1e-7).all()
    assert f["ev:car-1:soc_pct"].iloc[-1] == pytest.approx(100.0)
    base = BASELINES["no_control"](result.params)
    assert compute_kpis(base, result.params, 0.374)["grid_limit_violations"] > 0


@pytest.mark.parametrize("name", [*SCENARIOS, "example"])
def test_energy_balance_and_never_worse_than_baselines(name: str) -> None:
    path = (
        DATA / name
        if name != "example"
        else DATA.parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"
    )
    sc = load_scenario(path)
    result = plan(sc)
    assert np.abs(balance_residual_kw(result.flows)).max() < 1e-6
    kpi = compute_kpis(result.flows, result.params, sc.co2_kg_per_kwh)
    assert kpi["cost_eur"] == pytest.approx(result.objective_eur, abs=1e-3)
    assert all(d["met"] for d in kpi["departures"])
    assert kpi["grid_limit_violations"] == 0
    for base_name, baseline in BASELINES.items():
        flows = baseline(result.params)
        assert np.abs(balance_residual_kw(flows)).max() < 1e-6, base_name
        base = compute_kpis(flows, result.params, sc.co2_kg_per_kwh)
        assert kpi["cost_eur"] <= base["cost_eur"] + 1e-6, (
            base_name,
            kpi["cost_eur"],
            base["cost_eur"],
        )


def test_soc_is_recursive_and_within_limits() -> None:
    sc = load_scenario(DATA / "negative_day.yaml")
    result = plan(sc)
    f, b = result.flows, sc.battery
    assert b is not None
    soc = f["battery_soc_pct"].to_numpy() * b.capacity_kwh / 100
    prev = np.concatenate([[b.capacity_kwh * b.soc_initial_pct / 100], soc[:-1]])
    delta = (
        b.efficiency_charge * f["battery_charge_kw"]
        - f["battery_discharge_kw"] / b.efficiency_discharge
    )
    assert np.allclose(soc, prev + delta.to_numpy(), atol=1e-6)
    assert soc.min() >= b.capacity_kwh * b.soc_min_pct / 100 - 1e-6
    assert soc[-1] >= b.capacity_kwh * b.soc_initial_pct / 100 - 1e-6
    # V2G stays above the owner's minimum; the non-V2G car never discharges
    assert np.nanmin(f["ev:car-1:soc_pct"]) >= 30 - 1e-6
    assert (f["ev:car-2:discharge_kw"] == 0).all()


def test_capacity_tariff_flattens_the_peak() -> None:
    car = ev(
        "car-1",
        "2026-03-02T00:00:00+01:00",
        "2026-03-02T04:00:00+01:00",
        0,
        100,
        capacity_kwh=8.0,
        max_charge_kw=8.0,
        v2g=False,
    )
    cheap_first = [0.10, 0.20, 0.20, 0.20]
    without = plan(make_scenario(cheap_first, evs=(car,)))
    assert without.flows["grid_import_kw"].max() == pytest.approx(8.0)
    with_tariff = plan(make_scenario(cheap_first, evs=(car,), capacity_tariff_eur_per_kw=5.0))
    assert with_tariff.flows["grid_import_kw"].max() == pytest.approx(2.0)


def test_replan_updates_data_without_rebuilding() -> None:
    sc = load_scenario(DATA / "price_step.yaml")
    planner = Planner(params_from_scenario(sc), engine="pyomo")  # the Pyomo reference
    first = planner.solve()
    model = planner.model
    for t in range(8):  # reverse the price step
        model.import_price[t] = 0.3 if t < 4 else 0.1
    second = planner.solve()
    assert planner.model is model
    fresh = plan(
        sc.replace(series=sc.series.assign(import_price_eur_per_kwh=[0.3] * 4 + [0.1] * 4))
    )
    assert first.objective_eur == pytest.approx(0.8)
    assert second.objective_eur == pytest.approx(fresh.objective_eur, abs=1e-9)
    assert second.objective_eur == pytest.approx(1.6)  # battery cannot help: it starts empty


def test_cars_that_fit_alone_but_not_together_are_reported() -> None:
    # each car alone can take 20 kWh in 2 h under the 10 kW limit; together they need 40 kWh
    cars = tuple(
        ev(
            name,
            "2026-03-02T00:00:00+01:00",
            "2026-03-02T02:00:00+01:00",
            0,
            100,
            capacity_kwh=20.0,
            max_charge_kw=11.0,
            v2g=False,
        )
        for name in ("car-a", "car-b")
    )
    sc = make_scenario([0.2, 0.2, 0.2], import_limit_kw=10.0, evs=cars)
    assert explain_infeasibility(params_from_scenario(sc)) == []
    result = plan(sc)
    # 2 h x 10 kW (efficiency 1) = 20 kWh reach the batteries of the 40 kWh wanted
    assert sum(s.short_kwh for s in result.shortfalls) == pytest.approx(20.0, abs=1e-6)
    for s in result.shortfalls:
        assert s.by_local == "02-03-2026 02:00"
        assert "is shared with" in s.why and "plugged in at the same time" in s.why
    assert (result.flows["grid_import_kw"] <= 10.0 + 1e-7).all()


def test_one_shot_planner_refuses_updates() -> None:
    sc = load_scenario(DATA / "price_step.yaml")
    fixed = Planner(params_from_scenario(sc), mutable_bounds=False)
    assert fixed.solve().objective_eur == pytest.approx(0.8)
    with pytest.raises(ValueError, match="built with fixed bounds"):
        fixed.update(params_from_scenario(sc))
