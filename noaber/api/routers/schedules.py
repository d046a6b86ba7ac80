"""Schedules of the optimizer: the site manager's page, the schedule CSV, an EV owner's plan.

Access: operator all sites; a site manager the sites in ``user.sites``; a firm the sites its
member owns (:func:`noaber.api.access.site_for`); a member only their own car's plan
(``/schedules/my-car``), never the site page with other members' cars. A site manager sees
a car's own plan only while its owner consents (:func:`energy.privacy.has_consent`); the
other cars are summed into one ``ev`` row per step (:func:`consented_steps`). Someone else's
schedule answers 404.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.i18n import page_chrome
from energy.models import ConsentPurpose, Role, User
from energy.privacy import consenting_refs
from noaber.api.access import site_for
from noaber.api.deps import IdPath, SessionDep, not_found, require_roles
from noaber.api.language import PageLang
from noaber.api.pagecache import PageCacheDep
from noaber.api.startpage import plan_for_day
from optimizer.page import render_ev_page, render_site_page, site_page_figures
from optimizer.store import Schedule, ScheduleStep, latest_schedule_id, schedule_steps

router = APIRouter(prefix="/schedules", tags=["schedules"])

SiteReader = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.SITE_MANAGER, Role.FIRM))]
Member = Annotated[User, Depends(require_roles(Role.MEMBER))]


class ScheduleOut(BaseModel):
    """A stored schedule in a list."""

    id: int
    site_name: str
    created_at: dt.datetime
    start: dt.datetime
    end: dt.datetime
    step_minutes: int
    status: str
    objective_eur: float


#: The asset name of the summed cars a site manager sees instead of cars without consent.
EV_TOTAL = "ev-total"


def _allowed_owners(session: Session, user: User, refs: set[str]) -> set[str] | None:
    """The owner refs among ``refs`` whose cars ``user`` may see one by one; None: all (the
    reader is no site manager)."""
    if user.role is not Role.SITE_MANAGER:
        return None
    return consenting_refs(session, refs, ConsentPurpose.EV_DETAIL_SITE_MANAGER)


def _hidden_cars(session: Session, user: User, steps: pd.DataFrame) -> pd.Series:
    """Which rows of ``steps`` are cars ``user`` may not see one by one (a site manager and
    no ``ev_detail_site_manager`` consent of the owner)."""
    if user.role is not Role.SITE_MANAGER or steps.empty:
        return pd.Series(False, index=steps.index)
    refs = {r for r in steps.loc[steps["kind"] == "ev", "owner_ref"].dropna().unique()}
    allowed = _allowed_owners(session, user, refs) or set()
    return (steps["kind"] == "ev") & ~steps["owner_ref"].isin(allowed)


def schedule_cars(session: Session, schedule_id: int) -> tuple[tuple[str, str | None], ...]:
    """The distinct ``(asset, owner_ref)`` of a schedule's EV steps."""
    return tuple(
        session.execute(
            select(ScheduleStep.asset, ScheduleStep.owner_ref)
            .where(ScheduleStep.schedule_id == schedule_id, ScheduleStep.kind == "ev")
            .distinct()
            .order_by(ScheduleStep.asset, ScheduleStep.owner_ref)
        ).all()
    )


def hidden_cars(
    session: Session, user: User, cars: tuple[tuple[str, str | None], ...]
) -> frozenset[tuple[str, str | None]]:
    """The ``(asset, owner_ref)`` of ``cars`` that ``user`` may not see one by one: the same
    rule as :func:`_hidden_cars`, from the schedule's cars instead of its steps."""
    allowed = _allowed_owners(session, user, {ref for _a, ref in cars if ref is not None})
    if allowed is None:
        return frozenset()
    return frozenset((asset, ref) for asset, ref in cars if ref not in allowed)


def consented_summary(schedule: Schedule, hidden_cars: set[str]) -> Schedule:
    """A detached copy of ``schedule`` whose summary leaves out the per-car figures
    (departure SoC, V2G energy, shortfalls and writer-limit notes) of ``hidden_cars``; the
    stored row is not touched."""
    if not hidden_cars:
        return schedule
    summary = copy.deepcopy(schedule.summary or {})
    opt = summary.get("kpis", {}).get("optimized", {})
    if "departures" in opt:
        opt["departures"] = [d for d in opt["departures"] if d.get("ev") not in hidden_cars]
    if isinstance(opt.get("v2g_kwh"), dict):
        opt["v2g_kwh"] = {k: v for k, v in opt["v2g_kwh"].items() if k not in hidden_cars}
    # the plan's notes name cars too: a short car, a charger held below its rating
    shorts = [x for x in summary.get("shortfalls", []) if x.get("ev") not in hidden_cars]
    if "shortfalls" in summary:
        summary["shortfalls"] = shorts
        breaches = [x.get("sentence", "") for x in summary.get("breaches", [])]
        summary["warnings"] = [x.get("sentence", "") for x in shorts] + breaches
    if "writer_limits" in summary:
        summary["writer_limits"] = [
            note
            for note in summary["writer_limits"]
            if not any(f"EV '{car}'" in note for car in hidden_cars)
        ]
    columns = {c.key: getattr(schedule, c.key) for c in Schedule.__table__.columns}
    return Schedule(**{**columns, "summary": summary})


