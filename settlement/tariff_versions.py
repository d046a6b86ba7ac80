"""A community's tariff versions as the operator sets them: a new version from a date.

A tariff (:class:`settlement.pricing.Tariff`) is a list of versions, each for local dates
``[valid_from, valid_to)``. The operator changes it by adding a version from a date ``D``
(:func:`with_version`): the version in force on ``D`` ends at ``D`` and the new one, its
copy with the changed fields, runs from ``D`` to where that one ended; a version that starts
on ``D`` is replaced (correcting a mistyped change). Versions after it stay. ``D`` may be
the end of the last version (the tariff is extended by a year, to the next 1 January), but
no gap is ever made.

The result is stored whole (:class:`settlement.models.CommunityTariff`, canonical YAML and its
digest, audited ``tariff.version``); the newest stored tariff of a community is in force for
its new runs (:func:`community_tariff`), over the one its community file names. Months
already settled keep what they were priced with until they are run again (a run of a month
posts only the difference, so running it again applies the new version); :func:`add_version`
names them.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.audit import Actor, record
from energy.errors import ValidationError
from settlement.models import CommunityTariff, SettlementRun
from settlement.pricing import Tariff, parse_tariff, tariff_from_document

#: The fields a change may set (the rest is copied from the version in force).
FIELDS = (
    "shared_price_eur_per_kwh",
    "v2g_compensation_eur_per_kwh",
    "fixed_fee_eur_per_month",
    "vat_pct",
)


@dataclass(frozen=True)
class VersionChange:
    """A new tariff version from ``valid_from`` (a local date): the fields given replace the
    version in force's; ``None`` keeps them. ``shared_price_eur_per_kwh`` makes the shared
    price a fixed one."""

    valid_from: dt.date
    shared_price_eur_per_kwh: Decimal | None = None
    v2g_compensation_eur_per_kwh: Decimal | None = None
    fixed_fee_eur_per_month: Decimal | None = None
    vat_pct: Decimal | None = None

    def changed(self) -> dict[str, str]:
        """The fields it sets, as text."""
        return {f: str(getattr(self, f)) for f in FIELDS if getattr(self, f) is not None}


@dataclass(frozen=True)
class AddedVersion:
    """The tariff after a change, and the months already settled on or after its date (to
    be run again for the change to reach them)."""

    tariff: Tariff
    settled_after: tuple[str, ...]


def _next_new_year(day: dt.date) -> dt.date:
    return dt.date(day.year + 1, 1, 1)


def with_version(tariff: Tariff, change: VersionChange) -> Tariff:
    """``tariff`` with ``change`` added (see the module docstring); validated as a tariff
    file is, so a refused value names its field.

    Raises
    ------
    energy.errors.ValidationError
        If ``valid_from`` is before the first version or after the end of the last, or a
        value is not accepted (negative, more than 8 decimals for a price).
    """
    for f in FIELDS:
        value = getattr(change, f)
        if value is not None and (not value.is_finite() or value < 0):
            raise ValidationError(f"{f} must be a number >= 0, got {value}", location=f)
    if change.vat_pct is not None and change.vat_pct > 100:
        raise ValidationError(
            f"vat_pct must be at most 100, got {change.vat_pct}", location="vat_pct"
        )
    for f in ("shared_price_eur_per_kwh", "v2g_compensation_eur_per_kwh"):
        value = getattr(change, f)
        if value is not None and value.as_tuple().exponent < -8:  # type: ignore[operator]
            raise ValidationError(f"{f} has more than 8 decimals: {value}", location=f)
    if change.fixed_fee_eur_per_month is not None and (
        change.fixed_fee_eur_per_month.as_tuple().exponent < -2  # type: ignore[operator]
    ):
        raise ValidationError(
            f"fixed_fee_eur_per_month is in whole cents: {change.fixed_fee_eur_per_month}",
            location="fixed_fee_eur_per_month",
        )
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(tariff.document))
    raw = sorted(data["versions"], key=lambda v: str(v["valid_from"]))
    d = change.valid_from
    first = dt.date.fromisoformat(str(raw[0]["valid_from"]))
    last_end = dt.date.fromisoformat(str(raw[-1]["valid_to"]))
    if d < first:
        raise ValidationError(
            f"valid_from {d.isoformat()} is before the tariff's first version "
            f"({first.isoformat()})",
            location="valid_from",
        )
    if d > last_end:
        raise ValidationError(
            f"valid_from {d.isoformat()} leaves a gap after the tariff's last version, which "
            f"ends {last_end.isoformat()}",
            location="valid_from",
        )
    if d == last_end:
        base, index, end = raw[-1], len(raw), _next_new_year(d)
    else:
        index = next(
            k
            for k, v in enumerate(raw)
            if dt.date.fromisoformat(str(v["valid_from"]))
            <= d
            < dt.date.fromisoformat(str(v["valid_to"]))
        )
        base, end = raw[index], dt.date.fromisoformat(str(raw[index]["valid_to"]))
    new = copy.deepcopy(base)
    new["valid_from"], new["valid_to"] = d.isoformat(), end.isoformat()
    if change.shared_price_eur_per_kwh is not None:
        new["shared_price"] = {
            "type": "fixed",
            "price_eur_per_kwh": str(change.shared_price_eur_per_kwh),
        }
    for f in FIELDS[1:]:
        value = getattr(change, f)
        if value is not None:
            new[f] = str(value)
    if index < len(raw):
        if dt.date.fromisoformat(str(base["valid_from"])) == d:
            raw[index] = new  # a version that starts on D is replaced
        else:
            raw[index] = {**base, "valid_to": d.isoformat()}
            raw.insert(index + 1, new)
    else:
        raw.append(new)
    data["versions"] = raw
    try:
        return parse_tariff(data, tariff.name)
    except ValidationError as exc:
        field = _field_of(exc)
        raise ValidationError(exc.message, location=field) from None


def _field_of(exc: ValidationError) -> str:
    where = exc.location or ""
    for f in FIELDS:
        if f.removesuffix("_eur_per_kwh").removesuffix("_eur_per_month") in where:
            return f
    if "shared_price" in where:
        return "shared_price_eur_per_kwh"
    return "valid_from"


def stored_tariff(session: Session, community: str) -> Tariff | None:
    """The community's newest stored tariff, or None if the operator never changed it."""
    row = session.scalars(
        select(CommunityTariff)
        .where(CommunityTariff.community == community)
        .order_by(CommunityTariff.id.desc())
        .limit(1)
    ).first()
    return None if row is None else tariff_from_document(row.document, f"{community} tariff")


