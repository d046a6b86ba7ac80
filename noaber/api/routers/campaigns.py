"""Meetkoffer campaigns: the firm's dashboard, campaign and savings reports; a firm sees only its own.

Reports: the campaign report and each savings verification as an HTML page, a PDF (headless
Chromium) and the CSV of every table (``.../csv/<table>``, names listed on the page).

The operator sees every campaign; a firm user only campaigns whose firm is its member
(``user.member_id``); someone else's campaign answers 404; other roles get 403.

A savings verification is withdrawn with ``POST .../verifications/{id}/withdraw`` (a reason;
the campaign's firm or an operator; recorded in the audit log as the token's user). Its
versions stay readable and show as withdrawn; a withdrawal is never undone or rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from energy.audit import Actor
from energy.errors import ValidationError
from energy.i18n import template_env
from energy.models import Role, User
from energy.plots import PLOTLY_STATIC_PATH
from meetkoffer.models import Campaign, SavingsRecord, Verification
from meetkoffer.report import Report, finding_title
from noaber.api.deps import IdPath, SessionDep, not_found, require_roles
from noaber.api.language import PageLang

router = APIRouter(prefix="/campaigns", tags=["campaigns"])

CampaignReader = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.FIRM))]


class FindingOut(BaseModel):
    rank: int
    kind: str
    title: str
    equipment: str | None
    energy_kwh_per_year: float
    cost_eur_per_year: float
    co2_t_per_year: float
    evidence: dict
    counted: bool = True  # False: a key figure (unmetered remainder, kWh per unit), no saving


class SavingsOut(BaseModel):
    id: int
    option: str
    model: str
    baseline_start: dt.datetime
    baseline_end: dt.datetime
    reporting_start: dt.datetime
    reporting_end: dt.datetime
    avoided_kwh: float
    avoided_eur: float
    avoided_co2_t: float
    fsu_68: float | None
    fsu_90: float | None
    cv_rmse: float
    nmbe: float
    r2: float
    ashrae14_pass: bool
    verification_id: int
    version: int
    withdrawn_at: dt.datetime | None = None  # set: the verification is withdrawn


class VersionOut(BaseModel):
    """One frozen version of a savings verification, with what changed since the one before."""

    id: int
    verification_id: int
    version: int
    created_at: dt.datetime
    model: str
    avoided_kwh: float
    avoided_eur: float
    data_digest: str | None
    changes: dict | None
    withdrawn_at: dt.datetime | None
    withdrawn_by: str | None
    withdrawn_reason: str | None


class WithdrawIn(BaseModel):
    """Why a savings verification is withdrawn (kept with it and in the audit log)."""

    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


class VerificationOut(BaseModel):
    """A savings verification: its withdrawal and its (frozen, still readable) versions."""

    id: int
    campaign_id: int
    withdrawn_at: dt.datetime | None
    withdrawn_by: str | None
    withdrawn_reason: str | None
    versions: list[VersionOut]


class CampaignOut(BaseModel):
    id: int
    name: str
    display_name: str
    site: str
    start: dt.datetime
    end: dt.datetime
    equipment: list[str]
    findings: int
    savings_eur_per_year: float
    verifications: int


class CampaignDetail(CampaignOut):
    finding_list: list[FindingOut]
    savings_list: list[SavingsOut]


def _visible(session: Session, user: User) -> list[Campaign]:
    q = (
        select(Campaign)
        .options(
            selectinload(Campaign.findings),
            selectinload(Campaign.savings),
            selectinload(Campaign.equipment),
            selectinload(Campaign.site),
        )
        .order_by(Campaign.start_at.desc(), Campaign.name)
    )
    if user.role is not Role.OPERATOR:
        if user.member_id is None:
            return []
        q = q.where(Campaign.firm_member_id == user.member_id)
    return list(session.scalars(q))


def _campaign_for(session: Session, user: User, campaign_id: int) -> Campaign:
    c = session.get(Campaign, campaign_id)
    if c is None or (user.role is not Role.OPERATOR and c.firm_member_id != user.member_id):
        raise not_found("campaign")
    return c


def _out(c: Campaign) -> CampaignOut:
    return CampaignOut(
        id=c.id,
        name=c.name,
        display_name=c.display_name,
        site=c.site.display_name,
        start=c.start_at,
        end=c.end_at,
        equipment=[e.name for e in c.equipment],
        findings=len(c.findings),
        # the counted findings only: each kWh once, key figures are not savings
        savings_eur_per_year=sum(f.cost_eur_per_year for f in c.findings if f.counted),
        verifications=len({s.verification_id for s in c.savings}),
    )


@router.get("", response_model=list[CampaignOut])
def list_campaigns(user: CampaignReader, session: SessionDep) -> list[CampaignOut]:
    """Campaigns the user may see (a firm: its own), newest first."""
    return [_out(c) for c in _visible(session, user)]


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(user: CampaignReader, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """The firm's dashboard: its campaigns, their ranked findings and verified savings."""
    env = template_env("meetkoffer", locale)
    env.globals["finding_title"] = lambda f: finding_title(f, locale)
    html = env.get_template("meetkoffer_dashboard.html").render(
        campaigns=_visible(session, user), user=user
    )
    return HTMLResponse(html)


