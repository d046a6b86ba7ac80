"""One source of limits: the optimiser plans within what the safe writer will let through.

The gateway's safe writer (``modbus_gateway.writes.SafeWriter``) clamps every setpoint of a
device to the profile's register range and to the site's ``limits`` of that device
(``devices[].limits: {power_w_min, power_w_max}`` in the site description). A plan that asks
for more is cut at the device, and the rest of the plan (grid import, the car's SoC) is then
wrong. So the plan is made within the same limits: the application (which may read the
gateway's profiles) hands them to :func:`apply_writer_limits` as :class:`WriterLimit` records,
one per controlled asset, and the scenario's asset limits become the tighter of the asset's
own ratings and the writer's.

What a limit means depends on what the device's setpoint is (the profile's
``control.setpoint_quantity``):

* ``device_power`` (a battery inverter, a charger): the setpoint is the asset's own power,
  positive = charging (consumption at the meter). ``power_w_max`` caps charging
  (``max_charge_kw``), ``-power_w_min`` caps discharging (``max_discharge_kw``; a minimum of
  0 or more means no discharging, so no V2G);
* ``grid_power`` (a Victron GX in ESS mode): the setpoint is the power at the grid connection
  the device regulates, positive = import. The limits say nothing about the battery's own
  power (its inverter rating stays the asset's ``max_charge_kw``/``max_discharge_kw``); they
  cap the site's grid import (``power_w_max``) and export (``-power_w_min``) in every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from energy.errors import ValidationError
from optimizer.scenario import Scenario

SetpointQuantity = Literal["device_power", "grid_power"]


@dataclass(frozen=True, slots=True)
class WriterLimit:
    """The setpoint range the safe writer enforces for one controlled asset [W].

    ``power_w_min`` / ``power_w_max`` are the tighter of the profile's register range and the
    site's device limits (None: unbounded on that side); ``source`` says where they come from
    (for messages and the plan's notes).
    """

    asset: str
    device: str
    power_w_min: float | None
    power_w_max: float | None
    quantity: SetpointQuantity = "device_power"
    source: str = ""

    def __post_init__(self) -> None:
        lo, hi = self.power_w_min, self.power_w_max
        if lo is not None and hi is not None and lo > hi:
            raise ValidationError(
                f"the setpoint limits of device {self.device!r} exclude every setpoint "
                f"(power_w_min {lo:g} W > power_w_max {hi:g} W)",
                self.source or None,
            )


def tighter(a: float | None, b: float | None, pick: Any) -> float | None:
    """The tighter of two optional bounds (``pick``: ``min`` for an upper, ``max`` for a lower)."""
    if a is None:
        return b
    if b is None:
        return a
    return float(pick(a, b))


def apply_writer_limits(sc: Scenario, limits: Iterable[WriterLimit]) -> Scenario:
    """The scenario planned within the writer's limits (see the module docstring).

    The battery and the cars get ``min(own rating, writer limit)`` as their charge and
    discharge powers; a grid-setpoint device caps the grid import and export series. What was
    tightened is listed in ``meta["writer_limits"]`` (one sentence each), so a plan can say
    why it stays below an asset's rating.
    """
    notes: list[str] = list(sc.meta.get("writer_limits", []))
    battery = sc.battery
    evs = {ev.name: ev for ev in sc.evs}
    series = sc.series
    for lim in limits:
        where = f" ({lim.source})" if lim.source else ""
        if lim.quantity == "grid_power":
            series = series.copy() if series is sc.series else series
            if lim.power_w_max is not None:
                cap = max(lim.power_w_max, 0.0) / 1000
                col = "grid_import_limit_kw"
                if (series[col].to_numpy(float) > cap).any():
                    series[col] = np.minimum(series[col].to_numpy(float), cap)
                    notes.append(
                        f"grid import <= {cap:g} kW: the grid setpoint of device "
                        f"'{lim.device}' for '{lim.asset}' is limited to {lim.power_w_max:g} W{where}"
                    )
            if lim.power_w_min is not None:
                cap = max(-lim.power_w_min, 0.0) / 1000
                col = "grid_export_limit_kw"
                if (series[col].to_numpy(float) > cap).any():
                    series[col] = np.minimum(series[col].to_numpy(float), cap)
                    notes.append(
                        f"grid export <= {cap:g} kW: the grid setpoint of device "
                        f"'{lim.device}' for '{lim.asset}' is limited to {lim.power_w_min:g} W{where}"
                    )
            continue
        charge = None if lim.power_w_max is None else max(lim.power_w_max, 0.0) / 1000
        discharge = None if lim.power_w_min is None else max(-lim.power_w_min, 0.0) / 1000
        if battery is not None and lim.asset == battery.name:
            new_ch = tighter(battery.max_charge_kw, charge, min)
            new_dis = tighter(battery.max_discharge_kw, discharge, min)
            assert new_ch is not None and new_dis is not None
            if (new_ch, new_dis) != (battery.max_charge_kw, battery.max_discharge_kw):
                notes.append(
                    f"battery '{battery.name}' planned within {new_ch:g} kW charging and "
                    f"{new_dis:g} kW discharging (rated {battery.max_charge_kw:g}/"
                    f"{battery.max_discharge_kw:g} kW): the writer of device '{lim.device}' "
                    f"holds its setpoint to {_range(lim)}{where}"
                )
            battery = dataclasses.replace(battery, max_charge_kw=new_ch, max_discharge_kw=new_dis)
        elif lim.asset in evs:
            ev = evs[lim.asset]
            new_ch = tighter(ev.max_charge_kw, charge, min)
            rated_dis = ev.max_discharge_kw if ev.v2g else 0.0
            new_dis = tighter(rated_dis, discharge, min)
            assert new_ch is not None and new_dis is not None
            if (new_ch, new_dis) != (ev.max_charge_kw, rated_dis):
                notes.append(
                    f"EV '{ev.name}' planned within {new_ch:g} kW charging and {new_dis:g} kW "
                    f"discharging (rated {ev.max_charge_kw:g}/{rated_dis:g} kW): the writer of "
                    f"device '{lim.device}' holds its setpoint to {_range(lim)}{where}"
                )
            evs[ev.name] = dataclasses.replace(
                ev, max_charge_kw=new_ch, max_discharge_kw=new_dis, v2g=ev.v2g and new_dis > 0
            )
    meta = {**sc.meta, "writer_limits": notes}
    return sc.replace(
        battery=battery, evs=tuple(evs[ev.name] for ev in sc.evs), series=series, meta=meta
    )


def _range(lim: WriterLimit) -> str:
    lo = "-inf" if lim.power_w_min is None else f"{lim.power_w_min:g}"
    hi = "inf" if lim.power_w_max is None else f"{lim.power_w_max:g}"
    return f"{lo}..{hi} W"