def community_tariff(session: Session, community: str, fallback: Tariff) -> Tariff:
    """The tariff in force for the community's new runs: the newest stored one, else
    ``fallback`` (its community file's tariff, or the shipped default)."""
    return stored_tariff(session, community) or fallback


def history(session: Session, community: str) -> list[CommunityTariff]:
    """The community's tariff changes, newest first."""
    return list(
        session.scalars(
            select(CommunityTariff)
            .where(CommunityTariff.community == community)
            .order_by(CommunityTariff.id.desc())
        )
    )


def add_version(
    session: Session, community: str, fallback: Tariff, change: VersionChange, actor: Actor
) -> AddedVersion:
    """Add ``change`` to the community's tariff in force, store the result and audit it
    (``tariff.version``: the date, the fields set, the new digest) in ``session``'s
    transaction. Nothing is stored if the change is refused.

    Raises
    ------
    energy.errors.ValidationError
        As :func:`with_version`.
    """
    current = community_tariff(session, community, fallback)
    new = with_version(current, change)
    session.add(
        CommunityTariff(
            community=community,
            digest=new.digest,
            document=new.document,
            changed_from=change.valid_from,
            created_by=actor.name,
        )
    )
    month = change.valid_from.strftime("%Y-%m")
    settled = tuple(
        sorted(
            set(
                session.scalars(
                    select(SettlementRun.period).where(
                        SettlementRun.community == community,
                        SettlementRun.status == "posted",
                        SettlementRun.period >= month,
                    )
                )
            )
        )
    )
    record(
        session,
        actor,
        "tariff.version",
        community,
        {
            "valid_from": change.valid_from.isoformat(),
            "changed": change.changed(),
            "digest": new.digest,
            "previous_digest": current.digest,
            "settled_after": list(settled),
        },
    )
    session.flush()
    return AddedVersion(new, settled)


def version_rows(tariff: Tariff) -> list[dict[str, Any]]:
    """The versions as plain values (API and page): dates, the shared price (fixed price,
    or its type), V2G compensation, fee, VAT and the energy-tax bands."""
    out = []
    for v in tariff.versions:
        sp = v.shared_price
        out.append(
            {
                "valid_from": v.valid_from.isoformat(),
                "valid_to": v.valid_to.isoformat(),
                "shared_price_type": sp["type"],
                "shared_price_eur_per_kwh": str(sp["price"]) if sp["type"] == "fixed" else None,
                "v2g_compensation_eur_per_kwh": str(v.v2g_compensation_eur_per_kwh),
                "fixed_fee_eur_per_month": str(v.fixed_fee_eur_per_month),
                "vat_pct": str(v.vat_pct),
                "energy_tax_bands": [
                    {"up_to_kwh": b.up_to_kwh, "eur_per_kwh": str(b.eur_per_kwh)}
                    for b in v.energy_tax_bands
                ],
            }
        )
    return out
