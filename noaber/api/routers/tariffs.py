"""A community's settlement tariff and its versions (issue 16, point 2: "tariff versions
from a date"), over the API and on the operator's pages.

* ``GET /api/communities/{community}/tariff``: the tariff in force for new runs (the
  operator's versions, else the community file's, else the shipped 2026 tariff), its versions
  and its change history;
* ``POST /api/communities/{community}/tariff/versions``: a new version from a date (201);
  422 names the refused field, nothing is stored;
* ``/operator/tariffs`` (every community's versions) and ``/operator/tariffs/{community}``
  (its versions, history and the form that adds one; a refused value shows the form again,
  422, with a Dutch message per field).

Operator only; every change is audited ``tariff.version``. A change reaches months already
settled when they are run again (a run posts only the difference); the answer names them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.audit import Actor
from energy.errors import ValidationError
from energy.models import Community, Role, User
from energy.settings import Settings
from noaber.api.deps import SessionDep, SettingsDep, not_found, require_roles
from noaber.api.forms import FormUser
from noaber.api.language import PageLang
from noaber.api.routers.pages import gettext, render
from noaber.services.tariffs import file_tariff
from settlement.pricing import Tariff
from settlement.tariff_versions import (
    FIELDS,
    VersionChange,
    add_version,
    history,
    stored_tariff,
    version_rows,
)

router = APIRouter(tags=["tariffs"])

Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]
CommunityPath = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$", description="Community name")
]

Price = Annotated[Decimal | None, Field(None, ge=0, le=10, max_digits=12, decimal_places=8)]


class TariffVersionIn(BaseModel):
    """A new tariff version from ``valid_from``: the fields given replace those of the
    version in force on that date; the others are copied."""

    valid_from: dt.date = Field(description="Local date from which the version holds")
    shared_price_eur_per_kwh: Price = Field(
        None, description="Fixed internal price of shared energy [EUR/kWh, excl. VAT]"
    )
    v2g_compensation_eur_per_kwh: Price = Field(
        None, description="What an EV owner is paid per kWh the car delivered [EUR/kWh]"
    )
    fixed_fee_eur_per_month: Decimal | None = Field(
        None, ge=0, le=1000, max_digits=8, decimal_places=2, description="[EUR/month]"
    )
    vat_pct: Decimal | None = Field(None, ge=0, le=100, max_digits=5, decimal_places=2)

    @model_validator(mode="after")
    def _something(self) -> TariffVersionIn:
        if all(getattr(self, f) is None for f in FIELDS):
            raise ValueError(f"give at least one of {', '.join(FIELDS)}")
        return self


class TariffVersionOut(BaseModel):
    valid_from: str
    valid_to: str
    shared_price_type: str
    shared_price_eur_per_kwh: str | None
    v2g_compensation_eur_per_kwh: str
    fixed_fee_eur_per_month: str
    vat_pct: str
    energy_tax_bands: list[dict[str, Any]]


class TariffChangeOut(BaseModel):
    changed_from: dt.date
    created_by: str
    created_at: dt.datetime
    digest: str


class TariffOut(BaseModel):
    """A community's tariff in force for new runs."""

    community: str
    name: str
    digest: str
    source: str = Field(description="operator (its versions), or the file it came from")
    versions: list[TariffVersionOut]
    history: list[TariffChangeOut]
    settled_after: list[str] = Field(
        default_factory=list,
        description="After a change: months already settled from its date on, to be run "
        "again for the change to reach them",
    )


def _community(session: Session, name: str) -> Community:
    row = session.scalar(select(Community).where(Community.name == name))
    if row is None:
        raise not_found(f"community {name!r}")
    return row


def in_force(session: Session, settings: Settings, name: str) -> tuple[Tariff, str, Tariff]:
    """(the tariff in force, its source, the file's tariff it builds on)."""
    base, source = file_tariff(settings, name)
    stored = stored_tariff(session, name)
    return (stored, "operator", base) if stored is not None else (base, source, base)


def _out(session: Session, settings: Settings, name: str, settled: tuple[str, ...] = ()):
    tariff, source, _ = in_force(session, settings, name)
    return TariffOut(
        community=name,
        name=tariff.name,
        digest=tariff.digest,
        source=source,
        versions=[TariffVersionOut(**r) for r in version_rows(tariff)],
        history=[
            TariffChangeOut(
                changed_from=h.changed_from,
                created_by=h.created_by,
                created_at=h.created_at,
                digest=h.digest,
            )
            for h in history(session, name)
        ],
        settled_after=list(settled),
    )


@router.get(
    "/api/communities/{community}/tariff",
    response_model=TariffOut,
    summary="A community's settlement tariff in force, its versions and changes",
)
def get_tariff(
    community: CommunityPath, _: Operator, session: SessionDep, settings: SettingsDep
) -> TariffOut:
    _community(session, community)
    return _out(session, settings, community)


@router.post(
    "/api/communities/{community}/tariff/versions",
    response_model=TariffOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a tariff version from a date (audited)",
)
def post_version(
    community: CommunityPath,
    body: TariffVersionIn,
    user: Operator,
    session: SessionDep,
    settings: SettingsDep,
) -> TariffOut:
    _community(session, community)
    _, _, base = in_force(session, settings, community)
    change = VersionChange(**body.model_dump())
    added = add_version(session, community, base, change, Actor(user.username, "api"))
    session.commit()
    return _out(session, settings, community, added.settled_after)


