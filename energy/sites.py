"""The one writer of the core tables: sites, devices, assets, channels, members and communities.

The site import (:mod:`energy.siteconfig`), the Meetkoffer campaign import and the settlement
community all create and update these rows here and nowhere else (a guard test,
``tests/energy/test_sites.py``, scans the packages for other writers). Each ``ensure_*``
function gets a row by its natural key, creates it or updates it in place, and says which
(:class:`Change`). With ``update=False`` a stored row is a *reference*: it is used as it is,
and only checked for conflicts (a member defined in a site file and referred to by ref from a
community or campaign file).

Conflicts raise :class:`~energy.errors.ValidationError` with the caller's ``source`` (the
file) and the location ``<path>.<field>``, where ``path`` names the entry in the document
(``members[2]``, ``site``, ``assets[1].channels[0]``).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from energy.clock import LOCAL_TZ
from energy.errors import ValidationError
from energy.models import (
    Asset,
    AssetKind,
    Channel,
    Community,
    Device,
    Member,
    MemberKind,
    MemberPersonal,
    Quantity,
    Site,
    community_members,
)
from energy.pseudonyms import check_pseudonymous, fold, member_words, person_words

RowT = TypeVar("RowT")


class Change(enum.StrEnum):
    """What an ``ensure_*`` call did to the stored row."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Ensured(Generic[RowT]):
    """The stored row and what the call did to it."""

    row: RowT
    change: Change


@dataclass(frozen=True)
class EnsuredCommunity(Ensured[Community]):
    """A community and how many member links the call added."""

    links_created: int = 0


@dataclass(frozen=True)
class MemberSpec:
    """A member by its pseudonymous ``ref``; ``kind`` None: as stored (person when new).

    ``name``, ``email``, ``address``, ``iban``, ``licence_plate`` and ``label`` (the human
    name a file uses for the member) are the personal data (stored apart, in
    :class:`~energy.models.MemberPersonal`); a new member without ``name`` gets no personal
    row. A person's ``ref`` must not contain a word of their name, e-mail or label
    (:func:`energy.privacy.check_pseudonymous`).
    """

    ref: str
    kind: MemberKind | None = None
    name: str | None = None
    email: str | None = None
    address: str | None = None
    iban: str | None = None
    licence_plate: str | None = None
    label: str | None = None

    def personal(self) -> dict[str, str | None]:
        """The personal fields, as stored in ``member_personal``."""
        return {
            "name": self.name,
            "email": self.email,
            "address": self.address,
            "iban": self.iban,
            "licence_plate": self.licence_plate,
            "label": self.label,
        }


@dataclass(frozen=True)
class SiteSpec:
    """A grid connection, by its unique ``name``; ``display_name`` None: the name."""

    name: str
    ean: str
    latitude: float
    longitude: float
    grid_import_limit_kw: float
    grid_export_limit_kw: float
    display_name: str | None = None
    kind: str = "dorpshuis"
    timezone: str = LOCAL_TZ
    owner_member_id: int | None = None
    community_id: int | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """A Modbus device, by its ``name`` within the site; ``params`` are kept for the gateway."""

    name: str
    profile: str
    transport: str = "tcp"
    host: str | None = None
    port: int | None = None
    serial_port: str | None = None
    unit_id: int = 1
    poll_interval_s: float = 5.0
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AssetSpec:
    """An asset, by its ``name`` within the site."""

    name: str
    kind: AssetKind
    owner_member_id: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelSpec:
    """A channel, by its globally unique ``key``; ``unit`` is the stored unit."""

    key: str
    quantity: Quantity
    unit: str
    sign: int = 1
    device_id: int | None = None
    register: str | None = None
    max_gap_s: int | None = None
    """Longest sample interval the pipeline integrates [s]; None: the pipeline's default."""
    derived: dict[str, Any] | None = None
    """A derived channel's definition (:attr:`energy.models.Channel.derived`); None: measured."""


def _at(path: str | None, name: str) -> str:
    return f"{path}.{name}" if path else name


def _apply(obj: Any, values: Mapping[str, Any]) -> bool:
    """Set the attributes of ``obj`` that differ from ``values``; True if any did."""
    changed = False
    for k, v in values.items():
        if getattr(obj, k) != v:
            setattr(obj, k, v)
            changed = True
    return changed


def _upsert(
    session: Session,
    row: RowT | None,
    new: Callable[..., RowT],
    values: Mapping[str, Any],
    update: bool,
) -> Ensured[RowT]:
    """Create ``new(**values)`` if ``row`` is None, else update it (when ``update``); flush."""
    if row is None:
        row = new(**values)
        session.add(row)
        session.flush()
        return Ensured(row, Change.CREATED)
    if update and _apply(row, values):
        session.flush()
        return Ensured(row, Change.UPDATED)
    return Ensured(row, Change.UNCHANGED)


