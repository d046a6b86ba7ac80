"""Meetkoffer tables: campaigns, equipment mapping, production, temperature, findings, savings.

Raw samples live in :class:`energy.samples.SampleStore` (one channel per clamp) and 15-minute
aggregates in :class:`energy.models.IntervalReading`; these tables hold what is specific to a
campaign. Table names start with ``mk_``. Timestamps are UTC (:class:`energy.db.UTCDateTime`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from energy.clock import utc_now
from energy.db import Base, UTCDateTime
from energy.models import Channel, Member, Site


class Campaign(Base):
    """A measurement campaign: a firm, a site, a period ``[start, end)`` and its equipment."""

    __tablename__ = "mk_campaigns"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="period_positive"),
        CheckConstraint("price_eur_per_kwh >= 0", name="price_nonneg"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    firm_member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    price_eur_per_kwh: Mapped[float] = mapped_column(Float)
    operating_hours: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    analyzed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: The latest analysis: its period, totals and the analyses that could not run (and why).
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)

    site: Mapped[Site] = relationship()
    firm: Mapped[Member] = relationship()
    equipment: Mapped[list[Equipment]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="Equipment.id"
    )
    findings: Mapped[list[FindingRecord]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="FindingRecord.rank"
    )
    savings: Mapped[list[SavingsRecord]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="SavingsRecord.id"
    )


class Equipment(Base):
    """A channel of the campaign mapped to equipment; ``role`` ``incomer`` is the total."""

    __tablename__ = "mk_equipment"
    __table_args__ = (
        UniqueConstraint("campaign_id", "name"),
        CheckConstraint("role IN ('incomer', 'submeter')", name="role_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("mk_campaigns.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20), default="submeter")
    data_kind: Mapped[str | None] = mapped_column(String(20))
    """``power``, ``counter`` or ``interval`` (see :mod:`meetkoffer.importing`); None: not
    declared in the campaign file, detected at the first import of energy units."""
    interval: Mapped[str | None] = mapped_column(String(10))
    """Period of interval energy: ``15min``, ``hour``, ``day`` or ``month`` (local periods)."""
    rated_power_kw: Mapped[float | None] = mapped_column(Float)
    """The machine's rated power [kW] from the campaign file (plausibility limit)."""

    campaign: Mapped[Campaign] = relationship(back_populates="equipment")
    channel: Mapped[Channel] = relationship()


class EnergyPeriodRecord(Base):
    """Interval energy as imported [Wh] in ``[period_start, period_end)`` (a local 15 min, hour,
    day or month); its readings spread it uniformly over the ISPs of the period."""

    __tablename__ = "mk_energy_periods"
    __table_args__ = (
        CheckConstraint("period_end > period_start", name="period_positive"),
        CheckConstraint("energy_wh >= 0", name="energy_nonneg"),
    )

    equipment_id: Mapped[int] = mapped_column(
        ForeignKey("mk_equipment.id", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    period_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    energy_wh: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(300))


class SpreadGapRecord(Base):
    """A gap between counter readings whose energy [Wh] was spread uniformly over its ISPs:
    the coverage mark of estimated readings (no reading inside the gap)."""

    __tablename__ = "mk_spread_gaps"

    equipment_id: Mapped[int] = mapped_column(
        ForeignKey("mk_equipment.id", ondelete="CASCADE"), primary_key=True
    )
    gap_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    gap_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    energy_wh: Mapped[float] = mapped_column(Float)


class BillingPeriodRecord(Base):
    """A bill or meter reading period: energy [kWh] in ``[period_start, period_end)``, for the
    CalTRACK billing model."""

    __tablename__ = "mk_billing"
    __table_args__ = (
        CheckConstraint("period_end > period_start", name="period_positive"),
        CheckConstraint("energy_kwh >= 0", name="energy_nonneg"),
    )

    equipment_id: Mapped[int] = mapped_column(
        ForeignKey("mk_equipment.id", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    period_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    energy_kwh: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(300))


class ImportAuditRecord(Base):
    """A stored value replaced by an import with ``--replace``: what it was, what it became,
    when, from which file and by whom. Never updated or deleted by the Meetkoffer."""

    __tablename__ = "mk_import_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("mk_campaigns.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str] = mapped_column(String(120))
    """What was changed: an equipment name, ``production`` or ``temperature``."""
    kind: Mapped[str] = mapped_column(String(20))
    """``samples``, ``interval``, ``billing``, ``production`` or ``temperature``."""
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    old_value: Mapped[float] = mapped_column(Float)
    new_value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(300))
    user: Mapped[str] = mapped_column(String(100))
    replaced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)


