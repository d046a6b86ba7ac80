"""OCPP charge point ids bound to sites: a charger's identity belongs to one site.

The site import (:func:`energy.siteconfig.import_site`) binds the ids of the ``ocpp:``
section to its site (table ``ocpp_charge_points``): an id bound to another site is an error
naming the field, and nothing of the file is stored; an id the section no longer lists is
unbound. The central system asks :func:`bound_site` at every BootNotification and rejects a
charger whose id is bound to another site.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.clock import utc_now
from energy.db import Base, UTCDateTime
from energy.errors import ValidationError
from energy.models import Asset, Site


class OcppChargePoint(Base):
    """One charge point id, the site it belongs to and the asset it drives."""

    __tablename__ = "ocpp_charge_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The charger's identity (the last path level of its websocket URL), unique overall.
    charge_point_id: Mapped[str] = mapped_column(String(48), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"))
    ocpp_version: Mapped[str] = mapped_column(String(8))
    bound_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)


@dataclass(frozen=True, slots=True)
class Binding:
    """A charge point of a site's ``ocpp:`` section: its id, version and asset name."""

    charge_point_id: str
    ocpp_version: str
    asset: str


@dataclass(frozen=True, slots=True)
class BindResult:
    created: int = 0
    updated: int = 0
    removed: int = 0


def bind_charge_points(
    session: Session, site: Site, bindings: Sequence[Binding], source: str
) -> BindResult:
    """Bind ``bindings`` to ``site`` (in the caller's transaction); unbind the site's ids
    that are not in them.

    Raises
    ------
    ValidationError
        An id bound to another site, or an asset not stored for the site, naming
        ``ocpp.charge_points[i].id`` / ``.asset``.
    """
    assets = {a.name: a.id for a in session.scalars(select(Asset).where(Asset.site_id == site.id))}
    ids = [b.charge_point_id for b in bindings]
    rows = {
        r.charge_point_id: r
        for r in session.scalars(
            select(OcppChargePoint).where(OcppChargePoint.charge_point_id.in_(ids))
        )
    }
    created = updated = 0
    for i, b in enumerate(bindings):
        asset_id = assets.get(b.asset)
        if asset_id is None:
            raise ValidationError(
                f"unknown asset {b.asset!r} of site {site.name!r}",
                source,
                f"ocpp.charge_points[{i}].asset",
            )
        row = rows.get(b.charge_point_id)
        if row is not None and row.site_id != site.id:
            other = session.get(Site, row.site_id)
            raise ValidationError(
                f"charge point id {b.charge_point_id!r} is bound to site "
                f"{other.name if other else row.site_id!r}: a charger belongs to one site "
                "(remove it from that site's ocpp: section first)",
                source,
                f"ocpp.charge_points[{i}].id",
            )
        if row is None:
            session.add(
                OcppChargePoint(
                    charge_point_id=b.charge_point_id,
                    site_id=site.id,
                    asset_id=asset_id,
                    ocpp_version=b.ocpp_version,
                )
            )
            created += 1
        elif (row.asset_id, row.ocpp_version) != (asset_id, b.ocpp_version):
            row.asset_id, row.ocpp_version = asset_id, b.ocpp_version
            updated += 1
    stale = session.scalars(
        select(OcppChargePoint).where(
            OcppChargePoint.site_id == site.id, OcppChargePoint.charge_point_id.not_in(ids)
        )
    ).all()
    for row in stale:
        session.delete(row)
    session.flush()
    return BindResult(created, updated, len(stale))


def bound_site(session: Session, charge_point_id: str) -> str | None:
    """The name of the site ``charge_point_id`` is bound to (None: not bound)."""
    return session.scalar(
        select(Site.name)
        .join(OcppChargePoint, OcppChargePoint.site_id == Site.id)
        .where(OcppChargePoint.charge_point_id == charge_point_id)
    )
