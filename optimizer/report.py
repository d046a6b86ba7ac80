"""Plan outputs: the schedule per step and asset, and the comparison with the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimizer.baselines import BASELINES, asset_values
from optimizer.kpis import compute_kpis, ev_names
from optimizer.model import Plan
from optimizer.scenario import Scenario

SCHEDULE_COLUMNS = ("timestamp", "asset", "kind", "power_kw", "soc_pct")


def schedule_long(flows: pd.DataFrame, battery_name: str = "battery") -> pd.DataFrame:
    """The schedule per step and asset (long form).

    ``power_kw`` follows the meter sign convention (docs/ARCHITECTURE.md): positive = import or
    consumption (grid import, load, charging), negative = export or production (grid export,
    PV, discharging). ``soc_pct`` is the SoC at the end of the step (storage only). EV rows
    exist only for steps where the car is plugged in.
    """
    parts = []
    idx = flows.index

    def add(
        asset: str,
        kind: str,
        power: np.ndarray,
        soc: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        frame = pd.DataFrame(
            {
                "timestamp": idx,
                "asset": asset,
                "kind": kind,
                "power_kw": power,
                "soc_pct": soc if soc is not None else np.nan,
            }
        )
        parts.append(frame[mask] if mask is not None else frame)

    add("grid", "grid", (flows["grid_import_kw"] - flows["grid_export_kw"]).to_numpy())
    add("pv", "pv", -flows["pv_kw"].to_numpy())
    add("load", "building_load", flows["load_kw"].to_numpy())
    if "battery_charge_kw" in flows:
        add(
            battery_name,
            "battery",
            (flows["battery_charge_kw"] - flows["battery_discharge_kw"]).to_numpy(),
            flows["battery_soc_pct"].to_numpy(),
        )
    for name in ev_names(flows):
        add(
            name,
            "ev",
            (flows[f"ev:{name}:charge_kw"] - flows[f"ev:{name}:discharge_kw"]).to_numpy(),
            flows[f"ev:{name}:soc_pct"].to_numpy(),
            flows[f"ev:{name}:plugged"].to_numpy(bool),
        )
    out = pd.concat(parts, ignore_index=True)
    out["power_kw"] = out["power_kw"].round(4) + 0.0
    out["soc_pct"] = out["soc_pct"].round(3)
    return out.sort_values(["timestamp", "asset"], kind="stable").reset_index(drop=True)


def write_schedule_csv(
    flows: pd.DataFrame, path: str | Path, battery_name: str = "battery"
) -> Path:
    """Write :func:`schedule_long` as CSV with ISO 8601 UTC timestamps; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = schedule_long(flows, battery_name)
    table["timestamp"] = table["timestamp"].map(lambda t: t.isoformat())
    table.to_csv(path, index=False)
    return path


def compare(scenario: Scenario, result: Plan, values: bool = True) -> dict[str, Any]:
    """KPIs of the plan and of both baselines, and the savings against each [EUR].

    With ``values`` (two more solves) also the plan without the battery (``no_battery``, a
    baseline column) and the value of each asset as its own line (``asset_values``: smart
    charging, V2G, battery; :func:`optimizer.baselines.asset_values`).
    """
    co2 = scenario.co2_kg_per_kwh
    kpis = {"optimized": compute_kpis(result.flows, result.params, co2)}
    for name, baseline in BASELINES.items():
        kpis[name] = compute_kpis(baseline(result.params), result.params, co2)
    lines = None
    if values:
        av = asset_values(result.params, result.flows, co2)
        kpis["no_battery"] = compute_kpis(av.no_battery, result.params, co2)
        lines = av.as_dict()
    best = kpis["optimized"]["cost_eur"]
    return {
        "site": scenario.site.name,
        "timezone": scenario.site.timezone,
        "start": scenario.start.isoformat(),
        "steps": len(scenario.series),
        "step_minutes": scenario.step_minutes,
        "status": result.status,
        "mip": result.mip,
        "binaries": result.n_binaries,
        "gap": result.gap,
        "build_s": round(result.build_s, 4),
        "solve_s": round(result.solve_s, 4),
        "objective_eur": round(result.objective_eur, 4),
        "kpis": kpis,
        "shortfalls": [x.as_dict() for x in result.shortfalls],
        "breaches": [x.as_dict() for x in result.breaches],
        "warnings": result.warnings,
        "savings_eur": {
            name: round(kpis[name]["cost_eur"] - best, 4) for name in kpis if name != "optimized"
        },
        "asset_values": lines,
        "price_fallback": list(scenario.meta.get("price_fallback", [])),
        "price_horizon": list(scenario.meta.get("price_horizon", [])),
        "writer_limits": list(scenario.meta.get("writer_limits", [])),
    }
