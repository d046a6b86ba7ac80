"""Core domain tables: sites, assets, devices, channels, members, communities, users, readings,
consents and the audit log of people's actions.

Privacy (docs/ARCHITECTURE.md, docs/PRIVACY.md): a :class:`Member` is a pseudonymous id
(``m-7f3a9c``); names, e-mail, addresses, IBANs, licence plates and the human label a file
gives a member live only in :class:`MemberPersonal`, which can be exported and erased
(:mod:`energy.privacy`) without touching measurements, the ledger or anyone else's statements.
What a member agreed to is a :class:`Consent` (purpose, given, withdrawn).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from energy.clock import LOCAL_TZ, utc_now
from energy.db import Base, UTCDateTime


class AssetKind(enum.StrEnum):
    """What an asset is."""

    BUILDING_LOAD = "building_load"
    PROCESS_LOAD = "process_load"
    PV = "pv"
    BATTERY = "battery"
    EV = "ev"
    EV_CHARGER = "ev_charger"
    METER = "meter"


class Quantity(enum.StrEnum):
    """The measured quantity of a channel."""

    POWER = "power"  # [W], positive = import/consumption
    ENERGY_IMPORT = "energy_import"  # counter [Wh]
    ENERGY_EXPORT = "energy_export"  # counter [Wh]
    SOC = "soc"  # [%]
    VOLTAGE = "voltage"  # [V]
    CURRENT = "current"  # [A]
    FREQUENCY = "frequency"  # [Hz]
    TEMPERATURE = "temperature"  # [degC]
    PRODUCTION = "production"  # [units]
    STATE = "state"  # device state code


QUANTITY_UNITS: dict[Quantity, str] = {
    Quantity.POWER: "W",
    Quantity.ENERGY_IMPORT: "Wh",
    Quantity.ENERGY_EXPORT: "Wh",
    Quantity.SOC: "%",
    Quantity.VOLTAGE: "V",
    Quantity.CURRENT: "A",
    Quantity.FREQUENCY: "Hz",
    Quantity.TEMPERATURE: "degC",
    Quantity.PRODUCTION: "unit",
    Quantity.STATE: "",
}


class Role(enum.StrEnum):
    """What a user may do. Ownership checks narrow every role but ``operator``."""

    OPERATOR = "operator"  # cooperative / province: everything
    SITE_MANAGER = "site_manager"  # a dorpshuis or club: their sites
    FIRM = "firm"  # a process-industry firm: its own sites and campaigns
    MEMBER = "member"  # an EV owner or other member: their own assets and statements


class MemberKind(enum.StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


class Member(Base):
    """A person or organisation that owns assets; pseudonymous (``ref`` like ``m-7f3a9c``)."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[MemberKind] = mapped_column(Enum(MemberKind, native_enum=False, length=20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    #: When the member's personal data was erased (``noaber member erase``); what the law
    #: requires to be kept (the ledger, statements) stays under the pseudonymous ref.
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    personal: Mapped[MemberPersonal | None] = relationship(
        back_populates="member", cascade="all, delete-orphan", uselist=False
    )
    consents: Mapped[list[Consent]] = relationship(
        back_populates="member", cascade="all, delete-orphan", order_by="Consent.id"
    )


class MemberPersonal(Base):
    """Personal data of a member, kept apart from measurements and the ledger (AVG/GDPR)."""

    __tablename__ = "member_personal"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    address: Mapped[str | None] = mapped_column(String(500))
    #: Bank account for payouts (ISO 13616, stored without spaces).
    iban: Mapped[str | None] = mapped_column(String(34))
    #: Licence plate of the member's car (upper case, as written).
    licence_plate: Mapped[str | None] = mapped_column(String(20))
    #: The human label a site or community file gives the member (``ev-anna``): a name,
    #: so it lives here and never in ``members.ref``.
    label: Mapped[str | None] = mapped_column(String(100))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Bank (BIC) and direct-debit mandate for SEPA collections; ``iban`` above is the account.
    bic: Mapped[str | None] = mapped_column(String(11))
    sepa_mandate_id: Mapped[str | None] = mapped_column(String(35))
    sepa_mandate_date: Mapped[dt.date | None] = mapped_column(Date)

    member: Mapped[Member] = relationship(back_populates="personal")


