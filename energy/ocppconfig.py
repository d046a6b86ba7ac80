"""The ``ocpp:`` section of a site description: the site's charge points and id tokens.

Example::

    ocpp:
      id_tokens: [04A1B2C3D4, 04FFEE0011]     # RFID cards / id tokens accepted at this site
      heartbeat_interval_s: 300
      listen_host: 127.0.0.1                   # with listen_port: noaber control run starts
      listen_port: 9000                        # the central system itself (0: a free port)
      charge_points:
        - id: CP-DORPSHUIS-1                   # the charger's identity (last path level of its URL)
          ocpp_version: "2.0.1"                # "1.6" (1.6J), "2.0.1" or "2.1"
          connector_id: 1                      # 1.6 connectorId, 2.0.1 / 2.1 evseId
          asset: ev-charger-1                  # the site asset it drives (assets: in the file)
          rate_unit: A                         # charging profiles in W or A (per phase)
          phases: 3
          voltage_v: 230                       # W = A x phases x voltage
          max_power_w: 11000
          min_power_w: 0                       # < 0 (discharge, V2G) only with "2.1"
          fallback_power_w: 4140               # the TxDefaultProfile: what it does on its own
          profile_duration_s: 900              # every TxProfile expires after this
          limits: {power_w_min: 0, power_w_max: 7400}   # as a Modbus device's limits
          password_hash: $argon2id$v=19$...    # profiles 1-2: noaber ocpp hash-password
      security_profile: 2                      # 0 (none: loopback only), 1 Basic auth,
      tls:                                     # 2 TLS + Basic auth, 3 TLS client certificates
        cert_file: /etc/noaber/ocpp/server.crt # the central system's certificate chain (PEM)
        key_file: /etc/noaber/ocpp/server.key
        client_ca_file: /etc/noaber/ocpp/chargers-ca.crt   # profile 3: who signs chargers

Security profiles (OCPP 1.6 security whitepaper, OCPP 2.0.1 part 2 section A00): 1 is HTTP
Basic authentication on the websocket upgrade, the username the charge point id of the URL,
the password (16 to 40 characters) checked against its Argon2id ``password_hash`` (never
stored in clear); 2 adds TLS (``wss://``, TLS 1.2 or later) with the central system's
certificate; 3 is TLS where each charger shows a client certificate signed by
``client_ca_file`` whose common name is its charge point id (no password).

Every error names the path (``ocpp.charge_points[1].min_power_w``) and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from energy.errors import ValidationError as NoaberValidationError
from energy.models import Quantity
from energy.setpointlimits import LimitsConfig

if TYPE_CHECKING:
    from energy.siteconfig import SiteDocument

OcppVersion = Literal["1.6", "2.0.1", "2.1"]

SUBPROTOCOLS: dict[str, str] = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}
"""The websocket subprotocol of each OCPP version."""
VERSION_OF: dict[str, str] = {v: k for k, v in SUBPROTOCOLS.items()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChargePointConfig(_Strict):
    """One charger (one connector / EVSE the plan drives)."""

    id: str = Field(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.:-]+$")
    ocpp_version: OcppVersion = "2.0.1"
    connector_id: int = Field(default=1, ge=1, le=100)
    asset: str = Field(min_length=1)
    rate_unit: Literal["W", "A"] = "W"
    phases: Literal[1, 2, 3] = 3
    voltage_v: float = Field(default=230.0, gt=0, le=1000)
    max_power_w: float = Field(gt=0, le=1_000_000)
    min_power_w: float = Field(default=0.0, ge=-1_000_000, le=1_000_000)
    fallback_power_w: float = Field(ge=0, le=1_000_000)
    profile_duration_s: int = Field(default=900, ge=1, le=86_400)
    limits: LimitsConfig = LimitsConfig()
    #: Security profiles 1 and 2: the Argon2id hash of its Basic auth password.
    password_hash: str | None = Field(default=None, max_length=255, pattern=r"^\$argon2id\$")

    @model_validator(mode="after")
    def _consistent(self) -> ChargePointConfig:
        if self.min_power_w < 0 and self.ocpp_version != "2.1":
            raise ValueError(
                f"min_power_w {self.min_power_w:g} W is a discharge (V2G), which needs "
                f"ocpp_version 2.1; OCPP {self.ocpp_version} charging profiles cannot discharge"
            )
        if self.min_power_w > self.max_power_w:
            raise ValueError(
                f"min_power_w {self.min_power_w:g} W is above max_power_w {self.max_power_w:g} W"
            )
        if self.fallback_power_w > self.max_power_w:
            raise ValueError(
                f"fallback_power_w {self.fallback_power_w:g} W is above max_power_w "
                f"{self.max_power_w:g} W"
            )
        lim = self.limits
        both = lim.power_w_min is not None and lim.power_w_max is not None
        if both and lim.power_w_min > lim.power_w_max:  # type: ignore[operator]
            raise ValueError(
                f"limits: power_w_min {lim.power_w_min:g} W is above power_w_max "
                f"{lim.power_w_max:g} W: no setpoint is allowed"
            )
        lo = max(self.min_power_w, lim.power_w_min if lim.power_w_min is not None else -math.inf)
        hi = min(self.max_power_w, lim.power_w_max if lim.power_w_max is not None else math.inf)
        if lo > hi:
            raise ValueError(
                f"limits: {lim.power_w_min if lim.power_w_min is not None else '-'}.."
                f"{lim.power_w_max if lim.power_w_max is not None else '-'} W leave no setpoint "
                f"within the charger's own {self.min_power_w:g}..{self.max_power_w:g} W"
            )
        if lim.power_w_max is not None and self.fallback_power_w > lim.power_w_max:
            raise ValueError(
                f"fallback_power_w {self.fallback_power_w:g} W is above limits.power_w_max "
                f"{lim.power_w_max:g} W: the charger's own fallback must be within the site's limits"
            )
        return self

    @property
    def subprotocol(self) -> str:
        return SUBPROTOCOLS[self.ocpp_version]

    def w_per_unit(self) -> float:
        """Watts per unit of the charging profile's limit (1 for W, phases x V for A)."""
        return 1.0 if self.rate_unit == "W" else self.phases * self.voltage_v