class ProductionRecord(Base):
    """Units produced in ``[period_start, period_end)`` (an hour, a shift or a day)."""

    __tablename__ = "mk_production"
    __table_args__ = (
        CheckConstraint("period_end > period_start", name="period_positive"),
        CheckConstraint("units >= 0", name="units_nonneg"),
    )

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("mk_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    period_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    units: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))


class TemperatureReading(Base):
    """Outdoor temperature [degC] at a moment."""

    __tablename__ = "mk_temperature"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("mk_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    temp_c: Mapped[float] = mapped_column(Float)


class FindingRecord(Base):
    """A stored finding of the latest analysis (ranked, with evidence)."""

    __tablename__ = "mk_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("mk_campaigns.id", ondelete="CASCADE"), index=True
    )
    rank: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    equipment: Mapped[str | None] = mapped_column(String(100))
    energy_kwh_per_year: Mapped[float] = mapped_column(Float)
    cost_eur_per_year: Mapped[float] = mapped_column(Float)
    co2_t_per_year: Mapped[float] = mapped_column(Float)
    chart: Mapped[str] = mapped_column(String(120))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: False for a key figure (unmetered remainder, kWh per unit): never in the totals.
    counted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)

    campaign: Mapped[Campaign] = relationship(back_populates="findings")


class Verification(Base):
    """A savings verification: its versions (:class:`SavingsRecord`) and its withdrawal.

    Versions are frozen: a stored version keeps its result, model, parameters and the digest
    of the data it used; recomputing on changed data adds a version. Withdrawal (reason, who,
    when) is the only change a verification takes, once.
    """

    __tablename__ = "mk_verifications"
    __table_args__ = (
        CheckConstraint(
            "(withdrawn_at IS NULL AND withdrawn_by IS NULL AND withdrawn_reason IS NULL) OR "
            "(withdrawn_at IS NOT NULL AND length(withdrawn_by) > 0 "
            "AND length(withdrawn_reason) > 0)",
            name="withdrawal_complete",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("mk_campaigns.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    withdrawn_by: Mapped[str | None] = mapped_column(String(200))
    withdrawn_reason: Mapped[str | None] = mapped_column(String(500))

    versions: Mapped[list[SavingsRecord]] = relationship(
        back_populates="verification", order_by="SavingsRecord.version"
    )


class SavingsRecord(Base):
    """One version of a savings verification (IPMVP Option B or C): its frozen result.

    ``frozen`` is what the report shows (:func:`meetkoffer.mv.freeze`), ``result_digest`` its
    SHA-256 (checked when shown), ``data_digest`` the SHA-256 of the baseline and reporting
    data used, ``params`` what the result depends on besides the data (request, price,
    emission factors), ``changes`` what differs from the version before.
    """

    __tablename__ = "mk_savings"
    __table_args__ = (
        CheckConstraint("option IN ('B', 'C')", name="option_known"),
        CheckConstraint("version >= 1", name="version_positive"),
        UniqueConstraint("verification_id", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("mk_campaigns.id", ondelete="CASCADE"), index=True
    )
    equipment_id: Mapped[int | None] = mapped_column(
        ForeignKey("mk_equipment.id", ondelete="SET NULL")
    )
    option: Mapped[str] = mapped_column(String(1))
    model: Mapped[str] = mapped_column(String(100))
    baseline_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    baseline_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reporting_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reporting_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    adjusted_baseline_kwh: Mapped[float] = mapped_column(Float)
    reporting_kwh: Mapped[float] = mapped_column(Float)
    nonroutine_kwh: Mapped[float] = mapped_column(Float)
    avoided_kwh: Mapped[float] = mapped_column(Float)
    avoided_eur: Mapped[float] = mapped_column(Float)
    avoided_co2_t: Mapped[float] = mapped_column(Float)
    fsu_68: Mapped[float | None] = mapped_column(Float)
    fsu_90: Mapped[float | None] = mapped_column(Float)
    cv_rmse: Mapped[float] = mapped_column(Float)
    nmbe: Mapped[float] = mapped_column(Float)
    r2: Mapped[float] = mapped_column(Float)
    ashrae14_pass: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    verification_id: Mapped[int] = mapped_column(
        ForeignKey("mk_verifications.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    data_digest: Mapped[str | None] = mapped_column(String(64))
    result_digest: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    frozen: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    campaign: Mapped[Campaign] = relationship(back_populates="savings")
    verification: Mapped[Verification] = relationship(back_populates="versions")
    adjustments: Mapped[list[NonRoutineRecord]] = relationship(
        back_populates="savings", cascade="all, delete-orphan"
    )


class NonRoutineRecord(Base):
    """A non-routine adjustment [kWh] of a savings verification, with its reason."""

    __tablename__ = "mk_nonroutine"
    __table_args__ = (CheckConstraint("length(reason) > 0", name="reason_given"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    savings_id: Mapped[int] = mapped_column(
        ForeignKey("mk_savings.id", ondelete="CASCADE"), index=True
    )
    energy_kwh: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(500))
    start_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    end_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    savings: Mapped[SavingsRecord] = relationship(back_populates="adjustments")