@router.get("/{campaign_id}", response_model=CampaignDetail)
def campaign_detail(
    campaign_id: IdPath, user: CampaignReader, session: SessionDep
) -> CampaignDetail:
    """One campaign with its findings and savings verifications."""
    c = _campaign_for(session, user, campaign_id)
    return CampaignDetail(
        **_out(c).model_dump(),
        finding_list=[FindingOut.model_validate(f, from_attributes=True) for f in c.findings],
        savings_list=[
            SavingsOut.model_validate(s, from_attributes=True).model_copy(
                update={"withdrawn_at": s.verification.withdrawn_at}
            )
            for s in c.savings
        ],
    )


def _report_or_404(render: Callable[[], Report], what: str) -> Report:
    """Render a report; missing data answers 404 (naming what is missing)."""
    try:
        return render()
    except ValidationError as exc:
        raise HTTPException(status_code=404, detail=f"{what}: {exc.message}") from None


def _campaign_report(session: Session, c: Campaign, locale: str, *, served: bool) -> Report:
    from meetkoffer.campaign import render_campaign_report

    return _report_or_404(
        lambda: render_campaign_report(
            session,
            c,
            locale=locale,
            plotly_src=PLOTLY_STATIC_PATH if served else None,
            downloads=f"/campaigns/{c.id}/report" if served else None,
        ),
        "report data of the campaign",
    )


def _savings_for(session: Session, c: Campaign, savings_id: int) -> SavingsRecord:
    rec = session.get(SavingsRecord, savings_id)
    if rec is None or rec.campaign_id != c.id:
        raise not_found("savings verification")
    return rec


def _savings_report(
    session: Session, c: Campaign, rec: SavingsRecord, locale: str, *, served: bool
) -> Report:
    from meetkoffer.campaign import render_savings_report

    return _report_or_404(
        lambda: render_savings_report(
            session,
            c,
            rec,
            locale=locale,
            plotly_src=PLOTLY_STATIC_PATH if served else None,
            downloads=f"/campaigns/{c.id}/savings/{rec.id}" if served else None,
        ),
        "data of the savings verification",
    )


#: The last few printed PDFs by the SHA-256 of their HTML: an identical document (same data,
#: language and minute of generation) is not printed twice. Bounded; guarded by a lock
#: because sync routes run in a thread pool.
_PDF_CACHE: OrderedDict[str, bytes] = OrderedDict()
_PDF_CACHE_MAX = 4
_PDF_LOCK = threading.Lock()


def _print_pdf(html: str) -> bytes:
    from energy.pdf import html_to_pdf

    key = hashlib.sha256(html.encode("utf-8")).hexdigest()
    with _PDF_LOCK:
        if key in _PDF_CACHE:
            _PDF_CACHE.move_to_end(key)
            return _PDF_CACHE[key]
    with tempfile.TemporaryDirectory(prefix="noaber-meetkoffer-") as tmp:
        pdf = html_to_pdf(html, Path(tmp) / "report.pdf").read_bytes()
    with _PDF_LOCK:
        _PDF_CACHE[key] = pdf
        while len(_PDF_CACHE) > _PDF_CACHE_MAX:
            _PDF_CACHE.popitem(last=False)
    return pdf


def _pdf_response(report: Report, filename: str) -> Response:
    """The report printed by headless Chromium (plotly.js inline, charts drawn first)."""
    pdf = _print_pdf(report.html)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _csv_response(report: Report, table: str, filename: str) -> Response:
    if table not in report.tables:
        raise HTTPException(
            status_code=404,
            detail=f"no table {table!r}; the report has: {', '.join(report.tables)}",
        )
    text = report.tables[table].to_csv(index=True, date_format="%Y-%m-%dT%H:%M:%S%z")
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/{campaign_id}/report", response_class=HTMLResponse)
def campaign_report_page(
    campaign_id: IdPath, user: CampaignReader, session: SessionDep, locale: PageLang
) -> HTMLResponse:
    """The interactive campaign report from stored data (plotly.js from /static, no CDN),
    with links to its PDF and to the CSV of every table."""
    c = _campaign_for(session, user, campaign_id)
    return HTMLResponse(_campaign_report(session, c, locale, served=True).html)


@router.get("/{campaign_id}/report/pdf")
def campaign_report_pdf(
    campaign_id: IdPath, user: CampaignReader, session: SessionDep, locale: PageLang
) -> Response:
    """The campaign report as PDF (headless Chromium; the same page, charts included)."""
    c = _campaign_for(session, user, campaign_id)
    return _pdf_response(_campaign_report(session, c, locale, served=False), f"{c.name}.pdf")


