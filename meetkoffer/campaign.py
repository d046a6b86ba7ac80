"""Campaign orchestration: create, import, aggregate, analyse, verify savings.

The steps are thin: the domain work lives in :mod:`meetkoffer.analysis`,
:mod:`meetkoffer.findings`, :mod:`meetkoffer.mv` and the kernels of :mod:`energy.kernels`.

Raw samples of every clamp go to :class:`energy.samples.SampleStore` on the equipment's
channel; :func:`aggregate` turns them into 15-minute interval readings with the interval
pipeline of every site (:func:`energy.pipeline.update_many`, restricted to the campaign
period); :func:`load_series` reads those readings back as pandas series.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from energy import sites
from energy.clock import utc_now
from energy.errors import NotFoundError, ValidationError
from energy.models import (
    QUANTITY_UNITS,
    AssetKind,
    Channel,
    Member,
    MemberKind,
    Quantity,
    Site,
)
from energy.readings import read_readings
from energy.samples import SampleStore
from energy.timegrid import ensure_utc
from energy.yamlio import load_yaml_file
from meetkoffer import analysis as an
from meetkoffer import findings as fi
from meetkoffer import importing, mv
from meetkoffer import verifications as vf
from meetkoffer.emissions import (
    AppliedFactor,
    EmissionFactor,
    factor_for_year,
    load_emission_factors,
)
from meetkoffer.models import (
    Campaign,
    Equipment,
    FindingRecord,
    NonRoutineRecord,
    ProductionRecord,
    SavingsRecord,
    TemperatureReading,
    Verification,
)

#: Data intervals of a savings verification (see :func:`verify`).
INTERVALS = ("daily", "hourly")
UNITS_OF = {"power": "power (W, kW, MW)", "energy": "an energy counter (Wh, kWh, MWh)"}


def _slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not s:
        raise ValueError(f"name {name!r} has no letters or digits")
    return s


def get_campaign(session: Session, name: str) -> Campaign:
    """The campaign called ``name``; :class:`NotFoundError` if there is none."""
    c = session.scalar(select(Campaign).where(Campaign.name == name))
    if c is None:
        raise NotFoundError(f"no campaign {name!r} (create it with `noaber meetkoffer create`)")
    return c


_FINDING_FIELDS = tuple(f.name for f in dataclasses.fields(fi.Finding) if f.name != "evidence")
"""The fields a :class:`meetkoffer.findings.Finding` and its stored ``FindingRecord`` share."""


def create_campaign(session: Session, cfg: Mapping[str, Any], source: str = "campaign") -> Campaign:
    """Create a campaign (and its firm, site, assets and channels where new) from a mapping.

    Keys: ``name``, ``display_name``, ``firm: {ref, name}`` (a member by ref, e.g. defined in
    a site file; ``name`` is optional and, given, must match a stored firm), ``site: {name,
    display_name, ean, latitude, longitude, grid_import_limit_kw, grid_export_limit_kw}`` (an
    existing site of the firm is used as it is), ``start``, ``end``
    (ISO 8601 with offset), ``price_eur_per_kwh``, ``operating_hours``, optional ``findings``
    (:class:`meetkoffer.findings.FindingParams` fields) and ``equipment``: a list of
    ``{name, role: incomer|submeter, quantity: power|energy}`` with exactly one incomer; an
    entry with ``channel: <key>`` maps an existing channel of the site (data arriving live
    through the gateway) instead of creating one for CSV imports.

    Raises
    ------
    ValidationError
        Naming the key that is missing or wrong.
    """

    def need(key: str, where: Mapping[str, Any] = cfg, prefix: str = "") -> Any:
        if key not in where or where[key] in (None, ""):
            raise ValidationError(f"missing {prefix}{key}", source, prefix + key)
        return where[key]

    name = str(need("name"))
    if session.scalar(select(Campaign).where(Campaign.name == name)) is not None:
        raise ValidationError(f"campaign {name!r} exists already", source, "name")
    start, end, price, hours = _campaign_terms(cfg, need, source)
    firm = _campaign_firm(session, need("firm"), need, source)
    site = _campaign_site(session, need("site"), firm, need, source)
    eq_cfg = need("equipment")
    if not isinstance(eq_cfg, list):
        raise ValidationError("must be a list", source, "equipment")
    roles = [str(e.get("role", "submeter")) for e in eq_cfg]
    if roles.count("incomer") != 1:
        raise ValidationError(
            f"exactly one equipment needs role: incomer, got {roles.count('incomer')}",
            source,
            "equipment",
        )
    campaign = Campaign(
        name=name,
        display_name=str(cfg.get("display_name", name)),
        site_id=site.id,
        firm_member_id=firm.id,
        start_at=start.to_pydatetime(),
        end_at=end.to_pydatetime(),
        price_eur_per_kwh=price,
        operating_hours=hours.to_dict(),
        params={k: v for k, v in (cfg.get("findings") or {}).items()},
    )
    session.add(campaign)
    session.flush()
    seen: set[str] = set()
    for i, e in enumerate(eq_cfg):
        loc = f"equipment[{i}]"
        ename = str(need("name", e, loc + "."))
        if ename in seen:
            raise ValidationError(f"equipment {ename!r} appears twice", source, loc)
        seen.add(ename)
        role = roles[i]
        if role not in ("incomer", "submeter"):
            raise ValidationError(f"role must be incomer or submeter, got {role!r}", source, loc)
        if e.get("channel"):  # a channel that exists already (clamps polled by the gateway)
            channel = _existing_channel(session, site, str(e["channel"]), source, loc)
        else:
            qty = str(e.get("quantity", "power"))
            if qty not in ("power", "energy"):
                raise ValidationError(f"quantity must be power or energy, got {qty!r}", source, loc)
            channel = _campaign_channel(session, site, firm, campaign, ename, role, qty)
        session.add(
            Equipment(campaign_id=campaign.id, channel_id=channel.id, name=ename, role=role)
        )
    session.flush()
    session.refresh(campaign)
    return campaign


def _campaign_terms(
    cfg: Mapping[str, Any], need: Callable[..., Any], source: str
) -> tuple[pd.Timestamp, pd.Timestamp, float, an.OperatingHours]:
    """The campaign's period ``[start, end)`` (UTC), energy price and operating hours, checked."""
    try:
        start = ensure_utc(need("start"))
        end = ensure_utc(need("end"))
    except ValueError as exc:
        raise ValidationError(str(exc), source, "start/end") from None
    if end <= start:
        raise ValidationError(f"end {end} must be after start {start}", source, "end")
    price = float(need("price_eur_per_kwh"))
    if price < 0:
        raise ValidationError(f"must be >= 0, got {price}", source, "price_eur_per_kwh")
    try:
        hours = an.OperatingHours.from_dict(cfg.get("operating_hours") or {})
        fi.FindingParams(price_eur_per_kwh=price, **(cfg.get("findings") or {}))  # validates
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc), source, "operating_hours/findings") from None
    return start, end, price, hours


