"""Site descriptions in YAML: validation with precise errors and an idempotent import.

A site description names one grid connection and what hangs behind it::

    site:      {name, display_name, ean, kind, latitude, longitude, timezone,
                grid_import_limit_kw, grid_export_limit_kw, owner}
    members:   [{ref, kind, name, email, address}]          # personal data kept apart
    community: {name, display_name, members: [ref, ...]}    # optional
    devices:   [{name, profile, transport, host, port, serial_port, unit_id, poll_interval_s, ...}]
    assets:    [{name, kind, owner, params, channels: [{quantity, unit, sign, device, register, key}]}]

Every error names the file, the path in the document (``assets[2].channels[0].unit``) and the
offending value. :func:`import_site` upserts by natural keys (site name, asset and device name
within the site, channel key, member ref, community name) in one transaction, so importing the
same file twice changes nothing and a bad file changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.clock import LOCAL_TZ
from energy.errors import ValidationError
from energy.models import (
    QUANTITY_UNITS,
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
)
from energy.yamlio import load_yaml_file, load_yaml_text

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
#: Sections other packages read from the same file; the core import leaves them alone.
PASS_THROUGH_SECTIONS = ("gateway", "simulator", "optimizer", "meetkoffer", "settlement")
#: Accepted units per quantity and the factor to the stored unit.
UNIT_FACTORS: dict[Quantity, dict[str, float]] = {
    Quantity.POWER: {"W": 1.0, "kW": 1000.0},
    Quantity.ENERGY_IMPORT: {"Wh": 1.0, "kWh": 1000.0},
    Quantity.ENERGY_EXPORT: {"Wh": 1.0, "kWh": 1000.0},
}


def ean_check_digit_ok(ean: str) -> bool:
    """GS1 check digit of an 18-digit EAN (GSRN) as used for Dutch grid connections."""
    if not re.fullmatch(r"\d{18}", ean):
        return False
    digits = [int(c) for c in ean]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits[:-1]))
    return (10 - total % 10) % 10 == digits[-1]


def _name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{what} must be lowercase letters, digits, '-' or '_' (max 100), got {value!r}"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MemberDoc(_Strict):
    ref: str = Field(description="Pseudonymous member id, e.g. m-ev-anna")
    kind: MemberKind = MemberKind.PERSON
    name: str = Field(min_length=1, max_length=200)
    email: str | None = None
    address: str | None = None

    _ref = field_validator("ref")(lambda v: _name(v, "member ref"))

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v


class SiteDoc(_Strict):
    name: str
    display_name: str | None = None
    ean: str
    kind: Literal["dorpshuis", "sports_club", "school", "factory", "solar_park", "other"] = (
        "dorpshuis"
    )
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    timezone: str = LOCAL_TZ
    grid_import_limit_kw: float = Field(gt=0, le=100_000)
    grid_export_limit_kw: float = Field(ge=0, le=100_000)
    owner: str | None = None

    _n = field_validator("name")(lambda v: _name(v, "site name"))

    @field_validator("ean", mode="before")
    @classmethod
    def _ean(cls, v: Any) -> str:
        s = str(v)
        if not re.fullmatch(r"\d{18}", s):
            raise ValueError(f"EAN must be 18 digits, got {s!r}")
        if not ean_check_digit_ok(s):
            raise ValueError(f"EAN {s} has a wrong check digit")
        return s

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r}") from None
        return v


class ChannelDoc(_Strict):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    quantity: Quantity
    unit: str | None = None
    sign: Literal[1, -1] = 1
    device: str | None = None
    register_name: str | None = Field(default=None, alias="register")
    key: str | None = None

    @model_validator(mode="after")
    def _unit(self) -> ChannelDoc:
        stored = QUANTITY_UNITS[self.quantity]
        allowed = UNIT_FACTORS.get(self.quantity, {stored: 1.0})
        if self.unit is None:
            self.unit = stored
        elif self.unit not in allowed:
            raise ValueError(
                f"unit {self.unit!r} does not fit quantity {self.quantity.value!r}; use one of {', '.join(allowed)}"
            )
        return self


class AssetDoc(_Strict):
    name: str
    kind: AssetKind
    owner: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    channels: list[ChannelDoc] = Field(default_factory=list)

    _n = field_validator("name")(lambda v: _name(v, "asset name"))


class DeviceDoc(BaseModel):
    """A Modbus device; keys beyond the core ones are kept in ``params`` for the gateway."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    name: str
    profile: str
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    serial_port: str | None = None
    unit_id: int = Field(default=1, ge=0, le=247)
    poll_interval_s: float = Field(default=5.0, ge=0.1, le=86_400)

    _n = field_validator("name")(lambda v: _name(v, "device name"))

    @model_validator(mode="after")
    def _address(self) -> DeviceDoc:
        if self.transport == "tcp" and not self.host:
            raise ValueError(f"device {self.name!r}: transport tcp needs host")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError(f"device {self.name!r}: transport rtu needs serial_port")
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class CommunityDoc(_Strict):
    name: str
    display_name: str | None = None
    members: list[str] = Field(default_factory=list)

    _n = field_validator("name")(lambda v: _name(v, "community name"))


