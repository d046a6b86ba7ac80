"""Soft targets (issue 11, point 5): one impossible car does not take the site out of control.

The day is the example's first day with a fifth car that stays one hour and wants 48 kWh: its
7.4 kW charger puts at most 1 h x 7.4 kW x 0.9 = 6.66 kWh into its battery, so it leaves
41.34 kWh short whatever the plan does. Everything else must be planned as on the same day
without that car: the only difference the car may make is its own 7.4 kWh of import.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from optimizer.kpis import compute_kpis
from optimizer.model import plan
from optimizer.mpc import MPCController, RecordingSink
from optimizer.scenario import EVSession, EVSpec, Scenario, load_scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


IMPOSSIBLE = EVSpec(
    name="car-5",
    owner="m-0b5e55",
    capacity_kwh=60.0,
    max_charge_kw=7.4,
    efficiency=0.9,
    soc_min_pct=10.0,
    sessions=(
        EVSession(_utc("2026-06-15T18:00:00+02:00"), _utc("2026-06-15T19:00:00+02:00"), 10, 90),
    ),
)


@pytest.fixture(scope="module")
def day() -> Scenario:
    return load_scenario(EXAMPLE)


def test_one_impossible_car_leaves_the_rest_of_the_plan_as_without_it(day: Scenario) -> None:
    without = plan(day)
    with_car = plan(day.replace(evs=(*day.evs, IMPOSSIBLE)))
    assert with_car.status == without.status == "optimal"
    assert without.shortfalls == []
    [short] = with_car.shortfalls
    assert (short.ev, short.owner, short.by_local) == ("car-5", "m-0b5e55", "15-06-2026 19:00")
    assert short.short_kwh == pytest.approx(48.0 - 6.66, abs=1e-6)
    assert "charger's 7.4 kW over the 1 h it is plugged in" in short.why
    # the car charges at full power the whole hour it is there
    f = with_car.flows
    assert f["ev:car-5:charge_kw"].sum() * 0.25 == pytest.approx(7.4)
    # every other car and the battery: exactly the plan without the impossible car
    for column in without.flows.columns:
        if column.endswith("_kw") and column != "grid_import_kw":
            assert f[column].sum() == pytest.approx(without.flows[column].sum(), abs=1e-6), column
    extra = (f["grid_import_kw"] - without.flows["grid_import_kw"]).sum() * 0.25
    assert extra == pytest.approx(7.4, abs=1e-6)
    kpi = compute_kpis(f, with_car.params, day.co2_kg_per_kwh)
    assert [(d["ev"], d["met"]) for d in kpi["departures"] if not d["met"]] == [("car-5", False)]
    assert kpi["shortage_kwh"] == pytest.approx(41.34, abs=1e-3)
    assert kpi["cost_eur"] + kpi["penalty_eur"] == pytest.approx(with_car.objective_eur, abs=1e-3)
    assert with_car.breaches == [] and kpi["grid_limit_violations"] == 0


async def test_replay_with_an_impossible_car_keeps_every_asset_controlled(day: Scenario) -> None:
    full = day.replace(evs=(*day.evs, IMPOSSIBLE))
    clock_now = [_utc("2026-06-15T17:30:00+02:00")]

    def scenario_at(now: pd.Timestamp) -> Scenario:
        s = full.series
        return full.replace(series=s[(s.index >= now) & (s.index < now + pd.Timedelta(hours=24))])

    async def measure() -> dict[str, float]:
        return {"battery": 60.0}

    sink = RecordingSink()
    mpc = MPCController(scenario_at, measure, sink, clock=lambda: clock_now[0])
    for _ in range(8):  # 17:30 .. 19:15 local
        sent = await mpc.step()
        assert mpc.status.last_ok, mpc.status.last_error
        assert not mpc.status.fallback_active
        assert "battery" in sent and {"car-1", "car-2", "car-3"} <= sent.keys()
        plugged = (
            _utc("2026-06-15T18:00:00+02:00") <= clock_now[0] < _utc("2026-06-15T19:00:00+02:00")
        )
        assert ("car-5" in sent) == plugged
        if plugged:
            assert sent["car-5"] == pytest.approx(7400.0)
            assert mpc.last_plan is not None
            [short] = mpc.last_plan.shortfalls
            assert short.ev == "car-5" and short.by_local == "15-06-2026 19:00"
            assert mpc.status.last_warnings == [short.sentence()]
        clock_now[0] += pd.Timedelta(minutes=15)
    assert mpc.status.failures == 0
    assert all(by == "optimizer.mpc" for _a, _w, by in sink.calls)