def _existing_channel(session: Session, site: Site, key: str, source: str, loc: str) -> Channel:
    """A stored channel of ``site`` that measures power or imported energy (live clamps)."""
    existing = session.scalar(select(Channel).where(Channel.key == key))
    if existing is None or existing.asset.site_id != site.id:
        raise ValidationError(f"no channel {key!r} at site {site.name!r}", source, loc + ".channel")
    if existing.quantity not in (Quantity.POWER, Quantity.ENERGY_IMPORT):
        raise ValidationError(
            f"channel {key!r} measures {existing.quantity.value}, not power or imported energy",
            source,
            loc + ".channel",
        )
    return existing


def _campaign_firm(
    session: Session, cfg: Mapping[str, Any], need: Callable[..., Any], source: str
) -> Member:
    """The campaign's firm: a member referred to by ``ref`` (defined in a site file, or here
    with its ``name`` when new)."""
    ref = str(need("ref", cfg, "firm."))
    name = str(cfg["name"]) if cfg.get("name") else None
    spec = sites.MemberSpec(ref, MemberKind.ORGANISATION, name)
    return sites.ensure_member(session, spec, update=False, source=source, path="firm").row


def _campaign_site(
    session: Session, cfg: Mapping[str, Any], firm: Member, need: Callable[..., Any], source: str
) -> Site:
    """The campaign's site: a stored one of the firm, or a new factory site from ``cfg``."""
    name = str(need("name", cfg, "site."))
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        spec = sites.SiteSpec(
            name=name,
            display_name=str(cfg.get("display_name", name)),
            ean=str(need("ean", cfg, "site.")),
            kind="factory",
            latitude=float(cfg.get("latitude", 52.8)),
            longitude=float(cfg.get("longitude", 6.6)),
            grid_import_limit_kw=float(need("grid_import_limit_kw", cfg, "site.")),
            grid_export_limit_kw=float(cfg.get("grid_export_limit_kw", 0.0)),
            owner_member_id=firm.id,
        )
        return sites.ensure_site(session, spec, source=source, path="site").row
    if site.owner_member_id not in (None, firm.id):
        raise ValidationError(f"site {name!r} belongs to another firm", source, "site.name")
    return site


def _campaign_channel(
    session: Session, site: Site, firm: Member, campaign: Campaign, ename: str, role: str, qty: str
) -> Channel:
    """The channel a CSV import of equipment ``ename`` writes to (with its asset), where new."""
    slug = _slug(ename)
    kind = AssetKind.METER if role == "incomer" else AssetKind.PROCESS_LOAD
    asset_spec = sites.AssetSpec(slug, kind, firm.id, {"display_name": ename})
    asset = sites.ensure_asset(session, site, asset_spec, update=False).row
    quantity = Quantity.POWER if qty == "power" else Quantity.ENERGY_IMPORT
    spec = sites.ChannelSpec(
        key=f"{site.name}/{slug}/{quantity.value}",
        quantity=quantity,
        unit=QUANTITY_UNITS[quantity],
        register=f"meetkoffer:{campaign.name}",
    )
    return sites.ensure_channel(session, asset, spec, update=False).row


