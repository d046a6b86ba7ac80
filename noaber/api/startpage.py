"""What each role's start page shows, and the figures behind the province overview.

Plain functions over the session; the routers render them (``noaber/api/templates/start_*.html``).
Every figure is read from what is stored: statements (the ledger's view), stored plans
(``optimizer_schedules``; one per local day, the latest made for that day), the interval
readings, the Meetkoffer savings records.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from energy.alarms import DeviceAlarm, site_alarms
from energy.clock import utc_now
from energy.models import (
    Asset,
    AssetKind,
    Channel,
    Device,
    IntervalReading,
    Member,
    Quantity,
    Role,
    Site,
    User,
)
from energy.prices import PricePoint
from energy.sitecontrols import EvSession, operating_limits, upcoming_session
from energy.timegrid import ISP_S, LOCAL_TZ
from meetkoffer.models import Campaign
from optimizer.scenario import CO2_KG_PER_KWH_DEFAULT
from optimizer.store import Schedule, ScheduleStep
from settlement.models import MemberDay, SettlementRun, Statement
from settlement.statements import statement_data

#: A device whose newest reading is older than this, against the newest of its site, is down.
DEVICE_STALE = dt.timedelta(hours=1)
#: Plan statuses that count as a good plan.
PLAN_OK = frozenset({"optimal", "ok", "feasible"})


@dataclass(frozen=True)
class Departure:
    """A car's departure in a plan: the SoC the plan guarantees and what was asked [%]."""

    ev: str
    departure: dt.datetime
    soc_pct: float
    target_pct: float
    met: bool


@dataclass
class CarPlan:
    """The newest plan of one of a member's cars."""

    asset: Asset
    schedule: Schedule | None
    departures: list[Departure] = field(default_factory=list)
    session: EvSession | None = None


def _departures(schedule: Schedule, ev: str) -> list[Departure]:
    opt = (schedule.summary or {}).get("kpis", {}).get("optimized", {})
    out = []
    for d in opt.get("departures", []):
        if d.get("ev") != ev:
            continue
        out.append(
            Departure(
                ev=ev,
                departure=pd.Timestamp(d["departure"]).to_pydatetime(),
                soc_pct=float(d.get("soc_pct", 0.0)),
                target_pct=float(d.get("target_pct", 0.0)),
                met=bool(d.get("met", False)),
            )
        )
    return out


def car_plans(session: Session, member: Member) -> list[CarPlan]:
    """Each of ``member``'s cars with its newest plan and upcoming session."""
    cars = session.scalars(
        select(Asset)
        .where(Asset.owner_member_id == member.id, Asset.kind == AssetKind.EV)
        .order_by(Asset.site_id, Asset.name)
    )
    out = []
    for car in cars:
        sid = session.scalar(
            select(func.max(ScheduleStep.schedule_id)).where(
                ScheduleStep.owner_ref == member.ref, ScheduleStep.asset == car.name
            )
        )
        sched = session.get(Schedule, sid) if sid is not None else None
        out.append(
            CarPlan(
                asset=car,
                schedule=sched,
                departures=_departures(sched, car.name) if sched is not None else [],
                session=upcoming_session(session, car.id),
            )
        )
    return out


@dataclass(frozen=True)
class MonthFigures:
    """What a member's car did in a settled month (from its statement) [Wh, cents]."""

    period: str
    statement_id: int
    solar_charged_wh: int
    delivered_wh: int
    earned_cents: int


def member_month(session: Session, member: Member) -> MonthFigures | None:
    """The newest statement's month: solar kWh charged, kWh delivered, net amount."""
    st = session.scalar(
        select(Statement)
        .where(Statement.member_ref == member.ref)
        .order_by(Statement.period.desc(), Statement.id.desc())
        .limit(1)
    )
    if st is None:
        return None
    data = statement_data(session, st.id)
    return MonthFigures(
        period=st.period,
        statement_id=st.id,
        solar_charged_wh=data.total.received_wh,
        delivered_wh=data.total.delivered_wh,
        earned_cents=data.total.net_cents,
    )


