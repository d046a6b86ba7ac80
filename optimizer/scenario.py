"""Scenarios: what a site has and what it will see over the planning horizon.

A scenario is written by hand as YAML plus a CSV of time series (see ``optimizer/examples``)
or assembled from the store. :func:`load_scenario` reads and validates the file form; every
error names the file, the field and the value (CONTRIBUTING.md, Code style).

Chargers behind one fuse are a ``charger_groups`` entry, ``{name, limit_kw, evs: [names]}``:
the net power of those cars (charging minus V2G) stays within ``limit_kw`` both ways. The
site's ``contracted_kw`` and the scenario's ``peak_so_far_kw`` are the floor of the monthly
kW-max (:mod:`optimizer.tariff`).

Conventions: powers in kW, energies in kWh, prices all-in in EUR/kWh, timestamps UTC
(``pandas.Timestamp``) labelling the start of a step; a step is the half-open interval
``[t, t + step)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from energy.errors import ValidationError
from energy.timegrid import LOCAL_TZ, ensure_utc
from energy.yamlio import load_yaml_file

#: Dutch CO2 emission factor of grid electricity [kg/kWh] including chain emissions,
#: 2021 mix (co2emissiefactoren.nl). Override per scenario with ``co2_kg_per_kwh``.
CO2_KG_PER_KWH_DEFAULT = 0.374
CO2_FACTOR_SOURCE = "co2emissiefactoren.nl, grid electricity 2021 incl. chain emissions"

SERIES_COLUMNS = (
    "pv_kw",
    "load_kw",
    "import_price_eur_per_kwh",
    "export_price_eur_per_kwh",
)
#: Optional columns of the series CSV: time-varying grid limits (congestion contracts).
OPTIONAL_SERIES_COLUMNS = ("grid_import_limit_kw", "grid_export_limit_kw")


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """A grid connection.

    Attributes
    ----------
    grid_import_limit_kw, grid_export_limit_kw : float
        Contracted limits [kW]; a time-varying limit goes in the series.
    capacity_tariff_eur_per_kw : float
        Tariff on the peak import of a month [EUR/kW per month] (the Dutch kW-max); 0 for none.
    contracted_kw : float
        Import the connection pays for anyway each month [kW] (a contracted kW-max): only a
        peak above it (or above the month's peak so far) costs in a plan.
    """

    name: str
    timezone: str = LOCAL_TZ
    grid_import_limit_kw: float = 1e9
    grid_export_limit_kw: float = 1e9
    capacity_tariff_eur_per_kw: float = 0.0
    contracted_kw: float = 0.0
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class BatterySpec:
    """A stationary battery (SoC in percent of ``capacity_kwh``)."""

    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    efficiency_charge: float = 0.95
    efficiency_discharge: float = 0.95
    soc_min_pct: float = 10.0
    soc_max_pct: float = 100.0
    soc_initial_pct: float = 50.0
    soc_final_min_pct: float | None = None
    degradation_eur_per_kwh: float = 0.0
    name: str = "battery"

    @property
    def soc_final_min_effective_pct(self) -> float:
        """The final SoC floor [%]: the initial SoC unless given."""
        return self.soc_initial_pct if self.soc_final_min_pct is None else self.soc_final_min_pct


@dataclass(frozen=True, slots=True)
class EVSession:
    """One stay of a car at the site: plugged in over ``[arrival, departure)`` (UTC)."""

    arrival: pd.Timestamp
    departure: pd.Timestamp
    soc_arrival_pct: float
    soc_departure_pct: float


@dataclass(frozen=True, slots=True)
class EVSpec:
    """An electric vehicle with a (possibly bidirectional) charger."""

    name: str
    owner: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float = 0.0
    efficiency: float = 0.92
    v2g: bool = False
    soc_min_pct: float = 20.0
    degradation_eur_per_kwh: float = 0.0
    sessions: tuple[EVSession, ...] = ()
    #: The charger's smallest power other than 0 [kW], both ways: IEC 61851 chargers need
    #: 6 A per phase, 1.38 kW single-phase or 4.14 kW three-phase at 230 V; 0 for none.
    min_power_kw: float = 0.0


@dataclass(frozen=True, slots=True)
class ChargerGroup:
    """Chargers behind one fuse (or feeder): the cars' net power through it stays within
    ``limit_kw`` both ways (charging minus V2G discharging)."""

    name: str
    evs: tuple[str, ...]
    limit_kw: float


@dataclass(frozen=True)
class Scenario:
    """Everything one plan needs.

    ``series`` is indexed by the UTC start of each step and has the columns of
    :data:`SERIES_COLUMNS` plus ``grid_import_limit_kw`` and ``grid_export_limit_kw``.
    """

    site: SiteSpec
    series: pd.DataFrame
    step_minutes: int = 15
    battery: BatterySpec | None = None
    evs: tuple[EVSpec, ...] = ()
    charger_groups: tuple[ChargerGroup, ...] = ()
    co2_kg_per_kwh: float = CO2_KG_PER_KWH_DEFAULT
    #: This month's highest 15-minute import so far [kW] (sunk: only raising it costs).
    peak_so_far_kw: float = 0.0
    mip_gap: float = 0.005
    time_limit_s: float = 60.0
    source: str = "<scenario>"
    meta: dict[str, Any] = field(default_factory=dict)
    #: The site's PV assets whose production the loop can limit: name -> peak [kW]. The plan's
    #: curtailment of ``pv_kw`` is shared over them by peak (:func:`optimizer.mpc.curtailment_limits_w`).
    pv_assets: dict[str, float] = field(default_factory=dict)

    @property
    def index(self) -> pd.DatetimeIndex:
        """UTC step starts."""
        return pd.DatetimeIndex(self.series.index)

    @property
    def dt_h(self) -> float:
        """Step length [h]."""
        return self.step_minutes / 60.0

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.series.index[0])

    @property
    def end(self) -> pd.Timestamp:
        """End of the horizon (exclusive)."""
        return self.start + pd.Timedelta(minutes=self.step_minutes * len(self.series))

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- validation


class _Doc:
    """Typed access to a YAML mapping that names the field on every error."""

    def __init__(self, data: Any, source: str, path: str):
        if not isinstance(data, dict):
            raise ValidationError(
                f"must be a mapping, got {type(data).__name__} {data!r}", source, path or None
            )
        self.data = data
        self.source = source
        self.path = path

    def loc(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def err(self, key: str, message: str) -> ValidationError:
        return ValidationError(message, self.source, self.loc(key))

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.err(key, "is required")
            return default
        return self.data[key]

    def num(
        self,
        key: str,
        default: Any = ...,
        *,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.err(key, f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.err(key, f"must be finite, got {value!r}")
        if gt is not None and not value > gt:
            raise self.err(key, f"must be > {gt:g}, got {value:g}")
        if ge is not None and not value >= ge:
            raise self.err(key, f"must be >= {ge:g}, got {value:g}")
        if le is not None and not value <= le:
            raise self.err(key, f"must be <= {le:g}, got {value:g}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.err(key, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def flag(self, key: str, default: Any = ...) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.err(key, f"must be true or false, got {value!r}")
        return value

    def time(self, key: str) -> pd.Timestamp:
        value = self.raw(key)
        try:
            return ensure_utc(value)
        except (ValueError, TypeError) as exc:
            raise self.err(
                key, f"must be an ISO 8601 time with offset, got {value!r}: {exc}"
            ) from None

    def sub(self, key: str) -> _Doc:
        return _Doc(self.raw(key), self.source, self.loc(key))

    def items(self, key: str) -> list[_Doc]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.err(key, f"must be a list, got {type(value).__name__}")
        return [_Doc(v, self.source, f"{self.loc(key)}[{i}]") for i, v in enumerate(value)]


def _site(doc: _Doc) -> SiteSpec:
    name = doc.text("name")
    tz = doc.text("timezone", LOCAL_TZ)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise doc.err("timezone", f"unknown time zone {tz!r}") from None
    return SiteSpec(
        name=name,
        timezone=tz,
        grid_import_limit_kw=doc.num("grid_import_limit_kw", gt=0),
        grid_export_limit_kw=doc.num("grid_export_limit_kw", ge=0),
        capacity_tariff_eur_per_kw=doc.num("capacity_tariff_eur_per_kw", 0.0, ge=0),
        contracted_kw=doc.num("contracted_kw", 0.0, ge=0),
        latitude=doc.num("latitude", None, ge=-90, le=90) if doc.has("latitude") else None,
        longitude=doc.num("longitude", None, ge=-180, le=180) if doc.has("longitude") else None,
    )


def _battery(doc: _Doc) -> BatterySpec:
    soc_min = doc.num("soc_min_pct", 10.0, ge=0, le=100)
    soc_max = doc.num("soc_max_pct", 100.0, ge=0, le=100)
    if soc_max < soc_min:
        raise doc.err("soc_max_pct", f"must be >= soc_min_pct ({soc_min:g}), got {soc_max:g}")
    soc0 = doc.num("soc_initial_pct", 50.0, ge=0, le=100)
    if not soc_min <= soc0 <= soc_max:
        raise doc.err(
            "soc_initial_pct",
            f"must lie within soc_min_pct..soc_max_pct ({soc_min:g}..{soc_max:g}), got {soc0:g}",
        )
    final = (
        doc.num("soc_final_min_pct", None, ge=0, le=100) if doc.has("soc_final_min_pct") else None
    )
    if final is not None and not soc_min <= final <= soc_max:
        raise doc.err(
            "soc_final_min_pct",
            f"must lie within soc_min_pct..soc_max_pct ({soc_min:g}..{soc_max:g}), got {final:g}",
        )
    return BatterySpec(
        capacity_kwh=doc.num("capacity_kwh", gt=0),
        max_charge_kw=doc.num("max_charge_kw", ge=0),
        max_discharge_kw=doc.num("max_discharge_kw", ge=0),
        efficiency_charge=doc.num("efficiency_charge", 0.95, gt=0, le=1),
        efficiency_discharge=doc.num("efficiency_discharge", 0.95, gt=0, le=1),
        soc_min_pct=soc_min,
        soc_max_pct=soc_max,
        soc_initial_pct=soc0,
        soc_final_min_pct=final,
        degradation_eur_per_kwh=doc.num("degradation_eur_per_kwh", 0.0, ge=0),
        name=doc.text("name", "battery"),
    )


def _ev(doc: _Doc) -> EVSpec:
    name = doc.text("name")
    v2g = doc.flag("v2g", False)
    max_dis = doc.num("max_discharge_kw", 0.0, ge=0)
    sessions = []
    for s in doc.items("sessions"):
        arrival, departure = s.time("arrival"), s.time("departure")
        if departure <= arrival:
            raise s.err(
                "departure",
                f"must be after arrival {arrival.isoformat()}, got {departure.isoformat()}",
            )
        sessions.append(
            EVSession(
                arrival=arrival,
                departure=departure,
                soc_arrival_pct=s.num("soc_arrival_pct", ge=0, le=100),
                soc_departure_pct=s.num("soc_departure_pct", ge=0, le=100),
            )
        )
    sessions.sort(key=lambda x: x.arrival)
    for i, (a, b) in enumerate(itertools.pairwise(sessions)):
        if b.arrival < a.departure:
            raise doc.err(
                f"sessions[{i + 1}].arrival",
                f"overlaps the previous session of EV {name!r} "
                f"(departs {a.departure.isoformat()}), got {b.arrival.isoformat()}",
            )
    return EVSpec(
        name=name,
        owner=doc.text("owner", "unknown"),
        capacity_kwh=doc.num("capacity_kwh", gt=0),
        max_charge_kw=doc.num("max_charge_kw", gt=0),
        max_discharge_kw=max_dis,
        efficiency=doc.num("efficiency", 0.92, gt=0, le=1),
        v2g=v2g,
        soc_min_pct=doc.num("soc_min_pct", 20.0, ge=0, le=100),
        degradation_eur_per_kwh=doc.num("degradation_eur_per_kwh", 0.0, ge=0),
        sessions=tuple(sessions),
        min_power_kw=_min_power(doc),
    )


def _min_power(doc: _Doc) -> float:
    """``min_power_kw``: at most the charger's power (both ways for a V2G car)."""
    value = doc.num("min_power_kw", 0.0, ge=0)
    top = doc.num("max_charge_kw", gt=0)
    if doc.flag("v2g", False):
        top = min(top, doc.num("max_discharge_kw", 0.0, ge=0))
    if value > top:
        raise doc.err("min_power_kw", f"must be <= the charger's power ({top:g} kW), got {value:g}")
    return value


def read_series_csv(
    path: Path, index: pd.DatetimeIndex | None, required: tuple[str, ...] = SERIES_COLUMNS
) -> pd.DataFrame:
    """Read a series CSV and return its rows on ``index`` (UTC step starts).

    Every timestamp needs an offset; every value must be a finite number. Rows outside the
    horizon are ignored; a step of the horizon without a row is an error naming that step.
    ``required`` names the value columns that must be present; with ``index=None`` all rows
    are returned as read (sorted by time).

    Raises
    ------
    ValidationError
        Naming the file, the line and the value.
    """
    source = str(path)
    if not path.is_file():
        raise ValidationError(f"series file not found: {path}", source)
    try:
        raw = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ValidationError(f"cannot read CSV: {exc}", source) from None
    raw.columns = [c.strip() for c in raw.columns]
    for col in ("timestamp", *required):
        if col not in raw.columns:
            raise ValidationError(
                f"missing column {col!r} (has {', '.join(raw.columns)})", source, "header"
            )
    stamps = []
    for i, text in enumerate(raw["timestamp"]):
        try:
            stamps.append(ensure_utc(str(text).strip()))
        except (ValueError, TypeError) as exc:
            raise ValidationError(
                f"timestamp {text!r}: {exc}", source, f"line {i + 2}, column timestamp"
            ) from None
    cols = [c for c in dict.fromkeys((*required, *OPTIONAL_SERIES_COLUMNS)) if c in raw.columns]
    values = {}
    for col in cols:
        numbers = pd.to_numeric(raw[col].str.strip(), errors="coerce").to_numpy(float)
        bad = ~np.isfinite(numbers)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValidationError(
                f"{col} must be a finite number, got {raw[col].iloc[i]!r}",
                source,
                f"line {i + 2}, column {col}",
            )
        if col in ("pv_kw", "load_kw", *OPTIONAL_SERIES_COLUMNS) and (numbers < 0).any():
            i = int(np.flatnonzero(numbers < 0)[0])
            raise ValidationError(
                f"{col} must be >= 0, got {numbers[i]:g}", source, f"line {i + 2}, column {col}"
            )
        values[col] = numbers
    frame = pd.DataFrame(values, index=pd.DatetimeIndex(stamps).as_unit("ns"))
    dup = frame.index.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise ValidationError(
            f"duplicate timestamp {frame.index[i].isoformat()}", source, f"line {i + 2}"
        )
    if index is None:
        return frame.sort_index()
    missing = index.difference(frame.index)
    if len(missing):
        raise ValidationError(
            f"no row for step {missing[0].isoformat()} ({len(missing)} of {len(index)} steps "
            "of the horizon missing)",
            source,
        )
    return frame.reindex(index)


def _horizon(doc: _Doc) -> tuple[pd.DatetimeIndex, int]:
    start = doc.time("start")
    step = doc.num("step_minutes", 15, gt=0)
    if step != int(step) or 60 % int(step):
        raise doc.err("step_minutes", f"must divide 60 (5, 10, 15, 30, 60), got {step:g}")
    hours = doc.num("horizon_hours", gt=0, le=24 * 31)
    n = hours * 60 / step
    if n != int(n):
        raise doc.err(
            "horizon_hours", f"must be a whole number of {int(step)}-minute steps, got {hours:g}"
        )
    if start.value % (int(step) * 60 * 1_000_000_000):
        raise doc.err("start", f"must lie on the {int(step)}-minute grid, got {start.isoformat()}")
    index = pd.date_range(start, periods=int(n), freq=f"{int(step)}min").as_unit("ns")
    return index, int(step)


def _apply_limit_windows(doc: _Doc, series: pd.DataFrame) -> None:
    """Lower the grid limits in the windows of ``grid_limit_windows`` (congestion contracts).

    Each window ``{start, end, import_limit_kw?, export_limit_kw?}`` (half-open, with offsets)
    caps the limits of the steps that start inside it; the tighter limit wins.
    """
    for w in doc.items("grid_limit_windows"):
        start, end = w.time("start"), w.time("end")
        if end <= start:
            raise w.err("end", f"must be after start {start.isoformat()}, got {end.isoformat()}")
        if not (w.has("import_limit_kw") or w.has("export_limit_kw")):
            raise w.err("import_limit_kw", "give import_limit_kw and/or export_limit_kw")
        inside = (series.index >= start) & (series.index < end)
        for key, col in (
            ("import_limit_kw", "grid_import_limit_kw"),
            ("export_limit_kw", "grid_export_limit_kw"),
        ):
            if w.has(key):
                limit = w.num(key, ge=0)
                series.loc[inside, col] = np.minimum(series.loc[inside, col].to_numpy(float), limit)


def scenario_from_dict(data: Any, base_dir: Path, source: str = "<scenario>") -> Scenario:
    """Validate a scenario document (the parsed YAML) and read its series.

    Parameters
    ----------
    data : dict
        The document; see the module docstring of :mod:`optimizer.scenario` and
        ``optimizer/examples/dorpshuis.yaml``.
    base_dir : Path
        Directory that relative CSV paths are resolved against.
    source : str
        Name used in error messages (the file name).
    """
    doc = _Doc(data, source, "")
    site = _site(doc.sub("site"))
    index, step = _horizon(doc)
    if doc.has("series"):
        csv = Path(doc.text("series"))
        series = read_series_csv(csv if csv.is_absolute() else base_dir / csv, index)
    elif doc.has("forecast"):
        from optimizer.forecast import series_from_forecast_spec

        series = series_from_forecast_spec(doc.sub("forecast"), site, index, base_dir)
    else:
        raise doc.err("series", "is required (or give a 'forecast' section)")
    if "grid_import_limit_kw" not in series:
        series["grid_import_limit_kw"] = site.grid_import_limit_kw
    if "grid_export_limit_kw" not in series:
        series["grid_export_limit_kw"] = site.grid_export_limit_kw
    _apply_limit_windows(doc, series)
    battery = _battery(doc.sub("battery")) if doc.has("battery") else None
    evs = tuple(_ev(e) for e in doc.items("evs"))
    names = [e.name for e in evs] + ([battery.name] if battery else [])
    for i, e in enumerate(evs):
        if names.count(e.name) > 1:
            raise doc.err(f"evs[{i}].name", f"must be unique, {e.name!r} is used twice")
        if e.v2g and e.max_discharge_kw <= 0:
            raise doc.err(
                f"evs[{i}].max_discharge_kw",
                f"must be > 0 for a V2G car, got {e.max_discharge_kw:g} for EV {e.name!r}",
            )
    groups = []
    for g in doc.items("charger_groups"):
        members = g.raw("evs")
        if not isinstance(members, list) or not members:
            raise g.err("evs", f"must be a non-empty list of EV names, got {members!r}")
        for j, name in enumerate(members):
            if name not in {e.name for e in evs}:
                raise g.err(
                    f"evs[{j}]",
                    f"unknown EV {name!r} (EVs: {', '.join(e.name for e in evs) or 'none'})",
                )
        groups.append(ChargerGroup(g.text("name"), tuple(members), g.num("limit_kw", gt=0)))
    solver = doc.sub("solver") if doc.has("solver") else _Doc({}, source, "solver")
    return Scenario(
        site=site,
        series=series[[*SERIES_COLUMNS, *OPTIONAL_SERIES_COLUMNS]],
        step_minutes=step,
        battery=battery,
        evs=evs,
        charger_groups=tuple(groups),
        co2_kg_per_kwh=doc.num("co2_kg_per_kwh", CO2_KG_PER_KWH_DEFAULT, ge=0),
        peak_so_far_kw=doc.num("peak_so_far_kw", 0.0, ge=0),
        mip_gap=solver.num("mip_gap", 0.005, ge=0, le=1),
        time_limit_s=solver.num("time_limit_s", 60.0, gt=0),
        source=source,
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file (and the CSV it names).

    Raises
    ------
    ValidationError
        For a missing file, malformed YAML or a field out of range, naming file and field.
    """
    path = Path(path)
    return load_yaml_file(
        path, "scenario file", lambda data: scenario_from_dict(data, path.parent, str(path))
    )