def campaign_on_channels(
    session: Session,
    *,
    name: str,
    display_name: str,
    site: Site,
    start: dt.datetime,
    end: dt.datetime,
    price_eur_per_kwh: float,
    equipment: list[tuple[str, int, str]],
    hours: an.OperatingHours | None = None,
) -> Campaign:
    """A campaign over channels that exist already (e.g. clamps polled live by the gateway).

    ``equipment`` is ``(name, channel_id, role)`` with exactly one ``incomer``; the firm is
    the site's owner.
    """
    if site.owner_member_id is None:
        raise ValidationError(f"site {site.name!r} has no owner firm")
    if [r for _, _, r in equipment].count("incomer") != 1:
        raise ValidationError("exactly one equipment needs role incomer")
    c = Campaign(
        name=name,
        display_name=display_name,
        site_id=site.id,
        firm_member_id=site.owner_member_id,
        start_at=start,
        end_at=end,
        price_eur_per_kwh=price_eur_per_kwh,
        operating_hours=(hours or an.OperatingHours()).to_dict(),
        params={},
    )
    session.add(c)
    session.flush()
    for ename, channel_id, role in equipment:
        session.add(Equipment(campaign_id=c.id, channel_id=channel_id, name=ename, role=role))
    session.flush()
    session.refresh(c)
    return c


def create_campaign_from_file(session: Session, path: Path) -> Campaign:
    """Create a campaign from a YAML file (see :func:`create_campaign`)."""
    cfg = load_yaml_file(path, "campaign file")
    if not isinstance(cfg, dict):
        raise ValidationError("must be a mapping", str(path))
    return create_campaign(session, cfg, str(path))


def hours_of(c: Campaign) -> an.OperatingHours:
    return an.OperatingHours.from_dict(c.operating_hours or {})


def params_of(c: Campaign, kg_co2_per_kwh: float) -> fi.FindingParams:
    return fi.FindingParams(
        price_eur_per_kwh=c.price_eur_per_kwh, kg_co2_per_kwh=kg_co2_per_kwh, **(c.params or {})
    )


def _channel_names(c: Campaign) -> dict[str, Equipment]:
    out: dict[str, Equipment] = {}
    for e in c.equipment:
        out[e.name] = e
        out[e.channel.key] = e
    return out


def import_samples(
    session: Session, store: SampleStore, c: Campaign, path: Path, text: str | None = None
) -> dict[str, int]:
    """Import a sample export into the store; returns new samples per equipment.

    The whole file is validated first (:func:`meetkoffer.importing.parse_samples`); a bad
    file raises and stores nothing. Samples outside the campaign period are refused too.
    """
    names = _channel_names(c)
    parsed = importing.parse_samples(path, names, text)
    start_ns = pd.Timestamp(c.start_at).as_unit("ns").value
    end_ns = pd.Timestamp(c.end_at).as_unit("ns").value
    errors = []
    for ch, data in parsed.items():
        eq = names[ch]
        want = "power" if eq.channel.quantity == Quantity.POWER else "energy"
        if data.kind != want:
            errors.append(
                (
                    int(data.lines[0]),
                    f"channel {ch!r} takes {UNITS_OF[want]}, got {data.kind} units",
                )
            )
        outside = (data.ts_ns < start_ns) | (data.ts_ns >= end_ns)
        if outside.any():
            errors.append(
                (
                    int(data.lines[np.flatnonzero(outside)[0]]),
                    f"timestamp outside the campaign period of {c.name!r}",
                )
            )
    if errors:
        errors.sort()
        raise ValidationError(
            "nothing imported: " + "; ".join(f"line {ln}: {m}" for ln, m in errors[:20]),
            str(path),
            f"line {errors[0][0]}",
        )
    written: dict[str, int] = {}
    for ch, data in parsed.items():
        eq = names[ch]
        written[eq.name] = written.get(eq.name, 0) + store.append(
            eq.channel_id, data.ts_ns, data.value
        )
    return written


def import_production(session: Session, c: Campaign, path: Path, text: str | None = None) -> int:
    """Import production records (replacing records with the same period start)."""
    df = importing.parse_production(path, text)
    for r in df.itertuples(index=False):
        session.merge(
            ProductionRecord(
                campaign_id=c.id,
                period_start=r.period_start.to_pydatetime(),
                period_end=r.period_end.to_pydatetime(),
                units=float(r.units),
                unit=str(r.unit),
            )
        )
    session.flush()
    return len(df)


def import_temperature(session: Session, c: Campaign, path: Path, text: str | None = None) -> int:
    """Import outdoor temperatures [degC] (replacing readings at the same time)."""
    s = importing.parse_temperature(path, text)
    for ts, v in s.items():
        session.merge(TemperatureReading(campaign_id=c.id, ts=ts.to_pydatetime(), temp_c=float(v)))
    session.flush()
    return len(s)


