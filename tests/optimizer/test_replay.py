"""The in-process replay: the MPC's setpoints and PV limits drive a plant; what its grid meter
measured costs what the plan said, and the grid limits hold in every step."""

from __future__ import annotations

import pytest

from optimizer.replay import replay
from optimizer.synthetic import synthetic_scenario
from tests.optimizer.test_curtailment import with_battery


def test_a_replay_of_curtailment_costs_the_hand_worked_plan() -> None:
    # 12 kWh exported at 0.05 EUR/kWh under the 3 kW export limit, 16 kWh curtailed, the
    # evening's 4 kWh from the battery (see with_battery)
    r = replay(with_battery().replace(pv_assets={"pv-west": 6.0, "pv-east": 4.0}))
    assert r.failures == 0
    assert r.planned_eur == pytest.approx(-0.6, abs=1e-6)
    assert r.realised_eur == pytest.approx(-0.6, abs=1e-6)
    # 16 kWh, or down to 15: the battery may keep up to 1 kWh more than the evening takes (its
    # 5 kWh of room; an end SoC above the start is free), an equally cheap plan
    assert 15.0 - 1e-6 <= r.curtailed_kwh <= 16.0 + 1e-6
    assert r.import_over_limit_steps == 0 and r.export_over_limit_steps == 0


def test_without_limits_sent_the_export_limit_breaks() -> None:
    # the same site with no limitable PV: the loop cannot curtail, the plant exports it all
    r = replay(with_battery())
    assert r.export_over_limit_steps > 0 and r.curtailed_kwh == 0.0
    assert r.realised_eur < r.planned_eur  # it exported more than the plan said


def test_a_day_with_cars_is_carried_out_within_one_percent() -> None:
    sc = synthetic_scenario(days=1, n_evs=1, seed=3)
    series = sc.series.iloc[24:96].copy()  # 06:00 to midnight
    series["grid_export_limit_kw"] = 3.0
    r = replay(sc.replace(series=series, pv_assets={"pv": 40.0}))
    assert r.failures == 0 and r.steps == 72
    assert abs(r.ratio - 1) < 0.01, r
    assert r.import_over_limit_steps == 0 and r.export_over_limit_steps == 0