#: A Basic auth password's length [characters]: OCPP 2.0.1 BasicAuthPassword (16 to 40); the
#: OCPP 1.6 security whitepaper's AuthorizationKey (16 to 20 bytes) lies within.
PASSWORD_LENGTH = (16, 40)


def check_basic_auth_password(password: str) -> str:
    """``password`` if it can be a charger's Basic auth password (security profiles 1, 2).

    Raises
    ------
    ValueError
        Its length is outside :data:`PASSWORD_LENGTH`, or it has a ``:`` or a control
        character (neither can be sent in a Basic auth header), saying which.
    """
    lo, hi = PASSWORD_LENGTH
    if not lo <= len(password) <= hi:
        raise ValueError(
            f"a charger's password has {lo} to {hi} characters (OCPP 2.0.1 BasicAuthPassword), "
            f"got {len(password)}"
        )
    if any(c == ":" or ord(c) < 32 or ord(c) == 127 for c in password):
        raise ValueError("a charger's password cannot hold ':' or control characters")
    return password


class TlsConfig(_Strict):
    """The central system's TLS (security profiles 2 and 3): PEM files."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    #: Profile 3: the CA that signs the chargers' client certificates.
    client_ca_file: str | None = Field(default=None, min_length=1)


class OcppConfig(_Strict):
    """The ``ocpp:`` section of a site description."""

    charge_points: list[ChargePointConfig] = Field(min_length=1)
    id_tokens: list[str] = Field(default_factory=list)
    heartbeat_interval_s: int = Field(default=300, ge=1, le=86_400)
    #: The identity the central system's samples arrive under at the centre (its checks bind
    #: it to the site); default ``ocpp-<site name>``.
    gateway: str | None = Field(default=None, min_length=1, max_length=63)
    #: Where ``noaber control run`` listens for the site's chargers (it starts the central
    #: system itself when ``listen_port`` is set; ``noaber ocpp serve`` takes --host/--port).
    listen_host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    listen_port: int | None = Field(default=None, ge=0, le=65535)
    #: 0: none (loopback or a trusted network only); 1: Basic auth; 2: TLS and Basic auth;
    #: 3: TLS with client certificates (see the module docstring).
    security_profile: Literal[0, 1, 2, 3] = 0
    tls: TlsConfig | None = None

    @model_validator(mode="after")
    def _security(self) -> OcppConfig:
        profile = self.security_profile
        if profile in (1, 2):
            for i, cp in enumerate(self.charge_points):
                if cp.password_hash is None:
                    raise ValueError(
                        f"charge_points[{i}].password_hash: security_profile {profile} needs "
                        f"each charger's password hash (make one with noaber ocpp hash-password)"
                    )
        if profile >= 2 and self.tls is None:
            raise ValueError(
                f"tls: security_profile {profile} needs tls (cert_file and key_file of the "
                "central system's certificate)"
            )
        if profile == 3 and (self.tls is None or self.tls.client_ca_file is None):
            raise ValueError(
                "tls: security_profile 3 needs tls.client_ca_file, the CA of the chargers' "
                "client certificates"
            )
        return self

    @model_validator(mode="after")
    def _unique(self) -> OcppConfig:
        seen: set[str] = set()
        assets: set[str] = set()
        for i, cp in enumerate(self.charge_points):
            if cp.id in seen:
                raise ValueError(f"charge_points[{i}].id: duplicate charge point id {cp.id!r}")
            if cp.asset in assets:
                raise ValueError(
                    f"charge_points[{i}].asset: asset {cp.asset!r} is driven by two charge points"
                )
            seen.add(cp.id)
            assets.add(cp.asset)
        for i, tok in enumerate(self.id_tokens):
            if not tok or len(tok) > 36:
                raise ValueError(f"id_tokens[{i}]: an id token has 1 to 36 characters, got {tok!r}")
        return self

    def by_id(self) -> dict[str, ChargePointConfig]:
        return {cp.id: cp for cp in self.charge_points}

    def by_asset_id(self) -> dict[str, str]:
        """Asset -> the id of the charge point that drives it."""
        return {cp.asset: cp.id for cp in self.charge_points}


def _where(loc: tuple) -> str:
    out = "ocpp"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_ocpp_section(
    data: object, source: str, asset_names: set[str] | None = None
) -> OcppConfig:
    """Validate the ``ocpp:`` section; ``asset_names``: the site's assets a charge point may drive.

    Raises
    ------
    energy.errors.ValidationError
        Naming ``source`` and the path (``ocpp.charge_points[0].min_power_w``) and the value.
    """
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise NoaberValidationError("the ocpp section must be a mapping", source, "ocpp")
    try:
        cfg = OcppConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] != "value_error":
            msg = f"{msg} (got {err.get('input')!r})"
        loc = tuple(err["loc"])
        if err["type"] == "value_error" and msg.startswith("charge_points["):
            head, _, msg = msg.partition(": ")
            return _raise(msg, source, f"ocpp.{head}")
        field_name, sep, rest = msg.partition(": ")
        fields = set(ChargePointConfig.model_fields) | set(OcppConfig.model_fields)
        if err["type"] == "value_error" and sep and field_name in fields:
            return _raise(rest, source, f"{_where(loc)}.{field_name}")
        raise NoaberValidationError(msg, source, _where(loc)) from None
    if asset_names is not None:
        for i, cp in enumerate(cfg.charge_points):
            if cp.asset not in asset_names:
                raise NoaberValidationError(
                    f"unknown asset {cp.asset!r} (assets: {', '.join(sorted(asset_names)) or 'none'})",
                    source,
                    f"ocpp.charge_points[{i}].asset",
                )
    return cfg


def _raise(msg: str, source: str, where: str) -> OcppConfig:
    raise NoaberValidationError(msg, source, where)


#: Channel quantity -> the OCPP measurand whose values it stores.
MEASURANDS: dict[Quantity, str] = {
    Quantity.POWER: "Power.Active.Import",
    Quantity.ENERGY_IMPORT: "Energy.Active.Import.Register",
    Quantity.ENERGY_EXPORT: "Energy.Active.Export.Register",
    Quantity.SOC: "SoC",
    Quantity.CURRENT: "Current.Import",
    Quantity.VOLTAGE: "Voltage",
}


@dataclass
class SiteOcpp:
    """A site's ``ocpp:`` section checked against the rest of its description."""

    config: OcppConfig
    #: charge point id -> measurand -> channel key
    channels: dict[str, dict[str, str]] = field(default_factory=dict)
    #: channel key -> sign (the channel's sign convention)
    signs: dict[str, int] = field(default_factory=dict)
    #: charge point id -> (lo, hi) [W] from the site's connection and the asset's rating
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)


