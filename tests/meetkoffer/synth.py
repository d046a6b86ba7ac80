"""Generated factory data with known answers, shared by the Meetkoffer tests and the bench.

A plastics plant, local time Europe/Amsterdam, production Mon-Fri 06:00-22:00:

- ``base_kw``: a constant base load on the incomer, day and night (the known base load);
- ``extruder``: ``extruder_kw`` during production hours only, energy proportional to the
  day's production;
- ``compressor``: ``compressor_kw`` during production hours *and* all day Saturday and
  Sunday (the known weekend compressor), off on weekday nights;
- a peak of ``peak_kw`` extra in one known ISP;
- ``step_kw``: from ``step_at`` on, the extruder draws this much less (the known step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TZ = "Europe/Amsterdam"


@dataclass
class Plant:
    index: pd.DatetimeIndex
    incomer_wh: pd.Series
    extruder_wh: pd.Series
    compressor_wh: pd.Series
    lighting_wh: pd.Series
    production_per_day: pd.Series  # units per local day, indexed by local midnight (UTC)
    temp_c_per_day: pd.Series
    peak_at: pd.Timestamp


def make_plant(
    start: str = "2026-03-02",
    days: int = 28,
    base_kw: float = 40.0,
    extruder_kw: float = 120.0,
    compressor_kw: float = 30.0,
    lighting_kw: float = 8.0,
    peak_kw: float = 150.0,
    step_kw: float = 0.0,
    step_at: str | None = None,
    noise_kw: float = 2.0,
    seed: int = 7,
) -> Plant:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz=TZ)
    idx = pd.date_range(t0, t0 + pd.DateOffset(days=days), freq="15min", inclusive="left")
    idx = idx.tz_convert("UTC").as_unit("ns")
    # Local days (DST-correct): rebuild from local midnights.
    local = idx.tz_convert(TZ)
    producing = (local.day_of_week < 5) & (local.hour >= 6) & (local.hour < 22)
    weekend = local.day_of_week >= 5
    day_key = local.normalize()
    days_local = pd.DatetimeIndex(sorted(set(day_key)))
    prod = pd.Series(
        np.where(days_local.day_of_week < 5, rng.uniform(60, 140, len(days_local)), 0.0),
        index=days_local,
    )
    # Extruder power scales with the day's production (120 kW at 100 units/day).
    scale = prod.reindex(day_key).to_numpy() / 100.0
    extr_kw = np.where(producing, extruder_kw * scale, 0.0)
    if step_at is not None:
        extr_kw = np.where(
            producing & (idx >= pd.Timestamp(step_at, tz=TZ)), extr_kw - step_kw, extr_kw
        )
    comp_kw = np.where(producing | weekend, compressor_kw, 0.0)
    light_kw = np.where(producing, lighting_kw, 0.0)
    noise = rng.normal(0, noise_kw, len(idx))
    inc_kw = base_kw + extr_kw + comp_kw + light_kw + noise
    peak_i = int(np.flatnonzero(producing)[len(np.flatnonzero(producing)) // 2])
    inc_kw[peak_i] += peak_kw
    temp = pd.Series(10 + 5 * np.sin(np.arange(len(days_local)) / 3.0), index=days_local)

    def wh(kw: np.ndarray) -> pd.Series:
        return pd.Series(kw * 250.0, index=idx)

    return Plant(
        idx,
        wh(inc_kw),
        wh(extr_kw),
        wh(comp_kw),
        wh(light_kw),
        prod.tz_convert("UTC"),
        temp.tz_convert("UTC"),
        idx[peak_i],
    )