# --- pages ---------------------------------------------------------------------------------

#: The form's fields and their labels (translated on the page).
LABELS = {
    "valid_from": "From (date)",
    "shared_price_eur_per_kwh": "Shared energy price (EUR/kWh, excl. VAT)",
    "v2g_compensation_eur_per_kwh": "V2G compensation (EUR/kWh)",
    "fixed_fee_eur_per_month": "Fee (EUR per month)",
    "vat_pct": "VAT percentage",
}

#: The Dutch message of a refused value, by field.
ERRORS = {
    "valid_from": "enter a date within the tariff's versions or right after the last one, as YYYY-MM-DD",
    "shared_price_eur_per_kwh": "enter a price of at least 0 with at most 8 decimals, like 0.15",
    "v2g_compensation_eur_per_kwh": "enter a price of at least 0 with at most 8 decimals, like 0.05",
    "fixed_fee_eur_per_month": "enter an amount of at least 0 in whole cents, like 1.50",
    "vat_pct": "enter a percentage from 0 to 100",
    "": "change at least one value",
}


def _page(
    session: Session,
    settings: Settings,
    user: User,
    locale: str,
    name: str,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    done: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    community = _community(session, name)
    tariff, source, _ = in_force(session, settings, name)
    return render(
        "operator_tariff.html",
        locale,
        status_code,
        user=user,
        community=community,
        tariff=tariff,
        source=source,
        versions=version_rows(tariff),
        changes=history(session, name),
        labels=LABELS,
        values=values or {},
        errors=errors or [],
        done=done,
    )


@router.get("/operator/tariffs", response_class=HTMLResponse, include_in_schema=False)
def tariffs_page(
    user: Operator, session: SessionDep, settings: SettingsDep, locale: PageLang
) -> HTMLResponse:
    """Every community with the tariff version in force today and a link to its versions."""
    today = dt.date.today()
    rows = []
    for c in session.scalars(select(Community).order_by(Community.name)):
        tariff, source, _ = in_force(session, settings, c.name)
        now = next(
            (
                r
                for r in version_rows(tariff)
                if r["valid_from"] <= today.isoformat() < r["valid_to"]
            ),
            None,
        )
        rows.append({"community": c, "source": source, "now": now, "n": len(tariff.versions)})
    return render("operator_tariffs.html", locale, user=user, rows=rows)


@router.get("/operator/tariffs/{community}", response_class=HTMLResponse, include_in_schema=False)
def tariff_page(
    community: CommunityPath,
    user: Operator,
    session: SessionDep,
    settings: SettingsDep,
    locale: PageLang,
    done: str = "",
) -> HTMLResponse:
    """A community's tariff versions, its changes and the form that adds a version."""
    return _page(session, settings, user, locale, community, done=done[:10])


def _decimal(text: str) -> Decimal | None:
    text = text.strip().replace(",", ".")
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None


@router.post("/operator/tariffs/{community}", include_in_schema=False)
def tariff_add(
    community: CommunityPath,
    user: FormUser,
    session: SessionDep,
    settings: SettingsDep,
    locale: PageLang,
    valid_from: Annotated[str, Form(max_length=20)] = "",
    shared_price_eur_per_kwh: Annotated[str, Form(max_length=30)] = "",
    v2g_compensation_eur_per_kwh: Annotated[str, Form(max_length=30)] = "",
    fixed_fee_eur_per_month: Annotated[str, Form(max_length=30)] = "",
    vat_pct: Annotated[str, Form(max_length=30)] = "",
) -> Response:
    """Add a version from the form (303 back to the page), or show the form again with the
    reason per field (422); nothing is stored then."""
    from noaber.api.routers.operator import _must_be

    _must_be(user, Role.OPERATOR)
    _community(session, community)
    typed = {
        "valid_from": valid_from,
        "shared_price_eur_per_kwh": shared_price_eur_per_kwh,
        "v2g_compensation_eur_per_kwh": v2g_compensation_eur_per_kwh,
        "fixed_fee_eur_per_month": fixed_fee_eur_per_month,
        "vat_pct": vat_pct,
    }
    errors: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    try:
        values["valid_from"] = dt.date.fromisoformat(valid_from.strip())
    except ValueError:
        errors.append({"field": "valid_from", "message": gettext(locale, ERRORS["valid_from"])})
    for f in FIELDS:
        try:
            values[f] = _decimal(typed[f])
        except ValueError:
            errors.append({"field": f, "message": gettext(locale, ERRORS[f])})
    if not errors and all(values.get(f) is None for f in FIELDS):
        errors.append({"field": "", "message": gettext(locale, ERRORS[""])})
    if not errors:
        _, _, base = in_force(session, settings, community)
        try:
            added = add_version(
                session, community, base, VersionChange(**values), Actor(user.username, "api")
            )
        except ValidationError as exc:
            session.rollback()
            field = exc.location if exc.location in ERRORS else "valid_from"
            errors.append({"field": field, "message": gettext(locale, ERRORS[field])})
        else:
            session.commit()
            url = f"/operator/tariffs/{community}?done={len(added.settled_after)}"
            return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
    return _page(
        session, settings, user, locale, community, values=typed, errors=errors,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )  # fmt: skip