def statement_history(session: Session, member: Member) -> list[dict[str, Any]]:
    """Per statement, oldest first: period, number, kWh charged from solar, delivered, net."""
    rows = list(
        session.scalars(
            select(Statement)
            .where(Statement.member_ref == member.ref)
            .order_by(Statement.period, Statement.id)
        )
    )
    out = []
    for st in rows:
        data = statement_data(session, st.id)
        out.append(
            {
                "statement": st,
                "solar_charged_wh": data.total.received_wh,
                "delivered_wh": data.total.delivered_wh,
                "net_cents": data.total.net_cents,
            }
        )
    return out


# --- plans per day -------------------------------------------------------------------------


def local_day_bounds(day: dt.date, tz: str = LOCAL_TZ) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of a local day in UTC (92, 96 or 100 ISPs)."""
    z = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(), z).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), z).astimezone(dt.UTC)
    return start, end


def plan_for_day(session: Session, site: Site, day: dt.date) -> Schedule | None:
    """The latest plan made that covers the start of local ``day``, else the latest that
    starts on it."""
    start, end = local_day_bounds(day, site.timezone)
    covering = session.scalar(
        select(Schedule)
        .where(Schedule.site_name == site.name, Schedule.start < end, Schedule.end > start)
        .order_by(Schedule.start.desc(), Schedule.id.desc())
        .limit(1)
    )
    return covering


def daily_plans(
    session: Session, site_name: str, start: dt.datetime, end: dt.datetime, tz: str
) -> list[Schedule]:
    """One plan per local start day in ``[start, end)``: the newest made for that day."""
    rows = session.scalars(
        select(Schedule)
        .where(Schedule.site_name == site_name, Schedule.start >= start, Schedule.start < end)
        .order_by(Schedule.id)
    )
    z = ZoneInfo(tz)
    by_day: dict[dt.date, Schedule] = {}
    for s in rows:
        by_day[s.start.astimezone(z).date()] = s  # the later id wins
    return [by_day[d] for d in sorted(by_day)]


@dataclass(frozen=True)
class PlanTotals:
    """Sums over daily plans [EUR, kWh, kg, kW]."""

    days: int = 0
    savings_vs_no_control_eur: float = 0.0
    savings_vs_self_consumption_eur: float = 0.0
    v2g_kwh: float = 0.0
    co2_avoided_kg: float = 0.0
    peak_reduction_kw: float = 0.0


def plan_totals(plans: list[Schedule]) -> PlanTotals:
    """Savings against both baselines, V2G energy, CO2 avoided (the import the plan avoids
    against no control x the plan's emission factor) and the peak reduction (the highest
    import of no control minus that of the plans) over ``plans``."""
    if not plans:
        return PlanTotals()
    s_nc = s_sc = v2g = co2 = 0.0
    peak_nc = peak_opt = 0.0
    for p in plans:
        summary = p.summary or {}
        sav = summary.get("savings_eur", {})
        s_nc += float(sav.get("no_control", 0.0))
        s_sc += float(sav.get("self_consumption", 0.0))
        k = summary.get("kpis", {})
        opt, nc = k.get("optimized", {}), k.get("no_control", {})
        v = opt.get("v2g_kwh", 0.0)
        v2g += float(sum(v.values()) if isinstance(v, dict) else v or 0.0)
        co2 += float(nc.get("co2_kg", 0.0)) - float(opt.get("co2_kg", 0.0))
        peak_nc = max(peak_nc, float(nc.get("peak_import_kw", 0.0)))
        peak_opt = max(peak_opt, float(opt.get("peak_import_kw", 0.0)))
    return PlanTotals(
        days=len(plans),
        savings_vs_no_control_eur=round(s_nc, 2),
        savings_vs_self_consumption_eur=round(s_sc, 2),
        v2g_kwh=round(v2g, 3),
        co2_avoided_kg=round(co2, 3),
        peak_reduction_kw=round(peak_nc - peak_opt, 3),
    )


def month_and_year(now: dt.datetime, tz: str) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """``{"month": [start, end), "year": [start, end)}`` of ``now``'s local month and year."""
    z = ZoneInfo(tz)
    local = now.astimezone(z)
    m0 = dt.datetime(local.year, local.month, 1, tzinfo=z)
    m1 = dt.datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=z)
    y0 = dt.datetime(local.year, 1, 1, tzinfo=z)
    y1 = dt.datetime(local.year + 1, 1, 1, tzinfo=z)
    return {
        "month": (m0.astimezone(dt.UTC), m1.astimezone(dt.UTC)),
        "year": (y0.astimezone(dt.UTC), y1.astimezone(dt.UTC)),
    }


