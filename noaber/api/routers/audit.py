"""The audit log of people's actions, for the operator only (newest first, filtered)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from energy.audit import entries, verify
from energy.models import Role, User
from noaber.api.deps import SessionDep, require_roles

router = APIRouter(prefix="/audit", tags=["audit"])

Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]


class AuditEntryOut(BaseModel):
    """One recorded action (``at`` in UTC)."""

    seq: int
    at: dt.datetime
    actor: str
    via: str
    action: str
    target: str
    detail: dict[str, Any]


class AuditLogOut(BaseModel):
    """Entries and whether the whole hash chain still verifies."""

    chain_ok: bool
    total: int
    entries: list[AuditEntryOut]


@router.get("", response_model=AuditLogOut)
def list_audit(
    _: Operator,
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=60, description="Or a prefix: 'user.'")] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[dt.datetime | None, Query(description="From (with offset)")] = None,
    until: Annotated[dt.datetime | None, Query(description="Before (with offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditLogOut:
    """Audit entries, newest first, with the hash chain's check."""
    utc = [
        None if t is None else t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (since, until)
    ]
    rows = entries(
        session, actor=actor, action=action, target=target, since=utc[0], until=utc[1], limit=limit
    )
    total, problems = verify(session)
    return AuditLogOut(
        chain_ok=not problems,
        total=total,
        entries=[
            AuditEntryOut(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                via=e.via,
                action=e.action,
                target=e.target,
                detail=e.detail,
            )
            for e in rows
        ],
    )
