"""The ``jobs`` table: what long work was asked for, and where it stands.

A job is one piece of long work (a site's re-plan, the nightly batch, a community's monthly
settlement run, a period's statement PDFs). Its row is the truth the API reads
(``GET /api/jobs/{id}``); the queue engine (Dramatiq on Redis, :mod:`noaber.services.jobs`)
only carries a message naming the row.

- **Idempotent ids.** ``key`` is unique: one job per site and horizon start
  (``replan:<site>:<start>``), per community and period (``settle:<community>:<period>``).
  :func:`submit` of a key that exists returns the existing job (``created=False``); it
  re-arms a finished one only when asked (``rerun=True``: an operator's "run again").
- **States.** ``queued`` (waiting, or waiting for a retry after ``error``), ``running``
  (claimed by a worker, whose lease runs to ``lease_until``), ``done`` (``result``) or
  ``failed`` (``error``; the message went to the dead-letter queue).
- **Exactly one result.** A worker claims a job with :func:`claim` (a conditional UPDATE:
  queued, or running with an expired lease because its worker died); a second message for a
  job that runs or is finished claims nothing. :func:`finish` may run in the same
  transaction as the job's own writes, so the result and "done" commit together.

All times are UTC (:class:`energy.db.UTCDateTime`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.clock import utc_now
from energy.db import Base, UTCDateTime
from energy.errors import NoaberError

#: The states of a job, in the order a job goes through them.
STATES = ("queued", "running", "done", "failed")
#: The kinds of job (the worker's task of each is in :data:`noaber.services.jobs.TASKS`).
KINDS = ("replan", "nightly", "settle", "statements_pdf", "prices_fetch")
#: The longest job key.
KEY_MAX = 200


class Job(Base):
    """One piece of long work: its idempotency key, arguments, state and outcome."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state_known"),
        CheckConstraint("attempts >= 0", name="attempts_nonneg"),
        Index("ix_jobs_state_created", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The site the job works on (who may see it: its managers and the operators).
    site_id: Mapped[int | None] = mapped_column(
        ForeignKey("sites.id", ondelete="SET NULL"), index=True
    )
    community: Mapped[str | None] = mapped_column(String(100))
    requested_by: Mapped[str] = mapped_column(String(100))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    #: When the message was last handed to the broker (None: not yet: the scheduler re-sends).
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: A retry waits until then (the backoff), so a re-send does not run it early.
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: The worker of the current or last attempt (host:pid).
    worker: Mapped[str | None] = mapped_column(String(100))

    @property
    def duration_s(self) -> float | None:
        """Wall time of the last attempt [s], once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Submitted:
    """What :func:`submit` did: the job, and whether this call created (or re-armed) it."""

    job: Job
    created: bool


def _check(kind: str, key: str) -> None:
    if kind not in KINDS:
        raise NoaberError(f"unknown job kind {kind!r}; known: {', '.join(KINDS)}")
    if not key or len(key) > KEY_MAX:
        raise NoaberError(f"a job key has 1 to {KEY_MAX} characters, got {len(key)}: {key[:40]!r}")


def submit(
    session: Session,
    kind: str,
    key: str,
    args: dict[str, Any],
    requested_by: str,
    *,
    site_id: int | None = None,
    community: str | None = None,
    rerun: bool = False,
    now: dt.datetime | None = None,
) -> Submitted:
    """The job of ``key``: created when new, else the existing one (the caller commits).

    With ``rerun=True`` a finished (done or failed) job is re-armed: queued again with its
    attempts counted from zero and its result kept until the new one replaces it. A job
    that is queued or running is never re-armed (the call returns it as it is). Two
    processes submitting the same key at once get one row (the unique key decides; the
    loser reads the winner's row).

    Raises
    ------
    NoaberError
        For an unknown kind or a key that is empty or too long.
    """
    _check(kind, key)
    existing = session.scalars(select(Job).where(Job.key == key)).one_or_none()
    if existing is None:
        job = Job(
            key=key,
            kind=kind,
            args=args,
            state="queued",
            attempts=0,
            site_id=site_id,
            community=community,
            requested_by=requested_by[:100],
            created_at=now or utc_now(),
        )
        try:
            with session.begin_nested():
                session.add(job)
        except IntegrityError:  # another process made it just now
            existing = session.scalars(select(Job).where(Job.key == key)).one()
        else:
            return Submitted(job, True)
    if existing.kind != kind:
        raise NoaberError(f"job key {key!r} belongs to a {existing.kind} job, not {kind}")
    if rerun and existing.state in ("done", "failed"):
        existing.state = "queued"
        existing.attempts = 0
        existing.error = None
        existing.published_at = None
        existing.not_before = None
        existing.lease_until = None
        existing.requested_by = requested_by[:100]
        return Submitted(existing, True)
    return Submitted(existing, False)


def mark_published(session: Session, job_id: int, now: dt.datetime | None = None) -> None:
    """Record that the job's message is with the broker (the caller commits)."""
    session.execute(update(Job).where(Job.id == job_id).values(published_at=now or utc_now()))


def claim(
    session: Session, job_id: int, worker: str, lease_s: float, now: dt.datetime | None = None
) -> Job | None:
    """Take the job for one attempt, or None when there is nothing to do.

    Claimed: a ``queued`` job whose backoff is over, or a ``running`` job whose lease ran out
    (its worker died mid-run: the broker gave its message back). Not claimed: a job that is
    done or failed, or that another worker runs (a duplicate message). One conditional
    UPDATE decides, so two workers never both claim; commits.
    """
    now = now or utc_now()
    res = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                (Job.state == "queued") & or_(Job.not_before.is_(None), Job.not_before <= now),
                (Job.state == "running") & (Job.lease_until < now),
            ),
        )
        .values(
            state="running",
            attempts=Job.attempts + 1,
            started_at=now,
            finished_at=None,
            lease_until=now + dt.timedelta(seconds=lease_s),
            worker=worker[:100],
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id, populate_existing=True)
    return job


