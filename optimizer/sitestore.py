"""Scenarios assembled from the store for a site (``noaber optimize run --site S``).

* the site: grid limits, location and time zone from ``sites``; its capacity tariff (kW-max
  price, contracted kW) from ``site_tariffs`` (:mod:`energy.tariffs`), with this month's peak
  import so far from the grid meter's readings as the sunk floor
  (:func:`optimizer.tariff.month_peak_so_far_kw`);
* PV: the ``pv`` assets' ``params`` (``peak_kw``, ``tilt_deg``, ``azimuth_deg``) through the
  clear-sky forecast times a cloud factor (:func:`optimizer.forecast.pv_clear_sky_kw`);
* load: the time-of-week profile (:func:`optimizer.forecast.time_of_week_profile`) of the
  ``building_load`` assets' power readings (``power_mean_w`` per ISP) of the last weeks;
* battery and EVs: the assets' ``params`` (the scenario file's field names); EV sessions are
  given by the caller (the charger or the owner's app knows arrival and departure);
* prices: a CSV (``timestamp, import_price_eur_per_kwh, export_price_eur_per_kwh``), or two
  price series of the store (:mod:`energy.prices`: all-in import and export prices per ISP);
* measured SoC: the latest reading of the assets' ``soc`` channels (the last value of the
  ISP, else its mean [%]) no older than ``max_age`` (:func:`measured_state`, with why a value
  is absent: no SoC channel, no reading, none since a time);
* load: where the building's power channel is derived (site file ``derived:``, e.g.
  ``grid - pv - battery - ev-1``) the pipeline computes its readings from the meters; ISPs
  it left missing are counted, with the first reason, in the "no building load readings"
  error.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.errors import NotFoundError, ValidationError
from energy.models import Asset, AssetKind, Channel, DerivedGap, IntervalReading, Quantity, Site
from energy.readings import read_readings
from energy.tariffs import site_tariff
from energy.yamlio import load_yaml_file
from optimizer.forecast import pv_clear_sky_kw, read_columns_csv, time_of_week_profile
from optimizer.mpc import Measured
from optimizer.scenario import Scenario, SiteSpec, _battery, _Doc, _ev
from optimizer.tariff import month_peak_so_far_kw

BATTERY_FIELDS = (
    "capacity_kwh",
    "max_charge_kw",
    "max_discharge_kw",
    "efficiency_charge",
    "efficiency_discharge",
    "soc_min_pct",
    "soc_max_pct",
    "soc_initial_pct",
    "soc_final_min_pct",
    "degradation_eur_per_kwh",
)

EV_FIELDS = (
    "capacity_kwh",
    "max_charge_kw",
    "max_discharge_kw",
    "efficiency",
    "v2g",
    "soc_min_pct",
    "degradation_eur_per_kwh",
    "min_power_kw",
)
"""The params of an ``ev`` asset that are fields of the scenario file (``BATTERY_FIELDS``: of a
``battery``)."""


def get_site(session: Session, site_name: str) -> Site:
    site = session.scalars(select(Site).where(Site.name == site_name)).first()
    if site is None:
        raise NotFoundError(f"site {site_name!r} does not exist")
    return site


def _channel(session: Session, asset: Asset, quantity: Quantity) -> Channel | None:
    return session.scalars(
        select(Channel).where(Channel.asset_id == asset.id, Channel.quantity == quantity)
    ).first()


DEFAULT_SOC_MAX_AGE = pd.Timedelta(hours=1)
"""A SoC reading older than this is not used (the plan falls back, with a warning)."""


def measured_soc_pct(session: Session, site_name: str) -> dict[str, float]:
    """The latest SoC reading [%] of every battery and EV asset of a site that has one
    (regardless of its age; :func:`measured_state` is the checked form)."""
    return measured_state(session, site_name, max_age=None).soc_pct


def measured_state(
    session: Session,
    site_name: str,
    now: dt.datetime | pd.Timestamp | None = None,
    max_age: pd.Timedelta | None = DEFAULT_SOC_MAX_AGE,
) -> Measured:
    """The measured SoC [%] of the site's batteries and EVs from their ``soc`` channels.

    Each value is the latest reading of an ISP that began before ``now`` (default: the
    latest stored): its
    last valid sample (``value_last``), else the ISP mean. ``Measured.at`` is the end of that
    ISP (capped at ``now``). Without a channel, without a reading, or when the reading is
    older than ``max_age`` (None: any age), the asset has no value and ``Measured.why_not``
    says why, in the site's local time (``"no SoC reading since 10:15"``).
    """
    site = get_site(session, site_name)
    now_ts = None if now is None else pd.Timestamp(now).tz_convert("UTC")
    out = Measured()
    for asset in site.assets:
        if asset.kind not in (AssetKind.BATTERY, AssetKind.EV):
            continue
        ch = _channel(session, asset, Quantity.SOC)
        if ch is None:
            out.why_not[asset.name] = (
                "the charger reports no SoC" if asset.kind == AssetKind.EV else "no SoC channel"
            )
            continue
        q = select(
            IntervalReading.isp_start, IntervalReading.value_last, IntervalReading.power_mean_w
        ).where(
            IntervalReading.channel_id == ch.id,
            (IntervalReading.value_last.is_not(None)) | (IntervalReading.power_mean_w.is_not(None)),
        )
        if now_ts is not None:
            q = q.where(IntervalReading.isp_start < now_ts.to_pydatetime())
        row = session.execute(q.order_by(IntervalReading.isp_start.desc()).limit(1)).first()
        if row is None:
            out.why_not[asset.name] = "no SoC reading"
            continue
        start = pd.Timestamp(row[0]).tz_convert("UTC")
        at = start + pd.Timedelta(minutes=15)
        if now_ts is not None:
            at = min(at, now_ts)
            if max_age is not None and now_ts - at > max_age:
                when = start.tz_convert(site.timezone)
                day = (
                    ""
                    if when.date() == now_ts.tz_convert(site.timezone).date()
                    else f"{when:%d-%m-%Y} "
                )
                out.why_not[asset.name] = f"no SoC reading since {day}{when:%H:%M}"
                continue
        value = row[1] if row[1] is not None else row[2]
        assert value is not None  # the query asks for one of the two
        out.soc_pct[asset.name] = float(value)
        out.at[asset.name] = at
    return out


def _load_history_kw(session: Session, site: Site, end: pd.Timestamp, days: int) -> pd.Series:
    ids = []
    for asset in site.assets:
        if asset.kind == AssetKind.BUILDING_LOAD:
            ch = _channel(session, asset, Quantity.POWER)
            if ch is not None:
                ids.append(ch.id)
    if not ids:
        raise ValidationError(f"site {site.name!r} has no building_load asset with a power channel")
    start = (end - pd.Timedelta(days=days)).to_pydatetime()
    frame = read_readings(session, ids, start, end.to_pydatetime())
    if frame.empty:
        raise ValidationError(
            f"site {site.name!r} has no building load readings in the {days} days before "
            f"{end.isoformat()}{_gaps_note(session, ids, start, end.to_pydatetime())}"
        )
    kw = frame.groupby("isp_start")["power_mean_w"].sum(min_count=1) / 1000.0
    return kw


def _gaps_note(session: Session, ids: list[int], start: dt.datetime, end: dt.datetime) -> str:
    """``"; 12 ISPs of its derived load are missing, first 2026-...: no reading of ..."``."""
    q = (
        select(DerivedGap.isp_start, DerivedGap.reason)
        .where(
            DerivedGap.channel_id.in_(ids),
            DerivedGap.isp_start >= start,
            DerivedGap.isp_start < end,
        )
        .order_by(DerivedGap.isp_start)
    )
    rows = session.execute(q).all()
    if not rows:
        return ""
    first = pd.Timestamp(rows[0][0]).isoformat()
    return f"; {len(rows)} ISPs of its derived load are missing, first {first}: {rows[0][1]}"


def parse_price_series(spec: str | None) -> tuple[str, str] | None:
    """``"IMPORT,EXPORT"`` (two stored series names) as a pair; None stays None."""
    if spec is None:
        return None
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValidationError(f"--price-series must be 'IMPORT_SERIES,EXPORT_SERIES', got {spec!r}")
    return parts[0], parts[1]


def _prices_from_store(
    session: Session, price_series: tuple[str, str], index: pd.DatetimeIndex, tz: str
) -> pd.DataFrame:
    """Import and export prices per step from two stored series (a step's price is the price
    of the ISP it starts in); steps past the stored prices (tomorrow's day-ahead prices before
    their publication) take the last known week's shape (:func:`energy.prices.fill_unknown_prices`),
    said in ``attrs["price_fallback"]``; ``attrs["price_horizon"]`` counts per series the steps
    with a known (imported or fetched) price and those on the fallback."""
    from energy.prices import read_horizon_prices

    out = {}
    notes = []
    horizon = []
    for column, name in zip(
        ("import_price_eur_per_kwh", "export_price_eur_per_kwh"), price_series, strict=True
    ):
        got = read_horizon_prices(session, name, index, tz)
        out[column] = got.values
        horizon.append(got.as_meta(name))
        if got.fallback:
            notes.append(got.fallback)
    frame = pd.DataFrame(out, index=index)
    frame.attrs["price_fallback"] = notes
    frame.attrs["price_horizon"] = horizon
    return frame


def scenario_from_store(
    session: Session,
    site_name: str,
    start: dt.datetime | pd.Timestamp,
    horizon_hours: float,
    prices_csv: Path | None = None,
    ev_sessions: dict[str, list[dict[str, Any]]] | None = None,
    cloud_factor: float = 1.0,
    history_days: int = 28,
    step_minutes: int = 15,
    price_series: tuple[str, str] | None = None,
) -> Scenario:
    """The scenario of a site for ``[start, start + horizon)`` from the store (see module doc).

    Prices come from ``prices_csv`` or, when it is None, from the store's ``price_series``
    ``(import series, export series)``; every step of the horizon must have a price.

    ``ev_sessions`` maps an EV asset name to its sessions (``arrival, departure,
    soc_arrival_pct, soc_departure_pct``); an EV without sessions is not plugged in.
    """
    site = get_site(session, site_name)
    start_ts = pd.Timestamp(start).tz_convert("UTC").floor(f"{step_minutes}min")
    n = int(horizon_hours * 60 // step_minutes)
    index = pd.date_range(start_ts, periods=n, freq=f"{step_minutes}min").as_unit("ns")
    source = f"store:{site_name}"
    pv = np.zeros(n)
    pv_assets: dict[str, float] = {}
    battery = None
    evs = []
    for asset in site.assets:
        doc = _Doc(dict(asset.params or {}), source, f"assets[{asset.name}].params")
        if asset.kind == AssetKind.PV:
            pv += _pv_kw(asset, doc, site, index, cloud_factor, step_minutes)
            pv_assets[asset.name] = float(doc.data["peak_kw"])
        elif asset.kind == AssetKind.BATTERY:
            battery = _battery(_fields(doc, BATTERY_FIELDS, name=asset.name))
        elif asset.kind == AssetKind.EV:
            owner = asset.owner.ref if asset.owner is not None else "unknown"
            sessions = (ev_sessions or {}).get(asset.name, [])
            evs.append(
                _ev(_fields(doc, EV_FIELDS, name=asset.name, owner=owner, sessions=sessions))
            )
    load = time_of_week_profile(
        _load_history_kw(session, site, start_ts, history_days), index, site.timezone
    )
    prices = _prices(session, index, prices_csv, price_series, source, site.timezone)
    series = pd.DataFrame(
        {
            "pv_kw": pv,
            "load_kw": load,
            "import_price_eur_per_kwh": prices["import_price_eur_per_kwh"].to_numpy(),
            "export_price_eur_per_kwh": prices["export_price_eur_per_kwh"].to_numpy(),
            "grid_import_limit_kw": site.grid_import_limit_kw,
            "grid_export_limit_kw": site.grid_export_limit_kw,
        },
        index=index,
    )
    tariff = site_tariff(session, site)
    spec = SiteSpec(
        name=site.name,
        timezone=site.timezone,
        grid_import_limit_kw=site.grid_import_limit_kw,
        grid_export_limit_kw=site.grid_export_limit_kw,
        capacity_tariff_eur_per_kw=0.0 if tariff is None else tariff.capacity_eur_per_kw_month,
        contracted_kw=0.0 if tariff is None else tariff.contracted_kw,
        latitude=site.latitude,
        longitude=site.longitude,
    )
    # the month's peak so far is sunk: only raising it costs (optimizer.tariff)
    peak_so_far = 0.0 if tariff is None else month_peak_so_far_kw(session, site, start_ts)
    return Scenario(
        site=spec,
        series=series,
        step_minutes=step_minutes,
        battery=battery,
        evs=tuple(evs),
        source=source,
        meta={
            "price_fallback": list(prices.attrs.get("price_fallback", [])),
            "price_horizon": list(prices.attrs.get("price_horizon", [])),
        },
        pv_assets=pv_assets,
        peak_so_far_kw=peak_so_far,
    )


def _fields(doc: _Doc, fields: tuple[str, ...], **more: Any) -> _Doc:
    """The scenario-file document of an asset: its params among ``fields``, and ``more``."""
    return _Doc(
        {**{k: v for k, v in doc.data.items() if k in fields}, **more}, doc.source, doc.path
    )


def _pv_kw(
    asset: Asset,
    doc: _Doc,
    site: Site,
    index: pd.DatetimeIndex,
    cloud_factor: float,
    step_minutes: int,
) -> np.ndarray:
    """The clear-sky PV forecast of a ``pv`` asset times ``cloud_factor`` per step [kW]."""
    params = doc.data
    if "peak_kw" not in params:
        raise ValidationError(f"pv asset {asset.name!r} needs params.peak_kw", doc.source, doc.path)
    return pv_clear_sky_kw(
        index,
        site.latitude,
        site.longitude,
        float(params["peak_kw"]),
        float(params.get("tilt_deg", 30.0)),
        float(params.get("azimuth_deg", 180.0)),
        cloud_factor,
        step_minutes=step_minutes,
    )


def _prices(
    session: Session,
    index: pd.DatetimeIndex,
    prices_csv: Path | None,
    price_series: tuple[str, str] | None,
    source: str,
    tz: str = "Europe/Amsterdam",
) -> pd.DataFrame:
    """Import and export prices per step, from the CSV if given, else from the stored series."""
    if prices_csv is not None:
        return read_columns_csv(
            prices_csv, index, ("import_price_eur_per_kwh", "export_price_eur_per_kwh")
        )
    if price_series is not None:
        return _prices_from_store(session, price_series, index, tz)
    raise ValidationError("give prices: a CSV or the names of two stored price series", source)


def ev_sessions_from_yaml(path: Path) -> dict[str, list[dict[str, Any]]]:
    """EV sessions per EV asset name from a YAML file ``{ev-name: [{arrival, departure, ...}]}``."""
    return load_yaml_file(path, "sessions file", lambda data: _ev_sessions(data, str(path)))


def _ev_sessions(data: Any, source: str) -> dict[str, list[dict[str, Any]]]:
    data = data or {}
    if not isinstance(data, dict):
        raise ValidationError("must map EV names to lists of sessions", source)
    for name, sessions in data.items():
        if not isinstance(sessions, list):
            raise ValidationError("must map EV names to lists of sessions", source, str(name))
    return data