# --- live values and alerts -----------------------------------------------------------------


def _latest_reading(session: Session, channel_ids: list[int]) -> dict[int, IntervalReading]:
    if not channel_ids:
        return {}
    newest = (
        select(IntervalReading.channel_id, func.max(IntervalReading.isp_start).label("t"))
        .where(IntervalReading.channel_id.in_(channel_ids))
        .group_by(IntervalReading.channel_id)
        .subquery()
    )
    rows = session.scalars(
        select(IntervalReading).join(
            newest,
            (IntervalReading.channel_id == newest.c.channel_id)
            & (IntervalReading.isp_start == newest.c.t),
        )
    )
    return {r.channel_id: r for r in rows}


@dataclass(frozen=True)
class LiveValues:
    """The newest quarter-hour of a site [W, %], and when it started (UTC)."""

    at: dt.datetime | None
    battery_soc_pct: float | None
    pv_w: float | None
    grid_w: float | None
    cars_charging: int
    cars_total: int


def live_values(session: Session, site: Site) -> LiveValues:
    """The site's newest ISP: battery SoC, PV and grid power (mean W), cars drawing or
    giving power (|P| > 50 W) of all its cars."""
    chans = list(
        session.execute(
            select(Channel.id, Channel.quantity, Asset.kind)
            .join(Asset, Asset.id == Channel.asset_id)
            .where(Asset.site_id == site.id)
        )
    )
    latest = _latest_reading(session, [c.id for c in chans])
    at = max((r.isp_start for r in latest.values()), default=None)
    soc: float | None = None
    pv: float | None = None
    grid: float | None = None
    charging = 0
    cars = {a.id for a in site.assets if a.kind is AssetKind.EV}
    for cid, quantity, kind in chans:
        r = latest.get(cid)
        if r is None or r.isp_start != at or r.power_mean_w is None:
            continue
        value = float(r.power_mean_w)
        if quantity is Quantity.SOC and kind is AssetKind.BATTERY:
            soc = value
        elif quantity is Quantity.POWER:
            if kind is AssetKind.PV:
                pv = (pv or 0.0) + value
            elif kind is AssetKind.METER:
                grid = (grid or 0.0) + value
            elif kind is AssetKind.EV and abs(value) > 50:
                charging += 1
    return LiveValues(at, soc, pv, grid, charging, len(cars))


@dataclass(frozen=True)
class DeviceHealth:
    """A device's gateway health: when its channels last gave a reading."""

    device: Device
    last_reading: dt.datetime | None
    ok: bool


def device_health(session: Session, site: Site) -> list[DeviceHealth]:
    """Each device of ``site``: down when its newest reading is more than
    :data:`DEVICE_STALE` older than the newest reading of the site (or it has none)."""
    devices = list(site.devices)
    by_device: dict[int, list[int]] = {}
    for cid, did in session.execute(
        select(Channel.id, Channel.device_id)
        .join(Asset, Asset.id == Channel.asset_id)
        .where(Asset.site_id == site.id, Channel.device_id.is_not(None))
    ):
        if did is not None:
            by_device.setdefault(did, []).append(cid)
    latest = _latest_reading(session, [c for cs in by_device.values() for c in cs])
    newest = max((r.isp_start for r in latest.values()), default=None)
    out = []
    for d in devices:
        times = [latest[c].isp_start for c in by_device.get(d.id, []) if c in latest]
        last = max(times, default=None)
        ok = last is not None and newest is not None and newest - last <= DEVICE_STALE
        out.append(DeviceHealth(d, last, ok))
    return out