def renew_lease(
    session: Session, job_id: int, worker: str, lease_s: float, now: dt.datetime | None = None
) -> bool:
    """Extend a running job's lease (its worker is alive); False if the job is no longer
    this worker's (commits)."""
    now = now or utc_now()
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "running", Job.worker == worker[:100])
        .values(lease_until=now + dt.timedelta(seconds=lease_s))
    )
    session.commit()
    return res.rowcount == 1  # type: ignore[attr-defined]


def finish(
    session: Session,
    job_id: int,
    worker: str,
    result: dict[str, Any],
    now: dt.datetime | None = None,
) -> bool:
    """Mark the job done with ``result`` if this worker still holds it (the caller commits,
    ideally in the transaction of the job's own writes). False: another worker took it over
    (this attempt's lease ran out), so the caller must roll back its writes."""
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "running", Job.worker == worker[:100])
        .values(
            state="done",
            result=result,
            error=None,
            finished_at=now or utc_now(),
            lease_until=None,
            not_before=None,
        )
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def fail(
    session: Session,
    job_id: int,
    worker: str,
    error: str,
    retry_at: dt.datetime | None,
    now: dt.datetime | None = None,
) -> None:
    """Record a failed attempt (commits): back to ``queued`` until ``retry_at`` when it will be
    retried, else ``failed`` for good."""
    now = now or utc_now()
    values: dict[str, Any] = {
        "error": error[:4000],
        "finished_at": now,
        "lease_until": None,
        "state": "queued" if retry_at is not None else "failed",
        "not_before": retry_at,
    }
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "running", Job.worker == worker[:100])
        .values(**values)
    )
    session.commit()


def to_resend(session: Session, stale_s: float, now: dt.datetime | None = None) -> list[Job]:
    """Queued jobs whose message may not be with the broker: never sent, or sent more than
    ``stale_s`` ago and not taken (a broker that lost it); a job in backoff is left alone
    until its retry time is ``stale_s`` past."""
    now = now or utc_now()
    cut = now - dt.timedelta(seconds=stale_s)
    return list(
        session.scalars(
            select(Job)
            .where(
                Job.state == "queued",
                or_(Job.published_at.is_(None), Job.published_at < cut),
                or_(Job.not_before.is_(None), Job.not_before < cut),
            )
            .order_by(Job.id)
        )
    )


def counts_by_state(session: Session) -> dict[tuple[str, str], int]:
    """Number of jobs per (kind, state)."""
    rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
    return {(k, s): int(n) for k, s, n in rows}
