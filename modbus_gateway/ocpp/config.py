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

Every error names the path (``ocpp.charge_points[1].min_power_w``) and the value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from energy.errors import ValidationError as NoaberValidationError
from modbus_gateway.config import LimitsConfig

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
