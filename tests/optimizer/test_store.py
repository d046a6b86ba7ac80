"""Schedules in SQL (SQLite and PostgreSQL): stored, read back, latest per site."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from optimizer.model import plan
from optimizer.report import compare, schedule_long
from optimizer.scenario import load_scenario
from optimizer.store import get_schedule, latest_schedule, save_plan, schedule_steps
from tests.optimizer.helpers import DATA


def test_migration_creates_tables(engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {"optimizer_schedules", "optimizer_schedule_steps"} <= names


def test_plan_round_trips_through_the_store(sessions) -> None:
    sc = load_scenario(DATA / "negative_day.yaml")
    result = plan(sc)
    summary = compare(sc, result)
    with sessions() as s, s.begin():
        first = save_plan(s, sc, result, summary)
        second = save_plan(s, sc, result, summary)
    with sessions() as s:
        latest = latest_schedule(s, "negative-day")
        assert latest is not None and latest.id == second != first
        assert latest.summary["savings_eur"] == summary["savings_eur"]
        assert latest.start == sc.start.to_pydatetime() and latest.start.tzinfo is not None
        steps = schedule_steps(s, first)
        expected = schedule_long(result.flows)
        assert len(steps) == len(expected)
        car = steps[steps.asset == "car-1"]
        assert set(car.owner_ref) == {"m-000001"}
        assert car.power_kw.tolist() == pytest.approx(
            expected[expected.asset == "car-1"].power_kw.tolist()
        )
        assert steps[steps.asset == "grid"].soc_pct.isna().all()
        assert str(steps.ts.dt.tz) == "UTC"
        from energy.errors import NotFoundError

        with pytest.raises(NotFoundError):
            get_schedule(s, 99999)
