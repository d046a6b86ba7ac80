"""Schedules in the SQL store: one row per plan and one per step and asset.

Tables (Alembic branch ``optimizer`` in ``optimizer/migrations/versions``):

* ``optimizer_schedules``: the plan: site, horizon ``[start, end)`` (UTC), step length,
  solver status, objective [EUR] and the summary (KPIs of plan and baselines, savings).
* ``optimizer_schedule_steps``: per step and asset the power [kW] in the meter sign
  convention (positive = import/consumption/charging) and the SoC at the end of the step
  [%]; ``owner_ref`` is the pseudonymous member id of an EV (no personal data here).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.clock import utc_now
from energy.db import Base, UTCDateTime
from energy.errors import NotFoundError
from optimizer.model import Plan
from optimizer.report import schedule_long
from optimizer.scenario import Scenario


class Schedule(Base):
    """A stored plan for one site."""

    __tablename__ = "optimizer_schedules"
    __table_args__ = (Index("ix_optimizer_schedules_site_start", "site_name", "start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    step_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(40))
    objective_eur: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(500))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ScheduleStep(Base):
    """One asset in one step of a stored plan."""

    __tablename__ = "optimizer_schedule_steps"
    __table_args__ = (
        UniqueConstraint("schedule_id", "ts", "asset", name="uq_optimizer_schedule_steps_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("optimizer_schedules.id", ondelete="CASCADE"), index=True
    )
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    asset: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    owner_ref: Mapped[str | None] = mapped_column(String(64))
    power_kw: Mapped[float] = mapped_column(Float)
    soc_pct: Mapped[float | None] = mapped_column(Float)


def save_plan(session: Session, scenario: Scenario, result: Plan, summary: dict[str, Any]) -> int:
    """Store a plan and its steps; returns the schedule id (the caller commits)."""
    f = result.flows
    series = {  # per step, for the page (prices, available PV, curtailment)
        "timestamps": [t.isoformat() for t in f.index],
        **{
            c: [round(float(v), 5) for v in f[c]]
            for c in (
                "import_price_eur_per_kwh",
                "export_price_eur_per_kwh",
                "pv_available_kw",
                "curtailed_kw",
                "grid_import_limit_kw",
                "grid_export_limit_kw",
            )
        },
    }
    sched = Schedule(
        site_name=scenario.site.name,
        start=scenario.start.to_pydatetime(),
        end=scenario.end.to_pydatetime(),
        step_minutes=scenario.step_minutes,
        status=result.status,
        objective_eur=float(result.objective_eur),
        source=scenario.source[:500],
        summary={**summary, "series": series},
    )
    session.add(sched)
    session.flush()
    owners = {ev.name: ev.owner for ev in scenario.evs}
    table = schedule_long(result.flows, scenario.battery.name if scenario.battery else "battery")
    rows = [
        {
            "schedule_id": sched.id,
            "ts": ts.to_pydatetime(),
            "asset": asset,
            "kind": kind,
            "owner_ref": owners.get(asset) if kind == "ev" else None,
            "power_kw": float(power),
            "soc_pct": None
            if soc is None or (isinstance(soc, float) and math.isnan(soc))
            else float(soc),
        }
        for ts, asset, kind, power, soc in table.itertuples(index=False, name=None)
    ]
    if rows:
        session.execute(insert(ScheduleStep), rows)
    return sched.id


def latest_schedule(session: Session, site_name: str) -> Schedule | None:
    """The most recently created schedule of a site, or None."""
    sched_id = latest_schedule_id(session, site_name)
    return None if sched_id is None else session.get(Schedule, sched_id)


def latest_schedule_id(session: Session, site_name: str) -> int | None:
    """The id of :func:`latest_schedule` (without loading its summary), or None."""
    return session.scalar(
        select(Schedule.id)
        .where(Schedule.site_name == site_name)
        .order_by(Schedule.created_at.desc(), Schedule.id.desc())
        .limit(1)
    )


def get_schedule(session: Session, schedule_id: int) -> Schedule:
    """A schedule by id; :class:`NotFoundError` if there is none."""
    sched = session.get(Schedule, schedule_id)
    if sched is None:
        raise NotFoundError(f"schedule {schedule_id} does not exist")
    return sched


def schedule_steps(session: Session, schedule_id: int, asset: str | None = None) -> pd.DataFrame:
    """The steps of a schedule (long form: ts, asset, kind, owner_ref, power_kw, soc_pct)."""
    q = select(
        ScheduleStep.ts,
        ScheduleStep.asset,
        ScheduleStep.kind,
        ScheduleStep.owner_ref,
        ScheduleStep.power_kw,
        ScheduleStep.soc_pct,
    ).where(ScheduleStep.schedule_id == schedule_id)
    if asset is not None:
        q = q.where(ScheduleStep.asset == asset)
    rows = session.execute(q.order_by(ScheduleStep.ts, ScheduleStep.asset)).all()
    frame = pd.DataFrame(rows, columns=["ts", "asset", "kind", "owner_ref", "power_kw", "soc_pct"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["soc_pct"] = frame["soc_pct"].astype(float)
    return frame