def check_site_ocpp(doc: SiteDocument, source: str) -> SiteOcpp:
    """Validate ``doc``'s ``ocpp:`` section against the rest of the site description: the
    schema (:func:`parse_ocpp_section`: ids, duplicates, limits), each charge point's asset
    exists and has a channel for its meter values, its fallback lies within the site's
    bounds (connection, the asset's ``max_charge_kw`` / ``max_discharge_kw``).

    Raises
    ------
    energy.errors.ValidationError
        No ``ocpp:`` section, or what is wrong, naming ``source`` and the path
        (``ocpp.charge_points[1].asset``).
    """
    if doc.ocpp is None:
        raise NoaberValidationError("the site description has no ocpp: section", source, "ocpp")
    assets = {a.name: a for a in doc.assets}
    cfg = parse_ocpp_section(doc.ocpp, source, set(assets))
    out = SiteOcpp(cfg)
    s = doc.site
    for i, cp in enumerate(cfg.charge_points):
        asset = assets[cp.asset]
        chans: dict[str, str] = {}
        for ch in asset.channels:
            if ch.derived is None and ch.device is None and ch.quantity in MEASURANDS:
                key = doc.channel_key(asset, ch)
                chans[MEASURANDS[ch.quantity]] = key
                out.signs[key] = ch.sign
        if not chans:
            raise NoaberValidationError(
                f"asset {cp.asset!r} has no channel for the charger's meter values (give it "
                "channels with quantity power and/or energy_import, without device)",
                source,
                f"ocpp.charge_points[{i}].asset",
            )
        out.channels[cp.id] = chans
        params = asset.params or {}
        hi = s.grid_import_limit_kw * 1000.0
        lo = -s.grid_export_limit_kw * 1000.0
        if params.get("max_charge_kw") is not None:
            hi = min(hi, float(params["max_charge_kw"]) * 1000.0)
        if params.get("max_discharge_kw") is not None:
            lo = max(lo, -float(params["max_discharge_kw"]) * 1000.0)
        elif cp.min_power_w < 0:
            lo = max(lo, cp.min_power_w)
        out.bounds[cp.id] = (lo, hi)
        if cp.fallback_power_w > hi:
            raise NoaberValidationError(
                f"fallback_power_w {cp.fallback_power_w:g} W is above the site's bound for "
                f"{cp.asset} ({hi:g} W: connection and the asset's max_charge_kw)",
                source,
                f"ocpp.charge_points[{i}].fallback_power_w",
            )
    return out
