"""What people set reaches the plans: EV owners' sessions and the manager's limits.

:func:`stored_ev_sessions` gives :func:`optimizer.sitestore.scenario_from_store` the sessions
the owners announced (``ev_sessions``, :mod:`energy.sitecontrols`); :func:`with_site_controls`
then applies, per car, the owner's minimum SoC and V2G choice, and per site the manager's
grid import limit and battery reserve (:class:`energy.sitecontrols.SiteOperatingLimits`),
only ever tightening what the site's own data allow. :func:`plan_site` is the whole step:
scenario, plan, store (``noaber optimize run`` and the jobs do the same through these two
functions), each within the limits the gateway's safe writer enforces
(:func:`noaber.services.control.stored_writer_limits`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.models import Asset, AssetKind
from energy.sitecontrols import operating_limits, sessions_for_site
from noaber.services.control import stored_writer_limits
from optimizer.limits import apply_writer_limits
from optimizer.model import plan
from optimizer.mpc import with_measurements
from optimizer.report import compare
from optimizer.scenario import Scenario
from optimizer.sitestore import get_site, measured_soc_pct, scenario_from_store
from optimizer.store import save_plan


def stored_ev_sessions(
    session: Session, site_name: str, start: dt.datetime | pd.Timestamp, horizon_hours: float
) -> dict[str, list[dict[str, Any]]]:
    """The owners' sessions of ``site_name``'s cars overlapping the horizon, in the form of
    :func:`optimizer.sitestore.scenario_from_store`'s ``ev_sessions``.

    The SoC on arrival is the owner's estimate, else the car's last measured SoC, else the
    session's minimum SoC (the lowest it may be: the plan then charges enough in any case).
    """
    site = get_site(session, site_name)
    t0 = pd.Timestamp(start).tz_convert("UTC").to_pydatetime()
    t1 = t0 + dt.timedelta(hours=horizon_hours)
    measured = measured_soc_pct(session, site_name)
    out: dict[str, list[dict[str, Any]]] = {}
    for s in sessions_for_site(session, site, t0, t1):
        name = s.asset.name
        soc0 = s.soc_arrival_pct
        if soc0 is None:
            soc0 = measured.get(name, s.soc_min_pct)
        out.setdefault(name, []).append(
            {
                "arrival": s.arrival_at.isoformat(),
                "departure": s.departure_at.isoformat(),
                "soc_arrival_pct": float(soc0),
                "soc_departure_pct": float(s.soc_target_pct),
            }
        )
    return out


def with_site_controls(
    session: Session, scenario: Scenario, start: dt.datetime | pd.Timestamp | None = None
) -> Scenario:
    """``scenario`` with the owners' minimum SoC and V2G choices and the manager's limits.

    Per car with a session in the horizon: ``soc_min_pct`` the higher of the car's and the
    owner's; V2G only if the car can and the owner allows it (the strictest of its sessions).
    Per site: the import limit the lower of the connection's and the manager's; the battery's
    ``soc_min_pct`` the higher of its own and the manager's reserve.
    """
    site = get_site(session, scenario.site.name)
    index = scenario.series.index
    t0 = (pd.Timestamp(start) if start is not None else index[0]).tz_convert("UTC")
    t1 = index[-1] + pd.Timedelta(minutes=scenario.step_minutes)
    sessions = sessions_for_site(session, site, t0.to_pydatetime(), t1.to_pydatetime())
    by_car: dict[str, list[Any]] = {}
    for s in sessions:
        by_car.setdefault(s.asset.name, []).append(s)
    evs = []
    for ev in scenario.evs:
        own = by_car.get(ev.name)
        if own:
            evs.append(
                dataclasses.replace(
                    ev,
                    soc_min_pct=max([ev.soc_min_pct] + [s.soc_min_pct for s in own]),
                    v2g=ev.v2g and all(s.v2g_allowed for s in own),
                )
            )
        else:
            evs.append(ev)
    out = dataclasses.replace(scenario, evs=tuple(evs))
    limits = operating_limits(session, site)
    if limits is None:
        return out
    limit_kw = min(site.grid_import_limit_kw, limits.grid_import_limit_kw)
    series = out.series.copy()
    series["grid_import_limit_kw"] = series["grid_import_limit_kw"].clip(upper=limit_kw)
    spec = dataclasses.replace(
        out.site, grid_import_limit_kw=min(out.site.grid_import_limit_kw, limit_kw)
    )
    battery = out.battery
    if battery is not None and limits.battery_reserve_pct is not None:
        battery = dataclasses.replace(
            battery, soc_min_pct=max(battery.soc_min_pct, limits.battery_reserve_pct)
        )
        if battery.soc_initial_pct < battery.soc_min_pct:
            # the battery is below the new reserve now: the plan may not discharge further,
            # and starts from where it is
            battery = dataclasses.replace(battery, soc_min_pct=battery.soc_initial_pct)
    return dataclasses.replace(out, series=series, site=spec, battery=battery)


def plan_site(
    session: Session,
    site_name: str,
    start: dt.datetime | pd.Timestamp,
    horizon_hours: float,
    prices_csv: Path | None = None,
    *,
    price_series: tuple[str, str] | None = None,
    cloud_factor: float = 1.0,
    measured: dict[str, float] | None = None,
) -> int:
    """Plan ``site_name`` from the store with the stored sessions and limits, store the plan
    (in the caller's transaction) and return its schedule id."""
    sessions = stored_ev_sessions(session, site_name, start, horizon_hours)
    sc = scenario_from_store(
        session,
        site_name,
        start,
        horizon_hours,
        prices_csv,
        sessions,
        cloud_factor,
        price_series=price_series,
    )
    if measured:
        sc = with_measurements(sc, measured, pd.Timestamp(start))
    sc = with_site_controls(session, sc, start)
    sc = apply_writer_limits(sc, stored_writer_limits(session, site_name))
    result = plan(sc)
    return save_plan(session, sc, result, compare(sc, result))


def ev_assets_of(session: Session, member_id: int) -> list[Asset]:
    """The EVs a member owns (their cars), by site and name."""
    return list(
        session.scalars(
            select(Asset)
            .where(Asset.owner_member_id == member_id, Asset.kind == AssetKind.EV)
            .order_by(Asset.site_id, Asset.name)
        )
    )
