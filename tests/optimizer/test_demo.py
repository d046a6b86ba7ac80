"""The optimizer's demo step: today's schedule of the demo site, stored and shown to its users."""

from __future__ import annotations

from noaber.services.demo import DemoContext
from noaber.services.demo.optimizer import DEMO_SITE
from optimizer.store import latest_schedule, schedule_steps


def test_demo_step_stores_todays_schedule(demo: DemoContext) -> None:
    with demo.sessions() as s:
        sched = latest_schedule(s, DEMO_SITE)
        assert sched is not None
        assert sched.start == demo.end
        steps = schedule_steps(s, sched.id)
    summary = sched.summary
    assert (
        summary["savings_eur"]["no_control"] >= 0
        and summary["savings_eur"]["self_consumption"] >= 0
    )
    deps = summary["kpis"]["optimized"]["departures"]
    assert {d["ev"] for d in deps} == {"ev-1", "ev-2", "ev-3"} and all(d["met"] for d in deps)
    assert set(steps[steps.kind == "ev"].owner_ref) == {"m-4c1e7a", "m-9b2d05", "m-e83f61"}
    assert any(n.startswith("optimizer: schedule") for n in demo.notes)
