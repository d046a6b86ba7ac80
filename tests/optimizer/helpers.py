"""Small scenarios built in code for the optimizer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.scenario import BatterySpec, EVSession, EVSpec, Scenario, SiteSpec

DATA = Path(__file__).resolve().parents[1] / "data" / "optimizer"


def make_scenario(
    import_price: list[float] | np.ndarray,
    *,
    load_kw: float | list[float] | np.ndarray = 0.0,
    pv_kw: float | list[float] | np.ndarray = 0.0,
    export_price: float | list[float] | np.ndarray = 0.0,
    step_minutes: int = 60,
    start: str = "2026-03-02T00:00:00+01:00",
    import_limit_kw: float | list[float] | np.ndarray = 100.0,
    export_limit_kw: float | list[float] | np.ndarray = 100.0,
    battery: BatterySpec | None = None,
    evs: tuple[EVSpec, ...] = (),
    capacity_tariff_eur_per_kw: float = 0.0,
) -> Scenario:
    n = len(import_price)
    index = pd.date_range(
        pd.Timestamp(start).tz_convert("UTC"), periods=n, freq=f"{step_minutes}min"
    ).as_unit("ns")
    series = pd.DataFrame(
        {
            "pv_kw": np.broadcast_to(np.asarray(pv_kw, float), n),
            "load_kw": np.broadcast_to(np.asarray(load_kw, float), n),
            "import_price_eur_per_kwh": np.asarray(import_price, float),
            "export_price_eur_per_kwh": np.broadcast_to(np.asarray(export_price, float), n),
            "grid_import_limit_kw": np.broadcast_to(np.asarray(import_limit_kw, float), n),
            "grid_export_limit_kw": np.broadcast_to(np.asarray(export_limit_kw, float), n),
        },
        index=index,
    )
    site = SiteSpec(name="test-site", capacity_tariff_eur_per_kw=capacity_tariff_eur_per_kw)
    return Scenario(site=site, series=series, step_minutes=step_minutes, battery=battery, evs=evs)


def ev(
    name: str,
    arrival: str,
    departure: str,
    soc_arrival_pct: float,
    soc_departure_pct: float,
    **kw: object,
) -> EVSpec:
    session = EVSession(
        pd.Timestamp(arrival).tz_convert("UTC"),
        pd.Timestamp(departure).tz_convert("UTC"),
        soc_arrival_pct,
        soc_departure_pct,
    )
    args: dict[str, object] = {
        "owner": "m-test",
        "capacity_kwh": 10.0,
        "max_charge_kw": 5.0,
        "max_discharge_kw": 5.0,
        "efficiency": 1.0,
        "v2g": True,
        "soc_min_pct": 0.0,
    }
    args.update(kw)
    return EVSpec(name=name, sessions=(session,), **args)  # type: ignore[arg-type]


def balance_residual_kw(flows: pd.DataFrame) -> np.ndarray:
    """Supply - demand per step [kW]; zero when the power balance holds."""
    r = flows["grid_import_kw"] - flows["grid_export_kw"] + flows["pv_kw"] - flows["load_kw"]
    if "battery_charge_kw" in flows:
        r = r + flows["battery_discharge_kw"] - flows["battery_charge_kw"]
    for c in flows.columns:
        if c.startswith("ev:") and c.endswith(":charge_kw") and not c.endswith("discharge_kw"):
            r = r - flows[c]
        if c.startswith("ev:") and c.endswith(":discharge_kw"):
            r = r + flows[c]
    return r.to_numpy()
