"""Browser pages: the login page, the start page (sites, and the settlement statements the
user may read), a site's dashboard, plus plotly.js.

Pages use the same token as the API, carried in an HttpOnly, SameSite=Lax cookie that the
login form sets; the cookie is accepted for GET/HEAD only (see :mod:`noaber.api.deps`).
plotly.js is served from the installed Python package at ``/static/plotly.min.js``: no CDN.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import jinja2
import plotly.graph_objects as go
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from energy.audit import entries as audit_entries
from energy.i18n import page_chrome, template_env, translations
from energy.models import Role, Site, User
from energy.plots import PLOTLY_STATIC_PATH, figure_html, plotly_js, series_colour
from energy.readings import read_readings
from energy.security import InvalidTokenError, create_access_token, decode_access_token
from energy.timegrid import ISP_S, LOCAL_TZ, isp_range
from energy.users import authenticate, check_totp, revoke_token, token_user, visible_sites
from meetkoffer.report import finding_title
from noaber.api import startpage
from noaber.api.access import site_for
from noaber.api.deps import (
    TOKEN_COOKIE,
    SessionDep,
    SettingsDep,
    demo_login_refused,
    get_current_user,
    require_roles,
)
from noaber.api.language import ROLE_LABELS, PageLang, reader_locale
from noaber.api.pagecache import PageCacheDep
from noaber.api.profile import (
    latest_reading,
    power_channel_state,
    profile_frame,
    resolve_period,
    week_before,
)
from noaber.api.throttle import LoginThrottled, app_throttle, client_address
from settlement.models import Statement

router = APIRouter(tags=["pages"])

DashboardUser = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.SITE_MANAGER, Role.FIRM))]
#: At most this many statements are listed on the start page (newest first).
HOME_STATEMENTS_MAX = 50

#: Labels and colours of the profile groups in the chart.
GROUP_STYLE = {
    "pv": ("Solar", series_colour("pv")),
    "load": ("Load", series_colour("load")),
    "battery": ("Battery", series_colour("battery")),
    "ev": ("EVs", series_colour("ev")),
    "grid": ("Grid", series_colour("grid")),
}


#: The heading of an error page per status (translated); other statuses use their phrase.
ERROR_TITLES = {
    400: "The request could not be handled.",
    403: "You may not open this page.",
    404: "Page not found.",
    422: "The request contains an invalid value.",
}


def error_page(request: Request, status_code: int) -> HTMLResponse:
    """An HTML error page in the reader's language (:func:`reader_locale`)."""
    locale = reader_locale(request, request.app.state.settings)
    title = gettext(locale, ERROR_TITLES.get(status_code, HTTPStatus(status_code).phrase))
    return render("error.html", locale, status_code, status=status_code, title=title)


def gettext(locale: str, message: str) -> str:
    """``message`` translated to ``locale`` with the API's catalogue."""
    return translations("noaber.api", locale).gettext(message)


@lru_cache(maxsize=4)
def _page_env(locale: str) -> jinja2.Environment:
    """The pages' environment in ``locale``, kept: Jinja compiles a template once per
    environment, and compiling the dashboard's took longer than rendering it. Its globals are
    set when it is made and never changed, so the API's threads share it safely."""
    return template_env("noaber.api", locale)


def _render_html(template: str, locale: str, **context: object) -> str:
    return str(_page_env(locale).get_template(template).render(**context))


def render(template: str, locale: str, status_code: int = 200, **context: object) -> HTMLResponse:
    """Render a template of ``noaber/api/templates`` in ``locale``."""
    return HTMLResponse(_render_html(template, locale, **context), status_code=status_code)


def _safe_next(next_url: str | None) -> str:
    """Only same-site absolute paths are followed after login (no open redirect)."""
    if (
        next_url
        and next_url.startswith("/")
        and not next_url.startswith("//")
        and "\\" not in next_url
        and not any(ord(c) < 32 for c in next_url)
    ):
        return next_url
    return "/"