class ConsentPurpose(enum.StrEnum):
    """What a member may agree to (AVG art. 6(1)(a), art. 7: recorded, withdrawable)."""

    #: The site manager of the building where the car charges sees this car's own
    #: 15-minute charging (without it: only the building's total EV energy).
    EV_DETAIL_SITE_MANAGER = "ev_detail_site_manager"


class Consent(Base):
    """One consent of a member for one purpose; active while ``withdrawn_at`` is NULL.

    A withdrawal sets ``withdrawn_at``; a new consent after it is a new row, so the history
    of what was agreed when stays (the proof of consent, AVG art. 7(1)).
    """

    __tablename__ = "member_consents"
    __table_args__ = (
        CheckConstraint(
            "withdrawn_at IS NULL OR withdrawn_at >= given_at", name="withdrawn_after_given"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[ConsentPurpose] = mapped_column(
        Enum(ConsentPurpose, native_enum=False, length=40)
    )
    given_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    member: Mapped[Member] = relationship(back_populates="consents")


class AuditEntry(Base):
    """One action of a person (who, when, what, on what), hash-chained and append-only.

    ``hash = sha256(canonical(seq, at, actor, via, action, target, detail, prev_hash))``
    (:func:`energy.audit.entry_hash`); ``prev_hash`` is unique, so the chain cannot fork, and
    the migration installs triggers that refuse UPDATE and DELETE. ``target`` and ``detail``
    hold pseudonymous refs and numbers, never personal data (it could not be erased).
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    via: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Community(Base):
    """Members who share energy (an energy community)."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))


community_members = Table(
    "community_members",
    Base.metadata,
    Column("community_id", ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True),
    Column("member_id", ForeignKey("members.id", ondelete="CASCADE"), primary_key=True),
)


class Site(Base):
    """A grid connection: one EAN, a location, a timezone and grid limits."""

    __tablename__ = "sites"
    __table_args__ = (
        CheckConstraint("grid_import_limit_kw > 0", name="import_limit_positive"),
        CheckConstraint("grid_export_limit_kw >= 0", name="export_limit_nonneg"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    ean: Mapped[str] = mapped_column(String(18), unique=True)
    kind: Mapped[str] = mapped_column(String(40), default="dorpshuis")
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64), default=LOCAL_TZ)
    grid_import_limit_kw: Mapped[float] = mapped_column(Float)
    grid_export_limit_kw: Mapped[float] = mapped_column(Float)
    owner_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))

    assets: Mapped[list[Asset]] = relationship(back_populates="site", cascade="all, delete-orphan")
    devices: Mapped[list[Device]] = relationship(
        back_populates="site", cascade="all, delete-orphan"
    )
    owner: Mapped[Member | None] = relationship()
    community: Mapped[Community | None] = relationship()


