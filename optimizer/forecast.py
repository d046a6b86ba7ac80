"""Forecasts for a plan when no series is given: PV from clear sky, load from history, prices from CSV.

* PV: pvlib clear-sky irradiance (Ineichen/Perez with Linke turbidity from pvlib's climatology)
  transposed to the array plane (isotropic sky), cell temperature by Faiman, DC power by PVWatts,
  times a cloud factor (0..1, scalar or per step) and a loss factor. References: Ineichen &
  Perez (2002), Solar Energy 73(3); Dobos (2014), PVWatts Version 5 Manual, NREL/TP-6A20-62641;
  Faiman (2008), Progress in Photovoltaics 16(4).
* Load: a time-of-week profile from history (mean per local weekday and time of day), with
  the time-of-day mean and then the overall mean where the history has no value.
* Prices and imported forecasts: CSV files on the step grid (see :func:`read_columns_csv`).

The irradiance is evaluated at the middle of each step, the value stands for the step ``[t,
t + step)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from energy.errors import ValidationError
from energy.timegrid import LOCAL_TZ

if TYPE_CHECKING:
    from optimizer.scenario import SiteSpec, _Doc


def pv_clear_sky_kw(
    index: pd.DatetimeIndex,
    latitude: float,
    longitude: float,
    peak_kw: float,
    tilt_deg: float = 30.0,
    azimuth_deg: float = 180.0,
    cloud_factor: float | np.ndarray = 1.0,
    losses: float = 0.14,
    temp_air_c: float = 15.0,
    gamma_pdc_per_c: float = -0.004,
    step_minutes: int = 15,
) -> np.ndarray:
    """PV power per step [kW] (AC after ``losses``), from clear sky times ``cloud_factor``.

    Parameters
    ----------
    index : DatetimeIndex
        UTC step starts.
    peak_kw : float
        DC nameplate [kWp].
    tilt_deg, azimuth_deg : float
        Array tilt from horizontal and azimuth (180 = south) [deg].
    cloud_factor : float or array
        Share of clear-sky output reaching the array [0..1].
    """
    import pvlib

    if not np.min(cloud_factor) >= 0 and np.max(cloud_factor) <= 1:
        raise ValueError(f"cloud_factor must lie within 0..1, got {cloud_factor!r}")
    mid = index + pd.Timedelta(minutes=step_minutes / 2)
    loc = pvlib.location.Location(latitude, longitude, tz="UTC")
    sky = loc.get_clearsky(mid, model="ineichen")
    sun = loc.get_solarposition(mid)
    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg,
        azimuth_deg,
        sun["apparent_zenith"],
        sun["azimuth"],
        sky["dni"],
        sky["ghi"],
        sky["dhi"],
    )["poa_global"].fillna(0.0)
    poa = poa * np.asarray(cloud_factor, float)
    cell = pvlib.temperature.faiman(poa, temp_air_c)
    dc_w = pvlib.pvsystem.pvwatts_dc(poa, cell, peak_kw * 1000.0, gamma_pdc_per_c)
    return np.clip(np.asarray(dc_w, float) * (1 - losses) / 1000.0, 0.0, None)


def time_of_week_profile(
    history_kw: pd.Series, index: pd.DatetimeIndex, tz: str = LOCAL_TZ
) -> np.ndarray:
    """Load forecast [kW] per step of ``index`` from the mean of the same local weekday and time.

    ``history_kw`` has a UTC DatetimeIndex (step starts) and values in kW; NaN is ignored.
    A slot without history takes the mean of that time of day, then the overall mean.

    Raises
    ------
    ValueError
        If the history holds no value.
    """
    h = history_kw.dropna()
    if h.empty:
        raise ValueError("load history is empty: cannot build a time-of-week profile")
    hl = h.index.tz_convert(tz)
    slot = hl.hour * 60 + hl.minute
    frame = pd.DataFrame({"v": h.to_numpy(float), "dow": hl.day_of_week, "slot": slot})
    by_week = frame.groupby(["dow", "slot"])["v"].mean()
    by_day = frame.groupby("slot")["v"].mean()
    il = index.tz_convert(tz)
    keys = list(zip(il.day_of_week, il.hour * 60 + il.minute, strict=True))
    week = by_week.reindex(pd.MultiIndex.from_tuples(keys, names=["dow", "slot"])).to_numpy()
    day = by_day.reindex(il.hour * 60 + il.minute).to_numpy()
    out = np.where(np.isnan(week), day, week)
    return np.where(np.isnan(out), float(frame["v"].mean()), out)


def read_columns_csv(path: Path, index: pd.DatetimeIndex, columns: tuple[str, ...]) -> pd.DataFrame:
    """Columns of a CSV with a ``timestamp`` column, on the step grid ``index``.

    The same rules and messages as the series CSV (:func:`optimizer.scenario.read_series_csv`).
    """
    from optimizer.scenario import read_series_csv

    return read_series_csv(path, index, required=columns)


def read_history_csv(path: Path, column: str = "load_kw") -> pd.Series:
    """A history CSV (``timestamp``, ``column``) as a UTC-indexed series [kW]."""
    from optimizer.scenario import read_series_csv

    frame = read_series_csv(path, None, required=(column,))
    return frame[column]


def series_from_forecast_spec(
    doc: _Doc, site: SiteSpec, index: pd.DatetimeIndex, base_dir: Path
) -> pd.DataFrame:
    """The series of a scenario from its ``forecast`` section.

    ``forecast.pv``: either ``csv`` (an imported forecast with ``pv_kw``) or ``peak_kw`` with
    optional ``tilt_deg``, ``azimuth_deg``, ``cloud_factor`` and ``losses`` (site ``latitude`` and
    ``longitude`` required); ``forecast.load.history_csv`` (``timestamp, load_kw``);
    ``forecast.prices.csv`` (``timestamp, import_price_eur_per_kwh, export_price_eur_per_kwh``).
    """

    def path_of(d: Any, key: str) -> Path:
        p = Path(d.text(key))
        return p if p.is_absolute() else base_dir / p

    step = int((index[1] - index[0]).total_seconds() // 60) if len(index) > 1 else 15
    pv_doc = doc.sub("pv")
    if pv_doc.has("csv"):
        pv = read_columns_csv(path_of(pv_doc, "csv"), index, ("pv_kw",))["pv_kw"].to_numpy()
    else:
        if site.latitude is None or site.longitude is None:
            raise ValidationError(
                "site.latitude and site.longitude are required for a clear-sky PV forecast",
                doc.source,
                pv_doc.path,
            )
        pv = pv_clear_sky_kw(
            index,
            site.latitude,
            site.longitude,
            pv_doc.num("peak_kw", gt=0),
            pv_doc.num("tilt_deg", 30.0, ge=0, le=90),
            pv_doc.num("azimuth_deg", 180.0, ge=0, le=360),
            pv_doc.num("cloud_factor", 1.0, ge=0, le=1),
            pv_doc.num("losses", 0.14, ge=0, le=1),
            step_minutes=step,
        )
    load_doc = doc.sub("load")
    history = read_history_csv(path_of(load_doc, "history_csv"))
    load = time_of_week_profile(history, index, site.timezone)
    price_doc = doc.sub("prices")
    prices = read_columns_csv(
        path_of(price_doc, "csv"), index, ("import_price_eur_per_kwh", "export_price_eur_per_kwh")
    )
    return pd.DataFrame(
        {
            "pv_kw": pv,
            "load_kw": load,
            "import_price_eur_per_kwh": prices["import_price_eur_per_kwh"].to_numpy(),
            "export_price_eur_per_kwh": prices["export_price_eur_per_kwh"].to_numpy(),
        },
        index=index,
    )