class SiteDocument(_Strict):
    """A whole site description file."""

    model_config = ConfigDict(extra="forbid")

    site: SiteDoc
    members: list[MemberDoc] = Field(default_factory=list)
    community: CommunityDoc | None = None
    devices: list[DeviceDoc] = Field(default_factory=list)
    assets: list[AssetDoc] = Field(default_factory=list)
    gateway: dict[str, Any] | None = None
    simulator: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    meetkoffer: dict[str, Any] | None = None
    settlement: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _references(self) -> SiteDocument:
        refs = [m.ref for m in self.members]
        _unique(refs, "members", "ref")
        _unique([d.name for d in self.devices], "devices", "name")
        _unique([a.name for a in self.assets], "assets", "name")
        devices = {d.name for d in self.devices}
        for i, a in enumerate(self.assets):
            for j, ch in enumerate(a.channels):
                if ch.device is not None and ch.device not in devices:
                    raise ValueError(
                        f"assets[{i}].channels[{j}].device: unknown device {ch.device!r} "
                        f"(devices: {', '.join(sorted(devices)) or 'none'})"
                    )
            quantities = [ch.quantity for ch in a.channels if ch.key is None]
            _unique([q.value for q in quantities], f"assets[{i}].channels", "quantity")
        return self

    def channel_key(self, asset: AssetDoc, ch: ChannelDoc) -> str:
        return ch.key or f"{self.site.name}/{asset.name}/{ch.quantity.value}"

    def member_refs(self) -> set[str]:
        """Member refs this document uses (owners and community members)."""
        used = {a.owner for a in self.assets if a.owner} | (
            {self.site.owner} if self.site.owner else set()
        )
        if self.community:
            used |= set(self.community.members)
        return used