def ensure_member(
    session: Session,
    spec: MemberSpec,
    *,
    update: bool = True,
    source: str | None = None,
    path: str | None = None,
) -> Ensured[Member]:
    """Get the member ``spec.ref``, create it or update its personal data.

    With ``update=False`` a stored member is left as it is; a ``name`` that differs from its
    stored personal name is then a conflict (the member is defined elsewhere). A member whose
    personal data was erased gets it back only from ``update=True`` (its defining file).

    Raises
    ------
    ValidationError
        At ``<path>.kind`` if the member is stored with another kind; at ``<path>.name`` for a
        differing name with ``update=False``.
    """
    member = session.scalar(select(Member).where(Member.ref == spec.ref))
    return _ensure_loaded(session, spec, member, update, source, path, flush=True)


def ensure_members(
    session: Session,
    specs: Sequence[MemberSpec],
    *,
    update: bool = True,
    source: str | None = None,
    paths: Sequence[str] | None = None,
) -> list[Ensured[Member]]:
    """:func:`ensure_member` for many members, with a few statements in all (a community of
    1,000 members is settled in one transaction: one query for the stored members and their
    personal data, one flush for the new ones).

    The same checks, results and errors as calling :func:`ensure_member` for each spec in
    order (``paths[i]`` the location of ``specs[i]``); the first conflict raises and nothing
    of the call is flushed.
    """
    refs = sorted({spec.ref for spec in specs})
    found: dict[str, Member] = {}
    for i in range(0, len(refs), _IN_CHUNK):
        for member in session.scalars(
            select(Member)
            .where(Member.ref.in_(refs[i : i + _IN_CHUNK]))
            .options(selectinload(Member.personal))
        ):
            found[member.ref] = member
    out = []
    for k, spec in enumerate(specs):
        got = _ensure_loaded(
            session,
            spec,
            found.get(spec.ref),
            update,
            source,
            None if paths is None else paths[k],
            flush=False,
        )
        found[spec.ref] = got.row
        out.append(got)
    session.flush()
    return out


_IN_CHUNK = 5000
"""Values per ``IN (...)`` list (SQLite allows 32,766 bound parameters)."""


def _ensure_loaded(
    session: Session,
    spec: MemberSpec,
    member: Member | None,
    update: bool,
    source: str | None,
    path: str | None,
    *,
    flush: bool,
) -> Ensured[Member]:
    """The body of :func:`ensure_member` for ``member`` (the stored row of ``spec.ref`` or
    None); ``flush=False`` leaves the flush to the caller."""
    personal = spec.personal()
    kind = spec.kind or (member.kind if member is not None else MemberKind.PERSON)
    if kind is MemberKind.PERSON and (member is None or update):
        words = person_words(spec.name, spec.email, spec.label)
        check_pseudonymous(spec.ref, words, "member ref", source, _at(path, "ref"))
    if member is None:
        member = Member(ref=spec.ref, kind=kind)
        if spec.name is not None:
            member.personal = MemberPersonal(**personal)
        session.add(member)
        if flush:
            session.flush()
        return Ensured(member, Change.CREATED)
    if spec.kind is not None and member.kind != spec.kind:
        raise ValidationError(
            f"member {spec.ref!r} is stored as {member.kind.value}, the file says {spec.kind.value}",
            source,
            _at(path, "kind"),
        )
    if not update:
        if spec.name is not None and member.personal and member.personal.name != spec.name:
            raise ValidationError(
                f"member {spec.ref!r} is stored under another name than {spec.name!r}; "
                "refer to a member defined elsewhere by its ref only",
                source,
                _at(path, "name"),
            )
        return Ensured(member, Change.UNCHANGED)
    if spec.name is None:
        return Ensured(member, Change.UNCHANGED)
    if member.personal is None:
        member.personal = MemberPersonal(**personal)
    elif not _apply(member.personal, personal):
        return Ensured(member, Change.UNCHANGED)
    if flush:
        session.flush()
    return Ensured(member, Change.UPDATED)


def ensure_community(
    session: Session,
    name: str,
    members: Iterable[Member],
    display_name: str | None = None,
    *,
    update: bool = True,
) -> EnsuredCommunity:
    """Get the community ``name``, create it or update its display name, and link ``members``
    (links are only added: a member missing from ``members`` stays linked)."""
    community = session.scalar(select(Community).where(Community.name == name))
    got = _upsert(
        session, community, Community, {"name": name, "display_name": display_name or name}, update
    )
    comm = got.row
    present = set(
        session.scalars(
            select(community_members.c.member_id).where(community_members.c.community_id == comm.id)
        )
    )
    links = []
    for member in members:
        if member.id not in present:
            present.add(member.id)
            links.append({"community_id": comm.id, "member_id": member.id})
    if links:
        session.execute(community_members.insert(), links)
    return EnsuredCommunity(comm, got.change, len(links))


