"""Long work on a job queue: re-plans, the nightly batch, settlement runs, statement PDFs.

- :mod:`energy.jobs`: the ``jobs`` table (idempotent keys, states, leases), what the API reads.
- :mod:`noaber.services.jobs.queue`: Dramatiq on Redis (the broker, the one actor, retries
  with backoff, the dead-letter queue) and the worker loop (``noaber worker``).
- :mod:`noaber.services.jobs.tasks`: what each kind of job does, idempotently.
- :mod:`noaber.services.jobs.schedule`: the periodic jobs (``noaber scheduler``).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from energy import jobs as jobstore
from energy.settings import Settings

log = logging.getLogger("noaber.jobs")


def submit_and_send(
    sessions: sessionmaker[Session],
    settings: Settings,
    queue: Any,
    kind: str,
    key: str,
    args: dict[str, Any],
    requested_by: str,
    *,
    site_id: int | None = None,
    community: str | None = None,
    rerun: bool = True,
) -> tuple[jobstore.Job, bool]:
    """Submit a job (committed first) and hand it to ``queue`` when it is new or re-armed.

    Returns the job (detached, its columns loaded) and whether this call queued it. When the
    broker cannot be reached the job stays queued and unsent, and the scheduler sends it
    (:meth:`JobQueue.resend_stale`); the caller still gets its id.
    """
    with sessions() as s, s.begin():
        sub = jobstore.submit(
            s, kind, key, args, requested_by, site_id=site_id, community=community, rerun=rerun
        )
        s.flush()
        job_id = sub.job.id
    if sub.created and queue is not None:
        try:
            queue.publish([job_id])
        except Exception:
            log.warning(
                "job %s recorded but not sent (broker away); the scheduler re-sends it",
                job_id,
                exc_info=True,
            )
    with sessions() as s:
        job = s.get(jobstore.Job, job_id)
        assert job is not None
        s.expunge(job)
    return job, sub.created
