"""An EV owner's own pages and write route: my devices, my next session, my statements.

Pages (HTML, signed in with the page cookie): ``/my/devices``, ``/my/session`` (the form;
``POST`` with the page's CSRF field, :mod:`noaber.api.forms`), ``/my/statements`` (the
history chart). API (bearer token): ``GET /ev-sessions`` and ``POST /ev-sessions``. Only a
member's own cars are ever listed or written; another member's car answers 404.

A session is stored by :func:`energy.sitecontrols.set_ev_session` (validated, audited) and
the next plan of the site reads it (:mod:`noaber.services.siteplans`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.audit import Actor
from energy.clock import utc_now
from energy.models import Asset, AssetKind, Role, User
from energy.plots import PLOTLY_STATIC_PATH, figure_html, hover_unit, series_colour
from energy.sitecontrols import (
    ControlError,
    EvSession,
    SessionRequest,
    ev_soc_bounds,
    set_ev_session,
    upcoming_session,
)
from noaber.api.deps import SessionDep, not_found, require_roles
from noaber.api.forms import FormUser
from noaber.api.language import PageLang
from noaber.api.routers.pages import gettext, render
from noaber.api.startpage import car_plans, statement_history
from noaber.services.siteplans import ev_assets_of

router = APIRouter(tags=["my"])

MemberUser = Annotated[User, Depends(require_roles(Role.MEMBER))]

#: Field labels of the session form, in the order of the form.
SESSION_FIELDS = {
    "asset": "Car",
    "arrival": "Arrival",
    "departure": "Departure",
    "soc_target_pct": "Charged to at departure (%)",
    "soc_min_pct": "Never below (%)",
    "soc_arrival_pct": "Charge on arrival, if known (%)",
    "v2g_allowed": "The building may use my battery (V2G)",
}


def _own_car(session: Session, user: User, asset_id: int) -> Asset:
    asset = session.get(Asset, asset_id)
    if (
        asset is None
        or user.member is None
        or asset.owner_member_id != user.member.id
        or asset.kind is not AssetKind.EV
    ):
        raise not_found("car")
    return asset


def _actor(user: User) -> Actor:
    return Actor(user.username, "api")


class EvSessionIn(BaseModel):
    """An owner's next stay: times with an offset, SoC in %."""

    asset_id: int = Field(ge=1, le=2**31 - 1, description="The car (an EV asset you own)")
    arrival: AwareDatetime
    departure: AwareDatetime
    soc_target_pct: float = Field(ge=0, le=100, description="SoC wanted at departure [%]")
    soc_min_pct: float = Field(ge=0, le=100, description="V2G never goes below [%]")
    v2g_allowed: bool = False
    soc_arrival_pct: float | None = Field(None, ge=0, le=100, description="SoC on arrival [%]")


class EvSessionOut(BaseModel):
    """A stored session."""

    id: int
    asset_id: int
    car: str
    site: str
    arrival: dt.datetime
    departure: dt.datetime
    soc_target_pct: float
    soc_min_pct: float
    soc_arrival_pct: float | None
    v2g_allowed: bool
    created_at: dt.datetime


def _out(row: EvSession) -> EvSessionOut:
    return EvSessionOut(
        id=row.id,
        asset_id=row.asset_id,
        car=row.asset.name,
        site=row.asset.site.name,
        arrival=row.arrival_at,
        departure=row.departure_at,
        soc_target_pct=row.soc_target_pct,
        soc_min_pct=row.soc_min_pct,
        soc_arrival_pct=row.soc_arrival_pct,
        v2g_allowed=row.v2g_allowed,
        created_at=row.created_at,
    )


@router.get("/ev-sessions", response_model=list[EvSessionOut], tags=["ev-sessions"])
def list_ev_sessions(user: MemberUser, session: SessionDep) -> list[EvSessionOut]:
    """The upcoming session of each of your cars (cars without one are left out)."""
    if user.member is None:
        return []
    out = []
    for car in ev_assets_of(session, user.member.id):
        row = upcoming_session(session, car.id)
        if row is not None:
            out.append(_out(row))
    return out


@router.post(
    "/ev-sessions",
    response_model=EvSessionOut,
    status_code=status.HTTP_201_CREATED,
    tags=["ev-sessions"],
)
def create_ev_session(body: EvSessionIn, user: MemberUser, session: SessionDep) -> EvSessionOut:
    """Set your car's next session (replaces its earlier upcoming one); the next plan uses it.

    422 names the field: departure not after arrival or in the past, a target the charger
    cannot reach in the stay, a minimum below the car's own, V2G on a car that cannot."""
    car = _own_car(session, user, body.asset_id)
    assert user.member is not None
    req = SessionRequest(
        arrival=body.arrival,
        departure=body.departure,
        soc_target_pct=body.soc_target_pct,
        soc_min_pct=body.soc_min_pct,
        v2g_allowed=body.v2g_allowed,
        soc_arrival_pct=body.soc_arrival_pct,
    )
    row = set_ev_session(session, user.member, car, req, _actor(user))
    session.commit()
    return _out(row)