def aggregate(
    session: Session,
    store: SampleStore,
    c: Campaign,
    n_threads: int | None = None,
    batch: int = 8,
    timings: dict[str, float] | None = None,
) -> dict[str, int]:
    """Raw samples of every equipment channel -> 15-minute interval readings (stored).

    The interval pipeline of every site (:func:`energy.pipeline.update_many`: the same gap
    rule, coverage and incremental state) restricted to the ISPs of the campaign period, in
    the caller's transaction (flushed, not committed). Power channels go through the parallel
    kernel ``batch`` at a time (``n_threads``; see there). Returns the ISPs written per
    equipment; ``timings``, if given, receives the seconds spent in ``read`` (Parquet),
    ``kernel`` and ``write`` (SQL).
    """
    from energy.pipeline import update_many  # the Numba kernels load on first use

    window = (
        pd.Timestamp(c.start_at).as_unit("ns").value,
        pd.Timestamp(c.end_at).as_unit("ns").value,
    )
    reports = update_many(
        store,
        session,
        [e.channel_id for e in c.equipment],
        window=window,
        commit=False,
        n_threads=n_threads,
        batch=batch,
        timings=timings,
    )
    session.flush()
    written = {r.channel_id: r.isps_written for r in reports}
    return {e.name: written.get(e.channel_id, 0) for e in c.equipment}


@dataclass
class CampaignSeries:
    """The 15-minute energy of every equipment and the drivers, ready for analyses."""

    incomer: str
    energy_wh: dict[str, pd.Series]  # by equipment name, incomer included
    production: pd.Series  # units, indexed by period start (UTC)
    temp_c: pd.Series  # degC, UTC index
    coverage: dict[str, float] = field(default_factory=dict)

    @property
    def incomer_wh(self) -> pd.Series:
        return self.energy_wh[self.incomer]

    @property
    def submeters_wh(self) -> dict[str, pd.Series]:
        return {k: v for k, v in self.energy_wh.items() if k != self.incomer}


def _utc_series(times: list, values: list) -> pd.Series:
    """Float values indexed by UTC timestamps (an empty series when there are none)."""
    return pd.Series(values, index=pd.DatetimeIndex(times, tz="UTC"), dtype=float)


def load_series(session: Session, c: Campaign, min_coverage: float = 0.5) -> CampaignSeries:
    """Read a campaign's interval readings and drivers; ISPs below ``min_coverage`` are left out."""
    ids = {e.channel_id: e for e in c.equipment}
    df = read_readings(session, list(ids), c.start_at, c.end_at)
    energy: dict[str, pd.Series] = {}
    coverage: dict[str, float] = {}
    for e in c.equipment:
        part = df[df["channel_id"] == e.channel_id]
        s = pd.Series(
            part["energy_wh"].to_numpy(float),
            index=pd.DatetimeIndex(part["isp_start"]).as_unit("ns"),
        )
        cov = part["coverage"].to_numpy(float)
        energy[e.name] = s[cov >= min_coverage]
        coverage[e.name] = float(cov.mean()) if cov.size else 0.0
    incomer = next(e.name for e in c.equipment if e.role == "incomer")
    prod = session.scalars(
        select(ProductionRecord)
        .where(ProductionRecord.campaign_id == c.id)
        .order_by(ProductionRecord.period_start)
    ).all()
    production = _utc_series([p.period_start for p in prod], [p.units for p in prod])
    temps = session.scalars(
        select(TemperatureReading)
        .where(TemperatureReading.campaign_id == c.id)
        .order_by(TemperatureReading.ts)
    ).all()
    temp = _utc_series([t.ts for t in temps], [t.temp_c for t in temps])
    return CampaignSeries(incomer, energy, production, temp, coverage)


def campaign_applied_factor(c: Campaign, factors: dict[int, EmissionFactor]) -> AppliedFactor:
    """The emission factor applied for the campaign's (local) start year."""
    return factor_for_year(factors, pd.Timestamp(c.start_at).tz_convert(an.LOCAL_TZ).year)


def campaign_factor(c: Campaign, factors: dict[int, EmissionFactor]) -> tuple[float, str]:
    """Emission factor [kg/kWh] of the campaign's year and a note on its source."""
    af = campaign_applied_factor(c, factors)
    note = f"{af.factor.kg_co2_per_kwh} kg CO2/kWh ({af.factor.year}; {af.factor.source})"
    return af.factor.kg_co2_per_kwh, note + (f"; {af.note}" if af.note else "")


def analyze(
    session: Session,
    c: Campaign,
    factors: dict[int, EmissionFactor] | None = None,
    series: CampaignSeries | None = None,
) -> tuple[CampaignSeries, list[fi.Finding]]:
    """Run the findings on the stored readings and store them (replacing earlier ones).

    ``series`` may be given when already loaded with :func:`load_series`.
    """
    factors = factors or load_emission_factors()
    series = series if series is not None else load_series(session, c)
    if series.incomer_wh.empty:
        raise ValidationError(
            f"campaign {c.name!r} has no interval data on its incomer {series.incomer!r}; "
            "import samples and run aggregation first"
        )
    kg, _ = campaign_factor(c, factors)
    found = fi.find_all(
        series.incomer_wh,
        series.submeters_wh,
        hours_of(c),
        params_of(c, kg),
        series.production if not series.production.empty else None,
    )
    session.execute(delete(FindingRecord).where(FindingRecord.campaign_id == c.id))
    for f in found:
        row = {k: getattr(f, k) for k in _FINDING_FIELDS}
        session.add(FindingRecord(campaign_id=c.id, **row, evidence=_jsonable(f.evidence)))
    c.analyzed_at = utc_now()
    session.flush()
    return series, found


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (pd.Timestamp, dt.datetime)):
        return obj.isoformat()
    return obj