class Asset(Base):
    """Something at a site that consumes, produces or stores energy, or a meter."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[AssetKind] = mapped_column(Enum(AssetKind, native_enum=False, length=20))
    owner_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    site: Mapped[Site] = relationship(back_populates="assets")
    owner: Mapped[Member | None] = relationship()
    channels: Mapped[list[Channel]] = relationship(
        back_populates="asset", cascade="all, delete-orphan"
    )


class Device(Base):
    """A Modbus device at a site, read and written through a profile."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    profile: Mapped[str] = mapped_column(String(100))
    transport: Mapped[str] = mapped_column(String(10), default="tcp")
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    serial_port: Mapped[str | None] = mapped_column(String(255))
    unit_id: Mapped[int] = mapped_column(Integer, default=1)
    poll_interval_s: Mapped[float] = mapped_column(Float, default=5.0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    site: Mapped[Site] = relationship(back_populates="devices")


class Channel(Base):
    """A measured quantity of an asset, with its unit and our sign convention.

    ``key`` is globally unique (``<site>/<asset>/<quantity>`` by default). Power is positive
    for import/consumption; ``sign`` records how the source maps to that (+1 or -1).
    ``max_gap_s`` is the longest sample interval the interval pipeline integrates [s]
    (:func:`energy.pipeline.aggregation_of`); NULL means the default of 2 h.
    ``derived`` makes the channel a derived one: its readings are a linear combination of
    other channels' readings per ISP, computed by the pipeline
    (:func:`energy.pipeline.update_derived`): ``{"formula": "grid - pv - battery",
    "terms": [[channel key, coefficient], ...], "min_coverage": 0.5}``; NULL for a measured
    channel.
    ``readings_version`` grows by one in every transaction that writes or deletes readings of
    the channel (:func:`energy.readings.upsert_readings`), so a page built from the readings
    can be kept until it changes (``noaber.api.pagecache``).
    """

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    register: Mapped[str | None] = mapped_column(String(100))
    quantity: Mapped[Quantity] = mapped_column(Enum(Quantity, native_enum=False, length=20))
    unit: Mapped[str] = mapped_column(String(16))
    sign: Mapped[int] = mapped_column(Integer, default=1)
    max_gap_s: Mapped[int | None] = mapped_column(Integer)
    derived: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    readings_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    asset: Mapped[Asset] = relationship(back_populates="channels")
    device: Mapped[Device | None] = relationship()


user_sites = Table(
    "user_sites",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("site_id", ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True),
)


class User(Base):
    """A login. ``member_id`` links a member or firm user to the member it acts for."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    #: Bumped on a password change or reset: tokens issued with an older version are refused.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Base32 TOTP secret of an operator's second factor (set on enrolment).
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    #: True once the enrolment was confirmed with a code: logins then need one.
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The TOTP time step of the last accepted code (a code is accepted once).
    totp_last_step: Mapped[int | None] = mapped_column(Integer)

    member: Mapped[Member | None] = relationship()
    sites: Mapped[list[Site]] = relationship(secondary=user_sites)


class RevokedToken(Base):
    """The id (``jti``) of a token revoked by logging out, kept until the token expires."""

    __tablename__ = "token_denylist"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class IntervalReading(Base):
    """One channel's aggregate over one 15-minute ISP (``isp_start`` is the UTC start).

    ``energy_wh`` is the energy in the ISP (positive = import); ``coverage`` the share of the
    ISP covered by valid samples (0..1). For an instantaneous quantity (state of charge,
    setpoint, status, temperature, ...) ``energy_wh`` is 0 and ``power_mean_w``,
    ``power_min_w``, ``power_max_w`` and ``value_last`` hold the time-weighted mean, the
    minimum, the maximum and the last valid value in the ISP, in the channel's unit.
    ``value_last`` is the last valid sample in the ISP for every sampled channel (NULL for a
    counter or a derived channel).
    """

    __tablename__ = "interval_readings"
    __table_args__ = (
        CheckConstraint("coverage >= 0 AND coverage <= 1", name="coverage_range"),
        CheckConstraint("sample_count >= 0", name="count_nonneg"),
    )

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    isp_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    energy_wh: Mapped[float] = mapped_column(Float)
    power_mean_w: Mapped[float | None] = mapped_column(Float)
    power_min_w: Mapped[float | None] = mapped_column(Float)
    power_max_w: Mapped[float | None] = mapped_column(Float)
    sample_count: Mapped[int] = mapped_column(Integer)
    coverage: Mapped[float] = mapped_column(Float)
    value_last: Mapped[float | None] = mapped_column(Float)


class DerivedGap(Base):
    """An ISP a derived channel has no reading for, and why (an input missing or too thin).

    Written and cleared by :func:`energy.pipeline.update_derived` together with the derived
    readings: an ISP has either a reading or a gap row, never both.
    """

    __tablename__ = "derived_gaps"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    isp_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    reason: Mapped[str] = mapped_column(String(500))
