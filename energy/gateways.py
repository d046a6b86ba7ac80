"""Gateways at the centre: who may send samples for which site, and what the centre refused.

A :class:`Gateway` is one edge gateway's identity: its name is its MQTT user and its topic
level (``noaber/<name>/samples``), and only the hash of its broker password is kept
(Mosquitto's PBKDF2-SHA512 ``$7$`` format, so the broker's password file can be written from
it; the password itself is shown once, by ``noaber gateway add``). :class:`GatewaySite` binds
it to the site(s) it serves: the centre stores a sample only for a channel of those sites.

What the centre cannot store goes to :class:`DeadLetter` with a reason (:data:`REASONS`);
a sample for a (channel, ts) that already holds a different value goes to
:class:`QuarantinedSample` and never replaces the stored value until an operator accepts it
(an explicit, audited correction) or rejects it.

The plausible range of a channel (:func:`plausible_range`) comes from its site and asset:
the grid connection's limits for a meter, the rated power of a PV array, battery or EV
(``params``: ``peak_kw``, ``max_charge_kw``, ``max_discharge_kw``) with a margin, and
physical bounds for state of charge, frequency, voltage and counters. The application
intersects it with the device profile's ``valid_min``/``valid_max``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from energy.clock import utc_now
from energy.db import Base, UTCDateTime
from energy.errors import NoaberError
from energy.models import Asset, AssetKind, Channel, Device, Quantity, Site

GATEWAY_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
"""A gateway name: its MQTT user and topic level (no ``/ + #``, no ``$``, lower case)."""
RESERVED_NAMES = frozenset({"noaber", "noaber-centre", "admin", "root"})
"""Broker users that are not gateways (the centre's own user is ``noaber`` by default)."""

REASONS: dict[str, str] = {
    "unknown_gateway": "the topic names no gateway the centre knows (or a disabled one)",
    "forged_topic": "the topic is not a gateway's samples topic, or the payload names "
    "another gateway than the topic",
    "other_site": "the channel belongs to a site the gateway is not bound to",
    "unknown_channel": "no channel has this key",
    "implausible_value": "the value is outside the channel's plausible range",
    "implausible_time": "the timestamp is in the future or older than the retention window",
    "malformed": "the payload is not a sample batch",
}
"""Why a sample went to the dead-letter store."""

GRID_MARGIN = 1.5
"""A meter may read up to this times the site's grid limits (short peaks, clamp error)."""
RATED_MARGIN = 1.5
"""A PV array, battery or EV may read up to this times its rated power."""


class Gateway(Base):
    """An edge gateway's identity (its MQTT user) and the hash of its broker password."""

    __tablename__ = "gateways"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    sites: Mapped[list[GatewaySite]] = relationship(
        back_populates="gateway", cascade="all, delete-orphan"
    )


class GatewaySite(Base):
    """A site a gateway serves: the centre stores its samples for this site's channels."""

    __tablename__ = "gateway_sites"

    gateway_id: Mapped[int] = mapped_column(
        ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )

    gateway: Mapped[Gateway] = relationship(back_populates="sites")
    site: Mapped[Site] = relationship()


class DeadLetter(Base):
    """Samples (or a payload) the centre refused, with the reason; kept for an operator."""

    __tablename__ = "ingest_dead_letters"
    __table_args__ = (Index("ix_ingest_dead_letters_gateway_batch", "gateway", "batch_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    topic: Mapped[str] = mapped_column(String(255))
    gateway: Mapped[str] = mapped_column(String(255))
    batch_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text)
    samples: Mapped[list[Any]] = mapped_column(JSON, default=list)
    payload: Mapped[str | None] = mapped_column(Text)


class QuarantinedSample(Base):
    """A sample whose (channel, ts) already holds a different value: kept apart, reported.

    ``status`` is ``open`` until an operator ``accepted`` it (the stored value was replaced,
    audited) or ``rejected`` it (the stored value stays).
    """

    __tablename__ = "sample_quarantine"
    __table_args__ = (Index("ix_sample_quarantine_channel_ts", "channel_id", "ts_ns"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    gateway: Mapped[str] = mapped_column(String(255))
    batch_id: Mapped[str | None] = mapped_column(String(200))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    stored_value: Mapped[float | None] = mapped_column(Float)
    stored_quality: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(100))

    channel: Mapped[Channel] = relationship()


# ------------------------------------------------------------------------------- gateways


def check_gateway_name(name: str) -> str:
    """``name`` if it can be a gateway's MQTT user and topic level; NoaberError otherwise."""
    if not GATEWAY_NAME.fullmatch(name):
        raise NoaberError(
            f"gateway name {name!r}: use 1-63 lower-case letters, digits and _ . - "
            "(starting with a letter or digit); it is an MQTT user and topic level"
        )
    if name in RESERVED_NAMES:
        raise NoaberError(f"gateway name {name!r} is reserved (a broker user of the centre)")
    return name


def add_gateway(
    session: Session, name: str, site_names: Sequence[str], password_hash: str
) -> Gateway:
    """Create a gateway bound to ``site_names`` (in the caller's transaction).

    Raises
    ------
    NoaberError
        A bad or taken name, no site, or a site that does not exist.
    """
    check_gateway_name(name)
    if not site_names:
        raise NoaberError(f"gateway {name!r}: give at least one --site")
    if session.scalar(select(Gateway.id).where(Gateway.name == name)) is not None:
        raise NoaberError(f"gateway {name!r} exists already")
    sites = {s.name: s for s in session.scalars(select(Site).where(Site.name.in_(site_names)))}
    missing = sorted(set(site_names) - set(sites))
    if missing:
        raise NoaberError(
            f"gateway {name!r}: no site {', '.join(map(repr, missing))} "
            "(import it first: noaber site import FILE)"
        )
    gw = Gateway(name=name, password_hash=password_hash)
    gw.sites = [GatewaySite(site=sites[s]) for s in dict.fromkeys(site_names)]
    session.add(gw)
    session.flush()
    return gw


def bindings(session: Session) -> dict[str, frozenset[int]]:
    """``{gateway name: site ids}`` of every gateway that is not disabled."""
    out: dict[str, set[int]] = {}
    rows = session.execute(
        select(Gateway.name, GatewaySite.site_id)
        .join(GatewaySite, GatewaySite.gateway_id == Gateway.id, isouter=True)
        .where(Gateway.disabled.is_(False))
    )
    for name, site_id in rows:
        out.setdefault(name, set())
        if site_id is not None:
            out[name].add(site_id)
    return {k: frozenset(v) for k, v in out.items()}


# ------------------------------------------------------------------------ plausible ranges


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """What the centre checks a sample of one channel against."""

    channel_id: int
    site_id: int
    lo: float  # plausible minimum, in the channel's stored unit
    hi: float  # plausible maximum
    why: str  # where the limits come from (for the dead-letter detail)
    device_profile: str | None = None
    register: str | None = None
    quantity: Quantity = Quantity.POWER
    sign: int = 1


def _kw(params: dict[str, Any], key: str) -> float | None:
    v = params.get(key)
    return float(v) if isinstance(v, int | float) and v > 0 else None


def _rated_w(asset: Asset) -> tuple[float, float] | None:
    """``(max consumption, max production)`` of an asset's rated power [W], if known."""
    p = asset.params or {}
    if asset.kind == AssetKind.PV:
        peak = _kw(p, "peak_kw")
        return None if peak is None else (0.05 * peak * 1000.0, peak * 1000.0)
    if asset.kind in {AssetKind.BATTERY, AssetKind.EV, AssetKind.EV_CHARGER}:
        charge = _kw(p, "max_charge_kw") or _kw(p, "power_kw")
        discharge = _kw(p, "max_discharge_kw") or charge
        return None if charge is None or discharge is None else (charge * 1000, discharge * 1000)
    return None


def site_power_ceiling_w(site: Site, assets: Iterable[Asset]) -> float:
    """No power flow at the site can exceed this [W]: the grid limits plus every rated
    generator and store, times :data:`GRID_MARGIN`."""
    total_kw = site.grid_import_limit_kw + site.grid_export_limit_kw
    for a in assets:
        rated = _rated_w(a)
        if rated is not None:
            total_kw += max(rated) / 1000.0
    return GRID_MARGIN * total_kw * 1000.0


def plausible_range(
    site: Site, asset: Asset, channel: Channel, ceiling_w: float
) -> tuple[float, float, str]:
    """The plausible ``(min, max)`` of a channel in its stored unit, and where it comes from.

    Power [W] (positive = consumption): a meter between -:data:`GRID_MARGIN` x the export
    limit (at least 5 % of the maximum) and the margin x the import limit; a PV array,
    battery or EV within :data:`RATED_MARGIN` x its rated power; anything else within
    ``ceiling_w`` (:func:`site_power_ceiling_w`). State of charge 0-100 %, frequency
    45-55 Hz, voltage 0-1000 V, current within the ceiling at 230 V, counters >= 0.
    """
    q = channel.quantity
    if q == Quantity.POWER:
        if asset.kind == AssetKind.METER:
            hi = site.grid_import_limit_kw * 1000.0 * GRID_MARGIN
            lo = -max(site.grid_export_limit_kw * 1000.0 * GRID_MARGIN, 0.05 * hi)
            return (
                lo,
                hi,
                f"{GRID_MARGIN:g} x the grid limits of site {site.name!r} "
                f"({site.grid_import_limit_kw:g} kW import, {site.grid_export_limit_kw:g} kW "
                "export)",
            )
        rated = _rated_w(asset)
        if rated is not None:
            use, make = rated
            return (
                -RATED_MARGIN * make,
                RATED_MARGIN * use,
                f"{RATED_MARGIN:g} x the rated power of asset {asset.name!r}",
            )
        return -ceiling_w, ceiling_w, f"the power ceiling of site {site.name!r}"
    if q == Quantity.SOC:
        return 0.0, 100.0, "a state of charge is 0-100 %"
    if q == Quantity.FREQUENCY:
        return 45.0, 55.0, "the grid frequency is 45-55 Hz"
    if q == Quantity.VOLTAGE:
        return 0.0, 1000.0, "low voltage is 0-1000 V"
    if q == Quantity.CURRENT:
        amps = ceiling_w / 230.0
        return -amps, amps, f"the power ceiling of site {site.name!r} at 230 V"
    if q in {Quantity.ENERGY_IMPORT, Quantity.ENERGY_EXPORT}:
        return 0.0, 1e13, "an energy counter is not negative"
    if q == Quantity.TEMPERATURE:
        return -60.0, 200.0, "-60-200 degC"
    return -math.inf, math.inf, "no limit for this quantity"


def channel_rules(session: Session) -> dict[str, ChannelRule]:
    """``{channel key: rule}`` of every channel: its site and plausible range."""
    sites = {s.id: s for s in session.scalars(select(Site))}
    assets_by_site: dict[int, list[Asset]] = {}
    assets = {a.id: a for a in session.scalars(select(Asset))}
    for a in assets.values():
        assets_by_site.setdefault(a.site_id, []).append(a)
    ceilings = {
        sid: site_power_ceiling_w(s, assets_by_site.get(sid, [])) for sid, s in sites.items()
    }

    devices = {d.id: d for d in session.scalars(select(Device))}
    out: dict[str, ChannelRule] = {}
    for ch in session.scalars(select(Channel)):
        asset = assets[ch.asset_id]
        site = sites[asset.site_id]
        lo, hi, why = plausible_range(site, asset, ch, ceilings[site.id])
        dev = devices.get(ch.device_id) if ch.device_id is not None else None
        out[ch.key] = ChannelRule(
            ch.id,
            site.id,
            lo,
            hi,
            why,
            dev.profile if dev is not None else None,
            ch.register,
            ch.quantity,
            ch.sign,
        )
    return out


# ------------------------------------------------------------------ dead letters, quarantine


def open_quarantine(
    session: Session,
    *,
    channel_id: int | None = None,
    status: str | None = "open",
    limit: int = 200,
) -> list[QuarantinedSample]:
    """Quarantined samples, newest first (``status`` None: every status)."""
    q = select(QuarantinedSample).order_by(QuarantinedSample.id.desc()).limit(limit)
    if status is not None:
        q = q.where(QuarantinedSample.status == status)
    if channel_id is not None:
        q = q.where(QuarantinedSample.channel_id == channel_id)
    return list(session.scalars(q))


def dead_letters(
    session: Session, *, reason: str | None = None, gateway: str | None = None, limit: int = 200
) -> list[DeadLetter]:
    """Dead letters, newest first, optionally of one reason or gateway."""
    if reason is not None and reason not in REASONS:
        raise NoaberError(f"unknown dead-letter reason {reason!r}; known: {', '.join(REASONS)}")
    q = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if reason is not None:
        q = q.where(DeadLetter.reason == reason)
    if gateway is not None:
        q = q.where(DeadLetter.gateway == gateway)
    return list(session.scalars(q))
