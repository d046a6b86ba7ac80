"""Honest baselines (issue 11, point 8): charge on arrival until the target within the grid
limit, the plan without the battery, and the value of each asset as its own line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optimizer.baselines import asset_values, no_control, self_consumption
from optimizer.kpis import compute_kpis
from optimizer.model import params_from_scenario, plan
from optimizer.page import render_site_page
from optimizer.report import compare
from optimizer.scenario import load_scenario
from optimizer.store import latest_schedule, save_plan, schedule_steps
from tests.optimizer.helpers import DATA, ev, make_scenario
from tests.optimizer.test_soft_targets import IMPOSSIBLE

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"


def test_charge_on_arrival_stops_at_the_target_within_the_grid_limit() -> None:
    # 10 kWh car (efficiency 1) from 0 % to 50 %: 5 kWh; 3 kW limit - 1 kW load = 2 kW room
    car = ev("car-1", "2026-03-02T00:00:00+01:00", "2026-03-02T04:00:00+01:00", 0, 50, v2g=False)
    p = params_from_scenario(make_scenario([0.2] * 4, load_kw=1.0, import_limit_kw=3.0, evs=(car,)))
    for rule in (no_control, self_consumption):
        f = rule(p)
        assert f["ev:car-1:charge_kw"].tolist() == pytest.approx([2.0, 2.0, 1.0, 0.0])
        assert f["ev:car-1:soc_pct"].tolist() == pytest.approx([20.0, 40.0, 50.0, 50.0])
        assert (f["grid_import_kw"] <= 3.0 + 1e-9).all()


def test_cars_share_the_grid_limit_first_come_first_served() -> None:
    early = ev("car-a", "2026-03-02T00:00:00+01:00", "2026-03-02T03:00:00+01:00", 0, 100)
    late = ev("car-b", "2026-03-02T01:00:00+01:00", "2026-03-02T03:00:00+01:00", 0, 100)
    p = params_from_scenario(make_scenario([0.2] * 3, import_limit_kw=7.0, evs=(early, late)))
    f = no_control(p)
    # car-a takes its 5 kW charger first, car-b the 2 kW left; car-a is full after 2 h
    assert f["ev:car-a:charge_kw"].tolist() == pytest.approx([5.0, 5.0, 0.0])
    assert f["ev:car-b:charge_kw"].tolist() == pytest.approx([0.0, 2.0, 5.0])


def test_the_value_of_the_battery_by_hand() -> None:
    # price_step.yaml, worked by hand in the file: 0.80 EUR with the battery, 1.60 without
    sc = load_scenario(DATA / "price_step.yaml")
    result = plan(sc)
    av = asset_values(result.params, result.flows, sc.co2_kg_per_kwh)
    assert av.battery_eur == pytest.approx(0.80)
    assert (av.smart_charging_eur, av.v2g_eur) == (pytest.approx(0.0), pytest.approx(0.0))
    assert av.comparable


def test_the_lines_add_up_to_the_saving_against_no_control() -> None:
    sc = load_scenario(EXAMPLE)
    # the congestion window (15 kW in the evening) cannot be held without the battery or V2G:
    # there the lines are flagged as not like for like
    assert not compare(sc, plan(sc))["asset_values"]["comparable"]
    sc = sc.replace(series=sc.series.assign(grid_import_limit_kw=25.0))
    result = plan(sc)
    summary = compare(sc, result)
    av, k = summary["asset_values"], summary["kpis"]
    assert av["comparable"]
    assert av["total_eur"] == pytest.approx(summary["savings_eur"]["no_control"], abs=1e-3)
    # more freedom never costs more: each line is a saving
    for line in ("smart_charging_eur", "v2g_eur", "battery_eur"):
        assert av[line] > 0, line
    assert k["no_battery"]["cost_eur"] - k["optimized"]["cost_eur"] == pytest.approx(
        av["battery_eur"], abs=1e-3
    )
    # the baseline delivers what the plan delivers: each car its target, not 100 %
    p = result.params
    base = compute_kpis(no_control(p), p, sc.co2_kg_per_kwh)
    for d_plan, d_base in zip(k["optimized"]["departures"], base["departures"], strict=True):
        assert d_base["met"] and d_plan["met"]
        assert d_base["soc_pct"] == pytest.approx(100 * _target_kwh(p, d_base) / _cap(p, d_base))


def _cap(p, d) -> float:
    return next(ev.capacity_kwh for ev in p.evs if ev.name == d["ev"])


def _target_kwh(p, d) -> float:
    car = next(ev for ev in p.evs if ev.name == d["ev"])
    return next(s.soc_target_kwh for s in car.sessions if s.departure.isoformat() == d["departure"])


def test_the_schedule_page_shows_each_line_and_what_the_plan_could_not_do(sessions) -> None:
    sc = load_scenario(EXAMPLE)
    sc = sc.replace(evs=(*sc.evs, IMPOSSIBLE))
    result = plan(sc)
    summary = compare(sc, result)
    with sessions() as s, s.begin():
        save_plan(s, sc, result, summary)
    with sessions() as s:
        sched = latest_schedule(s, sc.site.name)
        assert sched is not None
        html = render_site_page(sched, schedule_steps(s, sched.id), "en")
    av = summary["asset_values"]
    for key, cell in (
        ("smart_charging_eur", "value-smart-charging"),
        ("v2g_eur", "value-v2g"),
        ("battery_eur", "value-battery"),
        ("total_eur", "value-total"),
    ):
        assert f'id="{cell}">€ {av[key]:,.2f}' in html, key
    assert "Optimised without the battery" in html and "Charge on arrival (no control)" in html
    assert 'id="plan-warnings"' in html
    assert "EV &#39;car-5&#39; reaches 21.1 % instead of 90 % by 15-06-2026 19:00" in html
    assert np.isfinite(summary["kpis"]["no_battery"]["cost_eur"])