def ensure_site(
    session: Session,
    spec: SiteSpec,
    *,
    update: bool = True,
    source: str | None = None,
    path: str | None = None,
) -> Ensured[Site]:
    """Get the site ``spec.name``, create it or update it in place.

    Raises
    ------
    ValidationError
        At ``<path>.ean`` if another site has the EAN.
    """
    site = session.scalar(select(Site).where(Site.name == spec.name))
    if site is None or update:
        clash = session.scalar(select(Site).where(Site.ean == spec.ean, Site.name != spec.name))
        if clash is not None:
            raise ValidationError(
                f"EAN {spec.ean} already belongs to site {clash.name!r}", source, _at(path, "ean")
            )
    values = {**asdict(spec), "display_name": spec.display_name or spec.name}
    return _upsert(session, site, Site, values, update)


def ensure_device(
    session: Session, site: Site, spec: DeviceSpec, *, update: bool = True
) -> Ensured[Device]:
    """Get the device ``spec.name`` of ``site``, create it or update it in place."""
    device = session.scalar(
        select(Device).where(Device.site_id == site.id, Device.name == spec.name)
    )
    values = {**asdict(spec), "site_id": site.id}
    return _upsert(session, device, Device, values, update)


def ensure_asset(
    session: Session,
    site: Site,
    spec: AssetSpec,
    *,
    update: bool = True,
    source: str | None = None,
    path: str | None = None,
) -> Ensured[Asset]:
    """Get the asset ``spec.name`` of ``site``, create it or update it in place.

    Raises
    ------
    ValidationError
        At ``<path>.name`` if the asset of a person holds a word of the owner's name.
    """
    asset = session.scalar(select(Asset).where(Asset.site_id == site.id, Asset.name == spec.name))
    if asset is None or update:
        owner = session.get(Member, spec.owner_member_id) if spec.owner_member_id else None
        check_pseudonymous(spec.name, member_words(owner), "asset name", source, _at(path, "name"))
    values = {**asdict(spec), "site_id": site.id}
    return _upsert(session, asset, Asset, values, update)


def ensure_channel(
    session: Session,
    asset: Asset,
    spec: ChannelSpec,
    *,
    update: bool = True,
    source: str | None = None,
    path: str | None = None,
) -> Ensured[Channel]:
    """Get the channel ``spec.key`` of ``asset``, create it or update it in place.

    Raises
    ------
    ValidationError
        At ``<path>.key`` if the key belongs to a channel of another asset, or holds a word
        of the name of the person who owns the asset.
    """
    channel = session.scalar(select(Channel).where(Channel.key == spec.key))
    if channel is not None and channel.asset_id != asset.id:
        raise ValidationError(
            f"channel key {spec.key!r} already belongs to another asset", source, _at(path, "key")
        )
    if channel is None or update:
        owner = asset.owner if asset.owner_member_id else None
        check_pseudonymous(spec.key, member_words(owner), "channel key", source, _at(path, "key"))
    values = {**asdict(spec), "asset_id": asset.id}
    return _upsert(session, channel, Channel, values, update)


@dataclass(frozen=True)
class ErasedRows:
    """What :func:`erase_member_rows` changed (ids only, no personal data)."""

    personal_deleted: bool
    assets_renamed: list[int]
    channels_renamed: list[int]


def erase_member_rows(session: Session, member: Member, at: dt.datetime) -> ErasedRows:
    """The core-table part of erasing a member (:func:`energy.privacy.erase_core`).

    Deletes the ``member_personal`` row; renames an asset of theirs whose name still holds a
    word of their name to ``<kind>-<id>``, and such a channel key to
    ``<site>/<kind>-<id>/<quantity>-<channel id>`` (rows written before the pseudonymity
    check); sets ``members.erased_at``. The ref and everything keyed by it stay.
    """
    words = member_words(member)
    deleted = member.personal is not None
    if deleted:
        member.personal = None  # delete-orphan: the row goes at the flush
    assets, channels = [], []
    owned = session.scalars(select(Asset).where(Asset.owner_member_id == member.id))
    for asset in owned if words else ():
        kind = asset.kind.value.replace("_", "-")
        if any(w in fold(asset.name) for w in words):
            asset.name = f"{kind}-{asset.id}"
            assets.append(asset.id)
        for ch in asset.channels:
            if any(w in fold(ch.key) for w in words):
                ch.key = f"{asset.site.name}/{kind}-{asset.id}/{ch.quantity.value}-{ch.id}"
                channels.append(ch.id)
    member.erased_at = at
    session.flush()
    return ErasedRows(deleted, assets, channels)
