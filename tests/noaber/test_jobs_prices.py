"""The scheduler's day-ahead fetch (both backends): tomorrow's prices are due from 13:00 local,
one job per day and local hour while the day is incomplete in the store, none once stored;
the ``prices_fetch`` task stores a recorded ENTSO-E answer once, audited, and a day not yet
published fails the job with ENTSO-E's answer."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from energy import jobs as jobstore
from energy.jobs import Job
from energy.models import AuditEntry
from energy.prices import NoPricesPublished, read_prices, store_prices
from energy.settings import Settings
from noaber.services.jobs import tasks
from noaber.services.jobs.queue import JobContext
from noaber.services.jobs.schedule import due_jobs, tick
from tests.energy.test_prices_fetch import TOKEN, Recorded, _session

SERIES = "entsoe-nl-day-ahead"
TZ = "Europe/Amsterdam"


def _settings(tmp_path: Path, token: str | None = TOKEN) -> Settings:
    return Settings(
        mode="test",
        secret_key="s" * 40,
        data_dir=tmp_path / "data",
        entsoe_token=SecretStr(token) if token else None,
    )


def _local(text: str) -> dt.datetime:
    return pd.Timestamp(text, tz=TZ).tz_convert("UTC").to_pydatetime()


def _store_day(sessions, day: str, isps: int = 96) -> None:
    index = pd.date_range(pd.Timestamp(day, tz=TZ), periods=isps, freq="15min").tz_convert("UTC")
    with sessions.begin() as s:
        store_prices(s, SERIES, pd.Series([Decimal("0.1")] * isps, index=index))


def _fetches(sessions) -> list[str]:
    with sessions() as s:
        return sorted(s.scalars(select(Job.key).where(Job.kind == "prices_fetch")))


def test_tomorrow_is_due_from_one_oclock_each_hour_until_stored(sessions, tmp_path) -> None:
    settings = _settings(tmp_path)
    with sessions() as s:  # without a token the scheduler fetches nothing
        assert [
            d
            for d in due_jobs(s, _settings(tmp_path, None), _local("2026-12-02 14:00"))
            if d.kind == "prices_fetch"
        ] == []
    _store_day(sessions, "2026-12-02", 95)  # today lacks its last ISP
    tick(sessions, settings, _local("2026-12-02 10:00"))
    assert _fetches(sessions) == ["prices:NL:2026-12-02:10"]
    _store_day(sessions, "2026-12-02")
    tick(sessions, settings, _local("2026-12-02 12:59"))  # today complete, tomorrow too early
    tick(sessions, settings, _local("2026-12-02 13:00"))
    tick(sessions, settings, _local("2026-12-02 13:40"))  # same hour: the same job
    tick(sessions, settings, _local("2026-12-02 14:05"))  # not stored yet: tried again
    assert _fetches(sessions) == [
        "prices:NL:2026-12-02:10",
        "prices:NL:2026-12-03:13",
        "prices:NL:2026-12-03:14",
    ]
    _store_day(sessions, "2026-12-03")
    assert tick(sessions, settings, _local("2026-12-02 15:00")) == []
    # the 25-hour day of 25 October 2026 needs all 100 ISPs
    _store_day(sessions, "2026-10-25", 96)
    with sessions() as s:
        due = [d.key for d in due_jobs(s, settings, _local("2026-10-24 13:00"))]
    assert "prices:NL:2026-10-25:13" in due


def _run(sessions, settings, key: str, day: str) -> tuple[int, dict | None]:
    with sessions() as s, s.begin():
        job_id = jobstore.submit(
            s, "prices_fetch", key, {"zone": "NL", "day": day, "series": SERIES}, "cli:scheduler"
        ).job.id
    with sessions() as s:
        job = jobstore.claim(s, job_id, "w1", 60)
        assert job is not None
        args = dict(job.args)
    return job_id, tasks.prices_fetch(JobContext(settings, sessions, job_id, "w1", 1), args)


def test_the_task_stores_a_recorded_day_once_and_audits_it(sessions, tmp_path, monkeypatch) -> None:
    adapter = Recorded()
    monkeypatch.setattr(tasks, "http_session", lambda: _session(adapter))
    settings = _settings(tmp_path)
    job_id, out = _run(sessions, settings, "prices:NL:2026-12-03:13", "2026-12-03")
    assert out is not None and (out["isps"], out["new"], out["unchanged"]) == (96, 96, 0)
    assert [r["periodStart"] for r in adapter.requests] == ["202612022300"]
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == "done" and job.result == out
        start = pd.Timestamp("2026-12-03", tz=TZ).tz_convert("UTC")
        stored = read_prices(s, SERIES, start, start + pd.Timedelta(hours=24))
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "tariff.fetch")).all()
    assert len(stored) == 96
    assert [(e.actor, e.target, e.detail["new"]) for e in entries] == [("scheduler", SERIES, 96)]
    assert TOKEN not in repr([e.detail for e in entries]) and TOKEN not in repr(out)
    # the scheduler, asked again that hour or the next, sees the day stored: no new job
    with sessions() as s:
        assert not [
            d
            for d in due_jobs(s, settings, _local("2026-12-02 15:00"))
            if d.kind == "prices_fetch" and "2026-12-03" in d.key
        ]
    # a second attempt (a retried message) stores nothing twice
    _, again = _run(sessions, settings, "prices:NL:2026-12-03:15", "2026-12-03")
    assert again is not None and (again["new"], again["unchanged"]) == (0, 96)


def test_a_day_not_yet_published_fails_the_job_with_entsoes_answer(
    sessions, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(tasks, "http_session", lambda: _session(Recorded()))
    with pytest.raises(NoPricesPublished, match="No matching data"):
        _run(sessions, _settings(tmp_path), "prices:NL:2026-12-04:13", "2026-12-04")
    with sessions() as s:
        assert read_prices(s, SERIES).empty