def parse_period(text: str, what: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``FROM..TO`` (ISO dates are local midnights in Europe/Amsterdam; times need offsets)."""
    if ".." not in text:
        raise ValidationError(f"{what} must be FROM..TO, got {text!r}", location=what)
    a, b = (p.strip() for p in text.split("..", 1))

    def one(s: str) -> pd.Timestamp:
        try:
            if len(s) == 10:
                return pd.Timestamp(s).tz_localize(an.LOCAL_TZ).tz_convert("UTC").as_unit("ns")
            return ensure_utc(s)
        except ValueError as exc:
            raise ValidationError(f"{what}: {exc}", location=what) from None

    start, end = one(a), one(b)
    if end <= start:
        raise ValidationError(f"{what}: end {b} must be after start {a}", location=what)
    return start, end


def verify(
    session: Session,
    c: Campaign,
    baseline: tuple[pd.Timestamp, pd.Timestamp],
    reporting: tuple[pd.Timestamp, pd.Timestamp],
    *,
    option: str = "C",
    equipment: str | None = None,
    model: str = "regression",
    spec: mv.RegressionSpec | None = None,
    adjustments: list[mv.NonRoutineAdjustment] | None = None,
    factors: dict[int, EmissionFactor] | None = None,
    store: bool = True,
    production: bool | None = None,
    time_of_week: bool = True,
    heating_bp_c: float | None = None,
    cooling_bp_c: float | None = None,
    interval: str = "daily",
) -> tuple[mv.SavingsResult, SavingsRecord]:
    """Verify savings for the incomer (Option C) or one machine (Option B) and store them.

    The stored record is version 1 of a new :class:`meetkoffer.models.Verification`, frozen:
    its result, parameters and the digest of the data used (see
    :mod:`meetkoffer.verifications`). With ``store=False`` the record is built but not added
    to the session (:func:`recompute` adds it as a new version where something changed).
    Daily verifications also get the ISO 50006 EnPI baseline (production and degree days
    together, where the data have them) with its CUSUM (:mod:`meetkoffer.enpi`). Without ``spec`` the regression uses
    production (``production=None``: if any was imported), time-of-week terms and HDD/CDD
    terms for the balance points given [degC].

    ``interval="daily"`` fits on local days (day-of-week terms; production per day);
    ``interval="hourly"`` fits the time-of-week-and-temperature model on hours (168
    hour-of-week terms, degree hours, no production; see :func:`meetkoffer.mv.hourly_frame`),
    judged against the ASHRAE Guideline 14 hourly limits (CV(RMSE) <= 30 %, |NMBE| <= 10 %).
    """
    _check_interval(interval, model)
    factors = factors or load_emission_factors()
    series = load_series(session, c)
    equipment = _verified_equipment(c, series, option, equipment)
    prod = series.production if not series.production.empty else None
    temp = series.temp_c if not series.temp_c.empty else None
    if interval == "hourly":
        if production:
            raise ValidationError(
                "the hourly model has no production term (production is recorded per shift or "
                "day); use the daily model for production, or leave production out",
                location="production",
            )
        frame = mv.hourly_frame(series.energy_wh[equipment], temp)
    else:
        frame = mv.daily_frame(series.energy_wh[equipment], prod, temp)
    if spec is None:
        use_prod = (prod is not None and interval == "daily") if production is None else production
        spec = _regression_spec(c, use_prod, prod, temp, heating_bp_c, cooling_bp_c, time_of_week)
    base, rep = _cut_periods(c, frame, baseline, reporting, interval)
    try:
        res = mv.verify_savings(
            base,
            rep,
            option=option,
            price_eur_per_kwh=c.price_eur_per_kwh,
            emission_factors=factors,
            model=model,
            spec=spec,
            interval=interval,
            adjustments=adjustments or [],
        )
    except ValueError as exc:
        raise ValidationError(str(exc), location="savings") from None
    if interval == "daily":
        _attach_enpi(res, base, rep)
    eq = next(e for e in c.equipment if e.name == equipment)
    request = _savings_request(baseline, reporting, option, equipment, model, interval, spec)
    data = vf.data_summary(base, rep)
    return res, _savings_record(session, c, eq, res, baseline, reporting, request, store, data)


def _attach_enpi(res: mv.SavingsResult, base: pd.DataFrame, rep: pd.DataFrame) -> None:
    """The ISO 50006 EnPI baseline and CUSUM of the same days (a warning where it cannot be
    fitted: it is shown beside the verification, it does not replace it)."""
    from meetkoffer import enpi

    if not enpi.relevant_variables(base):
        return
    try:
        res.enpi = enpi.enpi_summary(base, rep)
    except ValueError as exc:
        res.warnings.append(f"EnPI baseline (ISO 50006) not fitted: {exc}")
        return
    res.warnings.extend(f"EnPI baseline (ISO 50006): {p}" for p in res.enpi["problems"])


def verify_billing(
    session: Session,
    c: Campaign,
    periods: pd.DataFrame,
    baseline: tuple[pd.Timestamp, pd.Timestamp],
    reporting: tuple[pd.Timestamp, pd.Timestamp],
    *,
    adjustments: list[mv.NonRoutineAdjustment] | None = None,
    factors: dict[int, EmissionFactor] | None = None,
    store: bool = True,
) -> tuple[mv.SavingsResult, SavingsRecord]:
    """Verify the facility's savings (Option C) from monthly bills, CalTRACK billing method.

    ``periods`` is a table ``[start, end, kwh]`` of the incomer's bills (from the billing
    loader, or given directly); a bill belongs to the baseline or reporting period that
    holds its start. The campaign's outdoor temperatures give the degree days.

    Raises
    ------
    ValidationError
        Naming the bill that is wrong, or a period without usable bills.
    """
    from meetkoffer import caltrack

    factors = factors or load_emission_factors()
    series = load_series(session, c)
    if series.temp_c.empty:
        raise ValidationError(f"campaign {c.name!r} has no outdoor temperatures for the bills")
    try:
        rows = caltrack._billing_rows(periods, an.LOCAL_TZ)
        parts = []
        for (a, b), what in ((baseline, "baseline"), (reporting, "reporting")):
            sel = rows[(rows["start"] >= a) & (rows["start"] < b)]
            if sel.empty:
                raise ValueError(f"no bills start in the {what} period")
            parts.append(caltrack.billing_data(sel, series.temp_c))
        res = mv.verify_billing(
            parts[0],
            parts[1],
            option="C",
            price_eur_per_kwh=c.price_eur_per_kwh,
            emission_factors=factors,
            adjustments=adjustments or [],
        )
    except ValueError as exc:
        raise ValidationError(str(exc), location="bills") from None
    eq = next(e for e in c.equipment if e.name == series.incomer)
    request = _savings_request(
        baseline, reporting, "C", series.incomer, "caltrack_billing", "monthly", mv.RegressionSpec()
    )
    data = vf.data_summary(parts[0].frame(), parts[1].frame())
    return res, _savings_record(session, c, eq, res, baseline, reporting, request, store, data)


def _check_interval(interval: str, model: str) -> None:
    if interval not in INTERVALS:
        raise ValidationError(
            f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}", location="interval"
        )
    if interval == "hourly" and model == "caltrack":
        raise ValidationError(
            "the CalTRACK model is a daily model; use the hourly regression or interval daily",
            location="model",
        )


def _verified_equipment(
    c: Campaign, series: CampaignSeries, option: str, equipment: str | None
) -> str:
    """The equipment a verification is about: the incomer (Option C) or the machine named."""
    if option == "C":
        if equipment not in (None, series.incomer):
            raise ValidationError("Option C is the whole facility: leave --equipment out")
        equipment = series.incomer
    elif equipment is None:
        raise ValidationError("Option B needs the isolated machine: give --equipment NAME")
    if equipment not in series.energy_wh:
        raise NotFoundError(f"campaign {c.name!r} has no equipment {equipment!r}")
    return equipment


def _regression_spec(
    c: Campaign,
    use_prod: bool,
    prod: pd.Series | None,
    temp: pd.Series | None,
    heating_bp_c: float | None,
    cooling_bp_c: float | None,
    time_of_week: bool,
) -> mv.RegressionSpec:
    """The regression asked for, refused where the campaign lacks the data it needs."""
    if use_prod and prod is None:
        raise ValidationError(
            f"campaign {c.name!r} has no production data; import it or leave production out"
        )
    if (heating_bp_c is not None or cooling_bp_c is not None) and temp is None:
        raise ValidationError(f"campaign {c.name!r} has no outdoor temperatures for degree days")
    return mv.RegressionSpec(
        production=use_prod,
        heating_bp_c=heating_bp_c,
        cooling_bp_c=cooling_bp_c,
        time_of_week=time_of_week,
    )


def _cut_periods(
    c: Campaign,
    frame: pd.DataFrame,
    baseline: tuple[pd.Timestamp, pd.Timestamp],
    reporting: tuple[pd.Timestamp, pd.Timestamp],
    interval: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The baseline and reporting parts of the data; a period without data is refused."""
    base = frame[(frame.index >= baseline[0]) & (frame.index < baseline[1])]
    rep = frame[(frame.index >= reporting[0]) & (frame.index < reporting[1])]
    if base.empty or rep.empty:
        raise ValidationError(
            f"no complete {'hours' if interval == 'hourly' else 'days'} of data in the "
            f"{'baseline' if base.empty else 'reporting'} period of campaign {c.name!r}",
            location="baseline" if base.empty else "reporting",
        )
    return base, rep


