"""What people set for the next plans: an EV owner's charging session, a manager's limits.

Two tables, one writer each (the functions below), every write audited in the writer's
transaction (:func:`energy.audit.record`):

* ``ev_sessions``: an EV owner's next stay at the site: arrival and departure (UTC), the SoC
  wanted at departure, the minimum SoC V2G may not go below, whether V2G is allowed, and
  optionally the SoC on arrival. A car has at most one upcoming session: setting a new one
  cancels the earlier (``cancelled_at``; the row stays, as the audit log does). The rows refer
  to the car (asset) and the member by id, as the optimiser's schedule steps do; they are part
  of the member's export.
* ``site_operating_limits``: the site manager's grid import limit and battery reserve. They
  can only be tighter than the site's own (the connection's grid limit of ``sites``, which the
  operator's site import sets, and the battery's ``soc_min_pct``..``soc_max_pct``): a
  manager lowers the import the plan may draw, never raises it above the connection.

Bad input raises :class:`energy.errors.ValidationError` naming the field and the value;
nothing is written then.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from energy.audit import Actor, record
from energy.clock import utc_now
from energy.db import Base, UTCDateTime
from energy.errors import ValidationError
from energy.models import Asset, AssetKind, Member, Site
from energy.timegrid import LOCAL_TZ

#: How far ahead a session may be set [days].
SESSION_AHEAD_MAX_DAYS = 14
#: The longest stay one session may cover [h].
SESSION_LENGTH_MAX_H = 72
#: The EV's own minimum SoC when its params name none [%] (as the scenario file's default).
EV_SOC_MIN_DEFAULT_PCT = 20.0


class EvSession(Base):
    """An EV owner's announced stay: the plan charges to ``soc_target_pct`` by departure."""

    __tablename__ = "ev_sessions"
    __table_args__ = (
        CheckConstraint("departure_at > arrival_at", name="departure_after_arrival"),
        CheckConstraint(
            "soc_min_pct >= 0 AND soc_min_pct <= soc_target_pct AND soc_target_pct <= 100",
            name="soc_order",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    arrival_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    departure_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    soc_target_pct: Mapped[float] = mapped_column(Float)
    soc_min_pct: Mapped[float] = mapped_column(Float)
    soc_arrival_pct: Mapped[float | None] = mapped_column(Float)
    v2g_allowed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    created_by: Mapped[str] = mapped_column(String(100))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    asset: Mapped[Asset] = relationship()


class SiteOperatingLimits(Base):
    """A site manager's limits for the plans, within the site's own (see the module doc)."""

    __tablename__ = "site_operating_limits"
    __table_args__ = (
        CheckConstraint("grid_import_limit_kw > 0", name="operating_import_limit_positive"),
        CheckConstraint(
            "battery_reserve_pct IS NULL OR (battery_reserve_pct >= 0 AND "
            "battery_reserve_pct <= 100)",
            name="battery_reserve_range",
        ),
    )

    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    grid_import_limit_kw: Mapped[float] = mapped_column(Float)
    battery_reserve_pct: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_by: Mapped[str] = mapped_column(String(100))


@dataclass(frozen=True)
class SessionRequest:
    """What an owner asks for (times with an offset; SoC in %)."""

    arrival: dt.datetime
    departure: dt.datetime
    soc_target_pct: float
    soc_min_pct: float
    v2g_allowed: bool
    soc_arrival_pct: float | None = None


class ControlError(ValidationError):
    """A refused session or limit: ``location`` names the field; ``template`` and ``params``
    let a page say it in the reader's language (``template.format(**params)`` is the
    English ``message``)."""

    def __init__(self, field: str, template: str, source: str, **params: Any) -> None:
        super().__init__(template.format(**params), source, field)
        self.template = template
        self.params = params


def _bad(field: str, template: str, source: str, **params: Any) -> ControlError:
    return ControlError(field, template, source, **params)


def _local(t: dt.datetime) -> str:
    return t.astimezone(ZoneInfo(LOCAL_TZ)).strftime("%d-%m-%Y %H:%M")


def ev_soc_bounds(asset: Asset) -> tuple[float, float]:
    """The car's own SoC floor [%] (its ``soc_min_pct`` param) and ceiling (100 %)."""
    params = asset.params or {}
    return float(params.get("soc_min_pct", EV_SOC_MIN_DEFAULT_PCT)), 100.0


def validate_session(asset: Asset, req: SessionRequest, now: dt.datetime) -> None:
    """Refuse a session that the plan could not honour or that makes no sense.

    Raises
    ------
    ValidationError
        Naming the field (``arrival``, ``departure``, ``soc_target_pct``, ``soc_min_pct``,
        ``soc_arrival_pct``, ``v2g_allowed``) and the value.
    """
    src = f"session of {asset.name}"
    for name in ("arrival", "departure"):
        t = getattr(req, name)
        if t.tzinfo is None:
            raise _bad(name, "must have a time zone offset, got {value}", src, value=t.isoformat())
    try:
        arrival, departure = req.arrival.astimezone(dt.UTC), req.departure.astimezone(dt.UTC)
        now + dt.timedelta(days=SESSION_AHEAD_MAX_DAYS)
        departure - arrival
    except (OverflowError, ValueError):
        raise _bad(
            "arrival",
            "must be a time within the coming days, got {value}",
            src,
            value=req.arrival.isoformat(),
        ) from None
    if departure <= arrival:
        raise _bad(
            "departure",
            "must be after the arrival {arrival}, got {value}",
            src,
            arrival=_local(arrival),
            value=_local(departure),
        )
    if departure <= now:
        raise _bad("departure", "must be in the future, got {value}", src, value=_local(departure))
    if arrival > now + dt.timedelta(days=SESSION_AHEAD_MAX_DAYS):
        raise _bad(
            "arrival",
            "may be at most {days} days ahead, got {value}",
            src,
            days=SESSION_AHEAD_MAX_DAYS,
            value=_local(arrival),
        )
    hours = (departure - arrival).total_seconds() / 3600
    if hours > SESSION_LENGTH_MAX_H:
        raise _bad(
            "departure",
            "a stay may last at most {max_h} h, got {hours:.1f} h",
            src,
            max_h=SESSION_LENGTH_MAX_H,
            hours=hours,
        )
    floor, ceiling = ev_soc_bounds(asset)
    for name in ("soc_target_pct", "soc_min_pct", "soc_arrival_pct"):
        v = getattr(req, name)
        if v is None:
            continue
        if not (0 <= v <= 100) or v != v:
            raise _bad(name, "must be between 0 and 100 %, got {value}", src, value=v)
    if req.soc_min_pct < floor:
        raise _bad(
            "soc_min_pct",
            "must be at least the car's own minimum of {floor:g} %, got {value:g}",
            src,
            floor=floor,
            value=req.soc_min_pct,
        )
    if req.soc_target_pct < req.soc_min_pct:
        raise _bad(
            "soc_target_pct",
            "must be at least the minimum SoC {floor:g} %, got {value:g}",
            src,
            floor=req.soc_min_pct,
            value=req.soc_target_pct,
        )
    if req.soc_target_pct > ceiling:
        raise _bad(
            "soc_target_pct",
            "must be at most {ceiling:g} %, got {value:g}",
            src,
            ceiling=ceiling,
            value=req.soc_target_pct,
        )
    params = asset.params or {}
    if req.v2g_allowed and not params.get("v2g", False):
        raise _bad("v2g_allowed", "this car's charger cannot discharge (no V2G)", src)
    start_soc = req.soc_arrival_pct if req.soc_arrival_pct is not None else req.soc_min_pct
    capacity = float(params.get("capacity_kwh", 0) or 0)
    charge_kw = float(params.get("max_charge_kw", 0) or 0)
    efficiency = float(params.get("efficiency", 0.92) or 0.92)
    if capacity > 0 and charge_kw > 0 and req.soc_target_pct > start_soc:
        need_kwh = (req.soc_target_pct - start_soc) / 100 * capacity
        can_kwh = charge_kw * hours * efficiency
        if need_kwh > can_kwh + 1e-9:
            raise _bad(
                "soc_target_pct",
                "{value:g} % cannot be reached: it needs {need:.1f} kWh, the charger gives "
                "at most {can:.1f} kWh in the {hours:.1f} h of the stay",
                src,
                value=req.soc_target_pct,
                need=need_kwh,
                can=can_kwh,
                hours=hours,
            )


def upcoming_session(
    session: Session, asset_id: int, now: dt.datetime | None = None
) -> EvSession | None:
    """The car's session not yet ended and not cancelled, if any."""
    now = now or utc_now()
    return session.scalar(
        select(EvSession)
        .where(
            EvSession.asset_id == asset_id,
            EvSession.cancelled_at.is_(None),
            EvSession.departure_at > now,
        )
        .order_by(EvSession.arrival_at)
        .limit(1)
    )


def set_ev_session(
    session: Session,
    member: Member,
    asset: Asset,
    req: SessionRequest,
    actor: Actor,
    now: dt.datetime | None = None,
) -> EvSession:
    """Store ``member``'s next session of car ``asset`` (the caller commits).

    The earlier upcoming session of the car, if any, is cancelled. Raises
    :class:`ValidationError` for a car that is not the member's EV or a bad request.
    """
    now = now or utc_now()
    if asset.kind is not AssetKind.EV or asset.owner_member_id != member.id:
        raise _bad("asset", "{car} is not one of your cars", "session", car=asset.name)
    validate_session(asset, req, now)
    for old in session.scalars(
        select(EvSession).where(
            EvSession.asset_id == asset.id,
            EvSession.cancelled_at.is_(None),
            EvSession.departure_at > now,
        )
    ):
        old.cancelled_at = now
    row = EvSession(
        asset_id=asset.id,
        member_id=member.id,
        arrival_at=req.arrival.astimezone(dt.UTC),
        departure_at=req.departure.astimezone(dt.UTC),
        soc_target_pct=float(req.soc_target_pct),
        soc_min_pct=float(req.soc_min_pct),
        soc_arrival_pct=None if req.soc_arrival_pct is None else float(req.soc_arrival_pct),
        v2g_allowed=bool(req.v2g_allowed),
        created_at=now,
        created_by=actor.name[:100],
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "ev_session.set",
        f"{asset.site.name}/{asset.name}",
        {
            "session_id": row.id,
            "arrival": row.arrival_at.isoformat(),
            "departure": row.departure_at.isoformat(),
            "soc_target_pct": row.soc_target_pct,
            "soc_min_pct": row.soc_min_pct,
            "soc_arrival_pct": row.soc_arrival_pct,
            "v2g_allowed": row.v2g_allowed,
        },
        at=now,
    )
    return row


def sessions_for_site(
    session: Session, site: Site, start: dt.datetime, end: dt.datetime
) -> list[EvSession]:
    """The sessions of ``site``'s cars that overlap ``[start, end)``, not cancelled."""
    return list(
        session.scalars(
            select(EvSession)
            .join(Asset, Asset.id == EvSession.asset_id)
            .where(
                Asset.site_id == site.id,
                EvSession.cancelled_at.is_(None),
                EvSession.departure_at > start,
                EvSession.arrival_at < end,
            )
            .order_by(EvSession.asset_id, EvSession.arrival_at)
        )
    )


def battery_bounds(site: Site) -> tuple[float, float] | None:
    """The site battery's own SoC range [%] (``soc_min_pct``, ``soc_max_pct`` params), or
    None without a battery."""
    for a in site.assets:
        if a.kind is AssetKind.BATTERY:
            p = a.params or {}
            return float(p.get("soc_min_pct", 0.0)), float(p.get("soc_max_pct", 100.0))
    return None


def operating_limits(session: Session, site: Site) -> SiteOperatingLimits | None:
    """The manager's limits of ``site``, if set."""
    return session.get(SiteOperatingLimits, site.id)


def set_operating_limits(
    session: Session,
    site: Site,
    grid_import_limit_kw: float,
    battery_reserve_pct: float | None,
    actor: Actor,
    now: dt.datetime | None = None,
) -> SiteOperatingLimits:
    """Store the manager's limits of ``site`` within its own (the caller commits).

    Raises
    ------
    ValidationError
        ``grid_import_limit_kw`` not in ``(0, site limit]``; ``battery_reserve_pct`` outside
        the battery's own range, or given for a site without a battery.
    """
    now = now or utc_now()
    src = f"limits of site {site.name!r}"
    limit = float(grid_import_limit_kw)
    if not (limit > 0) or limit != limit:
        raise _bad("grid_import_limit_kw", "must be more than 0 kW, got {value}", src, value=limit)
    if limit > site.grid_import_limit_kw + 1e-9:
        raise _bad(
            "grid_import_limit_kw",
            "must be at most the connection's {ceiling:g} kW, got {value:g}",
            src,
            ceiling=site.grid_import_limit_kw,
            value=limit,
        )
    if battery_reserve_pct is not None:
        bounds = battery_bounds(site)
        if bounds is None:
            raise _bad("battery_reserve_pct", "the site has no battery", src)
        lo, hi = bounds
        if not (lo <= battery_reserve_pct <= hi):
            raise _bad(
                "battery_reserve_pct",
                "must be between the battery's {lo:g} and {hi:g} %, got {value:g}",
                src,
                lo=lo,
                hi=hi,
                value=battery_reserve_pct,
            )
    row = session.get(SiteOperatingLimits, site.id)
    before = (
        None
        if row is None
        else {
            "grid_import_limit_kw": row.grid_import_limit_kw,
            "battery_reserve_pct": row.battery_reserve_pct,
        }
    )
    if row is None:
        row = SiteOperatingLimits(site_id=site.id)
        session.add(row)
    row.grid_import_limit_kw = limit
    row.battery_reserve_pct = None if battery_reserve_pct is None else float(battery_reserve_pct)
    row.updated_at = now
    row.updated_by = actor.name[:100]
    session.flush()
    record(
        session,
        actor,
        "site.limits",
        site.name,
        {
            "grid_import_limit_kw": row.grid_import_limit_kw,
            "battery_reserve_pct": row.battery_reserve_pct,
            "before": before,
            "connection_kw": site.grid_import_limit_kw,
        },
        at=now,
    )
    return row
