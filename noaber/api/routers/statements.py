"""Settlement statements: a member sees only their own (HTML page, PDF, CSV); operator all."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.models import Role, User
from noaber.api.deps import IdPath, SessionDep, not_found, require_roles
from noaber.api.language import PageLang
from settlement.models import Statement
from settlement.proof import root_document, root_for
from settlement.statements import render_csv, render_html, render_json, render_pdf

router = APIRouter(prefix="/statements", tags=["statements"])

StatementReader = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.MEMBER))]


class StatementOut(BaseModel):
    """A statement in a list (figures: the HTML, PDF or CSV of the statement)."""

    id: int
    number: str
    member_ref: str
    community: str
    period: str
    kind: str
    corrects_id: int | None
    created_at: dt.datetime


def _own_ref(user: User) -> str | None:
    return None if user.role is Role.OPERATOR else (user.member.ref if user.member else "")


def _statement_for(session: Session, user: User, statement_id: int) -> Statement:
    st = session.get(Statement, statement_id)
    ref = _own_ref(user)
    if st is None or (ref is not None and st.member_ref != ref):
        raise not_found("statement")
    return st


@router.get("", response_model=list[StatementOut])
def list_statements(
    user: StatementReader,
    session: SessionDep,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> list[StatementOut]:
    """Statements the user may see (a member: their own), newest first."""
    q = select(Statement).order_by(Statement.id.desc())
    ref = _own_ref(user)
    if ref is not None:
        q = q.where(Statement.member_ref == ref)
    if period is not None:
        q = q.where(Statement.period == period)
    return [StatementOut.model_validate(s, from_attributes=True) for s in session.scalars(q)]


@router.get("/{statement_id}", response_class=HTMLResponse)
def statement_page(
    statement_id: IdPath, user: StatementReader, session: SessionDep, locale: PageLang
) -> HTMLResponse:
    """The statement as an HTML page."""
    st = _statement_for(session, user, statement_id)
    return HTMLResponse(render_html(session, st.id, locale))


@router.get("/{statement_id}/csv")
def statement_csv(statement_id: IdPath, user: StatementReader, session: SessionDep) -> Response:
    """The statement as CSV (one row per day and a total)."""
    st = _statement_for(session, user, statement_id)
    return Response(
        render_csv(session, st.id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="statement-{st.number}.csv"'},
    )


@router.get("/{statement_id}/pdf")
def statement_pdf(
    statement_id: IdPath, user: StatementReader, session: SessionDep, locale: PageLang
) -> Response:
    """The statement as PDF (headless Chromium)."""
    st = _statement_for(session, user, statement_id)
    with tempfile.TemporaryDirectory(prefix="noaber-statement-") as tmp:
        pdf = render_pdf(session, st.id, Path(tmp) / "statement.pdf", locale).read_bytes()
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="statement-{st.number}.pdf"'},
    )


class PeriodRootOut(BaseModel):
    """A period's RFC 6962 Merkle root as it stood when the statement was issued."""

    community: str
    period: str
    tree_size: int
    max_seq: int
    run_id: int
    root: str
    algorithm: str


@router.get("/{statement_id}/root", response_model=PeriodRootOut)
def statement_root(
    statement_id: IdPath, user: StatementReader, session: SessionDep
) -> PeriodRootOut:
    """The Merkle root of the statement's period (what `noaber statement verify --root` takes)."""
    st = _statement_for(session, user, statement_id)
    root = root_for(session, st.community, st.period, st.max_seq)
    if root is None:
        raise not_found("period root")
    return PeriodRootOut(**root_document(root))


@router.get("/{statement_id}/json")
def statement_json(statement_id: IdPath, user: StatementReader, session: SessionDep) -> Response:
    """The statement as JSON with the inclusion proof of every line (checkable offline)."""
    st = _statement_for(session, user, statement_id)
    return Response(
        render_json(session, st.id),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="statement-{st.number}.json"'},
    )
