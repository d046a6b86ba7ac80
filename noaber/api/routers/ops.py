"""Operations: liveness with the database (``/health``), readiness with the broker and the
queue (``/ready``) and Prometheus metrics (``/metrics``).

``/health`` and ``/ready`` are public (a load balancer or Docker healthcheck asks them
without a token) and say only ok or which part failed, never a URL or a secret. ``/metrics``
is on the API's own port for an operator's token or the scrape token
``NOABER_METRICS_TOKEN`` (Prometheus ``authorization: {credentials_file: ...}``): the
figures name sites and devices, so they are not public, and one port less to open and
firewall in a deployment; the worker processes, which have no HTTP server, serve their own
process metrics on ``noaber worker --metrics-port`` (loopback by default).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from energy.models import Role
from noaber.api.deps import SessionDep, SettingsDep, get_current_user, oauth2_scheme

router = APIRouter(tags=["operations"])


def _database_ok(request: Request) -> str | None:
    """None when the database answers a query, else what failed (no URL, no secret)."""
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"database: {type(exc).__name__}"
    return None


@router.get("/health", include_in_schema=False)
def health(request: Request) -> Response:
    """Liveness: the process answers and its database answers a query (503 otherwise)."""
    problem = _database_ok(request)
    if problem is not None:
        return JSONResponse({"status": "failing", "problem": problem}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/ready", include_in_schema=False)
def ready(request: Request) -> Response:
    """Readiness: the database, the job broker (a ping) and the queue (its depth and the
    workers whose heartbeat is fresh). Without ``NOABER_QUEUE_URL`` the queue counts as not
    configured: ready only outside production mode."""
    from noaber.api.routers.jobs import _queue

    settings = request.app.state.settings
    body: dict[str, Any] = {"database": "ok"}
    problems = []
    db = _database_ok(request)
    if db is not None:
        problems.append(db)
        body["database"] = "failing"
    try:
        queue = _queue(request)
        if queue is None:
            body["queue"] = "not configured"
            if settings.mode == "production":
                problems.append("queue: NOABER_QUEUE_URL not set")
        else:
            queue.ping()
            body["queue"] = {**queue.depth(), "workers": queue.workers_alive()}
    except Exception as exc:
        problems.append(f"queue: {type(exc).__name__}")
        body["queue"] = "failing"
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems, **body}, status_code=503)
    return JSONResponse({"status": "ready", **body})


def _may_scrape(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
) -> None:
    token = settings.metrics_token
    if token and bearer and hmac.compare_digest(bearer.encode(), token.encode()):
        return
    user = get_current_user(request, session, settings, bearer)
    if user.role is not Role.OPERATOR:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"role {user.role.value} may not use this route",
        )


@router.get("/metrics", dependencies=[Depends(_may_scrape)], summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    """Deployment gauges (jobs, queue depth, dead letters, failed plans, device health) and
    this process's metrics, in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

    from noaber.api.routers.jobs import _queue
    from noaber.services.metrics import REGISTRY, StateCollector, exposition

    state = CollectorRegistry()
    queue = None
    try:
        queue = _queue(request)
    except Exception:
        queue = None
    state.register(
        StateCollector(request.app.state.sessions, queue.depth if queue is not None else None)
    )
    return Response(exposition(state, REGISTRY), media_type=CONTENT_TYPE_LATEST)