def login_page(
    request: Request,
    locale: str,
    error: str | None,
    status_code: int,
    next_url: str | None = None,
) -> HTMLResponse:
    """The login form; ``next`` is the page asked for (kept across a failed attempt)."""
    next_url = (
        next_url
        or request.query_params.get("next")
        or (request.url.path if request.method == "GET" and request.url.path != "/" else "/")
    )
    return render("login.html", locale, status_code, error=error, next_url=_safe_next(next_url))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request, session: SessionDep, settings: SettingsDep, locale: PageLang):
    """The site list when signed in (cookie), else the login form."""
    try:
        user = get_current_user(request, session, settings, None)
    except HTTPException:
        return login_page(request, locale, None, 200)
    statements, n_statements = home_statements(session, user)
    return render(
        "home.html",
        locale,
        start=start_context(session, user, locale),
        finding_title=lambda f: finding_title(f, locale),
        role_label=lambda r: gettext(locale, ROLE_LABELS.get(r, r.value)),
        user=user,
        sites=visible_sites(session, user),
        can_dashboard=user.role is not Role.MEMBER,
        statements=statements,
        n_statements=n_statements,
        show_statements=user.role in (Role.OPERATOR, Role.MEMBER),
        own_member=user.member if user.role in (Role.MEMBER, Role.FIRM) else None,
        audit_entries=(
            list(audit_entries(session, limit=HOME_AUDIT_MAX)) if user.role is Role.OPERATOR else []
        ),
    )


#: The start page's template per role (``start_<name>.html``).
START_TEMPLATES = {
    Role.MEMBER: "member",
    Role.SITE_MANAGER: "manager",
    Role.FIRM: "firm",
    Role.OPERATOR: "operator",
}


def start_context(session: Session, user: User, locale: str) -> dict[str, object]:
    """What the role's start page shows (:mod:`noaber.api.startpage`)."""
    role = START_TEMPLATES[user.role]
    ctx: dict[str, object] = {"role": role}
    if user.role is Role.MEMBER and user.member is not None:
        ctx["month"] = startpage.member_month(session, user.member)
        ctx["plans"] = startpage.car_plans(session, user.member)
    elif user.role is Role.MEMBER:
        ctx.update(month=None, plans=[])
    elif user.role is Role.SITE_MANAGER:
        ctx["sites"] = [startpage.manager_site(session, s) for s in visible_sites(session, user)]
    elif user.role is Role.FIRM:
        ctx["campaigns"] = startpage.firm_campaigns(session, user)
    else:
        ctx.update(startpage.operator_overview(session))
    return ctx


#: Audit entries on the operator's start page (all: ``GET /audit``, ``noaber audit list``).
HOME_AUDIT_MAX = 20


def home_statements(
    session: Session, user: User, limit: int = HOME_STATEMENTS_MAX
) -> tuple[list[Statement], int]:
    """Settlement statements for the start page, newest first, and how many there are.

    The same rule as ``/statements`` (:mod:`noaber.api.routers.statements`): the operator
    sees all, a member only their own, other roles none.
    """
    cond: ColumnElement[bool]
    if user.role is Role.OPERATOR:
        cond = true()
    elif user.role is Role.MEMBER and user.member is not None:
        cond = Statement.member_ref == user.member.ref
    else:
        return [], 0
    rows = list(
        session.scalars(select(Statement).where(cond).order_by(Statement.id.desc()).limit(limit))
    )
    total = session.scalar(select(func.count()).select_from(Statement).where(cond)) or 0
    return rows, int(total)


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
    totp_code: Annotated[str, Form(max_length=16)] = "",
    *,
    locale: PageLang,
) -> Response:
    """Check the form's credentials, set the token cookie and go to ``next`` (throttled as
    ``POST /auth/token``: 429 with the wait in the reader's language)."""
    if demo_login_refused(settings, username, password):
        msg = gettext(locale, "Demo users sign in only in local mode.")
        return login_page(request, locale, msg, status.HTTP_403_FORBIDDEN, next_url=next)
    throttle, address = app_throttle(request), client_address(request)
    try:
        throttle.check(username, address)
    except LoginThrottled as exc:
        msg = gettext(
            locale,
            "Sign-in is locked after too many failed attempts. Try again in {seconds} "
            "seconds or ask an operator to reset your password."
            if exc.locked
            else "Too many failed sign-ins. Try again in {seconds} seconds.",
        ).format(seconds=exc.retry_after_s)
        page = login_page(request, locale, msg, status.HTTP_429_TOO_MANY_REQUESTS, next_url=next)
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    user = authenticate(session, username, password)
    if user is None or not check_totp(user, totp_code or None):
        throttle.failed(username, address)
        msg = gettext(
            locale,
            "Incorrect username or password."
            if user is None
            else "Incorrect or missing one-time code.",
        )
        return login_page(request, locale, msg, status.HTTP_401_UNAUTHORIZED, next_url=next)
    throttle.forget_user(username)
    session.commit()  # a re-hashed password, the used one-time code
    token = create_access_token(
        user.username,
        user.role.value,
        settings.signing_key,
        settings.token_ttl_s,
        token_version=user.token_version,
    )
    resp = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    resp.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=settings.token_ttl_s,
        httponly=True,
        samesite="lax",
        secure=settings.mode == "production",
        path="/",
    )
    return resp


