"""The job queue on this machine's real Redis (each test its own key namespace).

- A worker killed with SIGKILL mid-job: another worker takes the job over once the dead
  one's broker heartbeat and job lease ran out, and the settlement run is posted once: one
  run, the ledger reconciles and verifies, and the transfers are those a direct
  ``post_run`` of the same data makes on a second copy of the database.
- Retries with backoff for a transient error, no retry for a permanent one, and a job whose
  retries are exhausted ends in the dead-letter queue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from energy import jobs as jobstore
from energy.db import make_engine, session_factory, upgrade
from energy.errors import ValidationError
from energy.jobs import Job
from energy.settings import Settings
from tests.conftest import need
from tests.net import wait_until
from tests.noaber.api_world import build_world

REDIS_URL = os.environ.get("NOABER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]
COMMUNITY = """\
name: energie-world
display_name: World community
key:
  type: priority
  order: [m-hall-a, m-ev]
members:
  - ref: m-hall-a
    meters: [hall-a/pv/power, hall-a/building/power]
    assets: [pv, building]
  - ref: m-ev
    meters: [hall-a/ev-own/power]
    assets: [{kind: ev, efficiency: "0.92"}]
"""


def _redis():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        need(False, f"Redis is not reachable at {REDIS_URL}")
    return client


@pytest.fixture
def namespace():
    """A Redis key namespace of this test alone, deleted afterwards."""
    client = _redis()
    ns = f"noaber-test-{uuid.uuid4().hex[:10]}"
    yield ns
    keys = list(client.scan_iter(f"{ns}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _world_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine)() as s, s.begin():
        build_world(s)
    engine.dispose()
    return url


def _job(sessions, job_id: int) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


@pytest.mark.slow
def test_worker_killed_mid_job_is_retried_to_exactly_one_result(
    tmp_path: Path, namespace: str
) -> None:
    data_dir = tmp_path / "data"
    communities = tmp_path / "communities"
    communities.mkdir()
    (communities / "energie-world.yaml").write_text(COMMUNITY, encoding="utf-8")
    url = _world_db(tmp_path / "noaber.db")
    ref_url = _world_db(tmp_path / "reference.db")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOABER_MODE": "local",
        "NOABER_DATA_DIR": str(data_dir),
        "NOABER_DATABASE_URL": url,
        "NOABER_QUEUE_URL": REDIS_URL,
        "NOABER_QUEUE_NAMESPACE": namespace,
        "NOABER_COMMUNITIES_DIR": str(communities),
        "NOABER_JOB_LEASE_S": "2",
        "NOABER_JOB_HEARTBEAT_TIMEOUT_S": "2",
        "NOABER_JOB_MAINTENANCE_CHANCE": "1000000",
        "NOABER_JOB_MIN_BACKOFF_S": "0.2",
    }
    settings = Settings(
        mode="local",
        data_dir=data_dir,
        database_url=url,
        queue_url=REDIS_URL,
        queue_namespace=namespace,
        communities_dir=communities,
    )
    engine = make_engine(url)
    sessions = session_factory(engine)
    from noaber.services.jobs import submit_and_send
    from noaber.services.jobs.queue import JobQueue

    queue = JobQueue(settings, sessions)

    def start_worker(log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "noaber.cli", "worker", "--threads", "1"],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    first = start_worker(tmp_path / "worker-1.log")
    second = None
    try:
        wait_until(
            lambda: "ready" in (tmp_path / "worker-1.log").read_text(),
            "worker 1 ready",
            proc=first,
            timeout_s=60,
        )
        job, queued = submit_and_send(
            sessions,
            settings,
            queue,
            "settle",
            "settle:energie-world:2026-06",
            {"community": "energie-world", "period": "2026-06"},
            "cli:test",
            community="energie-world",
        )
        assert queued
        wait_until(
            lambda: _job(sessions, job.id).state != "queued",
            "worker 1 took the job",
            timeout_s=60,
            interval_s=0.01,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        at_kill = _job(sessions, job.id)
        assert at_kill.state == "running", f"the job was not mid-run: {at_kill.state}"
        second = start_worker(tmp_path / "worker-2.log")
        wait_until(
            lambda: _job(sessions, job.id).state in ("done", "failed"),
            "the job taken over and finished",
            proc=second,
            timeout_s=120,
        )
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    done = _job(sessions, job.id)
    logs = (tmp_path / "worker-2.log").read_text()
    assert done.state == "done", f"{done.error}\n{logs}"
    assert done.attempts == 2 and done.worker is not None and done.worker != at_kill.worker
    from settlement.audit import reconcile, verify
    from settlement.models import SettlementRun, Transfer

    with sessions() as s:
        runs = s.scalars(select(SettlementRun)).all()
        assert [(r.community, r.period, r.kind) for r in runs] == [
            ("energie-world", "2026-06", "settle")
        ]
        assert done.result is not None and done.result["run_id"] == runs[0].id
        n = s.scalar(select(func.count()).select_from(Transfer))
        assert reconcile(s, "energie-world", "2026-06").ok
        assert verify(s).ok
        pdf_jobs = s.scalars(select(Job).where(Job.kind == "statements_pdf")).all()
        assert len(pdf_jobs) == 1  # one follow-up, however many attempts
    # the reference: the same data posted directly, on a second database
    from settlement.community import load_community, read_meter_store
    from settlement.pricing import load_tariff
    from settlement.settle import period_isps, plan_energy, post_run

    ref_engine = make_engine(ref_url)
    ref = session_factory(ref_engine)
    community = load_community(communities / "energie-world.yaml")
    with ref() as s:
        data = read_meter_store(s, community, period_isps("2026-06"))
    expected = post_run(ref, plan_energy(community, "2026-06", data, load_tariff(None)))
    with ref() as s:
        ref_n = s.scalar(select(func.count()).select_from(Transfer))
    assert n == ref_n == expected.n_transfers == done.result["transfers"] > 0
    assert done.result["data_version"] == expected.data_version
    ref_engine.dispose()
    queue.close()
    engine.dispose()


def test_retries_with_backoff_and_dead_letters(tmp_path: Path, namespace: str) -> None:
    from noaber.services import metrics
    from noaber.services.jobs.queue import JobContext, JobQueue, run_worker

    url = f"sqlite:///{tmp_path / 'noaber.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    settings = Settings(
        mode="test",
        secret_key="s" * 40,
        data_dir=tmp_path,
        database_url=url,
        queue_url=REDIS_URL,
        queue_namespace=namespace,
        job_max_retries=2,
        job_min_backoff_s=0.3,
        job_max_backoff_s=2,
    )
    calls: dict[str, list[float]] = {"flaky": [], "bad": [], "down": []}

    def flaky(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        calls["flaky"].append(time.monotonic())
        if len(calls["flaky"]) < 3:
            raise ConnectionError("database away for a moment")
        return {"attempt": ctx.attempt}

    def bad(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        calls["bad"].append(time.monotonic())
        raise ValidationError("period 2026-13 is not a month")

    def down(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        calls["down"].append(time.monotonic())
        raise OSError("disk full")

    queue = JobQueue(settings, sessions, {"replan": flaky, "settle": bad, "nightly": down})
    dead_before = metrics.DEAD_LETTERS._value.get()
    with sessions() as s, s.begin():
        ids = [
            jobstore.submit(s, kind, f"{kind}:t", {}, "cli:test").job.id
            for kind in ("replan", "settle", "nightly")
        ]
        s.flush()
    queue.publish(ids)
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(queue, 2, stop), daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: all(_job(sessions, i).state in ("done", "failed") for i in ids),
            "every job finished",
            timeout_s=60,
        )
        wait_until(lambda: queue.depth()["dead"] == 2, "two dead letters", timeout_s=30)
    finally:
        stop.set()
        thread.join(timeout=60)
    flaky_job, bad_job, down_job = (_job(sessions, i) for i in ids)
    assert (flaky_job.state, flaky_job.attempts, flaky_job.result) == ("done", 3, {"attempt": 3})
    gaps = [b - a for a, b in zip(calls["flaky"], calls["flaky"][1:])]
    # backoff: min 0.3 s doubling, with jitter down to half of it (Dramatiq's compute_backoff)
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps
    assert (bad_job.state, bad_job.attempts) == ("failed", 1)  # permanent: no retry
    assert bad_job.error == "ValidationError: period 2026-13 is not a month"
    assert (down_job.state, down_job.attempts, len(calls["down"])) == ("failed", 3, 3)
    assert down_job.error == "OSError: disk full"
    assert queue.depth() == {"queued": 0, "delayed": 0, "dead": 2}
    assert metrics.DEAD_LETTERS._value.get() - dead_before == 2
    queue.close()
    engine.dispose()
