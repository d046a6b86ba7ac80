"""MPC: re-plans from measured SoC on the anchored persistent model, setpoints to a sink, fallback."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import pytest

from optimizer.model import Planner, params_from_scenario
from optimizer.mpc import MPCController, RecordingSink, with_measurements
from optimizer.scenario import Scenario, load_scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"
HORIZON = pd.Timedelta(hours=24)


@pytest.fixture(scope="module")
def full() -> Scenario:
    return load_scenario(EXAMPLE)


def window(full: Scenario, now: pd.Timestamp) -> Scenario:
    s = full.series
    return full.replace(series=s[(s.index >= now) & (s.index < now + HORIZON)])


class Clock:
    def __init__(self, start: pd.Timestamp):
        self.now = start

    def __call__(self) -> pd.Timestamp:
        return self.now


async def test_replans_reuse_the_model_and_follow_measured_soc(full: Scenario) -> None:
    start = full.start + pd.Timedelta(hours=10)  # 10:00 local: car-1 and car-2 plugged in
    clock = Clock(start)
    sink = RecordingSink()
    measured = {"battery": 60.0, "car-1": 50.0, "car-2": 55.0}

    async def measure() -> dict[str, float]:
        return dict(measured)

    async def fast_sleep(seconds: float) -> None:
        assert 0 < seconds <= 900
        clock.now += pd.Timedelta(seconds=seconds)

    mpc = MPCController(lambda now: window(full, now), measure, sink, clock=clock)
    status = await mpc.run(max_steps=4, sleep=fast_sleep)
    assert status.plans == 4 and status.failures == 0 and status.last_ok
    assert status.rebuilds == 1  # one build, three re-plans by data updates only
    names = [c[0] for c in sink.calls]
    assert names.count("battery") == 4 and names.count("car-1") == 4 and names.count("car-2") == 4
    assert "car-3" not in names  # not plugged in yet
    assert all(c[2] == "optimizer.mpc" for c in sink.calls)

    # the re-plan on the anchored model equals a fresh plan of the remaining window
    assert mpc.planner is not None and mpc.anchor is not None
    now = clock.now  # the last planned step (no sleep after it)
    k = int((now - mpc.anchor) / pd.Timedelta(minutes=15))
    assert k == 3
    rest = full.replace(
        series=full.series[(full.series.index >= now) & (full.series.index < mpc.anchor + HORIZON)]
    )
    fresh = Planner(params_from_scenario(with_measurements(rest, measured, now))).solve()
    assert mpc.last_plan is not None
    assert mpc.last_plan.objective_eur == pytest.approx(fresh.objective_eur, rel=1e-6, abs=1e-6)
    # the plan kept for reporting starts now and matches its scenario
    assert mpc.last_scenario is not None and mpc.last_scenario.start == now
    assert len(mpc.last_plan.flows) == len(mpc.last_scenario.series) == len(fresh.flows)
    assert mpc.last_plan.flows.index[0] == now
    # and the first setpoints are the fresh plan's first step
    row = fresh.flows.iloc[0]
    assert status.last_setpoints_w["battery"] == pytest.approx(
        1000 * (row["battery_charge_kw"] - row["battery_discharge_kw"]), abs=1.0
    )


async def test_measured_full_battery_is_not_charged(full: Scenario) -> None:
    start = full.start + pd.Timedelta(hours=12)  # sunny noon
    sink = RecordingSink()

    async def measure() -> dict[str, float]:
        return {"battery": 95.0}  # at soc_max_pct

    mpc = MPCController(lambda now: window(full, now), measure, sink, clock=lambda: start)
    setpoints = await mpc.step()
    assert setpoints["battery"] <= 0.0


async def test_failure_falls_back_to_safe_defaults_and_is_visible(
    full: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    start = full.start + pd.Timedelta(hours=10)
    sink = RecordingSink()
    broken = {"on": True}

    async def measure() -> dict[str, float]:
        if broken["on"]:
            raise TimeoutError("battery SoC register did not answer")
        return {"battery": 50.0, "car-1": 50.0, "car-2": 60.0}

    mpc = MPCController(lambda now: window(full, now), measure, sink, clock=lambda: start)
    with caplog.at_level(logging.ERROR, logger="optimizer.mpc"):
        sent = await mpc.step()
    assert mpc.status.last_ok is False and mpc.status.fallback_active
    assert "battery SoC register did not answer" in (mpc.status.last_error or "")
    assert "fall back to safe defaults" in caplog.text
    assert sent["battery"] == 0.0 and sent["car-1"] == 11000.0 and sent["car-3"] == 7400.0
    assert all(c[2] == "optimizer.mpc:fallback" for c in sink.calls)
    broken["on"] = False
    await mpc.step()
    assert mpc.status.last_ok and not mpc.status.fallback_active and mpc.status.failures == 1


async def test_broken_input_falls_back(full: Scenario) -> None:
    """Only a genuinely broken scenario (here: a battery floor no charging can reach) falls
    back to the safe defaults; a grid limit nothing can hold is a priced breach instead."""
    start = full.start + pd.Timedelta(hours=10)
    sink = RecordingSink()

    def scenario_at(now: pd.Timestamp) -> Scenario:
        sc = window(full, now)
        assert sc.battery is not None
        battery = dataclasses.replace(sc.battery, max_charge_kw=0.1, soc_final_min_pct=95.0)
        return sc.replace(battery=battery)

    async def measure() -> dict[str, float]:
        return {"battery": 10.0}

    mpc = MPCController(scenario_at, measure, sink, clock=lambda: start)
    await mpc.step()
    assert mpc.status.last_ok is False
    assert "InfeasibleScenarioError" in (mpc.status.last_error or "")
    assert "cannot reach its final SoC" in (mpc.status.last_error or "")
    assert ("battery", 0.0, "optimizer.mpc:fallback") in sink.calls


async def test_a_grid_limit_nothing_can_hold_keeps_control(full: Scenario) -> None:
    start = full.start + pd.Timedelta(hours=10)
    sink = RecordingSink()

    def scenario_at(now: pd.Timestamp) -> Scenario:
        sc = window(full, now)
        return sc.replace(series=sc.series.assign(grid_import_limit_kw=0.1, pv_kw=0.0))

    async def measure() -> dict[str, float]:
        return {"battery": 10.0}

    mpc = MPCController(scenario_at, measure, sink, clock=lambda: start)
    await mpc.step()
    assert mpc.status.last_ok is True and not mpc.status.fallback_active
    assert mpc.last_plan is not None and mpc.last_plan.breaches
    assert "exceeds the grid import limit" in mpc.last_plan.breaches[0].sentence()
    assert {c[2] for c in sink.calls} == {"optimizer.mpc"}


class ReleasingSink(RecordingSink):
    """Like the gateway's SafeWriter: can hand control back to the device."""

    def __init__(self) -> None:
        super().__init__()
        self.released: list[tuple[str, str]] = []

    async def release(self, asset_name: str, requested_by: str) -> None:
        if asset_name == "car-3":
            raise RuntimeError("charger-3 does not answer")
        self.released.append((asset_name, requested_by))


async def test_failure_releases_devices_to_their_own_safe_default(full: Scenario, caplog) -> None:
    start = full.start + pd.Timedelta(hours=10)
    sink = ReleasingSink()

    async def measure() -> dict[str, float]:
        raise TimeoutError("no SoC")

    mpc = MPCController(
        lambda now: window(full, now),
        measure,
        sink,
        clock=lambda: start,
        safe_default_w={"car-4": 3000.0},
    )
    with caplog.at_level(logging.ERROR, logger="optimizer.mpc"):
        sent = await mpc.step()
    assert ("battery", "optimizer.mpc:fallback") in sink.released
    assert ("car-1", "optimizer.mpc:fallback") in sink.released
    assert sent == {"car-4": 3000.0}  # an explicit default is sent as a setpoint
    assert (
        "car-3" not in mpc.status.released and "safe default for car-3 was refused" in caplog.text
    )
