"""The job queue engine: Dramatiq on Redis, carrying only job row ids.

Why Dramatiq (see docs/ARCHITECTURE.md, "Long work on the job queue"): a message is
acknowledged only after its actor returns, so a worker killed mid-job leaves its message
unacknowledged and the broker hands it to another worker once the dead one's heartbeat is
``job_heartbeat_timeout_s`` old; retries with exponential backoff and a dead-letter queue
(``<namespace>:jobs.XQ``) are built in; and it runs on the Redis the deployment already has
for login throttling (no second broker). The state a user sees is the ``jobs`` table
(:mod:`energy.jobs`), not Dramatiq's: a duplicate or re-delivered message claims nothing
there, so each job has exactly one result.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import compute_backoff
from dramatiq.middleware import CurrentMessage, Middleware, default_middleware
from sqlalchemy.orm import Session, sessionmaker

from energy import jobs as jobstore
from energy.clock import utc_now
from energy.errors import NoaberError
from energy.settings import Settings

log = logging.getLogger("noaber.jobs")

#: The Dramatiq queue of every job (one queue; the job kind is in the row).
QUEUE = "jobs"
ACTOR = "noaber_run_job"
#: Errors that no retry mends (bad input, unknown names, a plan the solver refuses): the job
#: fails at once and its message goes to the dead-letter queue. Everything else (a database
#: or broker that is away, a full disk) is retried with backoff.
PERMANENT: tuple[type[BaseException], ...] = (NoaberError, ValueError, LookupError, TypeError)


class LeaseLost(Exception):
    """Another worker took the job over (this attempt's lease ran out): drop this attempt."""


@dataclass
class JobContext:
    """What a task gets: settings, sessions, its job and how to finish it."""

    settings: Settings
    sessions: sessionmaker[Session]
    job_id: int
    worker: str
    attempt: int
    queue: JobQueue | None = None
    finished: bool = False

    def finish(self, session: Session, result: dict[str, Any]) -> None:
        """Mark the job done in ``session``'s transaction (commit it with the job's writes).

        Raises
        ------
        LeaseLost
            If another worker took the job over: the caller's transaction must roll back.
        """
        if not jobstore.finish(session, self.job_id, self.worker, result):
            raise LeaseLost(f"job {self.job_id} was taken over by another worker")
        self.finished = True


#: kind -> task(context, args) -> result. A task that writes calls ``ctx.finish`` in its own
#: transaction; otherwise the runner marks the job done with the returned result.
Task = Callable[[JobContext, dict[str, Any]], dict[str, Any]]


def worker_name() -> str:
    """This process as a worker: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Lease:
    """Renews a running job's lease every third of it while the task runs."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, worker: str, lease_s: float):
        self.sessions, self.job_id, self.worker, self.lease_s = sessions, job_id, worker, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self.sessions() as s:
                    if not jobstore.renew_lease(s, self.job_id, self.worker, self.lease_s):
                        return
            except Exception:  # the database away for a moment: try again next time
                log.warning("job %s: lease not renewed", self.job_id, exc_info=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Observer(Middleware):
    """Counts dead letters (a message the broker moved to the dead-letter queue)."""

    def __init__(self, queue: JobQueue):
        self.queue = queue

    def after_nack(self, broker: Any, message: Any) -> None:
        from noaber.services import metrics

        metrics.DEAD_LETTERS.inc()
        log.error("job message %s dead-lettered", message.message_id)


class JobQueue:
    """The broker, the one actor and the runner of jobs.

    Parameters
    ----------
    settings : Settings
        ``queue_url`` (required), ``queue_namespace`` and the ``job_*`` tuning.
    sessions : sessionmaker
        The database of the ``jobs`` table.
    tasks : dict, optional
        kind -> task; default :data:`noaber.services.jobs.tasks.TASKS`.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        tasks: dict[str, Task] | None = None,
    ) -> None:
        if not settings.queue_url:
            raise NoaberError("no job queue: set NOABER_QUEUE_URL (redis://host:6379/1)")
        from noaber.services.jobs.tasks import TASKS

        self.settings = settings
        self.sessions = sessions
        self.tasks = dict(TASKS if tasks is None else tasks)
        self.worker = worker_name()
        middleware = [m() for m in default_middleware] + [CurrentMessage(), _Observer(self)]
        self.broker = RedisBroker(
            url=settings.queue_url,
            namespace=settings.queue_namespace,
            heartbeat_timeout=int(settings.job_heartbeat_timeout_s * 1000),
            maintenance_chance=settings.job_maintenance_chance,
            middleware=middleware,
        )
        self.actor = dramatiq.actor(
            broker=self.broker,
            actor_name=ACTOR,
            queue_name=QUEUE,
            max_retries=settings.job_max_retries,
            min_backoff=int(settings.job_min_backoff_s * 1000),
            max_backoff=int(settings.job_max_backoff_s * 1000),
            time_limit=int(settings.job_time_limit_s * 1000),
            throws=PERMANENT,
        )(self._run)

    # ------------------------------------------------------------------ sending

    def publish(self, job_ids: list[int]) -> int:
        """Hand the jobs' messages to the broker and record it; returns how many were sent.

        A job is sent after its row is committed (a worker must find it). A job that could
        not be sent stays ``queued`` without ``published_at``: the scheduler re-sends it.
        """
        sent = 0
        for job_id in job_ids:
            self.actor.send(job_id)
            with self.sessions() as s:
                jobstore.mark_published(s, job_id)
                s.commit()
            sent += 1
        return sent

    def resend_stale(self, stale_s: float = 600.0) -> int:
        """Re-send queued jobs that never reached the broker or that it lost (see
        :func:`energy.jobs.to_resend`); a duplicate message claims nothing."""
        with self.sessions() as s:
            ids = [j.id for j in jobstore.to_resend(s, stale_s)]
        return self.publish(ids)

    # ------------------------------------------------------------------ the broker

    def depth(self) -> dict[str, int]:
        """Messages waiting (``queued``), waiting for a retry (``delayed``) and dead-lettered."""
        ns = self.settings.queue_namespace
        client = self.broker.client
        return {
            "queued": int(client.hlen(f"{ns}:{QUEUE}.msgs")),
            "delayed": int(client.hlen(f"{ns}:{QUEUE}.DQ.msgs")),
            "dead": int(client.zcard(f"{ns}:{QUEUE}.XQ")),
        }

    def workers_alive(self) -> int:
        """Workers whose broker heartbeat is younger than the heartbeat timeout."""
        now_ms = int(time.time() * 1000)
        since = now_ms - int(self.settings.job_heartbeat_timeout_s * 1000)
        key = f"{self.settings.queue_namespace}:__heartbeats__"
        return int(self.broker.client.zcount(key, since, "+inf"))

    def ping(self) -> bool:
        """The broker answers."""
        return bool(self.broker.client.ping())

    def close(self) -> None:
        self.broker.close()

    # ------------------------------------------------------------------ running

    def _run(self, job_id: int) -> None:
        """The actor: claim the job, run its task once, record the outcome."""
        message = CurrentMessage.get_current_message()
        retries = int(message.options.get("retries", 0)) if message is not None else 0
        with self.sessions() as s:
            job = jobstore.claim(s, job_id, self.worker, self.settings.job_lease_s)
            if job is None:
                log.info("job %s: nothing to do (finished, running elsewhere or unknown)", job_id)
                return
            kind, args, attempt = job.kind, dict(job.args or {}), job.attempts
        task = self.tasks.get(kind)
        ctx = JobContext(self.settings, self.sessions, job_id, self.worker, attempt, self)
        from noaber.services import metrics

        t0 = time.perf_counter()
        log.info("job %s (%s) attempt %s started", job_id, kind, attempt)
        try:
            if task is None:
                raise NoaberError(f"no task for job kind {kind!r}")
            with _Lease(self.sessions, job_id, self.worker, self.settings.job_lease_s):
                result = task(ctx, args)
                if not ctx.finished:
                    with self.sessions() as s, s.begin():
                        ctx.finish(s, result)
        except LeaseLost as exc:
            log.warning("job %s: %s; this attempt dropped", job_id, exc)
            return
        except BaseException as exc:
            elapsed = time.perf_counter() - t0
            permanent = isinstance(exc, PERMANENT)
            will_retry = not permanent and retries < self.settings.job_max_retries
            delay_ms = 0
            if will_retry:
                _, delay_ms = compute_backoff(
                    retries,
                    factor=int(self.settings.job_min_backoff_s * 1000),
                    max_backoff=int(self.settings.job_max_backoff_s * 1000),
                )
            retry_at = utc_now() + dt.timedelta(milliseconds=delay_ms) if will_retry else None
            error = f"{type(exc).__name__}: {exc}"
            with self.sessions() as s:
                jobstore.fail(s, job_id, self.worker, error, retry_at)
            metrics.JOB_DURATION.labels(kind, "retry" if will_retry else "failed").observe(elapsed)
            if kind in ("replan", "nightly") and not will_retry:
                metrics.PLAN_FAILURES.labels(kind).inc()
            log.warning(
                "job %s (%s) attempt %s failed (%s): %s",
                job_id,
                kind,
                attempt,
                f"retry in {delay_ms / 1000:.1f} s" if will_retry else "for good",
                error,
            )
            if will_retry:
                raise dramatiq.Retry(error, delay=delay_ms) from exc
            raise
        metrics.JOB_DURATION.labels(kind, "done").observe(time.perf_counter() - t0)
        log.info("job %s (%s) done in %.2f s", job_id, kind, time.perf_counter() - t0)


def run_worker(
    queue: JobQueue,
    threads: int,
    stop: threading.Event,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Consume jobs with ``threads`` worker threads until ``stop`` is set, then finish the
    running jobs (up to the worker timeout) and stop."""
    worker = dramatiq.Worker(queue.broker, queues={QUEUE}, worker_threads=threads)
    worker.start()
    try:
        if on_ready is not None:
            on_ready()
        while not stop.wait(0.5):
            pass
    finally:
        worker.stop(timeout=int(queue.settings.job_lease_s * 1000))