def _unique(values: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ValueError(f"{where}[{i}].{what}: duplicate {v!r}")
        seen.add(v)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    cur = data
    for part in loc:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def parse_site_document(data: Any, source: str = "<document>") -> SiteDocument:
    """Validate a parsed document; raises :class:`ValidationError` naming path and value."""
    if not isinstance(data, dict):
        raise ValidationError(
            f"expected a mapping with a 'site' section, got {type(data).__name__}", source
        )
    try:
        return SiteDocument.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        value = _value_at(data, loc)
        if value is not None and not isinstance(value, dict | list):
            msg += f" (value: {value!r})"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ValidationError(msg + more, source, _loc(loc) or None) from None


def load_site_file(path: Path | str) -> SiteDocument:
    """Read and validate a site description YAML file."""
    source = str(Path(path))
    return load_yaml_file(path, parse=lambda data: parse_site_document(data, source))


def load_site_text(text: str, source: str = "<text>") -> SiteDocument:
    """Parse and validate YAML text of a site description."""
    return load_yaml_text(text, source, lambda data: parse_site_document(data, source))


@dataclass
class ImportResult:
    """What an import created or changed (counts per kind)."""

    site: str
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    channel_ids: dict[str, int] = field(default_factory=dict)

    def _bump(self, bucket: dict[str, int], kind: str) -> None:
        bucket[kind] = bucket.get(kind, 0) + 1

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _apply(obj: Any, values: dict[str, Any]) -> bool:
    changed = False
    for k, v in values.items():
        if getattr(obj, k) != v:
            setattr(obj, k, v)
            changed = True
    return changed


def import_site(session: Session, doc: SiteDocument, source: str = "<document>") -> ImportResult:
    """Upsert a validated site description into the store (in the caller's transaction).

    Raises :class:`ValidationError` for references the store cannot satisfy (an owner that is
    neither in the document nor stored, an EAN already used by another site). The caller's
    transaction rolls back on error, so nothing is half-imported.
    """
    res = ImportResult(site=doc.site.name)

    members: dict[str, Member] = {}
    for i, m in enumerate(doc.members):
        member = session.scalar(select(Member).where(Member.ref == m.ref))
        if member is None:
            member = Member(ref=m.ref, kind=m.kind)
            session.add(member)
            res._bump(res.created, "members")
        elif member.kind != m.kind:
            raise ValidationError(
                f"member {m.ref!r} is stored as {member.kind.value}, the file says {m.kind.value}",
                source,
                f"members[{i}].kind",
            )
        personal = {"name": m.name, "email": m.email, "address": m.address}
        if member.personal is None:
            member.personal = MemberPersonal(**personal)
        elif _apply(member.personal, personal):
            res._bump(res.updated, "members")
        members[m.ref] = member
    session.flush()

    def member_of(ref: str | None, where: str) -> Member | None:
        if ref is None:
            return None
        if ref in members:
            return members[ref]
        stored = session.scalar(select(Member).where(Member.ref == ref))
        if stored is None:
            raise ValidationError(f"unknown member {ref!r}: define it under members", source, where)
        members[ref] = stored
        return stored

    community = None
    if doc.community is not None:
        c = doc.community
        community = session.scalar(select(Community).where(Community.name == c.name))
        if community is None:
            community = Community(name=c.name, display_name=c.display_name or c.name)
            session.add(community)
            res._bump(res.created, "communities")
        elif _apply(community, {"display_name": c.display_name or c.name}):
            res._bump(res.updated, "communities")
        session.flush()
        from energy.models import community_members

        present = set(
            session.scalars(
                select(community_members.c.member_id).where(
                    community_members.c.community_id == community.id
                )
            )
        )
        for j, ref in enumerate(c.members):
            cm = member_of(ref, f"community.members[{j}]")
            assert cm is not None
            if cm.id not in present:
                session.execute(
                    community_members.insert().values(community_id=community.id, member_id=cm.id)
                )
                present.add(cm.id)
                res._bump(res.created, "community_members")

    s = doc.site
    clash = session.scalar(select(Site).where(Site.ean == s.ean, Site.name != s.name))
    if clash is not None:
        raise ValidationError(
            f"EAN {s.ean} already belongs to site {clash.name!r}", source, "site.ean"
        )
    site = session.scalar(select(Site).where(Site.name == s.name))
    owner = member_of(s.owner, "site.owner")
    values = {
        "display_name": s.display_name or s.name,
        "ean": s.ean,
        "kind": s.kind,
        "latitude": s.latitude,
        "longitude": s.longitude,
        "timezone": s.timezone,
        "grid_import_limit_kw": s.grid_import_limit_kw,
        "grid_export_limit_kw": s.grid_export_limit_kw,
        "owner_member_id": owner.id if owner else None,
        "community_id": community.id if community else None,
    }
    if site is None:
        site = Site(name=s.name, **values)
        session.add(site)
        res._bump(res.created, "sites")
    elif _apply(site, values):
        res._bump(res.updated, "sites")
    session.flush()

    devices: dict[str, Device] = {}
    for d in doc.devices:
        device = session.scalar(
            select(Device).where(Device.site_id == site.id, Device.name == d.name)
        )
        values = {
            "profile": d.profile,
            "transport": d.transport,
            "host": d.host,
            "port": d.port,
            "serial_port": d.serial_port,
            "unit_id": d.unit_id,
            "poll_interval_s": d.poll_interval_s,
            "params": d.params,
        }
        if device is None:
            device = Device(site_id=site.id, name=d.name, **values)
            session.add(device)
            res._bump(res.created, "devices")
        elif _apply(device, values):
            res._bump(res.updated, "devices")
        devices[d.name] = device
    session.flush()

    for i, a in enumerate(doc.assets):
        owner = member_of(a.owner, f"assets[{i}].owner")
        asset = session.scalar(select(Asset).where(Asset.site_id == site.id, Asset.name == a.name))
        values = {
            "kind": a.kind,
            "owner_member_id": owner.id if owner else None,
            "params": a.params,
        }
        if asset is None:
            asset = Asset(site_id=site.id, name=a.name, **values)
            session.add(asset)
            res._bump(res.created, "assets")
        elif _apply(asset, values):
            res._bump(res.updated, "assets")
        session.flush()
        for j, ch in enumerate(a.channels):
            key = doc.channel_key(a, ch)
            channel = session.scalar(select(Channel).where(Channel.key == key))
            if channel is not None and channel.asset_id != asset.id:
                raise ValidationError(
                    f"channel key {key!r} already belongs to another asset",
                    source,
                    f"assets[{i}].channels[{j}].key",
                )
            values = {
                "quantity": ch.quantity,
                "unit": QUANTITY_UNITS[ch.quantity] if ch.quantity in UNIT_FACTORS else ch.unit,
                "sign": ch.sign,
                "device_id": devices[ch.device].id if ch.device else None,
                "register": ch.register_name,
            }
            if channel is None:
                channel = Channel(key=key, asset_id=asset.id, **values)
                session.add(channel)
                res._bump(res.created, "channels")
            elif _apply(channel, values):
                res._bump(res.updated, "channels")
            session.flush()
            res.channel_ids[key] = channel.id
    return res


def import_site_file(path: Path | str, sessions: Any) -> ImportResult:
    """Validate and import a file in one transaction (``sessions``: a sessionmaker)."""
    doc = load_site_file(path)
    with sessions() as session, session.begin():
        return import_site(session, doc, str(path))
