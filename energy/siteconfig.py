"""Site descriptions in YAML: validation with precise errors and an idempotent import.

A site description names one grid connection and what hangs behind it::

    site:      {name, display_name, ean, kind, latitude, longitude, timezone,
                grid_import_limit_kw, grid_export_limit_kw, owner,
                tariff: {capacity_eur_per_kw_month, contracted_kw, source}}  # energy.tariffs
    members:   [{ref, kind, name, email, address}]          # personal data kept apart
    community: {name, display_name, members: [ref, ...]}    # optional
    devices:   [{name, profile, transport, host, port, serial_port, unit_id, poll_interval_s, ...}]
    ocpp:      {id_tokens, charge_points: [{id, ocpp_version, asset, rate_unit, max_power_w, ...}]}
    assets:    [{name, kind, owner, params, channels: [{quantity, unit, sign, device, register, key,
                                                          max_gap_s, derived}]}]

A channel with ``derived:`` is computed by the interval pipeline from other channels of the
file, ISP by ISP (:func:`energy.pipeline.update_derived`), e.g. the building's own load from
the meters (all powers in the sign convention: positive = import/consumption)::

    - name: building
      kind: building_load
      channels:
        - quantity: power
          derived: grid - pv - battery - ev-1      # or {formula: ..., min_coverage: 0.9}

A term is ``[coefficient *] name``; the name is an asset (its channel of the same quantity),
``asset/quantity`` or a channel key; ``+`` and ``-`` between terms need spaces around them
(names may contain ``-``).

Every error names the file, the path in the document (``assets[2].channels[0].unit``) and the
offending value. :func:`import_site` upserts by natural keys (site name, asset and device name
within the site, channel key, member ref, community name) in one transaction, so importing the
same file twice changes nothing and a bad file changes nothing; the rows are written by
:mod:`energy.sites`. The site file defines its members (with their personal data); a community
file (:mod:`settlement.community`) or a campaign file refers to them by ref.
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

from energy.chargepoints import Binding, bind_charge_points
from energy.clock import LOCAL_TZ
from energy.errors import ValidationError
from energy.models import (
    QUANTITY_UNITS,
    AssetKind,
    Community,
    Device,
    Member,
    MemberKind,
    Quantity,
    Site,
)
from energy.ocppconfig import check_site_ocpp, parse_ocpp_section
from energy.sites import (
    AssetSpec,
    Change,
    ChannelSpec,
    DeviceSpec,
    MemberSpec,
    SiteSpec,
    ensure_asset,
    ensure_channel,
    ensure_community,
    ensure_device,
    ensure_member,
    ensure_site,
)
from energy.tariffs import set_site_tariff
from energy.yamlio import load_yaml_file, load_yaml_text

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
#: Sections other packages read from the same file; the core import leaves them alone.
PASS_THROUGH_SECTIONS = ("gateway", "simulator", "optimizer", "meetkoffer", "settlement", "ocpp")
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


def normalise_iban(value: str) -> str:
    """``value`` without spaces, upper case, if its ISO 13616 mod-97 check holds.

    Raises
    ------
    ValueError
        Naming the value, if it is not an IBAN.
    """
    iban = re.sub(r"\s+", "", value).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", iban):
        raise ValueError(f"not an IBAN: {value!r}")
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise ValueError(f"IBAN check digits do not match: {value!r}")
    return iban


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MemberDoc(_Strict):
    ref: str = Field(description="Pseudonymous member id, e.g. m-7f3a9c (never a name)")
    kind: MemberKind = MemberKind.PERSON
    name: str = Field(min_length=1, max_length=200)
    email: str | None = None
    address: str | None = None
    iban: str | None = Field(default=None, description="Payout account (ISO 13616)")
    licence_plate: str | None = Field(default=None, max_length=20)
    label: str | None = Field(
        default=None, max_length=100, description="Human label of the member (personal data)"
    )

    _ref = field_validator("ref")(lambda v: _name(v, "member ref"))

    @field_validator("iban")
    @classmethod
    def _iban(cls, v: str | None) -> str | None:
        return None if v is None else normalise_iban(v)

    @field_validator("licence_plate")
    @classmethod
    def _plate(cls, v: str | None) -> str | None:
        return None if v is None else v.upper()

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v


class TariffDoc(_Strict):
    """``site.tariff``: the capacity tariff the plans count (:mod:`energy.tariffs`)."""

    capacity_eur_per_kw_month: float = Field(ge=0, le=1000)
    contracted_kw: float = Field(default=0.0, ge=0, le=100_000)
    source: str = Field(default="", max_length=300)


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
    tariff: TariffDoc | None = None

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


FORMULA_TERM_RE = re.compile(r"^(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?([a-z0-9][a-z0-9_./-]*)$")


def parse_formula(formula: str) -> list[tuple[float, str]]:
    """The terms ``[(coefficient, name)]`` of a linear formula ``"grid - pv - 0.5 * ev-1"``.

    Operators ``+``/``-`` between terms are surrounded by whitespace (a ``-`` inside a name
    such as ``ev-1`` is part of the name); the first term may carry a sign.

    Raises
    ------
    ValueError
        Naming the term that is not ``[number *] name``, or a formula without terms.
    """
    tokens = formula.split()
    if tokens and len(tokens[0]) > 1 and tokens[0][0] in "+-":  # "-pv + ...": a leading sign
        tokens[:1] = [tokens[0][0], tokens[0][1:]]
    terms: list[tuple[float, str]] = []
    sign = 1.0
    pending: list[str] = []

    def flush() -> None:
        text = " ".join(pending)
        m = FORMULA_TERM_RE.match(text.replace(" ", ""))
        if m is None:
            raise ValueError(
                f"term {text!r} of formula {formula!r} is not '[number *] name' "
                "(operators need spaces around them)"
            )
        terms.append((sign * float(m.group(1) or 1.0), m.group(2)))
        pending.clear()

    for i, tok in enumerate(tokens):
        if tok in ("+", "-"):
            if pending:
                flush()
            elif i > 0:
                raise ValueError(f"formula {formula!r}: two operators in a row at {tok!r}")
            sign = -1.0 if tok == "-" else 1.0
            continue
        if pending and not pending[-1].endswith("*") and tok != "*" and not tok.startswith("*"):
            raise ValueError(f"formula {formula!r}: missing '+' or '-' before {tok!r}")
        pending.append(tok)
    if pending:
        flush()
    elif tokens:
        raise ValueError(f"formula {formula!r} ends with an operator")
    if not terms:
        raise ValueError("formula is empty")
    return terms


class DerivedDoc(_Strict):
    """A derived channel: a linear formula over other channels of the site."""

    formula: str = Field(min_length=1, max_length=2000)
    min_coverage: float = Field(default=0.5, gt=0, le=1)
    """Least coverage every input needs in an ISP for the derived ISP to be computed (0..1]."""

    @field_validator("formula")
    @classmethod
    def _formula(cls, v: str) -> str:
        parse_formula(v)
        return v


class ChannelDoc(_Strict):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    quantity: Quantity
    unit: str | None = None
    sign: Literal[1, -1] = 1
    device: str | None = None
    register_name: str | None = Field(default=None, alias="register")
    key: str | None = None
    max_gap_s: int | None = Field(default=None, gt=0, le=86_400)
    """Longest sample interval integrated into readings [s] (default: the pipeline's 2 h)."""
    derived: DerivedDoc | None = None
    """Computed from other channels (a formula, or ``{formula, min_coverage}``)."""

    @field_validator("derived", mode="before")
    @classmethod
    def _derived_text(cls, v: Any) -> Any:
        return {"formula": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _derived_alone(self) -> ChannelDoc:
        if self.derived is not None:
            if self.device is not None or self.register_name is not None:
                raise ValueError("a derived channel has no device or register")
            if self.quantity != Quantity.POWER:
                raise ValueError(
                    f"a derived channel must have quantity 'power', got {self.quantity.value!r}"
                )
        return self

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
    accept_no_failsafe: bool = Field(
        default=False,
        description="The site accepts in writing that this device keeps its last setpoint "
        "when the controller dies (needed to control a profile whose fail-safe is none)",
    )

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
        extra = dict(self.model_extra or {})
        if self.accept_no_failsafe:
            extra["accept_no_failsafe"] = True
        return extra


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
    #: Charge points and id tokens (validated by :func:`energy.ocppconfig.check_site_ocpp`
    #: when the document is parsed; their ids are bound to the site on import).
    ocpp: dict[str, Any] | None = None

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
        for i, a in enumerate(self.assets):
            for j, ch in enumerate(a.channels):
                if ch.derived is not None:
                    self.derived_terms(ch, f"assets[{i}].channels[{j}].derived")
        return self

    def derived_terms(self, ch: ChannelDoc, where: str) -> list[tuple[str, float]]:
        """``[(channel key, coefficient)]`` of a derived channel's formula.

        Raises
        ------
        ValueError
            Naming ``where`` and the term whose name is no asset, ``asset/quantity`` or
            channel key of this file, or that names a derived channel.
        """
        assert ch.derived is not None
        by_key: dict[str, ChannelDoc] = {}
        by_asset: dict[str, dict[str, str]] = {}
        for a in self.assets:
            for c in a.channels:
                key = self.channel_key(a, c)
                by_key[key] = c
                by_asset.setdefault(a.name, {}).setdefault(c.quantity.value, key)
        out: dict[str, float] = {}
        for coef, name in parse_formula(ch.derived.formula):
            asset, _, quantity = name.partition("/")
            if name in by_key:
                key = name
            elif asset in by_asset and not quantity:
                if ch.quantity.value not in by_asset[asset]:
                    raise ValueError(
                        f"{where}: asset {asset!r} has no {ch.quantity.value} channel "
                        f"(it has: {', '.join(sorted(by_asset[asset])) or 'none'})"
                    )
                key = by_asset[asset][ch.quantity.value]
            elif asset in by_asset and quantity in by_asset[asset]:
                key = by_asset[asset][quantity]
            else:
                raise ValueError(
                    f"{where}: {name!r} is no asset, asset/quantity or channel key of this "
                    f"site (assets: {', '.join(sorted(by_asset)) or 'none'}; operators need "
                    "spaces around them)"
                )
            if by_key[key].derived is not None:
                raise ValueError(f"{where}: {name!r} is itself derived; use its inputs")
            if by_key[key].quantity not in UNIT_FACTORS:
                raise ValueError(
                    f"{where}: {name!r} is a {by_key[key].quantity.value} channel; a formula "
                    "adds power and energy channels only"
                )
            out[key] = out.get(key, 0.0) + coef
        return list(out.items())

    def derived_definition(self, asset: AssetDoc, ch: ChannelDoc) -> dict[str, Any] | None:
        """What :attr:`energy.models.Channel.derived` stores for a channel (None: measured)."""
        if ch.derived is None:
            return None
        terms = self.derived_terms(ch, f"{asset.name}.{ch.quantity.value}.derived")
        return {
            "formula": ch.derived.formula,
            "terms": [[k, c] for k, c in terms],
            "min_coverage": ch.derived.min_coverage,
        }

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
        doc = SiteDocument.model_validate(data)
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
    if doc.ocpp is not None:  # charge points: ids, duplicates, assets, limits
        check_site_ocpp(doc, source)
    return doc


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

    def count(self, kind: str, change: Change, n: int = 1) -> None:
        """Count ``n`` rows of ``kind`` (``sites``, ``channels``, ...) that ``change`` says."""
        bucket = {Change.CREATED: self.created, Change.UPDATED: self.updated}.get(change)
        if bucket is not None and n:
            bucket[kind] = bucket.get(kind, 0) + n

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


@dataclass
class _Import:
    """One run of :func:`import_site`: what its steps share."""

    session: Session
    doc: SiteDocument
    source: str
    result: ImportResult
    members: dict[str, Member] = field(default_factory=dict)

    def member_of(self, ref: str | None, where: str) -> Member | None:
        """The member ``ref`` of the document or, failing that, of the store."""
        if ref is None:
            return None
        if ref not in self.members:
            stored = self.session.scalar(select(Member).where(Member.ref == ref))
            if stored is None:
                raise ValidationError(
                    f"unknown member {ref!r}: define it under members", self.source, where
                )
            self.members[ref] = stored
        return self.members[ref]


def _import_members(run: _Import) -> None:
    for i, m in enumerate(run.doc.members):
        spec = MemberSpec(
            m.ref, m.kind, m.name, m.email, m.address, m.iban, m.licence_plate, m.label
        )
        got = ensure_member(run.session, spec, source=run.source, path=f"members[{i}]")
        run.result.count("members", got.change)
        run.members[m.ref] = got.row


def _import_community(run: _Import) -> Community | None:
    c = run.doc.community
    if c is None:
        return None
    members = [run.member_of(ref, f"community.members[{j}]") for j, ref in enumerate(c.members)]
    got = ensure_community(run.session, c.name, filter(None, members), c.display_name)
    run.result.count("communities", got.change)
    run.result.count("community_members", Change.CREATED, got.links_created)
    return got.row


def _import_site_row(run: _Import, community: Community | None) -> Site:
    s = run.doc.site
    owner = run.member_of(s.owner, "site.owner")
    spec = SiteSpec(
        name=s.name,
        ean=s.ean,
        latitude=s.latitude,
        longitude=s.longitude,
        grid_import_limit_kw=s.grid_import_limit_kw,
        grid_export_limit_kw=s.grid_export_limit_kw,
        display_name=s.display_name,
        kind=s.kind,
        timezone=s.timezone,
        owner_member_id=owner.id if owner else None,
        community_id=community.id if community else None,
    )
    got = ensure_site(run.session, spec, source=run.source, path="site")
    run.result.count("sites", got.change)
    if s.tariff is not None:
        t = s.tariff
        if set_site_tariff(
            run.session, got.row, t.capacity_eur_per_kw_month, t.contracted_kw, t.source
        ):
            run.result.count("site_tariffs", Change.UPDATED)
    return got.row


def _import_devices(run: _Import, site: Site) -> dict[str, Device]:
    devices: dict[str, Device] = {}
    for d in run.doc.devices:
        spec = DeviceSpec(
            d.name,
            d.profile,
            d.transport,
            d.host,
            d.port,
            d.serial_port,
            d.unit_id,
            d.poll_interval_s,
            d.params,
        )
        got = ensure_device(run.session, site, spec)
        run.result.count("devices", got.change)
        devices[d.name] = got.row
    return devices


def _import_assets(run: _Import, site: Site, devices: dict[str, Device]) -> None:
    for i, a in enumerate(run.doc.assets):
        owner = run.member_of(a.owner, f"assets[{i}].owner")
        got = ensure_asset(
            run.session,
            site,
            AssetSpec(a.name, a.kind, owner.id if owner else None, a.params),
            source=run.source,
            path=f"assets[{i}]",
        )
        run.result.count("assets", got.change)
        for j, ch in enumerate(a.channels):
            key = run.doc.channel_key(a, ch)
            spec = ChannelSpec(
                key=key,
                quantity=ch.quantity,
                unit=QUANTITY_UNITS[ch.quantity] if ch.quantity in UNIT_FACTORS else str(ch.unit),
                sign=ch.sign,
                device_id=devices[ch.device].id if ch.device else None,
                register=ch.register_name,
                max_gap_s=ch.max_gap_s,
                derived=run.doc.derived_definition(a, ch),
            )
            path = f"assets[{i}].channels[{j}]"
            channel = ensure_channel(run.session, got.row, spec, source=run.source, path=path)
            run.result.count("channels", channel.change)
            run.result.channel_ids[key] = channel.row.id


def import_site(session: Session, doc: SiteDocument, source: str = "<document>") -> ImportResult:
    """Upsert a validated site description into the store (in the caller's transaction), step
    by step: members, community, site, devices, assets with their channels (the rows are
    written by :mod:`energy.sites`).

    Raises :class:`ValidationError` for references the store cannot satisfy (an owner that is
    neither in the document nor stored, an EAN already used by another site). The caller's
    transaction rolls back on error, so nothing is half-imported.
    """
    run = _Import(session, doc, source, ImportResult(site=doc.site.name))
    _import_members(run)
    community = _import_community(run)
    site = _import_site_row(run, community)
    _import_assets(run, site, _import_devices(run, site))
    _import_charge_points(run, site)
    return run.result


def _import_charge_points(run: _Import, site: Site) -> None:
    """Bind the ``ocpp:`` section's charge point ids to the site (unbind those it dropped)."""
    section = run.doc.ocpp
    cps = [] if section is None else parse_ocpp_section(section, run.source).charge_points
    got = bind_charge_points(
        run.session,
        site,
        [Binding(cp.id, cp.ocpp_version, cp.asset) for cp in cps],
        run.source,
    )
    run.result.count("ocpp_charge_points", Change.CREATED, got.created)
    run.result.count("ocpp_charge_points", Change.UPDATED, got.updated + got.removed)


def import_site_file(path: Path | str, sessions: Any) -> ImportResult:
    """Validate and import a file in one transaction (``sessions``: a sessionmaker)."""
    doc = load_site_file(path)
    with sessions() as session, session.begin():
        return import_site(session, doc, str(path))
