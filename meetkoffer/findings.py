"""Findings: an automatic, ranked list of savings opportunities with their evidence.

Each finding estimates what it is worth per year in kWh, euros and tonnes CO2, annualised
from the campaign (``8760 h / hours measured``), and carries the numbers behind it in
``evidence`` plus the name of the chart that shows it. Ranked by euros per year.

Kinds
-----
``standby``
    Base load outside production (nights, weekends): assumes ``standby_reducible_share`` of
    the off-hours base load can be switched off (a stated assumption, shown in the report).
``off_hours_equipment``
    Equipment drawing energy outside operating hours (weekends, between shifts) above its
    own floor (the 5th percentile of its 15-minute power over the campaign).
``peak``
    A 15-minute peak well above the 99th percentile: shaving it to that percentile saves
    capacity charges (``peak_price_eur_per_kw_year``), not energy.
``enpi_drift``
    Equipment whose energy per unit produced drifts upward over the campaign (linear trend
    of the daily EnPI, p < 0.05): restoring the initial EnPI saves the difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from energy.timegrid import LOCAL_TZ
from meetkoffer import analysis as an


@dataclass(frozen=True, slots=True)
class FindingParams:
    """Assumptions of the findings; shown with every report."""

    price_eur_per_kwh: float = 0.18
    kg_co2_per_kwh: float = 0.374
    peak_price_eur_per_kw_year: float = 40.0
    standby_reducible_share: float = 0.3
    base_load_percentile: float = 10.0
    min_kwh_per_year: float = 1000.0
    off_hours_min_share: float = 0.10
    peak_ratio_min: float = 1.15
    enpi_drift_min: float = 0.05

    def __post_init__(self) -> None:
        for name in ("price_eur_per_kwh", "kg_co2_per_kwh", "peak_price_eur_per_kw_year"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.standby_reducible_share <= 1:
            raise ValueError(
                f"standby_reducible_share must lie in 0..1, got {self.standby_reducible_share}"
            )


@dataclass
class Finding:
    """One savings opportunity; ``rank`` 1 is worth the most euros per year."""

    kind: str
    title: str
    equipment: str | None
    energy_kwh_per_year: float
    cost_eur_per_year: float
    co2_t_per_year: float
    chart: str
    evidence: dict[str, Any] = field(default_factory=dict)
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _year_scale(energy_wh: pd.Series) -> float:
    hours = energy_wh.dropna().size * 0.25
    if hours <= 0:
        raise ValueError("no data to annualise")
    return an.HOURS_PER_YEAR / hours


def _finding(
    kind: str,
    title: str,
    equipment: str | None,
    kwh: float,
    eur: float,
    p: FindingParams,
    chart: str,
    evidence: dict[str, Any],
) -> Finding:
    return Finding(
        kind, title, equipment, kwh, eur, kwh * p.kg_co2_per_kwh / 1000.0, chart, evidence
    )


def standby_finding(
    incomer_wh: pd.Series, hours: an.OperatingHours, p: FindingParams
) -> Finding | None:
    """Base load outside production hours on the main incomer."""
    bl = an.base_load(incomer_wh, hours, p.price_eur_per_kwh, p.base_load_percentile)
    oh = an.off_hours_share(incomer_wh, hours)
    off_hours_per_year = oh.off_hours_isp_share * an.HOURS_PER_YEAR
    kwh = p.standby_reducible_share * bl.base_load_kw * off_hours_per_year
    if kwh < p.min_kwh_per_year:
        return None
    return _finding(
        "standby",
        f"Base load of {bl.base_load_kw:,.1f} kW outside production",
        None,
        kwh,
        kwh * p.price_eur_per_kwh,
        p,
        "carpet",
        {
            "base_load_kw": bl.base_load_kw,
            "percentile": bl.percentile,
            "base_load_cost_eur_per_year": bl.cost_eur_per_year,
            "off_hours_share_of_energy": oh.share,
            "off_hours_per_year_h": off_hours_per_year,
            "assumed_reducible_share": p.standby_reducible_share,
        },
    )


def off_hours_equipment_findings(
    equipment_wh: Mapping[str, pd.Series], hours: an.OperatingHours, p: FindingParams
) -> list[Finding]:
    """Equipment running at weekends or between shifts, above its own floor."""
    out = []
    for name, s in equipment_wh.items():
        s = s.dropna()
        if s.empty:
            continue
        kw = s * an.WH_PER_ISP_TO_KW
        floor_kw = float(np.percentile(kw, 5))
        above_wh = (kw - floor_kw).clip(lower=0) / an.WH_PER_ISP_TO_KW
        producing = hours.producing(pd.DatetimeIndex(s.index))
        local = pd.DatetimeIndex(s.index).tz_convert(hours.tz)
        weekend = np.isin(local.day_of_week, [d for d in range(7) if d not in hours.weekdays])
        off_wh = float(above_wh[~producing].sum())
        total_wh = float(above_wh.sum())
        if total_wh <= 0 or off_wh / total_wh < p.off_hours_min_share:
            continue
        scale = _year_scale(s)
        kwh = off_wh / 1000.0 * scale
        if kwh < p.min_kwh_per_year:
            continue
        weekend_kwh = float(above_wh[~producing & weekend].sum()) / 1000.0
        between_kwh = float(above_wh[~producing & ~weekend].sum()) / 1000.0
        when = "at weekends" if weekend_kwh >= between_kwh else "between shifts and at night"
        out.append(
            _finding(
                "off_hours_equipment",
                f"{name} runs {when}",
                name,
                kwh,
                kwh * p.price_eur_per_kwh,
                p,
                f"profile:{name}",
                {
                    "floor_kw": floor_kw,
                    "off_hours_kwh_in_campaign": off_wh / 1000.0,
                    "weekend_kwh_in_campaign": weekend_kwh,
                    "between_shifts_kwh_in_campaign": between_kwh,
                    "off_hours_mean_kw": float(kw[~producing].mean())
                    if (~producing).any()
                    else 0.0,
                    "off_hours_share_of_energy": off_wh / total_wh,
                },
            )
        )
    return out


def peak_finding(incomer_wh: pd.Series, p: FindingParams, tz: str = LOCAL_TZ) -> Finding | None:
    """A peak that could be shaved to the 99th percentile of 15-minute demand."""
    pk = an.peak_demand(incomer_wh)
    if pk.p99_kw <= 0 or pk.peak_kw < p.peak_ratio_min * pk.p99_kw:
        return None
    shave_kw = pk.peak_kw - pk.p99_kw
    at_local = pk.at.tz_convert(tz)
    return Finding(
        "peak",
        f"Peak of {pk.peak_kw:,.0f} kW on {at_local:%d-%m-%Y %H:%M} could be shaved by {shave_kw:,.0f} kW",
        None,
        0.0,
        shave_kw * p.peak_price_eur_per_kw_year,
        0.0,
        "load_duration",
        {
            "peak_kw": pk.peak_kw,
            "peak_at_utc": pk.at.isoformat(),
            "p99_kw": pk.p99_kw,
            "p95_kw": pk.p95_kw,
            "shave_kw": shave_kw,
            "peak_price_eur_per_kw_year": p.peak_price_eur_per_kw_year,
            "top_isps_kw": {t.isoformat(): float(v) for t, v in pk.top.items()},
        },
    )


def enpi_drift_findings(
    equipment_wh: Mapping[str, pd.Series],
    production: pd.Series,
    p: FindingParams,
    tz: str = LOCAL_TZ,
) -> list[Finding]:
    """Equipment whose daily energy per unit produced trends upward (p < 0.05)."""
    from scipy import stats

    out = []
    prod = production.dropna()
    prod_day = prod.groupby(pd.DatetimeIndex(prod.index).tz_convert(tz).date).sum()
    for name, s in equipment_wh.items():
        daily = an.daily_energy_kwh(s, tz)["energy_kwh"]
        df = pd.DataFrame({"energy_kwh": daily, "production": prod_day}).dropna()
        df = df[df["production"] > 0]
        if len(df) < 5:
            continue
        enpi = (df["energy_kwh"] / df["production"]).to_numpy()
        day_no = np.array([(d - df.index[0]).days for d in df.index], float)
        if np.ptp(day_no) == 0:
            continue
        res = stats.linregress(day_no, enpi)
        start = float(res.intercept)
        end = float(res.intercept + res.slope * day_no[-1])
        if start <= 0 or res.pvalue >= 0.05 or (end - start) / start < p.enpi_drift_min:
            continue
        units_per_year = float(df["production"].sum()) * _year_scale(s)
        kwh = (end - start) * units_per_year
        if kwh < p.min_kwh_per_year:
            continue
        out.append(
            _finding(
                "enpi_drift",
                f"{name}: energy per unit rose {(end - start) / start:.0%} during the campaign",
                name,
                kwh,
                kwh * p.price_eur_per_kwh,
                p,
                f"enpi:{name}",
                {
                    "enpi_start_kwh_per_unit": start,
                    "enpi_end_kwh_per_unit": end,
                    "slope_kwh_per_unit_per_day": float(res.slope),
                    "p_value": float(res.pvalue),
                    "days": len(df),
                    "units_per_year": units_per_year,
                },
            )
        )
    return out


def find_all(
    incomer_wh: pd.Series,
    equipment_wh: Mapping[str, pd.Series],
    hours: an.OperatingHours,
    params: FindingParams,
    production: pd.Series | None = None,
) -> list[Finding]:
    """Every finding of a campaign, ranked by euros per year (rank 1 first)."""
    found: list[Finding] = []
    sb = standby_finding(incomer_wh, hours, params)
    if sb:
        found.append(sb)
    found += off_hours_equipment_findings(equipment_wh, hours, params)
    pk = peak_finding(incomer_wh, params, hours.tz)
    if pk:
        found.append(pk)
    if production is not None and not production.dropna().empty:
        found += enpi_drift_findings(equipment_wh, production, params, hours.tz)
    found.sort(key=lambda f: (-f.cost_eur_per_year, f.kind, f.equipment or ""))
    for i, f in enumerate(found, 1):
        f.rank = i
    return found