@dataclass(frozen=True)
class Alert:
    """Something a manager must look at: ``kind`` is device_down, plan_failed or
    control_lost; ``what`` names it."""

    kind: str
    what: str
    at: dt.datetime | None = None


def site_alerts(session: Session, site: Site) -> list[Alert]:
    """Devices down, the newest plan not optimal, a device the closed loop lost control of
    (its newest alarm in :mod:`energy.alarms` is ``control_lost``)."""
    alerts = [
        Alert("device_down", h.device.name, h.last_reading)
        for h in device_health(session, site)
        if not h.ok
    ]
    newest = session.scalar(
        select(Schedule)
        .where(Schedule.site_name == site.name)
        .order_by(Schedule.id.desc())
        .limit(1)
    )
    if newest is not None and newest.status not in PLAN_OK:
        alerts.append(Alert("plan_failed", f"{newest.id} ({newest.status})", newest.created_at))
    # the closed loop's alarms: a device whose newest alarm is control_lost (not restored since)
    last: dict[tuple[str, str], DeviceAlarm] = {}
    for alarm in site_alarms(session, site.id):  # newest first
        last.setdefault((alarm.asset, alarm.device), alarm)
    alerts += [
        Alert("control_lost", f"{a.asset} ({a.device})", a.at)
        for a in sorted(last.values(), key=lambda a: a.at)
        if a.kind == "control_lost"
    ]
    return alerts