def consented_steps(
    session: Session, user: User, steps: pd.DataFrame, hidden: pd.Series | None = None
) -> pd.DataFrame:
    """``steps`` as ``user`` may see them: for a site manager, the EV rows of owners without
    the ``ev_detail_site_manager`` consent summed per step into :data:`EV_TOTAL` (power
    summed, no SoC, no owner). ``hidden`` marks those rows when already known."""
    if hidden is None:
        hidden = _hidden_cars(session, user, steps)
    if not hidden.any():
        return steps
    total = steps[hidden].groupby("ts", as_index=False)["power_kw"].sum()
    total = total.assign(asset=EV_TOTAL, kind="ev", owner_ref=None, soc_pct=float("nan"))
    out = pd.concat([steps[~hidden], total[steps.columns]], ignore_index=True)
    return out.sort_values(["ts", "asset"], ignore_index=True)


def _schedule_for(session: Session, user: User, schedule_id: int) -> Schedule:
    sched = session.get(Schedule, schedule_id)
    if sched is None:
        raise not_found("schedule")
    try:
        site_for(session, user, sched.site_name)
    except HTTPException:
        raise not_found("schedule") from None
    return sched


@router.get("/sites/{site_name}", response_class=HTMLResponse)
def site_schedule_page(
    site_name: str,
    user: SiteReader,
    session: SessionDep,
    locale: PageLang,
    cache: PageCacheDep,
    day: Annotated[
        dt.date | None, Query(description="Local day (YYYY-MM-DD): the latest plan for it")
    ] = None,
) -> HTMLResponse:
    """The latest schedule of a site, or of a local ``day``: flows, SoC curves, prices and
    savings (HTML)."""
    site = site_for(session, user, site_name)
    if day:
        found = plan_for_day(session, site, day)
        sched_id = None if found is None else found.id
    else:  # the id only: the row (its summary is large) is read when a page is built
        sched_id = latest_schedule_id(session, site.name)
    if sched_id is None:
        what = f" on {day.isoformat()}" if day else ""
        raise not_found(f"schedule for site {site_name!r}{what}")
    # a stored plan never changes (a new plan is a new id): its cars are kept by id, and its
    # charts per reader's view (the cars this reader may not see one by one), locale and zone
    cars = cache.get(("schedule-cars", sched_id), lambda: schedule_cars(session, sched_id))
    hidden = hidden_cars(session, user, cars)
    hidden_assets = frozenset(asset for asset, _ref in hidden)

    def consented() -> Schedule:
        sched = session.get(Schedule, sched_id)
        assert sched is not None  # found above, in this request's transaction
        if not hidden_assets:
            return sched
        # the copy without the hidden cars' figures, kept (deep-copying took long)
        return cache.get(
            ("schedule-summary", sched_id, hidden_assets),
            lambda: consented_summary(sched, set(hidden_assets)),
        )

    def figures() -> dict[str, str]:
        summary = consented()
        steps = schedule_steps(session, sched_id)
        pairs = pd.Series(list(zip(steps["asset"], steps["owner_ref"], strict=True)), dtype=object)
        mask = (steps["kind"] == "ev") & pairs.isin(hidden).to_numpy()
        return site_page_figures(
            summary, consented_steps(session, user, steps, mask), locale, site.timezone
        )

    def page() -> str:
        charts = cache.get(("schedule", sched_id, locale, site.timezone, hidden), figures)
        return render_site_page(consented(), pd.DataFrame(), locale, site.timezone, figures=charts)

    # the whole page too, per the reader's header (their name and token-bound CSRF value:
    # only the same signed-in session gets it again)
    key = ("schedule-page", sched_id, locale, site.timezone, hidden, page_chrome())
    return HTMLResponse(cache.get(key, page))


@router.get("/sites/{site_name}/list", response_model=list[ScheduleOut])
def list_site_schedules(
    site_name: str,
    user: SiteReader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ScheduleOut]:
    """Stored schedules of a site, newest first."""
    site = site_for(session, user, site_name)
    rows = session.scalars(
        select(Schedule)
        .where(Schedule.site_name == site.name)
        .order_by(Schedule.id.desc())
        .limit(limit)
    )
    return [ScheduleOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/{schedule_id}/csv")
def schedule_csv(schedule_id: IdPath, user: SiteReader, session: SessionDep) -> Response:
    """A schedule per step and asset as CSV (power in kW, + = consumption/charging; SoC %)."""
    sched = _schedule_for(session, user, schedule_id)
    steps = consented_steps(session, user, schedule_steps(session, sched.id))
    steps = steps.drop(columns=["owner_ref"])
    steps["ts"] = steps["ts"].map(lambda t: t.isoformat())
    return Response(
        steps.rename(columns={"ts": "timestamp"}).to_csv(index=False),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="schedule-{sched.id}.csv"'},
    )


@router.get("/my-car", response_class=HTMLResponse)
def my_car_page(
    user: Member,
    session: SessionDep,
    locale: PageLang,
    car: Annotated[str | None, Query(max_length=100, description="Your car's asset name")] = None,
) -> HTMLResponse:
    """An EV owner's latest charging plan and guaranteed departure SoC (only their own car)."""
    ref = user.member.ref if user.member is not None else None
    if ref is None:
        raise not_found("charging plan")
    q = (
        select(ScheduleStep.schedule_id, ScheduleStep.asset)
        .where(ScheduleStep.owner_ref == ref, ScheduleStep.kind == "ev")
        .order_by(ScheduleStep.schedule_id.desc())
        .limit(1)
    )
    if car is not None:
        q = q.where(ScheduleStep.asset == car)
    hit = session.execute(q).first()
    if hit is None:
        raise not_found("charging plan")
    sched = session.get(Schedule, hit.schedule_id)
    assert sched is not None
    steps = schedule_steps(session, sched.id, asset=hit.asset)
    steps = steps[steps["owner_ref"] == ref]
    return HTMLResponse(render_ev_page(sched, steps, hit.asset, locale))
