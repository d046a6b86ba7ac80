"""A site manager's live values, limits and the building's statement; the operator's province
overview.

* ``GET /sites/{site}/live``: the newest quarter-hour (battery SoC, PV, grid, cars), each
  value formatted in the reader's language for the start page's self-refreshing tiles;
* ``GET /sites/{site}/limits`` (page), ``POST`` (its form, with the CSRF field) and
  ``PUT /sites/{site}/limits`` (API): the grid import limit and the battery reserve the plans
  keep, only ever within the site's own (:func:`energy.sitecontrols.set_operating_limits`,
  audited);
* ``GET /sites/{site}/statement``: the newest statement of the site's own member (the
  building), or the one of ``?period=YYYY-MM``;
* ``GET /operator/province`` and ``/operator/province/csv``: per site and in total the shared
  and V2G kWh settled, CO2 avoided, peak reduction and savings of the plans; per campaign the
  verified savings (:mod:`noaber.api.startpage`).

Access: operator every site; a site manager their sites; someone else's site is 404; firm and
member 403 (a firm sees its own site's dashboard and campaigns).
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from energy.audit import Actor
from energy.i18n import format_local_datetime, format_number, page_chrome
from energy.models import Role, Site, User
from energy.sitecontrols import (
    ControlError,
    battery_bounds,
    operating_limits,
    set_operating_limits,
)
from noaber.api.access import site_for
from noaber.api.deps import SessionDep, not_found, require_roles
from noaber.api.forms import FormUser
from noaber.api.language import PageLang
from noaber.api.pagecache import PageCacheDep
from noaber.api.routers.my import control_error_text
from noaber.api.routers.pages import gettext, render
from noaber.api.startpage import (
    CO2_FACTOR_KG_PER_KWH,
    building_statements,
    firm_campaigns,
    live_values,
    province_rows,
)
from settlement.statements import detached, member_name, render_data_html, statement_data

router = APIRouter(tags=["manage"])

Manager = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.SITE_MANAGER))]
Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]


class LiveOut(BaseModel):
    """The newest quarter-hour of a site, each value formatted for the reader."""

    at: str
    battery_soc: str
    pv: str
    grid: str
    cars: str


@router.get("/sites/{site_name}/live", response_model=LiveOut, tags=["sites"])
def site_live(site_name: str, user: Manager, session: SessionDep, locale: PageLang) -> LiveOut:
    """Live values for the start page (battery SoC %, PV and grid kW, cars charging)."""
    site = site_for(session, user, site_name)
    v = live_values(session, site)
    return LiveOut(
        at=format_local_datetime(v.at) if v.at else "–",
        battery_soc=f"{format_number(v.battery_soc_pct, 0, locale)} %",
        pv=f"{format_number(-(v.pv_w or 0) / 1000, 1, locale)} kW",
        grid=f"{format_number((v.grid_w or 0) / 1000, 1, locale)} kW",
        cars=f"{v.cars_charging} / {v.cars_total}",
    )


class LimitsIn(BaseModel):
    """The plans' grid import limit [kW] and battery reserve [%] (none: the battery's own)."""

    grid_import_limit_kw: float = Field(gt=0, le=100_000)
    battery_reserve_pct: float | None = Field(None, ge=0, le=100)


class LimitsOut(LimitsIn):
    """The limits in force and the site's own bounds."""

    site: str
    connection_import_limit_kw: float
    battery_soc_min_pct: float | None
    battery_soc_max_pct: float | None
    updated_by: str | None


def _limits_out(session: Session, site: Site) -> LimitsOut:
    row = operating_limits(session, site)
    bounds = battery_bounds(site)
    return LimitsOut(
        site=site.name,
        grid_import_limit_kw=row.grid_import_limit_kw if row else site.grid_import_limit_kw,
        battery_reserve_pct=row.battery_reserve_pct if row else None,
        connection_import_limit_kw=site.grid_import_limit_kw,
        battery_soc_min_pct=bounds[0] if bounds else None,
        battery_soc_max_pct=bounds[1] if bounds else None,
        updated_by=row.updated_by if row else None,
    )


@router.put("/sites/{site_name}/limits", response_model=LimitsOut, tags=["sites"])
def put_site_limits(
    site_name: str, body: LimitsIn, user: Manager, session: SessionDep
) -> LimitsOut:
    """Set the grid import limit and battery reserve the next plans keep (within the site's
    own: 422 names the field and the bound)."""
    site = site_for(session, user, site_name)
    set_operating_limits(
        session,
        site,
        body.grid_import_limit_kw,
        body.battery_reserve_pct,
        Actor(user.username, "api"),
    )
    session.commit()
    return _limits_out(session, site)


