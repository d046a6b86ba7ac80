"""The jobs table and the scheduler (both backends): idempotent keys, one claim per attempt,
a lease taken over after a worker died, and exactly one re-plan job per site per 15 minutes
under an injected clock, however often (and by how many schedulers) it ticks."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from energy import jobs as jobstore
from energy.errors import NoaberError
from energy.jobs import Job
from energy.settings import Settings
from noaber.services.jobs.schedule import due_jobs, tick
from tests.noaber.api_world import build_world

T0 = dt.datetime(2026, 3, 28, 22, 50, tzinfo=dt.UTC)  # the night the clocks go forward


def test_submit_is_idempotent_and_reruns_only_finished_jobs(sessions) -> None:
    with sessions() as s, s.begin():
        a = jobstore.submit(s, "settle", "settle:c:2026-11", {"period": "2026-11"}, "cli:t")
        b = jobstore.submit(s, "settle", "settle:c:2026-11", {"period": "2026-11"}, "cli:t")
        assert a.created and not b.created and a.job.id == b.job.id
        again = jobstore.submit(s, "settle", "settle:c:2026-11", {}, "cli:t", rerun=True)
        assert not again.created  # queued: never re-armed
        with pytest.raises(NoaberError, match="belongs to a settle job"):
            jobstore.submit(s, "replan", "settle:c:2026-11", {}, "cli:t")
        with pytest.raises(NoaberError, match="unknown job kind"):
            jobstore.submit(s, "mine-bitcoin", "x", {}, "cli:t")
        job_id = a.job.id
    with sessions() as s:
        claimed = jobstore.claim(s, job_id, "w1", 60)
        assert claimed is not None and claimed.state == "running" and claimed.attempts == 1
        assert jobstore.claim(s, job_id, "w2", 60) is None  # runs elsewhere: a duplicate
        assert jobstore.finish(s, job_id, "w1", {"run_id": 7})
        s.commit()
    with sessions() as s:
        assert jobstore.claim(s, job_id, "w2", 60) is None  # done: nothing to do
        rerun = jobstore.submit(s, "settle", "settle:c:2026-11", {}, "api:oper", rerun=True)
        assert rerun.created and rerun.job.state == "queued" and rerun.job.attempts == 0
        s.commit()
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1


def test_a_dead_workers_lease_is_taken_over_and_its_late_finish_refused(sessions) -> None:
    with sessions() as s, s.begin():
        job_id = jobstore.submit(s, "replan", "replan:x:1", {}, "cli:t").job.id
    t = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
    with sessions() as s:
        assert jobstore.claim(s, job_id, "w1", 30, now=t) is not None
        # w1 dies; its lease runs out 30 s later and w2 takes the job over
        assert jobstore.claim(s, job_id, "w2", 30, now=t + dt.timedelta(seconds=29)) is None
        taken = jobstore.claim(s, job_id, "w2", 30, now=t + dt.timedelta(seconds=31))
        assert taken is not None and taken.attempts == 2 and taken.worker == "w2"
        assert not jobstore.finish(s, job_id, "w1", {"late": True})  # w1 was only slow
        assert jobstore.finish(s, job_id, "w2", {"ok": True})
        s.commit()
        job = s.get(Job, job_id, populate_existing=True)
        assert job is not None and job.state == "done" and job.result == {"ok": True}


def test_a_failed_attempt_waits_for_its_backoff(sessions) -> None:
    t = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
    with sessions() as s, s.begin():
        job_id = jobstore.submit(s, "replan", "replan:x:2", {}, "cli:t").job.id
    with sessions() as s:
        jobstore.claim(s, job_id, "w1", 30, now=t)
        jobstore.fail(s, job_id, "w1", "OperationalError: gone", t + dt.timedelta(seconds=20))
        assert jobstore.claim(s, job_id, "w1", 30, now=t + dt.timedelta(seconds=10)) is None
        assert jobstore.to_resend(s, 600, now=t + dt.timedelta(seconds=10)) == []
        again = jobstore.claim(s, job_id, "w1", 30, now=t + dt.timedelta(seconds=21))
        assert again is not None and again.attempts == 2
        jobstore.fail(s, job_id, "w1", "ValidationError: bad", None)
        job = s.get(Job, job_id, populate_existing=True)
        assert job is not None and job.state == "failed" and job.error == "ValidationError: bad"


def _settings(tmp_path: Path) -> Settings:
    return Settings(mode="test", secret_key="s" * 40, data_dir=tmp_path / "data")


def test_schedule_makes_one_replan_per_plannable_site_per_15_minutes(
    sessions, tmp_path: Path
) -> None:
    with sessions() as s, s.begin():
        world = build_world(s)
    settings = _settings(tmp_path)
    with sessions() as s:
        plannable = sorted(d.args["site"] for d in due_jobs(s, settings, T0) if d.kind == "replan")
    # hall-a and hall-b have EVs; the factories have nothing to steer
    assert plannable == ["hall-a", "hall-b"]
    rng = random.Random(12)
    ticks, t = [], T0
    while t < T0 + dt.timedelta(hours=3):
        ticks.append(t)
        t += dt.timedelta(seconds=rng.randint(5, 400))
    for now in ticks:
        tick(sessions, settings, now)
        if rng.random() < 0.3:  # a second scheduler ticking the same instant
            tick(sessions, settings, now)
    # the slots, counted another way: whole 900 s periods since the epoch
    slots = sorted({int(now.timestamp()) // 900 * 900 for now in ticks})
    assert len(slots) == 13  # 22:45 ... 01:45 UTC: every slot of the 3 hours is touched
    with sessions() as s:
        rows = s.scalars(select(Job).where(Job.kind == "replan")).all()
    for site in plannable:
        starts = sorted(
            int(dt.datetime.fromisoformat(j.args["start"]).timestamp())
            for j in rows
            if j.args["site"] == site
        )
        assert starts == slots, site
        assert all(j.site_id == world.sites[site] for j in rows if j.args["site"] == site)
    assert len(rows) == 2 * len(slots)
    # the night of 28/29 March 2026 goes from 02:00 CET to 03:00 CEST: the local 22:00 of
    # the 28th is 21:00 UTC, so the nightly job of the 29th is due from the first tick
    with sessions() as s:
        nightly = s.scalars(select(Job).where(Job.kind == "nightly")).all()
    assert [j.key for j in nightly] == ["nightly:2026-03-29"]


def test_monthly_settlement_is_due_from_the_fifth_at_six(sessions, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings.communities_path.mkdir(parents=True)
    (settings.communities_path / "energie-a.yaml").write_text("name: energie-a\n")
    (settings.communities_path / "energie-b.yaml").write_text("name: energie-b\n")
    before = dt.datetime(2026, 12, 5, 4, 59, tzinfo=dt.UTC)  # 05:59 local
    assert tick(sessions, settings, before) == []
    at = dt.datetime(2026, 12, 5, 5, 0, tzinfo=dt.UTC)  # 06:00 local
    assert len(tick(sessions, settings, at)) == 2
    assert tick(sessions, settings, at + dt.timedelta(days=3)) == []  # same period: no new job
    with sessions() as s:
        keys = sorted(s.scalars(select(Job.key)))
    assert keys == ["settle:energie-a:2026-11", "settle:energie-b:2026-11"]


@pytest.mark.slow
def test_replan_job_plans_the_demo_site_once(demo_copy, tmp_path: Path) -> None:
    """A re-plan job on the demo: the schedule it stores is the site's latest, for the job's
    horizon start, and a second message for the finished job stores nothing."""
    import pandas as pd

    from energy.prices import store_prices
    from noaber.services.demo import DEMO_SITE
    from noaber.services.demo.optimizer import demo_prices
    from noaber.services.jobs.queue import JobContext
    from noaber.services.jobs.tasks import replan, replan_key
    from optimizer.store import Schedule, latest_schedule

    start = pd.Timestamp(demo_copy.end).tz_convert("UTC")
    index = pd.date_range(start, periods=96 + 8, freq="15min")
    prices = demo_prices(index)
    sessions = demo_copy.sessions
    with sessions() as s, s.begin():
        store_prices(s, "job-import", prices["import_price_eur_per_kwh"])
        store_prices(s, "job-export", prices["export_price_eur_per_kwh"])
        before = s.scalar(select(func.count()).select_from(Schedule))
        job_id = jobstore.submit(
            s,
            "replan",
            replan_key(DEMO_SITE, start),
            {"site": DEMO_SITE, "start": start.isoformat(), "horizon_hours": 24},
            "cli:test",
        ).job.id
    settings = demo_copy.settings.model_copy(update={"price_series": "job-import,job-export"})
    with sessions() as s:
        job = jobstore.claim(s, job_id, "w1", 60)
        assert job is not None
    out = replan(JobContext(settings, sessions, job_id, "w1", 1), dict(job.args))
    with sessions() as s:
        done = s.get(Job, job_id)
        assert done is not None and done.state == "done" and done.result == out
        latest = latest_schedule(s, DEMO_SITE)
        assert latest is not None and latest.id == out["schedule_id"]
        assert pd.Timestamp(latest.start) == start and out["status"] == latest.status
        assert s.scalar(select(func.count()).select_from(Schedule)) == before + 1
        assert jobstore.claim(s, job_id, "w2", 60) is None  # a duplicate message: nothing
        # planned within the safe writer's limits, as optimize run and control run plan
        from noaber.services.control import stored_writer_limits
        from optimizer.store import ScheduleStep

        bound = [w for w in stored_writer_limits(s, DEMO_SITE) if w.asset == "battery"]
        assert bound, "the demo battery has a writer limit"
        power = [
            abs(p)
            for p in s.scalars(
                select(ScheduleStep.power_kw).where(
                    ScheduleStep.schedule_id == latest.id, ScheduleStep.asset == "battery"
                )
            )
        ]
        assert (
            power and max(power) <= max(-bound[0].power_w_min, bound[0].power_w_max) / 1000 + 1e-6
        )