@router.get("/{campaign_id}/report/csv/{table}")
def campaign_report_csv(
    campaign_id: IdPath, table: str, user: CampaignReader, session: SessionDep
) -> Response:
    """One table of the campaign report as CSV (UTC timestamps with offset)."""
    c = _campaign_for(session, user, campaign_id)
    rep = _campaign_report(session, c, "en", served=False)
    return _csv_response(rep, table, f"{c.name}_{table}.csv")


@router.get("/{campaign_id}/savings/{savings_id}", response_class=HTMLResponse)
def savings_report_page(
    campaign_id: IdPath,
    savings_id: IdPath,
    user: CampaignReader,
    session: SessionDep,
    locale: PageLang,
) -> HTMLResponse:
    """The savings verification report (IPMVP, ASHRAE 14 metrics, uncertainty, CO2), with
    links to its PDF and CSV tables: the version's frozen result, never recomputed on
    today's data; its versions and a withdrawal are shown."""
    c = _campaign_for(session, user, campaign_id)
    rec = _savings_for(session, c, savings_id)
    return HTMLResponse(_savings_report(session, c, rec, locale, served=True).html)


@router.get("/{campaign_id}/savings/{savings_id}/pdf")
def savings_report_pdf(
    campaign_id: IdPath,
    savings_id: IdPath,
    user: CampaignReader,
    session: SessionDep,
    locale: PageLang,
) -> Response:
    """The savings verification report as PDF (headless Chromium)."""
    c = _campaign_for(session, user, campaign_id)
    rec = _savings_for(session, c, savings_id)
    rep = _savings_report(session, c, rec, locale, served=False)
    return _pdf_response(rep, f"{c.name}_savings-{rec.id}.pdf")


@router.get("/{campaign_id}/savings/{savings_id}/csv/{table}")
def savings_report_csv(
    campaign_id: IdPath, savings_id: IdPath, table: str, user: CampaignReader, session: SessionDep
) -> Response:
    """One table of the savings verification report as CSV."""
    c = _campaign_for(session, user, campaign_id)
    rec = _savings_for(session, c, savings_id)
    rep = _savings_report(session, c, rec, "en", served=False)
    return _csv_response(rep, table, f"{c.name}_savings-{rec.id}_{table}.csv")


def _versions(v: Verification) -> list[VersionOut]:
    return [
        VersionOut(
            id=r.id,
            verification_id=v.id,
            version=r.version,
            created_at=r.created_at,
            model=r.model,
            avoided_kwh=r.avoided_kwh,
            avoided_eur=r.avoided_eur,
            data_digest=r.data_digest,
            changes=r.changes,
            withdrawn_at=v.withdrawn_at,
            withdrawn_by=v.withdrawn_by,
            withdrawn_reason=v.withdrawn_reason,
        )
        for r in sorted(v.versions, key=lambda r: r.version)
    ]


@router.get("/{campaign_id}/savings/{savings_id}/versions", response_model=list[VersionOut])
def savings_versions(
    campaign_id: IdPath, savings_id: IdPath, user: CampaignReader, session: SessionDep
) -> list[VersionOut]:
    """Every version of the verification that savings record ``savings_id`` belongs to,
    oldest first: frozen results, data digests, what changed; and its withdrawal."""
    c = _campaign_for(session, user, campaign_id)
    return _versions(_savings_for(session, c, savings_id).verification)


@router.post(
    "/{campaign_id}/verifications/{verification_id}/withdraw",
    response_model=VerificationOut,
    responses={409: {"description": "withdrawn already, for another reason"}},
)
def withdraw_verification(
    campaign_id: IdPath,
    verification_id: IdPath,
    body: WithdrawIn,
    user: CampaignReader,
    session: SessionDep,
) -> VerificationOut:
    """Withdraw a savings verification of the campaign, with the reason; who withdraws it is
    the token's user, recorded with it and in the audit log (``verification.withdraw``).

    Its versions stay stored and readable (reports, ``.../versions``) and show as withdrawn;
    it is no longer recomputed. Sending the same withdrawal again changes nothing (200);
    a verification withdrawn already for another reason answers 409.
    """
    from meetkoffer.campaign import verification_of
    from meetkoffer.campaign import withdraw_verification as withdraw

    c = _campaign_for(session, user, campaign_id)
    try:
        v = verification_of(session, c, verification_id)
    except LookupError:
        raise not_found("savings verification") from None
    reason = body.reason.strip()
    if v.withdrawn_at is None:
        withdraw(session, c, v.id, reason, user.username, Actor(user.username, "api"))
        session.commit()
        session.refresh(v)
    elif v.withdrawn_reason != reason:
        raise HTTPException(
            status_code=409,
            detail=(
                f"savings verification {v.id} was withdrawn already on "
                f"{v.withdrawn_at:%Y-%m-%d %H:%M} UTC by {v.withdrawn_by}: {v.withdrawn_reason}"
            ),
        )
    return VerificationOut(
        id=v.id,
        campaign_id=c.id,
        withdrawn_at=v.withdrawn_at,
        withdrawn_by=v.withdrawn_by,
        withdrawn_reason=v.withdrawn_reason,
        versions=_versions(v),
    )