def _limits_page(
    session: Session,
    user: User,
    site: Site,
    locale: str,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    out = _limits_out(session, site)
    return render(
        "site_limits.html",
        locale,
        status_code,
        user=user,
        site=site,
        limits=out,
        values=values
        or {
            "grid_import_limit_kw": f"{out.grid_import_limit_kw:g}",
            "battery_reserve_pct": ""
            if out.battery_reserve_pct is None
            else f"{out.battery_reserve_pct:g}",
        },
        errors=errors or [],
        saved=saved,
    )


@router.get("/sites/{site_name}/limits", response_class=HTMLResponse, include_in_schema=False)
def site_limits_page(
    site_name: str,
    user: Manager,
    session: SessionDep,
    locale: PageLang,
    saved: Annotated[int, Query(ge=0, le=1)] = 0,
) -> HTMLResponse:
    """The form for the grid limit and battery reserve."""
    site = site_for(session, user, site_name)
    return _limits_page(session, user, site, locale, saved=bool(saved))


def _number(value: str) -> float | None:
    try:
        return float(value.replace(",", ".").strip())
    except ValueError:
        return None


@router.post("/sites/{site_name}/limits", include_in_schema=False)
def site_limits_submit(
    site_name: str,
    user: FormUser,
    session: SessionDep,
    locale: PageLang,
    grid_import_limit_kw: Annotated[str, Form(max_length=20)],
    battery_reserve_pct: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Store the form's limits (303 back to the page) or show the form again with the reason."""
    if user.role not in (Role.OPERATOR, Role.SITE_MANAGER):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {user.role.value} may not")
    site = site_for(session, user, site_name)
    values = {
        "grid_import_limit_kw": grid_import_limit_kw,
        "battery_reserve_pct": battery_reserve_pct,
    }
    errors = []
    limit = _number(grid_import_limit_kw)
    reserve = None if not battery_reserve_pct.strip() else _number(battery_reserve_pct)
    if limit is None:
        errors.append(
            {"field": "grid_import_limit_kw", "message": gettext(locale, "enter a number")}
        )
    if battery_reserve_pct.strip() and reserve is None:
        errors.append(
            {"field": "battery_reserve_pct", "message": gettext(locale, "enter a number")}
        )
    if not errors:
        assert limit is not None
        try:
            set_operating_limits(session, site, limit, reserve, Actor(user.username, "api"))
        except ControlError as exc:
            session.rollback()
            errors.append({"field": exc.location or "", "message": control_error_text(locale, exc)})
        else:
            session.commit()
            return RedirectResponse(
                f"/sites/{site.name}/limits?saved=1", status_code=status.HTTP_303_SEE_OTHER
            )
    return _limits_page(
        session,
        user,
        site,
        locale,
        values=values,
        errors=errors,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.get("/sites/{site_name}/statement", response_class=HTMLResponse, include_in_schema=False)
def building_statement_page(
    site_name: str,
    user: Manager,
    session: SessionDep,
    locale: PageLang,
    cache: PageCacheDep,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> HTMLResponse:
    """The building's statement (the site's own member): the newest, or of ``period``.

    Its figures are kept per statement and the member's name as stored now (a statement's
    ledger lines never change; a name may, or be erased), the page also per locale and the
    reader's header; access is checked first."""
    site = site_for(session, user, site_name)
    rows = building_statements(session, site)
    if period is not None:
        rows = [s for s in rows if s.period == period]
    if not rows:
        raise not_found(f"statement of the building of site {site_name!r}")
    st_id, name = rows[0].id, member_name(session, rows[0].member_ref)

    def page() -> str:
        data = cache.get(
            ("statement", st_id, name), lambda: detached(statement_data(session, st_id))
        )
        return render_data_html(data, locale)

    # the whole page, per reader's header too (their name, links, sign-out token): a page
    # is only ever served again to the same signed-in session
    return HTMLResponse(cache.get(("statement-page", st_id, name, locale, page_chrome()), page))


# --- operator: the province overview --------------------------------------------------------


def _province(session: Session, user: User) -> dict[str, Any]:
    rows, total = province_rows(session)
    return {"rows": rows, "total": total, "campaigns": firm_campaigns(session, user)}


@router.get("/operator/province", response_class=HTMLResponse, include_in_schema=False)
def province_page(user: Operator, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """Per site and in total: shared kWh, V2G kWh, CO2 avoided, peak reduction, savings; per
    campaign the verified savings; with the CSV."""
    return render(
        "province.html",
        locale,
        user=user,
        co2_factor=CO2_FACTOR_KG_PER_KWH,
        **_province(session, user),
    )


#: The columns of the province CSV (units in the names).
PROVINCE_COLUMNS = (
    "kind",
    "name",
    "shared_kwh",
    "v2g_kwh",
    "co2_avoided_kg",
    "peak_reduction_kw",
    "savings_eur",
    "verified_savings_kwh",
    "verified_savings_eur",
    "verified_co2_avoided_t",
)


@router.get("/operator/province/csv", tags=["operator"])
def province_csv(user: Operator, session: SessionDep) -> Response:
    """The province overview as CSV: one row per site, the total, one row per campaign."""
    data = _province(session, user)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PROVINCE_COLUMNS)
    for r in [*data["rows"], data["total"]]:
        w.writerow(
            [
                "total" if r.site == "total" else "site",
                r.site,
                f"{r.shared_kwh:.3f}",
                f"{r.v2g_kwh:.3f}",
                f"{r.co2_avoided_kg:.3f}",
                f"{r.peak_reduction_kw:.3f}",
                f"{r.savings_eur:.2f}",
                "",
                "",
                "",
            ]
        )
    for c in data["campaigns"]:
        w.writerow(
            [
                "campaign",
                c["campaign"].name,
                "",
                "",
                "",
                "",
                "",
                f"{c['verified_kwh']:.3f}",
                f"{c['verified_eur']:.2f}",
                f"{c['verified_co2_t']:.4f}",
            ]
        )
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="province-overview.csv"'},
    )


# --- the operator's write pages and the job status page (noaber/api/routers/operator.py) ---
from noaber.api.routers import operator as _operator_pages  # noqa: E402

router.include_router(_operator_pages.router)
