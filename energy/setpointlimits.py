"""The site's limits on a controllable device's power setpoint (``limits:`` of a Modbus device
in ``devices:`` and of a charge point in ``ocpp.charge_points``): one schema for both, in the
core because the site import validates the ``ocpp:`` section (:mod:`energy.ocppconfig`) and
the gateway its ``devices:`` (:mod:`modbus_gateway.config` re-exports it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LimitsConfig(BaseModel):
    """The site's limits on a device's power setpoint [W], stricter than the profile's.

    They bound what the setpoint register means (the profile's ``control.setpoint_quantity``):
    for ``device_power`` (a battery inverter, a charger) the asset's own power, + = charging,
    so ``power_w_max`` caps charging and ``-power_w_min`` discharging (V2G); for
    ``grid_power`` (a Victron GX, the ESS grid setpoint) the power at the grid connection,
    + = import, so they cap the site's import and export, not the battery's power. The
    optimiser plans within the same numbers (``optimizer.limits``).
    """

    model_config = ConfigDict(extra="forbid")

    power_w_min: float | None = None
    power_w_max: float | None = None
    ramp_w_per_s: float | None = Field(default=None, gt=0)
