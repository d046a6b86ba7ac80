"""The optimizer's demo step: today's schedule of the demo site, stored and shown to its users."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from energy.settings import Settings
from noaber.services.demo import build_demo
from noaber.services.demo.optimizer import DEMO_SITE, demo_step
from optimizer.store import latest_schedule, schedule_steps


@pytest.mark.slow
def test_demo_step_stores_todays_schedule(tmp_path: Path) -> None:
    now = dt.datetime(2026, 6, 20, 10, tzinfo=dt.UTC)
    ctx = build_demo(
        tmp_path / "demo",
        Settings(mode="local"),
        extra_steps=[("optimizer", demo_step)],
        now=now,
        sample_period_s=900,
    )
    with ctx.sessions() as s:
        sched = latest_schedule(s, DEMO_SITE)
        assert sched is not None
        assert sched.start == ctx.end
        steps = schedule_steps(s, sched.id)
    summary = sched.summary
    assert (
        summary["savings_eur"]["no_control"] >= 0
        and summary["savings_eur"]["self_consumption"] >= 0
    )
    deps = summary["kpis"]["optimized"]["departures"]
    assert {d["ev"] for d in deps} == {"ev-anna", "ev-jan", "ev-fatima"} and all(
        d["met"] for d in deps
    )
    assert set(steps[steps.kind == "ev"].owner_ref) == {"m-ev-anna", "m-ev-jan", "m-ev-fatima"}
    assert any(n.startswith("optimizer: schedule") for n in ctx.notes)
