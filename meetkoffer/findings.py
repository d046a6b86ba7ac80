"""Findings: an automatic, ranked list of savings opportunities with their evidence.

Each finding estimates what it is worth per year in kWh, euros and tonnes CO2, annualised
from the campaign (``8760 h / hours measured``), and carries the numbers behind it in
``evidence`` plus the name of the chart that shows it. Savings are ranked by euros per year;
*key figures* (``counted=False``: the unmetered remainder, kWh per unit) follow them and never
enter the totals (:func:`totals`).

No double counting
------------------
The energy of a plant is split so that each kWh is claimed by one finding at most:

- outside production a machine's power is its *standby* (the low percentile of its own
  off-hours power) plus what it draws above it when it *runs* (weekends, nights);
- the plant's base load counts only the part that the sub-meters do not explain (the
  incomer's floor minus what the sub-meters draw in the same ISPs);
- a compressor's standby outside production is its leak load; the leak finding claims the
  leaks *during* production hours (the off-hours part is the compressor's own findings);
- capacity (kW-max) is split per month into the start-up part (the month's maximum above the
  highest non-start-up ISP) and the rest above the 99th percentile.

Kinds
-----
``standby``
    The plant's base load not explained by sub-meters; ``standby_reducible_share`` of it is
    assumed avoidable outside production (for a 24/7 plant: its load floor, all year).
``machine_standby``
    A sub-metered machine's off-hours floor against its production level.
``off_hours_equipment``
    A machine running outside production above its standby: its kW and hours.
``compressed_air_leak``
    Compressor load outside production (the leak indicator) as a share of its production
    load; the leaks during production hours, ``leak_reducible_share`` of them avoidable.
    Above ``leak_share_max`` the off-hours load is taken as air use (a running finding).
``startup_peak`` / ``peak``
    Monthly kW-max (Dutch capacity tariff) raised by production start-ups / a peak above the
    99th percentile: euros per year of capacity charge, no energy.
``enpi_drift``
    Equipment whose production-hours energy per unit drifts upward (p < 0.05).
``unmetered`` / ``enpi`` (key figures)
    The incomer's energy not sub-metered; kWh per unit of production over production hours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from energy.timegrid import LOCAL_TZ
from meetkoffer import analysis as an

COMPRESSOR_NAME = re.compile(r"compress|perslucht|luchtcompressor", re.IGNORECASE)
"""Equipment names taken as air compressors when ``compressed_air`` is not configured."""

_SHARES = (
    "standby_reducible_share",
    "machine_standby_reducible_share",
    "leak_reducible_share",
    "leak_share_max",
    "min_share_of_plant",
    "off_hours_min_share",
    "running_min_share",
    "machine_standby_min_share",
    "unmetered_min_share",
)


@dataclass(frozen=True, slots=True)
class FindingParams:
    """Assumptions and thresholds of the findings (campaign file ``findings:``); shown with
    every report. Thresholds are relative to the plant: a finding must be worth at least
    ``min_share_of_plant`` of the plant's yearly energy (and ``min_kwh_per_year``)."""

    price_eur_per_kwh: float = 0.18
    kg_co2_per_kwh: float = 0.374
    peak_price_eur_per_kw_year: float = 40.0  # capacity tariff (kW-max): 12 x EUR/kW/month
    standby_reducible_share: float = 0.3
    machine_standby_reducible_share: float = 1.0
    leak_reducible_share: float = 0.5
    leak_share_max: float = 0.6  # above it the off-hours load is air use, not leaks
    base_load_percentile: float = 10.0
    min_kwh_per_year: float = 0.0
    min_share_of_plant: float = 0.002
    off_hours_min_share: float = 0.0  # of the machine's own energy (0: off)
    running_min_share: float = 0.05  # above standby, of the machine's production level
    machine_standby_min_share: float = 0.02  # standby against production level
    production_level_percentile: float = 90.0
    peak_ratio_min: float = 1.15
    startup_window_h: float = 1.0
    enpi_drift_min: float = 0.05
    unmetered_min_share: float = 0.10
    compressed_air: tuple[str, ...] | None = None  # names; None: by name (compress, perslucht)

    def __post_init__(self) -> None:
        for name in ("price_eur_per_kwh", "kg_co2_per_kwh", "peak_price_eur_per_kw_year"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in _SHARES:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in 0..1, got {getattr(self, name)}")
        for name in ("base_load_percentile", "production_level_percentile"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must lie in 0..100, got {getattr(self, name)}")
        if self.startup_window_h <= 0 or self.peak_ratio_min < 1:
            raise ValueError(
                f"startup_window_h must be > 0 and peak_ratio_min >= 1, got "
                f"{self.startup_window_h} and {self.peak_ratio_min}"
            )
        if self.compressed_air is not None:
            object.__setattr__(self, "compressed_air", tuple(str(n) for n in self.compressed_air))

    def is_compressor(self, name: str) -> bool:
        if self.compressed_air is not None:
            return name in self.compressed_air
        return bool(COMPRESSOR_NAME.search(name))


@dataclass
class Finding:
    """One savings opportunity (or a key figure, ``counted=False``); ``rank`` 1 is worth the
    most euros per year."""

    kind: str
    title: str
    equipment: str | None
    energy_kwh_per_year: float
    cost_eur_per_year: float
    co2_t_per_year: float
    chart: str
    evidence: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    counted: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An analysis that could not run on these data, and why (English msgids of the
    Meetkoffer catalogue where the code knows the reason; a library's message as it is)."""

    analysis: str
    reason: str
    equipment: str | None = None


@dataclass
class FindingsResult:
    """Every finding that could be computed, and the analyses that could not (with why)."""

    findings: list[Finding]
    skipped: list[Skipped]

    def totals(self) -> dict[str, float]:
        return totals(self.findings)


def totals(found: list[Finding]) -> dict[str, float]:
    """The sum of the counted findings: ``energy_kwh_per_year``, ``cost_eur_per_year``,
    ``co2_t_per_year`` (key figures left out; each kWh is claimed once, see the module)."""
    c = [f for f in found if f.counted]
    return {
        "energy_kwh_per_year": float(sum(f.energy_kwh_per_year for f in c)),
        "cost_eur_per_year": float(sum(f.cost_eur_per_year for f in c)),
        "co2_t_per_year": float(sum(f.co2_t_per_year for f in c)),
    }


def _finding(
    kind: str,
    title: str,
    equipment: str | None,
    kwh: float,
    p: FindingParams,
    chart: str,
    evidence: dict[str, Any],
    counted: bool = True,
) -> Finding:
    return Finding(
        kind,
        title,
        equipment,
        kwh,
        kwh * p.price_eur_per_kwh,
        kwh * p.kg_co2_per_kwh / 1000.0,
        chart,
        evidence,
        counted=counted,
    )


def _year_scale(energy_wh: pd.Series) -> float:
    hours = energy_wh.dropna().size * 0.25
    if hours <= 0:
        raise an.AnalysisUnavailable("annualising", "no data")
    return an.HOURS_PER_YEAR / hours


def _kw(energy_wh: pd.Series) -> pd.Series:
    return an.power_kw(energy_wh)


@dataclass(frozen=True, slots=True)
class Plant:
    """What every finding needs to know of the plant: its yearly energy and threshold."""

    kwh_per_year: float
    threshold_kwh: float


def plant_of(incomer_wh: pd.Series, p: FindingParams) -> Plant:
    """The plant's yearly energy [kWh] and the smallest finding worth reporting [kWh/yr]."""
    e = incomer_wh.dropna()
    kwh_year = float(e.sum()) / 1000.0 * _year_scale(e)
    return Plant(kwh_year, max(p.min_kwh_per_year, p.min_share_of_plant * kwh_year))


@dataclass(frozen=True, slots=True)
class MachineLevels:
    """A machine's standby (low percentile of its off-hours power) and production level
    (high percentile of its production-hours power) [kW], on its own ISPs."""

    kw: pd.Series
    producing: np.ndarray
    working_day: np.ndarray
    standby_kw: float
    production_kw: float

    @property
    def off_hours_per_year_h(self) -> float:
        return float((~self.producing).mean()) * an.HOURS_PER_YEAR

    @property
    def production_hours_per_year_h(self) -> float:
        return float(self.producing.mean()) * an.HOURS_PER_YEAR


def machine_levels(
    energy_wh: pd.Series, hours: an.OperatingHours, p: FindingParams, name: str
) -> MachineLevels:
    """Standby and production level of one machine.

    Raises
    ------
    AnalysisUnavailable
        Without data, without off-hours (24/7) or without production-hours data.
    """
    kw = _kw(energy_wh)
    if kw.empty:
        raise an.AnalysisUnavailable("standby and off-hours use", "no interval data", name)
    idx = pd.DatetimeIndex(kw.index)
    prod = hours.producing(idx)
    if prod.all():
        raise an.AnalysisUnavailable(
            "standby and off-hours use", "no off-hours ISPs (the plant runs 24/7)", name
        )
    if not prod.any():
        raise an.AnalysisUnavailable(
            "standby and off-hours use", "no data in production hours", name
        )
    v = kw.to_numpy()
    return MachineLevels(
        kw,
        prod,
        hours.working_day(idx),
        float(np.percentile(v[~prod], p.base_load_percentile)),
        float(np.percentile(v[prod], p.production_level_percentile)),
    )


def machine_standby_finding(
    name: str, lv: MachineLevels, plant: Plant, p: FindingParams
) -> Finding | None:
    """A machine that keeps drawing its standby outside production (its own floor)."""
    if lv.production_kw <= 0 or lv.standby_kw <= 0:
        return None
    share = lv.standby_kw / lv.production_kw
    kwh = p.machine_standby_reducible_share * lv.standby_kw * lv.off_hours_per_year_h
    if share < p.machine_standby_min_share or kwh < plant.threshold_kwh or kwh <= 0:
        return None
    return _finding(
        "machine_standby",
        f"{name}: standby of {lv.standby_kw:,.1f} kW outside production",
        name,
        kwh,
        p,
        f"profile:{name}",
        {
            "standby_kw": lv.standby_kw,
            "production_level_kw": lv.production_kw,
            "standby_share_of_production": share,
            "off_hours_per_year_h": lv.off_hours_per_year_h,
            "assumed_reducible_share": p.machine_standby_reducible_share,
        },
    )


def off_hours_running_finding(
    name: str, lv: MachineLevels, plant: Plant, p: FindingParams
) -> Finding | None:
    """A machine running outside production above its standby (weekends, nights), with the
    kW it draws above standby and the hours it runs."""
    v = lv.kw.to_numpy()
    running = ~lv.producing & (v > lv.standby_kw + p.running_min_share * lv.production_kw)
    if not running.any():
        return None
    above_kwh = (v - lv.standby_kw) * 0.25  # per ISP [kWh]
    run_kwh = float(above_kwh[running].sum())
    machine_kwh = float(v.sum()) * 0.25
    scale = an.HOURS_PER_YEAR / (v.size * 0.25)
    kwh = run_kwh * scale
    share = run_kwh / machine_kwh if machine_kwh > 0 else 0.0
    if kwh < plant.threshold_kwh or kwh <= 0 or share < p.off_hours_min_share:
        return None
    weekend_kwh = float(above_kwh[running & ~lv.working_day].sum())
    night_kwh = float(above_kwh[running & lv.working_day].sum())
    hours_run = float(running.sum()) * 0.25
    when = "at weekends" if weekend_kwh >= night_kwh else "between shifts and at night"
    return _finding(
        "off_hours_equipment",
        f"{name} runs {when}",
        name,
        kwh,
        p,
        f"profile:{name}",
        {
            "running_kw": run_kwh / hours_run,
            "running_hours_in_campaign": hours_run,
            "running_hours_per_year": hours_run * scale,
            "standby_kw": lv.standby_kw,
            "off_hours_kwh_in_campaign": run_kwh,
            "weekend_kwh_in_campaign": weekend_kwh,
            "between_shifts_kwh_in_campaign": night_kwh,
            "share_of_machine_energy": share,
        },
    )


def leak_finding(name: str, lv: MachineLevels, plant: Plant, p: FindingParams) -> Finding | None:
    """Compressed-air leak indicator: the compressor's load outside production (no air is
    used then, so what it delivers goes to leaks) against its production load; the leaks
    during production hours are the saving (the off-hours load is the compressor's standby
    and running findings).

    References
    ----------
    US DOE, "Minimize Compressed Air Leaks" (Compressed Air Tip Sheet #3): leakage estimated
    from the compressor's load with no demand on the system.
    """
    v = lv.kw.to_numpy()
    on = ~lv.producing & (v > p.running_min_share * lv.production_kw)
    mean_prod_kw = float(v[lv.producing].mean())
    if not on.any() or mean_prod_kw <= 0:
        return None
    # The steady load it holds with no air used: the low percentile of its off-hours load
    # while on (weekend running above it is the running finding's).
    leak_kw = float(np.percentile(v[on], p.base_load_percentile))
    kwh = p.leak_reducible_share * leak_kw * lv.production_hours_per_year_h
    share = leak_kw / mean_prod_kw
    # Above leak_share_max the off-hours load is air use (the running finding), not leaks.
    if kwh < plant.threshold_kwh or kwh <= 0 or share > p.leak_share_max:
        return None
    return _finding(
        "compressed_air_leak",
        f"{name}: {share:.0%} of its production load runs outside production (leaks)",
        name,
        kwh,
        p,
        f"profile:{name}",
        {
            "leak_kw": leak_kw,
            "production_mean_kw": mean_prod_kw,
            "leak_share_of_production_load": share,
            "production_hours_per_year": lv.production_hours_per_year_h,
            "assumed_reducible_share_of_leaks": p.leak_reducible_share,
        },
    )


def standby_finding(
    incomer_wh: pd.Series,
    hours: an.OperatingHours,
    p: FindingParams,
    submeters_wh: Mapping[str, pd.Series] | None = None,
    plant: Plant | None = None,
) -> Finding | None:
    """The plant's base load outside production that the sub-meters do not explain.

    The base load is the incomer's off-hours floor (:func:`meetkoffer.analysis.base_load`;
    a 24/7 plant: its load floor over all hours). The sub-meters' mean power in the ISPs at
    or below that floor is theirs (their standby findings claim it) and is subtracted.
    """
    plant = plant or plant_of(incomer_wh, p)
    bl = an.base_load(incomer_wh, hours, p.price_eur_per_kwh, p.base_load_percentile)
    kw = _kw(incomer_wh)
    prod = hours.producing(pd.DatetimeIndex(kw.index))
    pool = kw if bl.method == "load_floor" else kw[~prod]
    floor_idx = pool.index[pool.to_numpy() <= bl.base_load_kw]
    explained = 0.0
    for s in (submeters_wh or {}).values():
        m = _kw(s).reindex(floor_idx)
        if m.notna().any():
            explained += float(m.mean())
    unexplained = max(0.0, bl.base_load_kw - explained)
    h = an.HOURS_PER_YEAR if bl.method == "load_floor" else float((~prod).mean()) * 8760
    kwh = p.standby_reducible_share * unexplained * h
    if kwh < plant.threshold_kwh or kwh <= 0:
        return None
    if bl.method == "load_floor":
        when: dict[str, Any] = {"floor_hours_per_year_h": h}
        title = f"Load floor of {bl.base_load_kw:,.1f} kW (the plant runs 24/7)"
    else:
        oh = an.off_hours_share(incomer_wh, hours)
        when = {"off_hours_share_of_energy": oh.share, "off_hours_per_year_h": h}
        title = f"Base load of {bl.base_load_kw:,.1f} kW outside production"
    return _finding(
        "standby",
        title,
        None,
        kwh,
        p,
        "carpet",
        {
            "base_load_kw": bl.base_load_kw,
            "base_load_method": bl.method,
            "explained_by_submeters_kw": explained,
            "unexplained_base_load_kw": unexplained,
            ("percentile" if bl.method == "off_hours" else "floor_percentile"): bl.percentile,
            "base_load_cost_eur_per_year": bl.cost_eur_per_year,
            **when,
            "assumed_reducible_share": p.standby_reducible_share,
        },
    )


def startup_mask(index: pd.DatetimeIndex, producing: np.ndarray, window_h: float) -> np.ndarray:
    """True for the ISPs within ``window_h`` after production starts (an off-hours ISP
    directly followed, 15 minutes later, by a production ISP)."""
    ts = index.asi8
    isp_ns = 15 * 60 * 10**9
    out = np.zeros(len(index), bool)
    starts = np.flatnonzero(
        producing[1:] & ~producing[:-1] & (np.diff(ts) == isp_ns)
    ) + 1  # fmt: skip
    window_ns = int(window_h * 3600 * 10**9)
    for s in starts:
        j = s
        while j < len(ts) and producing[j] and ts[j] - ts[s] < window_ns:
            out[j] = True
            j += 1
    return out


def peak_findings(
    incomer_wh: pd.Series, hours: an.OperatingHours, p: FindingParams
) -> list[Finding]:
    """Capacity (kW-max per month, the Dutch capacity tariff): start-up peaks and other peaks.

    Per local month the maximum 15-minute demand ``L0`` is split: the start-up part
    ``L0 - max(L1, P99)`` (``L1`` the highest ISP outside the start-up windows: staggering
    the start-ups brings the month's maximum down to it) and the rest ``min(L0, L1) - P99``
    (shaving to the campaign's 99th percentile). Each kW is priced at
    ``peak_price_eur_per_kw_year / 12`` per month and annualised over the months measured.
    """
    kw = _kw(incomer_wh)
    if kw.empty:
        raise an.AnalysisUnavailable("peaks", "no interval data")
    idx = pd.DatetimeIndex(kw.index)
    pk = an.peak_demand(incomer_wh)
    target = pk.p99_kw
    st = startup_mask(idx, hours.producing(idx), p.startup_window_h)
    month = idx.tz_convert(hours.tz).strftime("%Y-%m")
    rows = []
    for m in dict.fromkeys(month):
        sel = np.asarray(month == m)
        v, s = kw.to_numpy()[sel], st[sel]
        l0 = float(v.max())
        l1 = float(v[~s].max()) if (~s).any() else target
        rows.append((m, l0, l1, max(0.0, l0 - max(l1, target)), max(0.0, min(l0, l1) - target)))
    per_month = p.peak_price_eur_per_kw_year / 12.0
    n = len(rows)
    out = []
    start_kw = [r[3] for r in rows]
    ratio = max(r[1] / max(r[2], target) if max(r[2], target) > 0 else 0.0 for r in rows)
    if max(start_kw) > 0 and ratio >= p.peak_ratio_min:
        eur = sum(start_kw) * per_month * 12.0 / n
        at = pd.Timestamp(kw[st].idxmax())
        out.append(
            Finding(
                "startup_peak",
                f"Start-up peaks raise the monthly kW-max by {np.mean(start_kw):,.0f} kW",
                None,
                0.0,
                eur,
                0.0,
                "load_duration",
                {
                    "startup_peak_kw": float(kw[st].max()),
                    "peak_at_utc": at.isoformat(),
                    "non_startup_max_kw": float(np.mean([r[2] for r in rows])),
                    "shave_kw": float(np.mean(start_kw)),
                    "startup_window_h": p.startup_window_h,
                    "months": n,
                    "capacity_eur_per_kw_month": per_month,
                },
            )
        )
    rest_kw = [r[4] for r in rows]
    l1_max = max(r[2] for r in rows)
    if target > 0 and l1_max >= p.peak_ratio_min * target and max(rest_kw) > 0:
        non_st = kw[~st] if (~st).any() else kw
        at = pd.Timestamp(non_st.idxmax())
        shave = float(np.mean(rest_kw))
        at_local = at.tz_convert(hours.tz)
        out.append(
            Finding(
                "peak",
                f"Peak of {float(non_st.max()):,.0f} kW on {at_local:%d-%m-%Y %H:%M} could be "
                f"shaved by {shave:,.0f} kW",
                None,
                0.0,
                sum(rest_kw) * per_month * 12.0 / n,
                0.0,
                "load_duration",
                {
                    "peak_kw": float(non_st.max()),
                    "peak_at_utc": at.isoformat(),
                    "p99_kw": pk.p99_kw,
                    "p95_kw": pk.p95_kw,
                    "shave_kw": shave,
                    "months": n,
                    "peak_price_eur_per_kw_year": p.peak_price_eur_per_kw_year,
                    "top_isps_kw": {t.isoformat(): float(v) for t, v in pk.top.items()},
                },
            )
        )
    return out


def _production_energy_per_day(energy_wh: pd.Series, hours: an.OperatingHours) -> pd.Series:
    """Energy in production hours per local day [kWh]."""
    e = energy_wh.dropna()
    e = e[hours.producing(pd.DatetimeIndex(e.index))]
    return an.daily_energy_kwh(e, hours.tz)["energy_kwh"]


def _production_per_day(production: pd.Series, tz: str) -> pd.Series:
    prod = production.dropna()
    return prod.groupby(pd.DatetimeIndex(prod.index).tz_convert(tz).date).sum()


def enpi_drift_findings(
    equipment_wh: Mapping[str, pd.Series],
    production: pd.Series,
    p: FindingParams,
    tz: str = LOCAL_TZ,
    hours: an.OperatingHours | None = None,
    plant: Plant | None = None,
) -> list[Finding]:
    """Equipment whose daily production-hours energy per unit produced trends upward
    (linear trend, p < 0.05): restoring the initial EnPI saves the difference."""
    from scipy import stats

    hours = hours or an.OperatingHours(tz=tz)
    out = []
    prod_day = _production_per_day(production, tz)
    for name, s in equipment_wh.items():
        daily = _production_energy_per_day(s, hours)
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
        if kwh < (plant.threshold_kwh if plant else p.min_kwh_per_year):
            continue
        out.append(
            _finding(
                "enpi_drift",
                f"{name}: energy per unit rose {(end - start) / start:.0%} during the campaign",
                name,
                kwh,
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


def unmetered_finding(
    incomer_wh: pd.Series, submeters_wh: Mapping[str, pd.Series], p: FindingParams
) -> Finding | None:
    """Key figure: the incomer's energy that no sub-meter measures (a negative remainder is
    a mapping error: the sub-meters add up to more than the incomer)."""
    if not submeters_wh:
        return None
    bd = an.equipment_breakdown(submeters_wh, incomer_wh)
    rem = float(bd.at["unmetered", "energy_kwh"])
    share = float(bd.at["unmetered", "share"])
    if abs(share) < p.unmetered_min_share:
        return None
    kwh = rem * _year_scale(incomer_wh)
    title = (
        f"{share:.0%} of the energy is not sub-metered"
        if rem >= 0
        else f"The sub-meters add up to {-share:.0%} more than the incomer"
    )
    return _finding(
        "unmetered",
        title,
        None,
        kwh,
        p,
        "breakdown",
        {"unmetered_kwh_in_campaign": rem, "unmetered_share": share},
        counted=False,
    )


def enpi_finding(
    incomer_wh: pd.Series,
    equipment_wh: Mapping[str, pd.Series],
    production: pd.Series,
    hours: an.OperatingHours,
    p: FindingParams,
    unit: str = "unit",
) -> Finding | None:
    """Key figure: kWh per unit of production over production hours (ISO 50006 EnPI), of the
    incomer and each sub-meter: the energy of all production ISPs over all units produced
    (so a night shift's units and its hours after midnight stay together)."""
    units = float(production.dropna().sum())
    if units <= 0:
        raise an.AnalysisUnavailable("kWh per unit", "no production recorded")

    def production_kwh(s: pd.Series) -> float:
        e = s.dropna()
        return float(e[hours.producing(pd.DatetimeIndex(e.index))].sum()) / 1000.0

    kwh_inc = production_kwh(incomer_wh)
    if kwh_inc <= 0:
        raise an.AnalysisUnavailable("kWh per unit", "no incomer data in production hours")
    enpi = kwh_inc / units
    by = {k: production_kwh(v) / units for k, v in equipment_wh.items() if not v.dropna().empty}
    return _finding(
        "enpi",
        f"{enpi:,.1f} kWh/{unit} over production hours",
        None,
        kwh_inc * _year_scale(incomer_wh),
        p,
        "enpi",
        {
            "enpi_kwh_per_unit": enpi,
            "unit": unit,
            "production_kwh_in_campaign": kwh_inc,
            "units_in_campaign": units,
            "enpi_by_equipment": by,
        },
        counted=False,
    )


def _attempt(skipped: list[Skipped], what: str, fn: Callable[[], Any], default: Any = None) -> Any:
    """Run one analysis; if it cannot run, note which and why and go on with the others."""
    try:
        return fn()
    except an.AnalysisUnavailable as exc:
        skipped.append(Skipped(exc.analysis, exc.reason, exc.equipment))
    except ValueError as exc:
        skipped.append(Skipped(what, str(exc)))
    return default


def run_all(
    incomer_wh: pd.Series,
    equipment_wh: Mapping[str, pd.Series],
    hours: an.OperatingHours,
    params: FindingParams,
    production: pd.Series | None = None,
    production_unit: str = "unit",
) -> FindingsResult:
    """Every finding that can be computed, ranked, and the analyses that could not run."""
    skipped: list[Skipped] = []
    found: list[Finding | None] = []
    plant = plant_of(incomer_wh, params)
    found.append(
        _attempt(
            skipped,
            "base load",
            lambda: standby_finding(incomer_wh, hours, params, equipment_wh, plant),
        )
    )
    for name, s in equipment_wh.items():
        lv = _attempt(skipped, f"machine {name!r}", partial(machine_levels, s, hours, params, name))
        if lv is None:
            continue
        if params.is_compressor(name):
            found.append(leak_finding(name, lv, plant, params))
        found.append(machine_standby_finding(name, lv, plant, params))
        found.append(off_hours_running_finding(name, lv, plant, params))
    found += _attempt(skipped, "peaks", lambda: peak_findings(incomer_wh, hours, params), [])
    if hours.runs_always():
        skipped.append(Skipped("start-up peaks", "no production start-ups (the plant runs 24/7)"))
    found.append(
        _attempt(
            skipped,
            "unmetered remainder",
            lambda: unmetered_finding(incomer_wh, equipment_wh, params),
        )
    )
    if production is not None and not production.dropna().empty:
        found.append(
            _attempt(
                skipped,
                "kWh per unit",
                lambda: enpi_finding(
                    incomer_wh, equipment_wh, production, hours, params, production_unit
                ),
            )
        )
        found += _attempt(
            skipped,
            "EnPI drift",
            lambda: enpi_drift_findings(equipment_wh, production, params, hours.tz, hours, plant),
            [],
        )
    else:
        skipped.append(Skipped("kWh per unit", "no production data imported"))
    return FindingsResult(rank(f for f in found if f is not None), skipped)


def rank(found: Any) -> list[Finding]:
    """Savings first by euros per year, then key figures; ranks 1, 2, ..."""
    out = sorted(
        found, key=lambda f: (not f.counted, -f.cost_eur_per_year, f.kind, f.equipment or "")
    )
    for i, f in enumerate(out, 1):
        f.rank = i
    return out


def find_all(
    incomer_wh: pd.Series,
    equipment_wh: Mapping[str, pd.Series],
    hours: an.OperatingHours,
    params: FindingParams,
    production: pd.Series | None = None,
) -> list[Finding]:
    """Every finding of a campaign, ranked (see :func:`run_all`, which also says which
    analyses could not run)."""
    return run_all(incomer_wh, equipment_wh, hours, params, production).findings
