"""A site's grid tariff as the plans need it: the Dutch monthly kW-max and a contracted kW.

One table, ``site_tariffs`` (one row per site, written only by :func:`set_site_tariff`, which
the site import calls with the site file's ``site.tariff`` section)::

    site:
      name: dorpshuis-a
      ...
      tariff:
        capacity_eur_per_kw_month: 3.10   # the DSO's kW-max price [EUR/kW per month]
        contracted_kw: 20                  # the kW paid for each month anyway (0: none)
        source: "Enexis tarievenblad 2026, kleinverbruik > 3x80 A"

Larger Dutch connections (Enexis, Rendo in Drenthe) pay each month for the highest
15-minute import of that month (docs/SOURCES.md); the optimiser charges only a peak above
this month's peak so far (read from the readings, :func:`optimizer.tariff.month_peak_so_far_kw`)
and above ``contracted_kw``. A site without a row has no capacity tariff in its plans.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import CheckConstraint, Float, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.clock import utc_now
from energy.db import Base, UTCDateTime
from energy.errors import ValidationError
from energy.models import Site


class SiteTariff(Base):
    """The capacity tariff of a site's grid connection (see the module docstring)."""

    __tablename__ = "site_tariffs"
    __table_args__ = (
        CheckConstraint("capacity_eur_per_kw_month >= 0", name="capacity_price_nonneg"),
        CheckConstraint("contracted_kw >= 0", name="contracted_nonneg"),
    )

    site_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    capacity_eur_per_kw_month: Mapped[float] = mapped_column(Float)
    contracted_kw: Mapped[float] = mapped_column(Float, default=0.0)
    source: Mapped[str] = mapped_column(String(300), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


def site_tariff(session: Session, site: Site) -> SiteTariff | None:
    """The stored tariff of ``site`` (None: no capacity tariff)."""
    return session.scalars(select(SiteTariff).where(SiteTariff.site_id == site.id)).first()


def set_site_tariff(
    session: Session,
    site: Site,
    capacity_eur_per_kw_month: float,
    contracted_kw: float = 0.0,
    source: str = "",
    where: str = "site.tariff",
) -> bool:
    """Create or update the tariff of ``site`` (in the caller's transaction); True if it
    changed.

    Raises
    ------
    ValidationError
        A price or kW that is negative or not finite, naming ``where`` and the field.
    """
    for name, value in (
        ("capacity_eur_per_kw_month", capacity_eur_per_kw_month),
        ("contracted_kw", contracted_kw),
    ):
        if not math.isfinite(value) or value < 0:
            raise ValidationError(
                f"{name} must be a finite number >= 0, got {value!r} for site {site.name!r}",
                None,
                f"{where}.{name}",
            )
    row = site_tariff(session, site)
    new = (float(capacity_eur_per_kw_month), float(contracted_kw), source)
    if row is not None and (row.capacity_eur_per_kw_month, row.contracted_kw, row.source) == new:
        return False
    if row is None:
        row = SiteTariff(site_id=site.id)
        session.add(row)
    row.capacity_eur_per_kw_month, row.contracted_kw, row.source = new
    row.updated_at = utc_now()
    session.flush()
    return True
