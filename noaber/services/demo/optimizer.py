"""The optimizer in the demo: today's schedule for the demo dorpshuis, stored for its pages.

:func:`demo_step` (run by ``noaber demo`` after the core steps) builds the scenario of the
demo site for the 24 hours after the demo week from the store (PV params, the week's building
load as a time-of-week profile, the last measured SoC samples), with day-ahead-like prices and
one charging session per car, plans it, stores it and notes where to look.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from energy.models import Channel, Quantity
from energy.timegrid import LOCAL_TZ
from optimizer.model import plan
from optimizer.mpc import with_measurements
from optimizer.report import compare
from optimizer.sitestore import scenario_from_store
from optimizer.store import save_plan

DEMO_SITE = "dorpshuis-noaberhof"
#: Arrival, departure (local hours) and SoC on arrival / wanted at departure of the demo cars.
DEMO_SESSIONS = {
    "ev-1": (8.5, 22.0, 45.0, 80.0),
    "ev-2": (9.0, 18.0, 55.0, 90.0),
    "ev-3": (12.0, 23.5, 40.0, 70.0),
}


def demo_prices(index: pd.DatetimeIndex, tz: str = LOCAL_TZ) -> pd.DataFrame:
    """Day-ahead-like all-in prices [EUR/kWh]: morning and evening peaks, a solar dip at noon
    that goes below zero for export; export = import - 0.13 (taxes are not refunded)."""
    local = index.tz_convert(tz)
    h = np.asarray(local.hour + local.minute / 60, float)
    imp = 0.24 + 0.08 * np.exp(-(((h - 8) / 1.5) ** 2)) + 0.14 * np.exp(-(((h - 19.5) / 2) ** 2))
    imp = imp - 0.16 * np.exp(-(((h - 13.5) / 2.0) ** 2))
    return pd.DataFrame(
        {
            "import_price_eur_per_kwh": imp.round(4),
            "export_price_eur_per_kwh": (imp - 0.13).round(4),
        },
        index=index,
    )


def demo_step(ctx: Any) -> None:
    """Plan and store today's schedule of the demo site (see the module docstring)."""
    start = pd.Timestamp(ctx.end).tz_convert("UTC")
    index = pd.date_range(start, periods=96 + 8, freq="15min")
    prices = demo_prices(index)
    out = ctx.data_dir / "optimizer"
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "prices.csv"
    frame = prices.copy()
    frame.insert(0, "timestamp", [t.isoformat() for t in index])
    frame.to_csv(csv, index=False)
    day = start.tz_convert(LOCAL_TZ).normalize()
    sessions = {
        ev: [
            {
                "arrival": (day + pd.Timedelta(hours=a)).isoformat(),
                "departure": (day + pd.Timedelta(hours=d)).isoformat(),
                "soc_arrival_pct": s0,
                "soc_departure_pct": s1,
            }
        ]
        for ev, (a, d, s0, s1) in DEMO_SESSIONS.items()
    }
    end_ns = start.value
    measured: dict[str, float] = {}
    with ctx.sessions() as session:
        sc = scenario_from_store(session, DEMO_SITE, start, 24, csv, sessions, cloud_factor=0.8)
        for ch in session.scalars(select(Channel).where(Channel.quantity == Quantity.SOC)):
            if ch.key == f"{DEMO_SITE}/battery/soc":
                samples = ctx.store.read(ch.id, end_ns - 3600 * 10**9, end_ns)
                if len(samples):
                    measured["battery"] = float(samples.value[-1])
    sc = with_measurements(sc, measured, start)
    result = plan(sc)
    summary = compare(sc, result)
    with ctx.sessions() as session, session.begin():
        sid = save_plan(session, sc, result, summary)
    s = summary["savings_eur"]
    ctx.notes.append(
        f"optimizer: schedule {sid} for {DEMO_SITE} (today): EUR {s['no_control']:.2f} saved against no control, "
        f"EUR {s['self_consumption']:.2f} against the self-consumption rule; pages /schedules/sites/{DEMO_SITE} "
        "(beheer-noaberhof) and /schedules/my-car (lid-1, lid-2, lid-3)"
    )
