"""Long work through the job queue: enqueue a re-plan or a settlement run, read a job.

``POST /api/sites/{site_name}/replan`` (operator, or a manager of that site) and
``POST /api/communities/{community}/settlement-runs`` (operator) record a job under its
idempotent key (one per site and horizon start, per community and period), hand it to the
queue and answer ``202 Accepted`` with ``Location: /api/jobs/{id}``. Asking again while the
job is queued or running returns the same job; asking after it finished runs it again
under the same id (a settlement run posts only what changed). ``GET /api/jobs/{id}`` tells
queued/running/done/failed with the result or the error: an operator sees every job, a site
manager the jobs of their sites; anyone else's job is 404.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.clock import utc_now
from energy.jobs import Job
from energy.models import Community, Role, Site, User
from energy.settings import Settings
from noaber.api.access import site_for
from noaber.api.deps import IdPath, SessionDep, SettingsDep, not_found, require_roles

router = APIRouter(prefix="/api", tags=["jobs"])

Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]
Planner = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.SITE_MANAGER))]

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: int
    key: str
    kind: str
    state: str = Field(description="queued, running, done or failed")
    attempts: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    result: dict[str, Any] | None
    error: str | None


class SettlementRunIn(BaseModel):
    """A settlement run to enqueue."""

    period: str = Field(pattern=PERIOD.pattern, description="Month YYYY-MM (local time)")
    provisional: bool = Field(
        False,
        description="A preview: a pending run whose transfers count only once it is posted "
        "(POST /operator/runs/{id}/post); void it to discard",
    )


def _out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        key=job.key,
        kind=job.kind,
        state=job.state,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=job.result,
        error=job.error,
    )


def _queue(request: Request) -> Any:
    """The app's job queue (made on first use), or None without ``NOABER_QUEUE_URL``."""
    settings = request.app.state.settings
    if not settings.queue_url:
        return None
    queue = getattr(request.app.state, "job_queue", None)
    if queue is None:
        from noaber.services.jobs.queue import JobQueue

        queue = request.app.state.job_queue = JobQueue(settings, request.app.state.sessions)
    return queue


def _accepted(response: Response, job: Job) -> JobOut:
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return _out(job)


@router.post(
    "/sites/{site_name}/replan",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Re-plan a site now (the horizon from the current 15-minute ISP)",
)
def replan_site(
    site_name: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    user: Planner,
) -> JobOut:
    site = site_for(session, user, site_name)
    return _accepted(response, enqueue_replan(request, settings, user, site))


def enqueue_replan(request: Request, settings: Settings, user: User, site: Site) -> Job:
    """Record (and send) the re-plan job of ``site`` from the current 15-minute ISP; the same
    job while one is queued or running (the API route and the manager's page button)."""
    from energy.timegrid import floor_isp
    from noaber.services.jobs import submit_and_send
    from noaber.services.jobs.tasks import iso, replan_key

    start = floor_isp(pd.Timestamp(utc_now()))
    job, _ = submit_and_send(
        request.app.state.sessions,
        settings,
        _queue(request),
        "replan",
        replan_key(site.name, start),
        {"site": site.name, "start": iso(start), "horizon_hours": settings.replan_horizon_hours},
        f"api:{user.username}",
        site_id=site.id,
    )
    return job


@router.post(
    "/communities/{community}/settlement-runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Settle a community's month (a final run; posts only what changed)",
)
def settlement_run(
    community: str,
    body: SettlementRunIn,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    user: Operator,
) -> JobOut:
    return _accepted(
        response,
        enqueue_settlement(
            request, session, settings, user, community, body.period, body.provisional
        ),
    )


def enqueue_settlement(
    request: Request,
    session: Session,
    settings: Settings,
    user: User,
    community: str,
    period: str,
    provisional: bool = False,
) -> Job:
    """Record (and send) the settlement job of ``community`` for ``period`` (YYYY-MM): a final
    run that posts only the difference with the ledger, so asking again after a change of
    the data corrects the period; with ``provisional``, a preview run to post or void after
    checking. 404 for an unknown community."""
    from noaber.services.jobs import submit_and_send
    from noaber.services.jobs.tasks import settle_key

    known = session.scalar(select(Community.id).where(Community.name == community))
    if known is None:
        raise not_found(f"community {community!r}")
    job, _ = submit_and_send(
        request.app.state.sessions,
        settings,
        _queue(request),
        "settle",
        settle_key(community, period, provisional),
        {"community": community, "period": period, "provisional": provisional},
        f"api:{user.username}",
        community=community,
    )
    return job


def job_for(session: Session, user: User, job_id: int) -> Job:
    """Job ``job_id`` if ``user`` may see it (an operator every job, a site manager those of
    their sites); 404 otherwise."""
    job = session.get(Job, job_id)
    if job is None:
        raise not_found(f"job {job_id}")
    if user.role is not Role.OPERATOR:
        allowed = {s.id for s in user.sites}
        if job.site_id is None or job.site_id not in allowed:
            raise not_found(f"job {job_id}")
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's state, result or error")
def get_job(job_id: IdPath, session: SessionDep, user: Planner) -> JobOut:
    return _out(job_for(session, user, job_id))