def manager_site(session: Session, site: Site, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything of one site on the manager's start page."""
    now = now or utc_now()
    live = live_values(session, site)
    # "today" is the day of the newest quarter-hour measured, or of the clock if later
    ref_now = max(now, live.at + dt.timedelta(seconds=ISP_S)) if live.at else now
    periods = month_and_year(ref_now, site.timezone)
    local_today = ref_now.astimezone(ZoneInfo(site.timezone)).date()
    return {
        "site": site,
        "live": live,
        "today": local_today,
        "tomorrow": local_today + dt.timedelta(days=1),
        "plan_today": plan_for_day(session, site, local_today),
        "plan_tomorrow": plan_for_day(session, site, local_today + dt.timedelta(days=1)),
        "month": plan_totals(daily_plans(session, site.name, *periods["month"], site.timezone)),
        "year": plan_totals(daily_plans(session, site.name, *periods["year"], site.timezone)),
        "alerts": site_alerts(session, site),
        "limits": operating_limits(session, site),
        "building_statements": building_statements(session, site),
    }


def building_statements(session: Session, site: Site) -> list[Statement]:
    """The statements of the site's own member (the building), newest first."""
    if site.owner is None:
        return []
    return list(
        session.scalars(
            select(Statement)
            .where(Statement.member_ref == site.owner.ref)
            .order_by(Statement.id.desc())
            .limit(12)
        )
    )


# --- firm -------------------------------------------------------------------------------------


def firm_campaigns(session: Session, user: User) -> list[dict[str, Any]]:
    """The user's campaigns (the operator: all) with ranked findings and verified savings."""
    q = (
        select(Campaign)
        .options(selectinload(Campaign.findings), selectinload(Campaign.savings))
        .order_by(Campaign.start_at.desc())
    )
    if user.role is not Role.OPERATOR:
        q = q.where(Campaign.firm_member_id == user.member_id)
    out = []
    for c in session.scalars(q):
        latest: dict[int, Any] = {}
        for s in c.savings:
            if s.verification_id not in latest or s.version > latest[s.verification_id].version:
                latest[s.verification_id] = s
        verified = [
            s for s in latest.values() if getattr(s.verification, "withdrawn_at", None) is None
        ]
        out.append(
            {
                "campaign": c,
                "findings": sorted(c.findings, key=lambda f: f.rank),
                "verified": verified,
                "verified_kwh": sum(s.avoided_kwh for s in verified),
                "verified_eur": sum(s.avoided_eur for s in verified),
                "verified_co2_t": sum(s.avoided_co2_t for s in verified),
            }
        )
    return out


# --- operator: province overview --------------------------------------------------------------


@dataclass(frozen=True)
class ProvinceRow:
    """One site in the province overview [kWh, kg, kW, EUR]."""

    site: str
    display_name: str
    shared_kwh: float
    v2g_kwh: float
    co2_avoided_kg: float
    peak_reduction_kw: float
    savings_eur: float


def _posted_runs(session: Session) -> list[SettlementRun]:
    """The newest posted run of each community and period (a correction supersedes)."""
    runs = session.scalars(
        select(SettlementRun).where(SettlementRun.status == "posted").order_by(SettlementRun.id)
    )
    newest: dict[tuple[str, str], SettlementRun] = {}
    for r in runs:
        newest[(r.community, r.period)] = r
    return list(newest.values())


def province_rows(session: Session) -> tuple[list[ProvinceRow], ProvinceRow]:
    """Per site and in total: the shared kWh and V2G kWh settled (members' days behind the
    site's connection, newest posted run per period), and from the stored daily plans the
    CO2 avoided, the peak reduction and the savings against no control."""
    runs = _posted_runs(session)
    run_ids = [r.id for r in runs]
    by_connection: dict[str, tuple[int, int]] = {}
    if run_ids:
        for conn, shared, discharge in session.execute(
            select(
                MemberDay.connection,
                func.sum(MemberDay.shared_wh),
                func.sum(MemberDay.discharge_wh),
            )
            .where(MemberDay.run_id.in_(run_ids))
            .group_by(MemberDay.connection)
        ):
            by_connection[str(conn)] = (int(shared or 0), int(discharge or 0))
    rows = []
    far = dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    for site in session.scalars(select(Site).order_by(Site.name)):
        shared_wh, v2g_wh = by_connection.get(site.ean, (0, 0))
        totals = plan_totals(daily_plans(session, site.name, *far, site.timezone))
        rows.append(
            ProvinceRow(
                site=site.name,
                display_name=site.display_name,
                shared_kwh=shared_wh / 1000,
                v2g_kwh=v2g_wh / 1000,
                co2_avoided_kg=totals.co2_avoided_kg,
                peak_reduction_kw=totals.peak_reduction_kw,
                savings_eur=totals.savings_vs_no_control_eur,
            )
        )
    total = ProvinceRow(
        site="total",
        display_name="",
        shared_kwh=sum(r.shared_kwh for r in rows),
        v2g_kwh=sum(r.v2g_kwh for r in rows),
        co2_avoided_kg=sum(r.co2_avoided_kg for r in rows),
        peak_reduction_kw=sum(r.peak_reduction_kw for r in rows),
        savings_eur=sum(r.savings_eur for r in rows),
    )
    return rows, total


#: The emission factor the overview states with its CO2 figures [kg/kWh].
CO2_FACTOR_KG_PER_KWH = CO2_KG_PER_KWH_DEFAULT


def operator_overview(session: Session) -> dict[str, Any]:
    """The operator's start page: sites with their devices' health, members, price series,
    settlement runs and users."""
    sites = list(
        session.scalars(select(Site).options(selectinload(Site.devices)).order_by(Site.name))
    )
    tariffs = [
        {"series": name, "n": n, "first": first, "last": last}
        for name, n, first, last in session.execute(
            select(
                PricePoint.series,
                func.count(),
                func.min(PricePoint.isp_start),
                func.max(PricePoint.isp_start),
            )
            .group_by(PricePoint.series)
            .order_by(PricePoint.series)
        )
    ]
    return {
        "health": [{"site": s, "devices": device_health(session, s)} for s in sites],
        "members": list(
            session.scalars(
                select(Member).options(selectinload(Member.personal)).order_by(Member.ref)
            )
        ),
        "tariffs": tariffs,
        "runs": list(
            session.scalars(select(SettlementRun).order_by(SettlementRun.id.desc()).limit(20))
        ),
        "users": list(session.scalars(select(User).order_by(User.username))),
    }
