"""Meetkoffer campaigns: the firm's dashboard page and JSON; a firm sees only its own.

The operator sees every campaign; a firm user only campaigns whose firm is its member
(``user.member_id``); someone else's campaign answers 404; other roles get 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from energy.api.deps import SessionDep, not_found, require_roles
from energy.i18n import template_env
from energy.models import Role, User
from energy.plots import PLOTLY_STATIC_PATH
from meetkoffer.models import Campaign
from meetkoffer.report import finding_title

router = APIRouter(prefix="/campaigns", tags=["campaigns"])

CampaignReader = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.FIRM))]
Locale = Annotated[str, Query(pattern="^(nl|en)$", description="nl (default) or en")]


class FindingOut(BaseModel):
    rank: int
    kind: str
    title: str
    equipment: str | None
    energy_kwh_per_year: float
    cost_eur_per_year: float
    co2_t_per_year: float
    evidence: dict


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
        savings_eur_per_year=sum(f.cost_eur_per_year for f in c.findings),
        verifications=len(c.savings),
    )


@router.get("", response_model=list[CampaignOut])
def list_campaigns(user: CampaignReader, session: SessionDep) -> list[CampaignOut]:
    """Campaigns the user may see (a firm: its own), newest first."""
    return [_out(c) for c in _visible(session, user)]


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(user: CampaignReader, session: SessionDep, locale: Locale = "nl") -> HTMLResponse:
    """The firm's dashboard: its campaigns, their ranked findings and verified savings."""
    env = template_env("meetkoffer", locale)
    env.globals["finding_title"] = lambda f: finding_title(f, locale)
    html = env.get_template("meetkoffer_dashboard.html").render(
        campaigns=_visible(session, user), user=user
    )
    return HTMLResponse(html)


@router.get("/{campaign_id}", response_model=CampaignDetail)
def campaign_detail(campaign_id: int, user: CampaignReader, session: SessionDep) -> CampaignDetail:
    """One campaign with its findings and savings verifications."""
    c = _campaign_for(session, user, campaign_id)
    return CampaignDetail(
        **_out(c).model_dump(),
        finding_list=[FindingOut.model_validate(f, from_attributes=True) for f in c.findings],
        savings_list=[SavingsOut.model_validate(s, from_attributes=True) for s in c.savings],
    )


@router.get("/{campaign_id}/report", response_class=HTMLResponse)
def campaign_report_page(
    campaign_id: int, user: CampaignReader, session: SessionDep, locale: Locale = "nl"
) -> HTMLResponse:
    """The interactive campaign report from stored data (plotly.js from /static, no CDN)."""
    from meetkoffer.campaign import campaign_factor, hours_of, load_series, params_of
    from meetkoffer.emissions import load_emission_factors
    from meetkoffer.findings import Finding
    from meetkoffer.report import campaign_report

    c = _campaign_for(session, user, campaign_id)
    series = load_series(session, c)
    if series.incomer_wh.empty:
        raise not_found("report data of the campaign")
    kg, note = campaign_factor(c, load_emission_factors())
    found = [
        Finding(
            kind=f.kind,
            title=f.title,
            equipment=f.equipment,
            energy_kwh_per_year=f.energy_kwh_per_year,
            cost_eur_per_year=f.cost_eur_per_year,
            co2_t_per_year=f.co2_t_per_year,
            chart=f.chart,
            evidence=dict(f.evidence or {}),
            rank=f.rank,
        )
        for f in c.findings
    ]
    meta = {
        "name": c.name,
        "display_name": c.display_name,
        "site": c.site.display_name,
        "start": c.start_at,
        "end": c.end_at,
    }
    rep = campaign_report(
        meta,
        series.energy_wh,
        series.incomer,
        found,
        hours_of(c),
        params_of(c, kg),
        series.production if not series.production.empty else None,
        locale,
        note,
        coverage=series.coverage,
        plotly_src=PLOTLY_STATIC_PATH,
    )
    return HTMLResponse(rep.html)