def _savings_request(
    baseline: tuple[pd.Timestamp, pd.Timestamp],
    reporting: tuple[pd.Timestamp, pd.Timestamp],
    option: str,
    equipment: str,
    model: str,
    interval: str,
    spec: mv.RegressionSpec,
) -> dict[str, Any]:
    """What was asked, stored with the record so that :func:`recompute` can run it again."""
    return {
        "baseline": [baseline[0].isoformat(), baseline[1].isoformat()],
        "reporting": [reporting[0].isoformat(), reporting[1].isoformat()],
        "option": option,
        "equipment": equipment,
        "model": model,
        "interval": interval,
        "spec": {
            "production": spec.production,
            "heating_bp_c": spec.heating_bp_c,
            "cooling_bp_c": spec.cooling_bp_c,
            "time_of_week": spec.time_of_week,
        },
    }


def _savings_record(
    session: Session,
    c: Campaign,
    eq: Equipment,
    res: mv.SavingsResult,
    baseline: tuple[pd.Timestamp, pd.Timestamp],
    reporting: tuple[pd.Timestamp, pd.Timestamp],
    request: dict[str, Any],
    store: bool,
    data: dict[str, Any],
) -> SavingsRecord:
    """The frozen record of a verification (stored as version 1 of a new verification if
    ``store``)."""
    rec = SavingsRecord(
        campaign_id=c.id,
        equipment_id=eq.id,
        option=request["option"],
        model=res.model,
        baseline_start=baseline[0].to_pydatetime(),
        baseline_end=baseline[1].to_pydatetime(),
        reporting_start=reporting[0].to_pydatetime(),
        reporting_end=reporting[1].to_pydatetime(),
        adjusted_baseline_kwh=res.adjusted_baseline_kwh,
        reporting_kwh=res.reporting_kwh,
        nonroutine_kwh=res.nonroutine_kwh,
        avoided_kwh=res.avoided_kwh,
        avoided_eur=res.avoided_eur,
        avoided_co2_t=res.avoided_co2_t,
        fsu_68=res.fsu_68 if np.isfinite(res.fsu_68) else None,
        fsu_90=res.fsu_90 if np.isfinite(res.fsu_90) else None,
        cv_rmse=res.metrics.cv_rmse,
        nmbe=res.metrics.nmbe,
        r2=res.metrics.r2,
        ashrae14_pass=res.metrics.passes,
        summary=_jsonable(
            {
                **res.summary(),
                "equipment": eq.name,
                "request": request,
                "coefficients": res.coefficients,
                "warnings": res.warnings,
                "emission_factors": [
                    {
                        "year": a.requested_year,
                        "factor_year": a.factor.year,
                        "kg_co2_per_kwh": a.factor.kg_co2_per_kwh,
                        "source": a.factor.source,
                    }
                    for a in res.emission_factors
                ],
            }
        ),
    )
    for a in res.adjustments:
        rec.adjustments.append(
            NonRoutineRecord(
                energy_kwh=a.energy_kwh, reason=a.reason, start_at=a.start, end_at=a.end
            )
        )
    vf.freeze_into(rec, res, data, vf.parameters(request, c.price_eur_per_kwh, res))
    if store:
        vf.store_new(session, rec)
    return rec