# --- pages ---------------------------------------------------------------------------------


@router.get("/my/devices", response_class=HTMLResponse, include_in_schema=False)
def my_devices_page(user: MemberUser, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """My devices: the assets I own, where they are and what they measure."""
    assets: list[Asset] = []
    if user.member is not None:
        assets = list(
            session.scalars(
                select(Asset)
                .where(Asset.owner_member_id == user.member.id)
                .order_by(Asset.site_id, Asset.name)
            )
        )
    return render("my_devices.html", locale, user=user, assets=assets)


def _local_input(t: dt.datetime | None, tz: str) -> str:
    """A UTC time as the value of an ``<input type="datetime-local">`` in local time."""
    if t is None:
        return ""
    return t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")


def _session_defaults(car: Asset, row: EvSession | None, now: dt.datetime) -> dict[str, Any]:
    tz = car.site.timezone
    floor, _ = ev_soc_bounds(car)
    if row is not None:
        return {
            "asset": car.id,
            "arrival": _local_input(row.arrival_at, tz),
            "departure": _local_input(row.departure_at, tz),
            "soc_target_pct": f"{row.soc_target_pct:g}",
            "soc_min_pct": f"{row.soc_min_pct:g}",
            "soc_arrival_pct": "" if row.soc_arrival_pct is None else f"{row.soc_arrival_pct:g}",
            "v2g_allowed": row.v2g_allowed,
        }
    local = now.astimezone(ZoneInfo(tz))
    arrive = (local + dt.timedelta(days=1)).replace(hour=8, minute=30, second=0, microsecond=0)
    return {
        "asset": car.id,
        "arrival": arrive.strftime("%Y-%m-%dT%H:%M"),
        "departure": arrive.replace(hour=17, minute=0).strftime("%Y-%m-%dT%H:%M"),
        "soc_target_pct": "80",
        "soc_min_pct": f"{max(floor, 30):g}",
        "soc_arrival_pct": "",
        "v2g_allowed": bool((car.params or {}).get("v2g", False)),
    }


def _session_page(
    session: Session,
    user: User,
    locale: str,
    *,
    values: dict[str, Any] | None = None,
    errors: list[dict[str, str]] | None = None,
    saved: bool = False,
    status_code: int = 200,
    car_id: int | None = None,
) -> HTMLResponse:
    if user.member is None:
        raise not_found("car")
    cars = ev_assets_of(session, user.member.id)
    if not cars:
        raise not_found("car")
    car = next((c for c in cars if c.id == car_id), cars[0])
    row = upcoming_session(session, car.id)
    return render(
        "my_session.html",
        locale,
        status_code,
        user=user,
        cars=cars,
        car=car,
        current=row,
        values=values or _session_defaults(car, row, utc_now()),
        errors=errors or [],
        saved=saved,
        labels={k: gettext(locale, v) for k, v in SESSION_FIELDS.items()},
        plans=car_plans(session, user.member),
    )


@router.get("/my/session", response_class=HTMLResponse, include_in_schema=False)
def my_session_page(
    user: MemberUser,
    session: SessionDep,
    locale: PageLang,
    car: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    saved: Annotated[int, Query(ge=0, le=1)] = 0,
) -> HTMLResponse:
    """The form to set my car's next session, with the session the next plan uses."""
    return _session_page(session, user, locale, saved=bool(saved), car_id=car)


def _parse_local(value: str, tz: str) -> dt.datetime | None:
    try:
        naive = dt.datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        return None
    return naive.replace(tzinfo=ZoneInfo(tz))


def _number(value: str) -> float | None:
    try:
        return float(value.replace(",", ".").strip())
    except ValueError:
        return None


def control_error_text(locale: str, exc: ControlError) -> str:
    """A refused session or limit in the reader's language."""
    return gettext(locale, exc.template).format(**exc.params)


@router.post("/my/session", include_in_schema=False)
def my_session_submit(
    request: Request,
    user: FormUser,
    session: SessionDep,
    locale: PageLang,
    asset: Annotated[int, Form(ge=1, le=2**31 - 1)],
    arrival: Annotated[str, Form(max_length=40)],
    departure: Annotated[str, Form(max_length=40)],
    soc_target_pct: Annotated[str, Form(max_length=20)],
    soc_min_pct: Annotated[str, Form(max_length=20)],
    soc_arrival_pct: Annotated[str, Form(max_length=20)] = "",
    v2g_allowed: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Store the form's session (303 back to the page) or show the form again with what is
    wrong, field by field (422), keeping what was typed."""
    if user.role is not Role.MEMBER:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {user.role.value} has no car")
    car = _own_car(session, user, asset)
    tz = car.site.timezone
    values: dict[str, Any] = {
        "asset": car.id,
        "arrival": arrival,
        "departure": departure,
        "soc_target_pct": soc_target_pct,
        "soc_min_pct": soc_min_pct,
        "soc_arrival_pct": soc_arrival_pct,
        "v2g_allowed": v2g_allowed == "on",
    }
    errors: list[dict[str, str]] = []
    t_arrival, t_departure = _parse_local(arrival, tz), _parse_local(departure, tz)
    for name, t in (("arrival", t_arrival), ("departure", t_departure)):
        if t is None:
            errors.append({"field": name, "message": gettext(locale, "enter a date and time")})
    nums: dict[str, float | None] = {}
    for name, raw in (
        ("soc_target_pct", soc_target_pct),
        ("soc_min_pct", soc_min_pct),
        ("soc_arrival_pct", soc_arrival_pct),
    ):
        if name == "soc_arrival_pct" and not raw.strip():
            nums[name] = None
            continue
        nums[name] = _number(raw)
        if nums[name] is None:
            errors.append({"field": name, "message": gettext(locale, "enter a number")})
    if not errors:
        assert t_arrival is not None and t_departure is not None and user.member is not None
        target, floor = nums["soc_target_pct"], nums["soc_min_pct"]
        assert target is not None and floor is not None
        req = SessionRequest(
            arrival=t_arrival,
            departure=t_departure,
            soc_target_pct=target,
            soc_min_pct=floor,
            v2g_allowed=v2g_allowed == "on",
            soc_arrival_pct=nums["soc_arrival_pct"],
        )
        try:
            set_ev_session(session, user.member, car, req, _actor(user))
        except ControlError as exc:
            session.rollback()
            errors.append({"field": exc.location or "", "message": control_error_text(locale, exc)})
        else:
            session.commit()
            return RedirectResponse(
                f"/my/session?car={car.id}&saved=1", status_code=status.HTTP_303_SEE_OTHER
            )
    return _session_page(
        session,
        user,
        locale,
        values=values,
        errors=errors,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        car_id=car.id,
    )


def history_figure(history: list[dict[str, Any]], locale: str) -> go.Figure:
    """My statements per month: kWh charged from community solar, kWh delivered to the
    building (bars, kWh) and the net amount (line, EUR, right axis)."""
    periods = [h["statement"].period for h in history]
    solar = gettext(locale, "Charged from community solar")
    delivered = gettext(locale, "Delivered to the building")
    net = gettext(locale, "Net amount")
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=periods,
            y=[round(h["solar_charged_wh"] / 1000, 3) for h in history],
            name=solar,
            marker_color=series_colour("pv"),
            hovertemplate=hover_unit(solar, "kWh", 1),
        )
    )
    fig.add_trace(
        go.Bar(
            x=periods,
            y=[round(h["delivered_wh"] / 1000, 3) for h in history],
            name=delivered,
            marker_color=series_colour("v2g"),
            hovertemplate=hover_unit(delivered, "kWh", 1),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=periods,
            y=[h["net_cents"] / 100 for h in history],
            name=net,
            yaxis="y2",
            mode="lines+markers",
            line={"color": series_colour("money")},
            hovertemplate=hover_unit(net, "€", 2),
        )
    )
    fig.update_layout(
        barmode="group",
        margin={"l": 50, "r": 50, "t": 10, "b": 40},
        yaxis={"title": {"text": "kWh"}},
        yaxis2={"title": {"text": "€"}, "overlaying": "y", "side": "right"},
        xaxis={"type": "category", "title": {"text": gettext(locale, "Month")}},
        legend={"orientation": "h", "y": 1.12},
        template="plotly_white",
    )
    return fig


@router.get("/my/statements", response_class=HTMLResponse, include_in_schema=False)
def my_statements_page(user: MemberUser, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """My statements, newest first, with their history chart."""
    history = statement_history(session, user.member) if user.member is not None else []
    chart = (
        figure_html(history_figure(history, locale), "history-chart", height_px=340, locale=locale)
        if history
        else ""
    )
    return render(
        "my_statements.html",
        locale,
        user=user,
        history=list(reversed(history)),
        chart=chart,
        plotly_src=PLOTLY_STATIC_PATH,
    )