@router.post("/logout", include_in_schema=False)
def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Revoke the cookie's token (if still valid) and forget the cookie."""
    token = request.cookies.get(TOKEN_COOKIE)
    if token:
        try:
            claims = decode_access_token(token, settings.signing_key)
        except InvalidTokenError:
            claims = None
        user = token_user(session, claims) if claims else None
        if user is not None and claims is not None:
            revoke_token(session, user, claims)
            session.commit()
    resp = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    resp.delete_cookie(TOKEN_COOKIE, path="/")
    return resp


@router.get(PLOTLY_STATIC_PATH, include_in_schema=False)
def plotly_bundle(request: Request) -> Response:
    """plotly.js of the installed ``plotly`` package (cached by the browser, ETag checked)."""
    js = plotly_js()
    etag = '"' + hashlib.sha256(js.encode()).hexdigest()[:32] + '"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(
        js,
        media_type="application/javascript",
        headers={"ETag": etag, "Cache-Control": "public, max-age=86400"},
    )


#: The pages' own script (tables as cards on a phone, live values), see its header comment.
NOABER_JS_PATH = "/static/noaber.js"


@lru_cache(maxsize=1)
def _noaber_js() -> str:
    return (Path(__file__).parents[1] / "static" / "noaber.js").read_text(encoding="utf-8")


@router.get(NOABER_JS_PATH, include_in_schema=False)
def noaber_script(request: Request) -> Response:
    """The pages' script (cached by the browser, ETag checked)."""
    js = _noaber_js()
    etag = '"' + hashlib.sha256(js.encode()).hexdigest()[:32] + '"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(
        js,
        media_type="application/javascript",
        headers={"ETag": etag, "Cache-Control": "public, max-age=3600"},
    )


def profile_figure(frame, locale: str, tz: str = LOCAL_TZ) -> go.Figure:
    """A Plotly figure of a site's 15-minute profile [kW], labelled in local time.

    The x axis runs in UTC, so that the repeated hour of the October clock change is drawn
    after the first one instead of over it (Plotly has no time zones); ticks and hover labels
    show the local time of ``tz`` (the site's).
    """
    local = frame.index.tz_convert(tz)
    x = [t.isoformat() for t in frame.index.tz_convert("UTC").tz_localize(None)]
    when = [t.strftime("%d-%m-%Y %H:%M") for t in local]
    fig = go.Figure()
    for col in frame.columns:
        label, colour = GROUP_STYLE.get(col, (col, series_colour(col)))
        name = gettext(locale, label)
        fig.add_trace(
            go.Scatter(
                x=x,
                # Plain lists, not NumPy arrays: Plotly would ship those base64-encoded, and
                # `el.data[i].y` would then not be an array in the browser.
                y=[None if v != v else round(v / 1000.0, 3) for v in frame[col].tolist()],
                customdata=when,
                hovertemplate=f"{name}: %{{y:.2f}} kW (%{{customdata}})<extra></extra>",
                name=name,
                mode="lines",
                line={"color": colour, "width": 2.4 if col == "grid" else 1.4, "shape": "hv"},
            )
        )
    midnights = [i for i, t in enumerate(local) if t.hour == 0 and t.minute == 0]
    fig.update_layout(
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        yaxis_title="kW",
        hovermode="x",
        legend={"orientation": "h", "y": 1.08},
        template="plotly_white",
    )
    fig.update_xaxes(
        rangeslider={"visible": True},
        tickmode="array",
        tickvals=[x[i] for i in midnights],
        ticktext=[local[i].strftime("%d-%m") for i in midnights],
    )
    return fig