@dataclass
class Recomputed:
    """The outcome of :func:`recompute`: the version now current and whether it is new."""

    record: SavingsRecord
    result: mv.SavingsResult
    created: bool

    @property
    def changes(self) -> dict[str, Any]:
        return dict(self.record.changes or {}) if self.created else {}


def recompute(
    session: Session,
    c: Campaign,
    rec: SavingsRecord,
    factors: dict[int, EmissionFactor] | None = None,
    periods: pd.DataFrame | None = None,
) -> Recomputed:
    """Run a stored verification again on the current data and parameters.

    Where the data digest and the parameters equal those of the verification's latest
    version nothing is stored (``created`` false); otherwise a new version is added that says
    what changed. A billing verification needs its bills again (``periods``).

    Raises
    ------
    ValidationError
        If the verification was withdrawn or has no stored request.
    """
    req = (rec.summary or {}).get("request")
    if not req:
        raise ValidationError(f"savings record {rec.id} has no stored request; verify it again")
    v = rec.verification
    if v.withdrawn_at is not None:
        raise ValidationError(
            f"savings verification {v.id} was withdrawn ({v.withdrawn_reason}); it is not "
            "recomputed",
            location="verification",
        )
    adjustments = [
        mv.NonRoutineAdjustment(a.energy_kwh, a.reason, a.start_at, a.end_at)
        for a in rec.adjustments
    ]
    base = (pd.Timestamp(req["baseline"][0]), pd.Timestamp(req["baseline"][1]))
    rept = (pd.Timestamp(req["reporting"][0]), pd.Timestamp(req["reporting"][1]))
    if req["model"] == "caltrack_billing":
        if periods is None:
            raise ValidationError(
                f"savings record {rec.id} is a billing verification: give the bills to "
                "recompute it",
                location="bills",
            )
        res, new = verify_billing(
            session, c, periods, base, rept, adjustments=adjustments, factors=factors, store=False
        )
    else:
        res, new = verify(
            session,
            c,
            base,
            rept,
            option=req["option"],
            equipment=req["equipment"] if req["option"] == "B" else None,
            model=req["model"],
            spec=mv.RegressionSpec(**req["spec"]),
            adjustments=adjustments,
            factors=factors,
            store=False,
            interval=req.get("interval", "daily"),
        )
    added = vf.add_version(session, v, new)
    if added is None:
        last = vf.latest(v)
        return Recomputed(last, vf.shown_result(last), False)
    return Recomputed(added, res, True)


