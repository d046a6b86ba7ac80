"""Reproducible synthetic scenarios (a dorpshuis with PV, battery and V2G cars) for benchmarks,
the batch demo and tests. Shapes are simple but plausible: a clear-sky-like PV bell with a
random cloud factor per day, an evening-heavy load, day-ahead-like prices with a morning and
an evening peak, and cars that arrive by day and leave in the evening or the next morning."""

from __future__ import annotations

import numpy as np
import pandas as pd

from energy.timegrid import LOCAL_TZ
from optimizer.scenario import BatterySpec, EVSession, EVSpec, Scenario, SiteSpec


def synthetic_scenario(
    days: float = 2.0,
    n_evs: int = 4,
    seed: int = 0,
    start: str = "2026-06-15T00:00:00+02:00",
    step_minutes: int = 15,
    negative_prices: bool = False,
) -> Scenario:
    """A site with 40 kWp PV, a 50 kWh battery and ``n_evs`` V2G cars over ``days`` days."""
    rng = np.random.default_rng(seed)
    n = round(days * 24 * 60 / step_minutes)
    index = pd.date_range(
        pd.Timestamp(start).tz_convert("UTC"), periods=n, freq=f"{step_minutes}min"
    ).as_unit("ns")
    local = index.tz_convert(LOCAL_TZ)
    h = np.asarray(local.hour + local.minute / 60, float)
    day = np.asarray((index - index[0]).days, int)
    clouds = rng.uniform(0.4, 1.0, size=day.max() + 1)[day]
    pv = 40.0 * clouds * np.clip(np.sin((h - 5.5) / 15 * np.pi), 0, None) ** 1.3
    load = (
        4
        + 2.5 * np.exp(-(((h - 10) / 2.5) ** 2))
        + (8 + 0.5 * n_evs) * np.exp(-(((h - 20) / 2.0) ** 2))
    )
    load = load * rng.uniform(0.9, 1.1, size=n)
    price = 0.25 + 0.08 * np.exp(-(((h - 8) / 1.5) ** 2)) + 0.12 * np.exp(-(((h - 19.5) / 2) ** 2))
    price = price - 0.14 * clouds * np.exp(-(((h - 13.5) / 2.2) ** 2)) + rng.normal(0, 0.01, size=n)
    if negative_prices:
        price = price - 0.2 * clouds * np.exp(-(((h - 13.5) / 1.5) ** 2))
    series = pd.DataFrame(
        {
            "pv_kw": pv.round(3),
            "load_kw": load.round(3),
            "import_price_eur_per_kwh": price.round(4),
            "export_price_eur_per_kwh": (price - 0.13).round(4),
            "grid_import_limit_kw": 17.0 + 4.0 * n_evs,
            "grid_export_limit_kw": 35.0,
        },
        index=index,
    )
    evs = []
    n_days = int(np.ceil(days))
    for i in range(n_evs):
        sessions = []
        for d in range(n_days):
            day0 = index[0].tz_convert(LOCAL_TZ).normalize() + pd.Timedelta(days=d)
            arrive = day0 + pd.Timedelta(hours=float(rng.uniform(7.5, 11)))
            stay = float(rng.uniform(8, 13))
            arrival = arrive.round("15min").tz_convert("UTC")
            departure = (arrive + pd.Timedelta(hours=stay)).round("15min").tz_convert("UTC")
            if departure > index[-1] + pd.Timedelta(minutes=step_minutes):
                continue
            sessions.append(
                EVSession(
                    arrival,
                    departure,
                    float(rng.uniform(25, 55)),
                    float(rng.choice([70.0, 80.0, 90.0])),
                )
            )
        evs.append(
            EVSpec(
                name=f"car-{i + 1}",
                owner=f"m-{seed:03d}{i:03d}",
                capacity_kwh=float(rng.choice([40.0, 60.0, 75.0])),
                max_charge_kw=11.0,
                max_discharge_kw=11.0,
                efficiency=0.92,
                v2g=True,
                soc_min_pct=30.0,
                degradation_eur_per_kwh=0.03,
                sessions=tuple(sessions),
            )
        )
    battery = BatterySpec(
        capacity_kwh=50.0,
        max_charge_kw=15.0,
        max_discharge_kw=15.0,
        soc_min_pct=10.0,
        soc_max_pct=95.0,
        soc_initial_pct=40.0,
        degradation_eur_per_kwh=0.02,
    )
    site = SiteSpec(
        name=f"site-{seed:03d}", grid_import_limit_kw=17.0 + 4.0 * n_evs, grid_export_limit_kw=35.0
    )
    return Scenario(
        site=site, series=series, step_minutes=step_minutes, battery=battery, evs=tuple(evs)
    )