@dataclass(frozen=True)
class DashboardParts:
    """What a dashboard shows of a site's readings: the energy per group, the grid's peak
    and the profile chart (built by :func:`dashboard_parts`, kept in the page cache)."""

    kpis: tuple[tuple[str, float], ...]  # (label, energy [Wh])
    peak_import_kw: float
    has_data: bool
    chart: str


def dashboard_parts(
    session: Session,
    site: Site,
    groups: dict[int, str],
    start: dt.datetime,
    end: dt.datetime,
    locale: str,
) -> DashboardParts:
    """The readings' part of a site's dashboard over ``[start, end)`` in ``locale``."""
    readings = read_readings(session, list(groups), start, end)
    frame = profile_frame(readings, groups, isp_range(start, end))
    kpis = tuple(
        (
            gettext(locale, GROUP_STYLE.get(c, (c, ""))[0]),
            float(frame[c].sum(skipna=True)) * ISP_S / 3600.0,
        )
        for c in frame.columns
    )
    has_data = bool(frame.notna().any().any())
    peak_kw = (
        float(frame["grid"].max(skipna=True)) / 1000.0 if "grid" in frame and has_data else 0.0
    )
    chart = figure_html(
        profile_figure(frame, locale, site.timezone), "profile-chart", height_px=480, locale=locale
    )
    return DashboardParts(kpis, peak_kw if peak_kw == peak_kw else 0.0, has_data, chart)


@router.get("/sites/{site_name}/dashboard", response_class=HTMLResponse)
def site_dashboard(
    request: Request,
    site_name: str,
    user: DashboardUser,
    session: SessionDep,
    locale: PageLang,
    cache: PageCacheDep,
    start: Annotated[
        dt.datetime | None, Query(description="Start (with offset); default: latest week")
    ] = None,
    end: Annotated[dt.datetime | None, Query(description="End (exclusive, with offset)")] = None,
):
    """The site's dashboard: energy per group and an interactive 15-minute profile chart.

    The readings' part is kept per site, period, locale, time zone and the readings versions
    of the site's power channels (:mod:`noaber.api.pagecache`); access is checked first.
    """
    site = site_for(session, user, site_name)
    channels = power_channel_state(session, site)
    groups = {cid: group for cid, group, _version in channels}
    if start is None or end is None:
        last = cache.get(
            ("latest-reading", site.id, channels), lambda: latest_reading(session, list(groups))
        )
        default = week_before(last)
    else:
        default = (start, end)
    s, e = resolve_period(start, end, default)
    parts_key = ("dashboard", site.id, site.timezone, s, e, locale, channels)
    parts = cache.get(parts_key, lambda: dashboard_parts(session, site, groups, s, e, locale))
    span = e - s
    query = {"lang": request.query_params["lang"]} if "lang" in request.query_params else {}
    nav = {
        "prev": "?" + urlencode({**query, "start": (s - span).isoformat(), "end": s.isoformat()}),
        "next": "?" + urlencode({**query, "start": e.isoformat(), "end": (e + span).isoformat()}),
    }

    def page() -> str:
        return _render_html(
            "dashboard.html",
            locale,
            user=user,
            site=site,
            start=s,
            end=e,
            kpis=[{"label": label, "energy_wh": wh} for label, wh in parts.kpis],
            peak_import_kw=parts.peak_import_kw,
            has_data=parts.has_data,
            chart=parts.chart,
            nav=nav,
            plotly_src=PLOTLY_STATIC_PATH,
        )

    # the whole page too, per the site's shown fields, the links and the reader's header
    # (their name and token-bound CSRF value: only the same signed-in session gets it again)
    links = (nav["prev"], nav["next"])
    key = ("dashboard-page", site.display_name, site.grid_import_limit_kw, links, page_chrome())
    return HTMLResponse(cache.get((*key, parts_key), page))