def verification_of(session: Session, c: Campaign, verification_id: int) -> Verification:
    """The campaign's verification ``verification_id``; :class:`NotFoundError` if none."""
    v = session.get(Verification, verification_id)
    if v is None or v.campaign_id != c.id:
        raise NotFoundError(f"campaign {c.name!r} has no savings verification {verification_id}")
    return v


def withdraw_verification(
    session: Session, c: Campaign, verification_id: int, reason: str, by: str
) -> Verification:
    """Withdraw a verification of the campaign (reason and user recorded; never deleted)."""
    return vf.withdraw(session, verification_of(session, c, verification_id), reason, by)


def campaign_meta(c: Campaign) -> dict[str, Any]:
    """The heading of a campaign report."""
    return {
        "name": c.name,
        "display_name": c.display_name,
        "site": c.site.display_name,
        "start": c.start_at,
        "end": c.end_at,
    }


def savings_meta(c: Campaign, rec: SavingsRecord) -> dict[str, Any]:
    """The heading of a savings verification report (periods as local dates)."""
    from energy.i18n import format_local_datetime

    def period(a: dt.datetime, b: dt.datetime) -> str:
        return f"{format_local_datetime(a, '%d-%m-%Y')} – {format_local_datetime(b, '%d-%m-%Y')}"

    v = rec.verification
    return {
        "name": c.name,
        "display_name": c.display_name,
        "equipment": (rec.summary or {}).get("equipment"),
        "baseline": period(rec.baseline_start, rec.baseline_end),
        "reporting": period(rec.reporting_start, rec.reporting_end),
        "verification_id": rec.verification_id,
        "version": rec.version,
        "created_at": rec.created_at,
        "data_digest": rec.data_digest,
        "changes": rec.changes or {},
        "versions": vf.version_rows(v),
        "withdrawn": None
        if v.withdrawn_at is None
        else {"at": v.withdrawn_at, "by": v.withdrawn_by, "reason": v.withdrawn_reason},
    }


def stored_findings(c: Campaign) -> list[fi.Finding]:
    """The campaign's stored findings as :class:`meetkoffer.findings.Finding` objects."""
    return [
        fi.Finding(**{k: getattr(f, k) for k in _FINDING_FIELDS}, evidence=dict(f.evidence or {}))
        for f in c.findings
    ]


def render_campaign_report(
    session: Session,
    c: Campaign,
    factors: dict[int, EmissionFactor] | None = None,
    locale: str = "nl",
    *,
    reanalyze: bool = False,
    plotly_src: str | None = None,
    downloads: str | None = None,
) -> Any:
    """The campaign report (:class:`meetkoffer.report.Report`) from stored readings.

    ``reanalyze=True`` runs and stores the findings first (the CLI); otherwise the stored
    findings are shown (a page served by the API).

    Raises
    ------
    ValidationError
        If the campaign has no interval data on its incomer.
    """
    from meetkoffer.report import campaign_report

    factors = factors or load_emission_factors()
    if reanalyze:
        series, found = analyze(session, c, factors)
    else:
        series = load_series(session, c)
        if series.incomer_wh.empty:
            raise ValidationError(
                f"campaign {c.name!r} has no interval data on its incomer {series.incomer!r}"
            )
        found = stored_findings(c)
    applied = campaign_applied_factor(c, factors)
    return campaign_report(
        campaign_meta(c),
        series.energy_wh,
        series.incomer,
        found,
        hours_of(c),
        params_of(c, applied.factor.kg_co2_per_kwh),
        series.production if not series.production.empty else None,
        locale,
        coverage=series.coverage,
        plotly_src=plotly_src,
        emission_factor=applied,
        downloads=downloads,
    )


def render_savings_report(
    session: Session,
    c: Campaign,
    rec: SavingsRecord,
    factors: dict[int, EmissionFactor] | None = None,
    locale: str = "nl",
    *,
    plotly_src: str | None = None,
    downloads: str | None = None,
) -> Any:
    """The report (:class:`meetkoffer.report.Report`) of a stored savings verification
    version: its frozen result, never recomputed on today's data (``session`` and
    ``factors`` are not used for the numbers)."""
    from meetkoffer.report import savings_report

    res = vf.shown_result(rec)
    return savings_report(
        savings_meta(c, rec), res, locale, plotly_src=plotly_src, downloads=downloads
    )
