"""Alarms of a site's devices: control lost or restored, as the closed loop saw them.

The closed loop (``noaber.services.control``) records an alarm when a device it drove had left
control (a reboot or a mode change: ``control_restored``, after the gateway sent the enable
sequence again) or stays out of control (``control_lost``: released and left out of the plan).
Operators and the site's managers read them (``GET /alarms/sites/{site}``). Rows are only
added; ``message`` names the device and what it reported, never a person.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.db import Base, UTCDateTime
from energy.errors import NoaberError
from energy.models import Site

#: The kinds of alarm the loop raises.
ALARM_KINDS = ("control_restored", "control_lost")


class DeviceAlarm(Base):
    """One alarm: when (UTC), which site, asset and device, what kind, and what happened."""

    __tablename__ = "device_alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    asset: Mapped[str] = mapped_column(String(100))
    device: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)


def record_alarm(
    session: Session,
    site_name: str,
    at: dt.datetime,
    asset: str,
    device: str,
    kind: str,
    message: str,
) -> DeviceAlarm:
    """Add an alarm of site ``site_name`` (in the caller's transaction).

    Raises
    ------
    NoaberError
        An unknown site or kind, or a naive ``at``.
    """
    if kind not in ALARM_KINDS:
        raise NoaberError(f"unknown alarm kind {kind!r} (known: {', '.join(ALARM_KINDS)})")
    if at.tzinfo is None:
        raise NoaberError(f"alarm time must be timezone-aware, got {at!r}")
    site = session.scalar(select(Site).where(Site.name == site_name))
    if site is None:
        raise NoaberError(f"no site {site_name!r} for the alarm of {device!r}")
    row = DeviceAlarm(
        site_id=site.id, at=at, asset=asset, device=device, kind=kind, message=message[:4000]
    )
    session.add(row)
    session.flush()
    return row


def site_alarms(session: Session, site_id: int, limit: int = 100) -> list[DeviceAlarm]:
    """The site's alarms, newest first."""
    return list(
        session.scalars(
            select(DeviceAlarm)
            .where(DeviceAlarm.site_id == site_id)
            .order_by(DeviceAlarm.at.desc(), DeviceAlarm.id.desc())
            .limit(limit)
        )
    )
