"""The centre's refused samples, for operators: dead letters and quarantined samples.

``GET /gateways/dead-letters`` lists what the ingest refused (with the reason, see
:data:`energy.gateways.REASONS`); ``GET /gateways/quarantine`` the samples whose (channel, ts)
already held another value; ``POST /gateways/quarantine/{id}/accept`` makes the offered value
the stored one (an explicit correction: the raw sample is replaced and the channel's interval
readings recomputed), ``.../reject`` keeps the stored one. Both are audited
(``quarantine.accept`` / ``quarantine.reject``) with the operator's name. Operators only.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from energy.audit import Actor
from energy.db import session_factory
from energy.errors import NoaberError
from energy.gateways import REASONS, QuarantinedSample, dead_letters, open_quarantine
from energy.models import Role, User
from energy.rawstore import PgSampleStore, open_sample_store
from noaber.api.deps import SessionDep, SettingsDep, not_found, require_roles
from noaber.services.ingest import resolve_quarantine

router = APIRouter(prefix="/gateways", tags=["gateways"])

Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]


class DeadLetterOut(BaseModel):
    """One refused batch (or part of one): ``samples`` rows are ``[channel, ts_ns, value,
    quality]``."""

    id: int
    received_at: dt.datetime
    topic: str
    gateway: str
    batch_id: str | None
    reason: str
    detail: str
    samples: list[Any]


class QuarantinedOut(BaseModel):
    """A sample held apart: the stored and the offered value at (channel, ts)."""

    id: int
    received_at: dt.datetime
    gateway: str
    batch_id: str | None
    channel_id: int
    ts_ns: int
    stored_value: float | None
    value: float | None
    status: str
    resolved_at: dt.datetime | None
    resolved_by: str | None


def _q(q: QuarantinedSample) -> QuarantinedOut:
    return QuarantinedOut(
        id=q.id, received_at=q.received_at, gateway=q.gateway, batch_id=q.batch_id,
        channel_id=q.channel_id, ts_ns=q.ts_ns, stored_value=q.stored_value, value=q.value,
        status=q.status, resolved_at=q.resolved_at, resolved_by=q.resolved_by,
    )  # fmt: skip


@router.get("/dead-letters", response_model=list[DeadLetterOut])
def list_dead_letters(
    user: Operator,
    session: SessionDep,
    reason: Annotated[str | None, Query(description=", ".join(REASONS))] = None,
    gateway: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeadLetterOut]:
    """Dead letters, newest first (optionally of one reason or gateway)."""
    try:
        rows = dead_letters(session, reason=reason, gateway=gateway, limit=limit)
    except NoaberError as exc:
        raise HTTPException(422, str(exc)) from None
    return [
        DeadLetterOut(
            id=d.id,
            received_at=d.received_at,
            topic=d.topic,
            gateway=d.gateway,
            batch_id=d.batch_id,
            reason=d.reason,
            detail=d.detail,
            samples=d.samples or [],
        )
        for d in rows
    ]


@router.get("/quarantine", response_model=list[QuarantinedOut])
def list_quarantine(
    user: Operator,
    session: SessionDep,
    status: Annotated[str, Query(pattern="^(open|accepted|rejected|all)$")] = "open",
    channel_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[QuarantinedOut]:
    """Quarantined samples, newest first (``status=all``: resolved ones too)."""
    rows = open_quarantine(
        session, channel_id=channel_id, status=None if status == "all" else status, limit=limit
    )
    return [_q(q) for q in rows]


def _resolve(
    quarantine_id: int, accept: bool, user: User, session: SessionDep, settings: SettingsDep
) -> QuarantinedOut:
    engine = session.get_bind()
    store = open_sample_store(settings, engine)  # type: ignore[arg-type]
    try:
        q = resolve_quarantine(
            session_factory(engine),  # type: ignore[arg-type]
            store,
            quarantine_id,
            accept,
            Actor(user.username, "api"),
        )
    except NoaberError as exc:
        if "no quarantined sample" in str(exc):
            raise not_found(f"quarantined sample {quarantine_id}") from None
        raise HTTPException(409, str(exc)) from None
    finally:
        if isinstance(store, PgSampleStore) and store.engine is not engine:
            store.engine.dispose()
    return _q(q)


@router.post("/quarantine/{quarantine_id}/accept", response_model=QuarantinedOut)
def accept_quarantined(
    quarantine_id: int, user: Operator, session: SessionDep, settings: SettingsDep
) -> QuarantinedOut:
    """The offered value replaces the stored one (audited ``quarantine.accept``)."""
    return _resolve(quarantine_id, True, user, session, settings)


@router.post("/quarantine/{quarantine_id}/reject", response_model=QuarantinedOut)
def reject_quarantined(
    quarantine_id: int, user: Operator, session: SessionDep, settings: SettingsDep
) -> QuarantinedOut:
    """The stored value stays (audited ``quarantine.reject``)."""
    return _resolve(quarantine_id, False, user, session, settings)
