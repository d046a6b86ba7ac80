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
import getpass
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from energy import sites
from energy.audit import Actor, record
from energy.clock import utc_now
from energy.errors import NotFoundError, ValidationError
from energy.models import (
    QUANTITY_UNITS,
    AssetKind,
    Channel,
    IntervalReading,
    Member,
    MemberKind,
    Quantity,
    Site,
)
from energy.readings import read_readings
from energy.samples import SampleStore
from energy.timegrid import ISP_NS, ensure_utc
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
    BillingPeriodRecord,
    Campaign,
    EnergyPeriodRecord,
    Equipment,
    FindingRecord,
    ImportAuditRecord,
    NonRoutineRecord,
    ProductionRecord,
    SavingsRecord,
    SpreadGapRecord,
    TemperatureReading,
    Verification,
)

#: Data intervals of a savings verification (see :func:`verify`).
INTERVALS = ("daily", "hourly")
UNITS_OF = {
    "power": "power (W, kW, MW)",
    "counter": "an energy counter (Wh, kWh, MWh)",
    "interval": "interval energy (Wh, kWh, MWh per period)",
}


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
    ``{name, role: incomer|submeter, quantity, interval, rated_power_kw, max_gap_h}`` with
    exactly one incomer. ``quantity`` declares the data (:class:`Declaration`): ``power``
    (W, kW), ``counter`` (a cumulative kWh register; ``energy`` is the same), or
    ``interval_energy`` with ``interval: 15min|hour|day|month`` (kWh per local period); left
    out, it is detected at the first import and the detection reported. ``rated_power_kw``
    bounds a machine's plausible power (:func:`plausible_range_w`); ``max_gap_h`` the counter
    gaps spread over their ISPs. An entry with ``channel: <key>`` maps an existing channel of
    the site (data arriving live through the gateway) instead of creating one for CSV imports.

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
        decl = _declaration(e, source, loc)
        if e.get("channel"):  # a channel that exists already (clamps polled by the gateway)
            channel = _existing_channel(session, site, str(e["channel"]), source, loc)
            if decl.kind is None:
                decl = dataclasses.replace(
                    decl, kind="power" if channel.quantity == Quantity.POWER else "counter"
                )
        else:
            channel = _campaign_channel(session, site, firm, campaign, ename, role, decl)
        session.add(
            Equipment(
                campaign_id=campaign.id,
                channel_id=channel.id,
                name=ename,
                role=role,
                data_kind=decl.kind,
                interval=decl.interval,
                rated_power_kw=decl.rated_power_kw,
            )
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


@dataclass(frozen=True)
class Declaration:
    """What a channel of the campaign file measures (see :func:`create_campaign`).

    ``kind`` is ``power`` [W], ``counter`` (a cumulative kWh register) or ``interval``
    (energy per local ``interval``: 15 min, hour, day or month); None: not declared, detected
    at the first import. ``max_gap_h``: counter gaps up to this long are spread over their
    ISPs (:data:`COUNTER_MAX_GAP_H`).
    """

    kind: str | None = None
    interval: str | None = None
    rated_power_kw: float | None = None
    max_gap_h: float | None = None


QUANTITY_KINDS = {
    "power": "power",
    "energy": "counter",
    "counter": "counter",
    "interval_energy": "interval",
    "interval": "interval",
}
"""``quantity:`` of an equipment in the campaign file -> its data kind."""
COUNTER_MAX_GAP_H = 7 * 24.0
"""Gaps between counter readings up to a week (readings by hand, a weekend) are spread
uniformly over their ISPs; longer ones stay gaps (the pipeline's default is 2 h)."""
GRID_MARGIN = 1.5
"""Plausible power at the incomer: up to 1.5 times the site's grid import limit."""
RATED_MARGIN = 3.0
"""Plausible power of a machine: up to 3 times its rated power (start-up peaks at 1 Hz)."""


def _declaration(e: Mapping[str, Any], source: str, loc: str) -> Declaration:
    """The data declaration of one equipment entry, checked."""
    qty = e.get("quantity")
    if qty is not None and str(qty) not in QUANTITY_KINDS:
        raise ValidationError(
            f"quantity must be one of {', '.join(QUANTITY_KINDS)}, got {qty!r}", source, loc
        )
    kind = QUANTITY_KINDS[str(qty)] if qty is not None else None
    interval = str(e["interval"]) if e.get("interval") else None
    if kind == "interval" and interval not in importing.INTERVALS:
        raise ValidationError(
            f"interval energy needs interval: one of {', '.join(importing.INTERVALS)}, "
            f"got {interval!r}",
            source,
            loc + ".interval",
        )
    if kind != "interval" and interval is not None:
        raise ValidationError("interval is only for quantity: interval_energy", source, loc)

    def positive(key: str) -> float | None:
        if e.get(key) is None:
            return None
        try:
            v = float(e[key])
        except (TypeError, ValueError):
            v = float("nan")
        if not v > 0:
            raise ValidationError(f"{key} must be > 0, got {e[key]!r}", source, f"{loc}.{key}")
        return v

    return Declaration(kind, interval, positive("rated_power_kw"), positive("max_gap_h"))


def _campaign_channel(
    session: Session,
    site: Site,
    firm: Member,
    campaign: Campaign,
    ename: str,
    role: str,
    decl: Declaration,
) -> Channel:
    """The channel a CSV import of equipment ``ename`` writes to (with its asset), where new.

    Not declared: a power channel, turned into an energy channel if its first import is
    energy (:func:`_detect`).
    """
    slug = _slug(ename)
    kind = AssetKind.METER if role == "incomer" else AssetKind.PROCESS_LOAD
    asset_spec = sites.AssetSpec(slug, kind, firm.id, {"display_name": ename})
    asset = sites.ensure_asset(session, site, asset_spec, update=False).row
    quantity = Quantity.POWER if decl.kind in (None, "power") else Quantity.ENERGY_IMPORT
    max_gap_s = None
    if decl.kind == "counter":
        max_gap_s = int((decl.max_gap_h or COUNTER_MAX_GAP_H) * 3600)
    spec = sites.ChannelSpec(
        key=f"{site.name}/{slug}/{quantity.value}",
        quantity=quantity,
        unit=QUANTITY_UNITS[quantity],
        register=f"meetkoffer:{campaign.name}",
        max_gap_s=max_gap_s,
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
    kinds = {
        ch.id: "power" if ch.quantity == Quantity.POWER else "counter"
        for ch in session.scalars(
            select(Channel).where(Channel.id.in_([cid for _, cid, _ in equipment]))
        )
    }
    for ename, channel_id, role in equipment:
        session.add(
            Equipment(
                campaign_id=c.id,
                channel_id=channel_id,
                name=ename,
                role=role,
                data_kind=kinds.get(channel_id),
            )
        )
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
    """The campaign's operating hours (shifts, calendar, holidays); a stored value that no
    longer parses is a :class:`ValidationError` naming the campaign, not a traceback."""
    try:
        return an.OperatingHours.from_dict(c.operating_hours or {})
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc), f"campaign {c.name!r}", "operating_hours") from None


def params_of(c: Campaign, kg_co2_per_kwh: float) -> fi.FindingParams:
    """The finding thresholds and assumptions of the campaign file's ``findings:``."""
    try:
        return fi.FindingParams(
            price_eur_per_kwh=c.price_eur_per_kwh,
            kg_co2_per_kwh=kg_co2_per_kwh,
            **(c.params or {}),
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc), f"campaign {c.name!r}", "findings") from None


def _channel_names(c: Campaign) -> dict[str, Equipment]:
    out: dict[str, Equipment] = {}
    for e in c.equipment:
        out[e.name] = e
        out[e.channel.key] = e
    return out


@dataclass(frozen=True)
class Change:
    """A stored value an import would replace: where, when, old and new [W, Wh, t, degC]."""

    target: str
    ts: pd.Timestamp
    old: float
    new: float
    unit: str


def _user(user: str | None) -> str:
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container
        return "unknown"


def _refuse_changes(path: Path | str, changes: list[Change], replace: bool) -> None:
    """No silent overwrite: an import that changes stored values needs ``replace``."""
    if not changes or replace:
        return
    examples = "; ".join(
        f"{ch.target} at {ch.ts.tz_convert(an.LOCAL_TZ).isoformat()}: "
        f"{ch.old:g} -> {ch.new:g} {ch.unit}"
        for ch in changes[:5]
    )
    per: dict[str, int] = {}
    for ch in changes:
        per[ch.target] = per.get(ch.target, 0) + 1
    counts = ", ".join(f"{n:,} of {t!r}" for t, n in per.items())
    raise ValidationError(
        f"this import would change {len(changes):,} stored values ({counts}; first: {examples}); "
        "nothing imported. Import again with --replace to replace them (the old values are "
        "kept in the audit trail)",
        str(path),
        "replace",
    )


def _audit(
    session: Session, c: Campaign, kind: str, changes: list[Change], path: Path | str, user: str
) -> None:
    """Keep every replaced value: old and new, time, file and user (``mk_import_audit``)."""
    if not changes:
        return
    now = utc_now()
    session.execute(
        insert(ImportAuditRecord),
        [
            {
                "campaign_id": c.id,
                "target": ch.target,
                "kind": kind,
                "ts": ch.ts.to_pydatetime(),
                "old_value": ch.old,
                "new_value": ch.new,
                "unit": ch.unit,
                "source": str(path)[:300],
                "user": user[:100],
                "replaced_at": now,
            }
            for ch in changes
        ],
    )


def _file_error(path: Path | str, errors: list[tuple[int, str]]) -> None:
    if errors:
        errors.sort()
        raise ValidationError(
            "nothing imported: " + "; ".join(f"line {ln}: {m}" for ln, m in errors[:20]),
            str(path),
            f"line {errors[0][0]}",
        )


def plausible_range_w(c: Campaign, eq: Equipment) -> tuple[float, float, str]:
    """The plausible power of an equipment ``(min, max)`` [W] and where the limit comes from.

    The incomer: up to :data:`GRID_MARGIN` times the site's grid import limit, down to the
    same share of its export limit (at least 5 % of the maximum, for clamp noise); a machine:
    up to :data:`RATED_MARGIN` times its rated power (from the campaign file), never above
    the incomer's maximum, down to -5 % of its maximum.
    """
    site = c.site
    hi = site.grid_import_limit_kw * 1000.0 * GRID_MARGIN
    why = f"{GRID_MARGIN:g} x the site's grid import limit of {site.grid_import_limit_kw:g} kW"
    if eq.role == "incomer":
        lo = -max(site.grid_export_limit_kw * 1000.0 * GRID_MARGIN, 0.05 * hi)
        return lo, hi, why
    if eq.rated_power_kw and eq.rated_power_kw * 1000.0 * RATED_MARGIN < hi:
        hi = eq.rated_power_kw * 1000.0 * RATED_MARGIN
        why = f"{RATED_MARGIN:g} x its rated power of {eq.rated_power_kw:g} kW"
    return -0.05 * hi, hi, why


def _implausible(
    eq: Equipment,
    data: importing.ChannelData,
    power_w: np.ndarray,
    lines: np.ndarray,
    limits: tuple[float, float, str],
    what: str,
) -> list[tuple[int, str]]:
    """The first value outside the plausible range, as a line error naming value and limit."""
    lo, hi, why = limits
    if not power_w.size or (float(power_w.min()) >= lo and float(power_w.max()) <= hi):
        return []  # two reductions: no mask for the (usual) file with every value in range
    bad = np.flatnonzero((power_w > hi) | (power_w < lo))
    i = int(bad[0])
    side = (
        f"above its plausible maximum of {hi:,.0f} W"
        if power_w[i] > hi
        else (f"below its plausible minimum of {lo:,.0f} W")
    )
    return [
        (
            int(lines[i]),
            f"{what} {power_w[i]:,.0f} W of {eq.name!r} is {side} ({why}); "
            f"{bad.size:,} value(s) out of range. Is the unit {data.unit!r} right?",
        )
    ]


def _detect(
    session: Session, eq: Equipment, data: importing.ChannelData, notes: list[str]
) -> str | None:
    """Declare an undeclared equipment from its first import; the detection is reported.

    Power units make it a power channel; energy units a counter or interval energy where
    :func:`meetkoffer.importing.detect_energy_kind` finds it clear (the channel becomes an
    energy channel). Returns why not, if it is not clear.
    """
    if data.kind == "power":
        eq.data_kind = "power"
        notes.append(f"{eq.name}: detected power ({data.unit}); declare quantity: power")
        return None
    found = importing.detect_energy_kind(data)
    if isinstance(found, str):
        return (
            f"cannot tell whether {eq.name!r} is a counter or interval energy ({found}); "
            "declare quantity: counter or quantity: interval_energy with its interval in the "
            "campaign file"
        )
    kind, interval = found
    ch = eq.channel
    has_data = session.scalar(
        select(IntervalReading.isp_start).where(IntervalReading.channel_id == ch.id).limit(1)
    )
    if ch.quantity == Quantity.POWER and has_data is not None:
        return f"{eq.name!r} holds power readings; its energy file cannot be imported"
    ch.quantity = Quantity.ENERGY_IMPORT
    ch.unit = QUANTITY_UNITS[Quantity.ENERGY_IMPORT]
    if kind == "counter":
        ch.max_gap_s = int(COUNTER_MAX_GAP_H * 3600)
    eq.data_kind, eq.interval = kind, interval
    what = "a cumulative counter" if kind == "counter" else f"interval energy per {interval}"
    decl = "counter" if kind == "counter" else f"interval_energy, interval: {interval}"
    notes.append(
        f"{eq.name}: detected {what} ({data.unit}); declare quantity: {decl} to make it explicit"
    )
    return None


def import_samples(
    session: Session,
    store: SampleStore,
    c: Campaign,
    path: Path,
    text: str | None = None,
    *,
    replace: bool = False,
    user: str | None = None,
    notes: list[str] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, int]:
    """Import a sample export (power, counter readings or interval energy); new values per
    equipment.

    The whole file is validated first (:func:`meetkoffer.importing.parse_samples`): units of
    the channel's declared kind, times inside the campaign period, values in the plausible
    range (:func:`plausible_range_w`), counters that never decrease, interval energy on its
    local periods. A bad file raises and stores nothing. An import that would change stored
    values is refused, saying how many and which, unless ``replace``; then the old values go
    to the audit trail. ``notes`` receives detections and spread counter gaps.

    Power and counter readings go to the sample store (the pipeline aggregates them; counter
    gaps up to the channel's ``max_gap_s`` are spread over their ISPs and recorded in
    ``mk_spread_gaps``); interval energy is stored as imported (``mk_energy_periods``) and
    as readings spread uniformly over the ISPs of its local period. ``timings``, if given,
    receives the seconds spent in ``parse``, ``check`` and ``store``.
    """
    notes = notes if notes is not None else []
    timings = timings if timings is not None else {}
    names = _channel_names(c)
    t0 = time.perf_counter()
    parsed = importing.parse_samples(path, names, text)
    t1 = time.perf_counter()
    errors: list[tuple[int, str]] = []
    plan: list[tuple[Equipment, importing.ChannelData]] = []
    for ch, data in parsed.items():
        eq = names[ch]
        if eq.data_kind is None:
            why = _detect(session, eq, data, notes)
            if why:
                errors.append((int(data.lines[0]), why))
                continue
        errors += _check_channel(c, eq, data)
        plan.append((eq, data))
    _file_error(path, errors)
    changes: list[Change] = []
    for eq, data in plan:
        changes += _changes(session, store, eq, data)
    _refuse_changes(path, changes, replace)
    _audit(session, c, "samples", changes, path, _user(user))
    t2 = time.perf_counter()
    written: dict[str, int] = {}
    # Samples of different channels go to different directories: written in parallel threads
    # (Parquet encoding and compression release the GIL).
    samples = [(eq, data) for eq, data in plan if eq.data_kind != "interval"]
    with ThreadPoolExecutor(max_workers=min(len(samples), os.cpu_count() or 1) or 1) as pool:
        counts = list(
            pool.map(lambda p: store.append(p[0].channel_id, p[1].ts_ns, p[1].value), samples)
        )
    for (eq, _), n in zip(samples, counts):
        written[eq.name] = written.get(eq.name, 0) + n
        if eq.data_kind == "counter":
            notes += _record_gaps(session, store, eq)
    for eq, data in plan:
        if eq.data_kind == "interval":
            n = _store_intervals(session, eq, data, str(path))
            written[eq.name] = written.get(eq.name, 0) + n
    session.flush()
    for k, v in (("parse", t1 - t0), ("check", t2 - t1), ("store", time.perf_counter() - t2)):
        timings[k] = timings.get(k, 0.0) + v
    return written


def _check_channel(
    c: Campaign, eq: Equipment, data: importing.ChannelData
) -> list[tuple[int, str]]:
    """The rules of one channel's data against its declaration and the campaign."""
    want = "power" if eq.data_kind == "power" else "energy"
    if data.kind != want:
        return [
            (
                int(data.lines[0]),
                f"channel {data.name!r} takes {UNITS_OF[eq.data_kind or 'power']}, got "
                f"{data.kind} units",
            )
        ]
    start_ns = pd.Timestamp(c.start_at).as_unit("ns").value
    end_ns = pd.Timestamp(c.end_at).as_unit("ns").value
    ts, limits = data.ts_ns, plausible_range_w(c, eq)
    if eq.data_kind == "interval":
        p0, p1, aligned = importing.period_bounds(ts, eq.interval or "")
        if not aligned.all():
            i = int(np.flatnonzero(~aligned)[0])
            return [
                (
                    int(data.lines[i]),
                    f"{pd.Timestamp(ts[i], tz='UTC').tz_convert(an.LOCAL_TZ).isoformat()} is "
                    f"not the start of a local {eq.interval} (interval energy of {data.name!r})",
                )
            ]
        outside = (p0 < start_ns) | (p1 > end_ns)
        power_w = data.value / ((p1 - p0) / 3.6e12)
        lines = data.lines
        neg = np.flatnonzero(data.value < 0)
        if neg.size:
            return [
                (int(lines[neg[0]]), f"interval energy must be >= 0, got {data.value[neg[0]]} Wh")
            ]
        limits = (0.0, limits[1], limits[2])
        what = "mean power"
    else:
        # Sorted times (parse_samples sorts each channel): outside the period only at the ends.
        outside = np.zeros(ts.size, bool)
        outside[: int(np.searchsorted(ts, start_ns, "left"))] = True
        outside[int(np.searchsorted(ts, end_ns, "left")) :] = True
        if eq.data_kind == "counter":
            if errs := importing.counter_errors(data):
                return errs
            power_w = np.diff(data.value) / (np.diff(ts) / 3.6e12)
            lines = data.lines[1:]
            limits = (0.0, limits[1], limits[2])
            what = "mean power between readings"
        else:
            power_w, lines, what = data.value, data.lines, "power"
    if outside.any():
        return [
            (
                int(data.lines[np.flatnonzero(outside)[0]]),
                f"{'period' if eq.data_kind == 'interval' else 'timestamp'} outside the "
                f"campaign period of {c.name!r}",
            )
        ]
    return _implausible(eq, data, power_w, lines, limits, what)


def _changes(
    session: Session, store: SampleStore, eq: Equipment, data: importing.ChannelData
) -> list[Change]:
    """Stored values the data would replace (same time, another value)."""
    if data.ts_ns.size == 0:
        return []
    if eq.data_kind == "interval":
        rows = session.execute(
            select(EnergyPeriodRecord.period_start, EnergyPeriodRecord.energy_wh).where(
                EnergyPeriodRecord.equipment_id == eq.id,
                EnergyPeriodRecord.period_start >= pd.Timestamp(int(data.ts_ns[0]), tz="UTC"),
                EnergyPeriodRecord.period_start <= pd.Timestamp(int(data.ts_ns[-1]), tz="UTC"),
            )
        ).all()
        old_ts = np.asarray([pd.Timestamp(r[0]).as_unit("ns").value for r in rows], np.int64)
        old_v = np.asarray([r[1] for r in rows], float)
    else:
        old = store.read(eq.channel_id, int(data.ts_ns[0]), int(data.ts_ns[-1]) + 1)
        old_ts, old_v = old.ts, old.value
    if old_ts.size == 0:
        return []
    idx = np.clip(np.searchsorted(old_ts, data.ts_ns), 0, old_ts.size - 1)
    hit = old_ts[idx] == data.ts_ns
    differ = hit & ~np.isclose(old_v[idx], data.value, rtol=1e-12, atol=1e-9)
    unit = "W" if eq.data_kind == "power" else "Wh"
    return [
        Change(
            eq.name,
            pd.Timestamp(int(data.ts_ns[i]), tz="UTC"),
            float(old_v[idx[i]]),
            float(data.value[i]),
            unit,
        )
        for i in np.flatnonzero(differ)
    ]


def _store_intervals(
    session: Session, eq: Equipment, data: importing.ChannelData, source: str
) -> int:
    """Interval energy as imported and as readings spread over the ISPs of its periods."""
    from energy.readings import upsert_readings

    p0, p1, _ = importing.period_bounds(data.ts_ns, eq.interval or "")
    starts = pd.to_datetime(p0, unit="ns", utc=True)
    existing = {
        pd.Timestamp(t).as_unit("ns").value: v
        for t, v in session.execute(
            select(EnergyPeriodRecord.period_start, EnergyPeriodRecord.energy_wh).where(
                EnergyPeriodRecord.equipment_id == eq.id,
                EnergyPeriodRecord.period_start.in_([t.to_pydatetime() for t in starts]),
            )
        ).all()
    }
    new, changed = [], []
    for t0, t1, v in zip(p0, p1, data.value):
        row = {
            "equipment_id": eq.id,
            "period_start": pd.Timestamp(int(t0), tz="UTC").to_pydatetime(),
            "period_end": pd.Timestamp(int(t1), tz="UTC").to_pydatetime(),
            "energy_wh": float(v),
            "source": source[:300],
        }
        if int(t0) not in existing:
            new.append(row)
        elif not np.isclose(existing[int(t0)], v, rtol=1e-12, atol=1e-9):
            changed.append(row)
    if new:
        session.execute(insert(EnergyPeriodRecord), new)
    if changed:
        session.execute(update(EnergyPeriodRecord), changed)
    isp, e = importing.spread_over_isps(p0, p1, data.value)
    one_isp = np.repeat((p1 - p0) == ISP_NS, (p1 - p0) // ISP_NS)
    frame = pd.DataFrame(
        {
            "energy_wh": e,
            "power_mean_w": e * 4.0,
            # A reading of its own (a 15-minute value) counts as one sample; a share of a
            # longer period is estimated (no sample inside the ISP), as in spread counter gaps.
            "sample_count": one_isp.astype(np.int64),
            "coverage": np.ones(isp.size),
        },
        index=pd.to_datetime(isp, unit="ns", utc=True),
    )
    upsert_readings(session, eq.channel_id, frame)
    return len(new) + len(changed)


def _record_gaps(session: Session, store: SampleStore, eq: Equipment) -> list[str]:
    """Mark the counter gaps the pipeline spreads (longer than 2 h, up to the channel's
    ``max_gap_s``) in ``mk_spread_gaps``; a note on them and on longer gaps left out."""
    from energy.kernels import DEFAULT_MAX_GAP_NS

    s = store.read(eq.channel_id)
    session.execute(delete(SpreadGapRecord).where(SpreadGapRecord.equipment_id == eq.id))
    if len(s) < 2:
        return []
    ok = s.quality == 0
    ts, v = s.ts[ok], s.value[ok]
    dt_ns = np.diff(ts)
    max_gap_ns = int(eq.channel.max_gap_s or 0) * 1_000_000_000 or DEFAULT_MAX_GAP_NS
    spread = np.flatnonzero((dt_ns > DEFAULT_MAX_GAP_NS) & (dt_ns <= max_gap_ns))
    if spread.size:
        session.execute(
            insert(SpreadGapRecord),
            [
                {
                    "equipment_id": eq.id,
                    "gap_start": pd.Timestamp(int(ts[i]), tz="UTC").to_pydatetime(),
                    "gap_end": pd.Timestamp(int(ts[i + 1]), tz="UTC").to_pydatetime(),
                    "energy_wh": float(max(v[i + 1] - v[i], 0.0)),
                }
                for i in spread
            ],
        )
    notes = []
    if spread.size:
        hours = float(dt_ns[spread].sum()) / 3.6e12
        notes.append(
            f"{eq.name}: {spread.size} gap(s) between counter readings ({hours:,.1f} h) spread "
            "uniformly over their ISPs (estimated; listed by spread_gaps)"
        )
    if (long := int((dt_ns > max_gap_ns).sum())) > 0:
        notes.append(
            f"{eq.name}: {long} gap(s) longer than {max_gap_ns / 3.6e12:g} h not spread (no data)"
        )
    return notes


def estimated_share(session: Session, c: Campaign) -> dict[str, float]:
    """Per equipment, the share of its readings in the campaign that are estimated: energy
    spread into an ISP without a sample of its own (a counter gap, a day or month of interval
    energy). The coverage mark of spread data; 0 for data at 15 minutes or finer."""
    ids = {e.channel_id: e.name for e in c.equipment}
    df = read_readings(session, list(ids), c.start_at, c.end_at)
    out = dict.fromkeys(ids.values(), 0.0)
    if df.empty:
        return out
    spread = (df["sample_count"] == 0) & (df["coverage"] > 0)
    for cid, share in spread.groupby(df["channel_id"]).mean().items():
        out[ids[int(cid)]] = float(share)
    return out


def spread_gaps(session: Session, c: Campaign, equipment: str) -> pd.DataFrame:
    """The counter gaps of an equipment spread over their ISPs: ``start, end, energy_wh``."""
    eq = _equipment(c, equipment)
    rows = session.execute(
        select(SpreadGapRecord.gap_start, SpreadGapRecord.gap_end, SpreadGapRecord.energy_wh)
        .where(SpreadGapRecord.equipment_id == eq.id)
        .order_by(SpreadGapRecord.gap_start)
    ).all()
    return _period_frame(rows, ["start", "end", "energy_wh"])


def _period_frame(rows: Any, columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for col in columns[:2]:
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def _equipment(c: Campaign, name: str | None) -> Equipment:
    """An equipment of the campaign by name or channel key; None: the incomer."""
    if name is None:
        return next(e for e in c.equipment if e.role == "incomer")
    eq = _channel_names(c).get(name)
    if eq is None:
        raise NotFoundError(f"campaign {c.name!r} has no equipment {name!r}")
    return eq


def import_billing(
    session: Session,
    c: Campaign,
    path: Path,
    text: str | None = None,
    *,
    equipment: str | None = None,
    replace: bool = False,
    user: str | None = None,
) -> int:
    """Import bills or meter-reading periods (``start,end,value,unit``, energy) of an
    equipment (default the incomer) for the CalTRACK billing model; returns the periods new or
    changed. Mean power over each period is checked against :func:`plausible_range_w`; a
    period stored with another value needs ``replace`` (audit trail)."""
    eq = _equipment(c, equipment)
    df = importing.parse_billing(path, text)
    hours = (df["period_end"] - df["period_start"]).dt.total_seconds().to_numpy() / 3600.0
    data = importing.ChannelData(
        eq.name,
        "energy",
        np.zeros(0, np.int64),
        df["energy_wh"].to_numpy(),
        df["line"].to_numpy(),
        str(df["unit"].iloc[0]) if len(df) else "",
    )
    _, hi, why = plausible_range_w(c, eq)
    _file_error(
        path, _implausible(eq, data, data.value / hours, data.lines, (0.0, hi, why), "mean power")
    )
    existing = {
        pd.Timestamp(r.period_start): r
        for r in session.scalars(
            select(BillingPeriodRecord).where(BillingPeriodRecord.equipment_id == eq.id)
        )
    }
    changes, new = [], []
    for r in df.itertuples(index=False):
        kwh = float(r.energy_wh) / 1000.0
        old = existing.get(pd.Timestamp(r.period_start))
        if old is None:
            new.append(r)
        elif not np.isclose(old.energy_kwh, kwh) or pd.Timestamp(old.period_end) != r.period_end:
            changes.append(Change(eq.name, r.period_start, old.energy_kwh, kwh, "kWh"))
    _refuse_changes(path, changes, replace)
    _audit(session, c, "billing", changes, path, _user(user))
    for r in df.itertuples(index=False):
        session.merge(
            BillingPeriodRecord(
                equipment_id=eq.id,
                period_start=r.period_start.to_pydatetime(),
                period_end=r.period_end.to_pydatetime(),
                energy_kwh=float(r.energy_wh) / 1000.0,
                source=str(path)[:300],
            )
        )
    session.flush()
    return len(new) + len(changes)


def billing_periods(session: Session, c: Campaign, channel: str | None = None) -> pd.DataFrame:
    """The stored billing periods of an equipment (name or channel key; None: the incomer)
    as a DataFrame ``start, end`` (UTC) and ``kwh``, sorted by start: the input of the
    CalTRACK billing model."""
    eq = _equipment(c, channel)
    rows = session.execute(
        select(
            BillingPeriodRecord.period_start,
            BillingPeriodRecord.period_end,
            BillingPeriodRecord.energy_kwh,
        )
        .where(BillingPeriodRecord.equipment_id == eq.id)
        .order_by(BillingPeriodRecord.period_start)
    ).all()
    return _period_frame(rows, ["start", "end", "kwh"])


def import_production(
    session: Session,
    c: Campaign,
    path: Path,
    text: str | None = None,
    *,
    replace: bool = False,
    user: str | None = None,
) -> int:
    """Import production records; a record stored with other units or another end at the same
    period start needs ``replace`` (audit trail). Returns the records in the file."""
    df = importing.parse_production(path, text)
    existing = {
        pd.Timestamp(r.period_start): r
        for r in session.scalars(
            select(ProductionRecord).where(ProductionRecord.campaign_id == c.id)
        )
    }
    changes = []
    for r in df.itertuples(index=False):
        old = existing.get(pd.Timestamp(r.period_start))
        if old is not None and (
            not np.isclose(old.units, r.units) or pd.Timestamp(old.period_end) != r.period_end
        ):
            changes.append(Change("production", r.period_start, old.units, float(r.units), r.unit))
    _refuse_changes(path, changes, replace)
    _audit(session, c, "production", changes, path, _user(user))
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


def import_temperature(
    session: Session,
    c: Campaign,
    path: Path,
    text: str | None = None,
    *,
    replace: bool = False,
    user: str | None = None,
) -> int:
    """Import outdoor temperatures [degC]; a reading stored with another value at the same
    time needs ``replace`` (audit trail). Bulk inserts and updates (a year of hours in well
    under a second). Returns the readings in the file."""
    s = importing.parse_temperature(path, text)
    if s.empty:
        return 0
    stored = session.execute(
        select(TemperatureReading.ts, TemperatureReading.temp_c)
        .where(
            TemperatureReading.campaign_id == c.id,
            TemperatureReading.ts >= s.index[0].to_pydatetime(),
            TemperatureReading.ts <= s.index[-1].to_pydatetime(),
        )
        .order_by(TemperatureReading.ts)
    ).all()
    old = pd.Series(
        [r[1] for r in stored],
        index=pd.DatetimeIndex([r[0] for r in stored], tz="UTC"),
        dtype=float,
    )
    old.index = old.index.as_unit("ns")
    was = old.reindex(s.index.as_unit("ns")).to_numpy(float)
    vals = s.to_numpy(float)
    is_new = np.isnan(was)
    is_changed = ~is_new & (np.abs(was - vals) > 1e-9)
    stamps = s.index.to_pydatetime()
    changes = [
        Change("temperature", s.index[i], float(was[i]), float(vals[i]), "degC")
        for i in np.flatnonzero(is_changed)
    ]
    _refuse_changes(path, changes, replace)
    _audit(session, c, "temperature", changes, path, _user(user))
    table = TemperatureReading.__table__  # Core insert: no ORM objects per row

    def rows(sel: np.ndarray) -> list[dict[str, Any]]:
        return [{"campaign_id": c.id, "ts": stamps[i], "temp_c": float(vals[i])} for i in sel]

    if is_new.any():
        session.execute(insert(table), rows(np.flatnonzero(is_new)))  # type: ignore[arg-type]
    if is_changed.any():
        session.execute(update(TemperatureReading), rows(np.flatnonzero(is_changed)))
    session.flush()
    return len(s)


def import_audit(session: Session, c: Campaign) -> pd.DataFrame:
    """The campaign's audit trail of replaced values, oldest first."""
    rows = session.scalars(
        select(ImportAuditRecord)
        .where(ImportAuditRecord.campaign_id == c.id)
        .order_by(ImportAuditRecord.id)
    ).all()
    cols = [
        "target",
        "kind",
        "ts",
        "old_value",
        "new_value",
        "unit",
        "source",
        "user",
        "replaced_at",
    ]
    return pd.DataFrame([[getattr(r, k) for k in cols] for r in rows], columns=cols)


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
    production_unit: str = "unit"  # the unit of the production records (t, pieces, ...)

    @property
    def incomer_wh(self) -> pd.Series:
        return self.energy_wh[self.incomer]

    @property
    def submeters_wh(self) -> dict[str, pd.Series]:
        return {k: v for k, v in self.energy_wh.items() if k != self.incomer}


def _utc_series(times: list, values: list) -> pd.Series:
    """Float values indexed by UTC timestamps (an empty series when there are none)."""
    return pd.Series(values, index=pd.DatetimeIndex(times, tz="UTC"), dtype=float)


def load_series(
    session: Session,
    c: Campaign,
    min_coverage: float = 0.5,
    period: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> CampaignSeries:
    """Read a campaign's interval readings and drivers; ISPs below ``min_coverage`` are left out.

    ``period`` ``[from, to)`` (within the campaign) reads only that part.
    """
    start, end = c.start_at, c.end_at
    if period is not None:
        start = max(ensure_utc(period[0]), ensure_utc(c.start_at)).to_pydatetime()
        end = min(ensure_utc(period[1]), ensure_utc(c.end_at)).to_pydatetime()
    ids = {e.channel_id: e for e in c.equipment}
    df = read_readings(session, list(ids), start, end)
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
        .where(
            ProductionRecord.campaign_id == c.id,
            ProductionRecord.period_start >= start,
            ProductionRecord.period_start < end,
        )
        .order_by(ProductionRecord.period_start)
    ).all()
    production = _utc_series([p.period_start for p in prod], [p.units for p in prod])
    temps = session.scalars(
        select(TemperatureReading)
        .where(
            TemperatureReading.campaign_id == c.id,
            TemperatureReading.ts >= start,
            TemperatureReading.ts < end,
        )
        .order_by(TemperatureReading.ts)
    ).all()
    temp = _utc_series([t.ts for t in temps], [t.temp_c for t in temps])
    units = sorted({p.unit for p in prod})
    return CampaignSeries(
        incomer, energy, production, temp, coverage, production_unit="/".join(units) or "unit"
    )


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
    period: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> tuple[CampaignSeries, list[fi.Finding]]:
    """Run the findings on the stored readings and store them (replacing earlier ones).

    Every analysis that can run is stored; one that cannot (a 24/7 plant has no off-hours
    for a machine's standby, a campaign without production has no kWh per unit) is named
    with its reason in ``c.analysis["skipped"]``, with the period analysed and the totals.
    ``period`` ``[from, to)`` analyses a part of the campaign; ``series`` may be given when
    already loaded with :func:`load_series`.

    Raises
    ------
    ValidationError
        If the incomer has no interval data (in the period), or the period lies outside
        the campaign; nothing stored is changed then.
    """
    factors = factors or load_emission_factors()
    if period is not None:
        _check_period(c, period)
    series = series if series is not None else load_series(session, c, period=period)
    if series.incomer_wh.empty:
        raise ValidationError(
            f"campaign {c.name!r} has no interval data on its incomer {series.incomer!r}"
            + (" in the period asked" if period else "")
            + "; import samples and run aggregation first"
        )
    kg, _ = campaign_factor(c, factors)
    result = fi.run_all(
        series.incomer_wh,
        series.submeters_wh,
        hours_of(c),
        params_of(c, kg),
        series.production if not series.production.empty else None,
        series.production_unit,
    )
    found = result.findings
    session.execute(delete(FindingRecord).where(FindingRecord.campaign_id == c.id))
    for f in found:
        row = {k: getattr(f, k) for k in _FINDING_FIELDS}
        session.add(FindingRecord(campaign_id=c.id, **row, evidence=_jsonable(f.evidence)))
    start, end = period or (pd.Timestamp(c.start_at), pd.Timestamp(c.end_at))
    c.analysis = _jsonable(
        {
            "period": [ensure_utc(start).isoformat(), ensure_utc(end).isoformat()],
            "totals": result.totals(),
            "skipped": [
                {"analysis": k.analysis, "reason": k.reason, "equipment": k.equipment}
                for k in result.skipped
            ],
        }
    )
    c.analyzed_at = utc_now()
    session.flush()
    session.expire(c, ["findings"])
    return series, found


def _check_period(c: Campaign, period: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    """A part of the campaign: ``from < to``, both within the campaign period."""
    start, end = (ensure_utc(t) for t in period)
    c0, c1 = ensure_utc(c.start_at), ensure_utc(c.end_at)
    if end <= start:
        raise ValidationError(f"--to {end} must be after --from {start}", location="--to")
    if start >= c1 or end <= c0:
        raise ValidationError(
            f"the period {start} .. {end} lies outside campaign {c.name!r} ({c0} .. {c1})",
            location="--from/--to",
        )


def skipped_analyses(c: Campaign) -> list[fi.Skipped]:
    """The analyses of the latest :func:`analyze` that could not run, with their reasons."""
    return [
        fi.Skipped(str(k.get("analysis")), str(k.get("reason")), k.get("equipment"))
        for k in (c.analysis or {}).get("skipped", [])
    ]


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
    incomer = next(e.name for e in c.equipment if e.role == "incomer")
    temps = session.execute(  # every stored temperature: bills reach beyond the campaign
        select(TemperatureReading.ts, TemperatureReading.temp_c)
        .where(TemperatureReading.campaign_id == c.id)
        .order_by(TemperatureReading.ts)
    ).all()
    temp_c = _utc_series([t for t, _ in temps], [v for _, v in temps])
    if temp_c.empty:
        raise ValidationError(f"campaign {c.name!r} has no outdoor temperatures for the bills")
    try:
        rows = caltrack._billing_rows(periods, an.LOCAL_TZ)
        parts = []
        for (a, b), what in ((baseline, "baseline"), (reporting, "reporting")):
            sel = rows[(rows["start"] >= a) & (rows["start"] < b)]
            if sel.empty:
                raise ValueError(f"no bills start in the {what} period")
            parts.append(caltrack.billing_data(sel, temp_c))
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
    eq = next(e for e in c.equipment if e.name == incomer)
    request = _savings_request(
        baseline, reporting, "C", incomer, "caltrack_billing", "monthly", mv.RegressionSpec()
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
    session: Session,
    c: Campaign,
    verification_id: int,
    reason: str,
    by: str,
    actor: Actor | None = None,
) -> Verification:
    """Withdraw a verification of the campaign (reason and user recorded; never deleted).

    The withdrawal goes into the audit log (``verification.withdraw``, target
    ``<campaign>/verification <id>``) as ``actor`` (default: ``by`` on the command line),
    with the versions it withdraws; the reason and the free-text ``by`` stay with the
    verification only (the append-only log holds no free text that may name a person).
    Its versions stay readable and show as withdrawn.
    """
    v = vf.withdraw(session, verification_of(session, c, verification_id), reason, by)
    record(
        session,
        actor or Actor(v.withdrawn_by or by, "cli"),
        "verification.withdraw",
        f"{c.name}/verification {v.id}",
        {"verification_id": v.id, "versions": [r.version for r in v.versions]},
    )
    return v


def campaign_meta(c: Campaign) -> dict[str, Any]:
    """The heading of a campaign report; ``analysed`` is the part of the campaign the stored
    findings rest on (``None`` for the whole campaign)."""
    analysed = None
    if c.analysis and c.analysis.get("period"):
        a, b = (ensure_utc(t) for t in c.analysis["period"])
        if (a, b) != (ensure_utc(c.start_at), ensure_utc(c.end_at)):
            analysed = (a.to_pydatetime(), b.to_pydatetime())
    return {
        "name": c.name,
        "display_name": c.display_name,
        "site": c.site.display_name,
        "start": c.start_at,
        "end": c.end_at,
        "analysed": analysed,
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
    period: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> Any:
    """The campaign report (:class:`meetkoffer.report.Report`) from stored readings.

    ``reanalyze=True`` runs and stores the findings first (the CLI; ``period`` analyses a
    part of the campaign); otherwise the stored findings are shown on the period they were
    found on (a page served by the API).

    Raises
    ------
    ValidationError
        If the campaign has no interval data on its incomer.
    """
    from meetkoffer.report import campaign_report

    factors = factors or load_emission_factors()
    if reanalyze:
        series, found = analyze(session, c, factors, period=period)
    else:  # the stored findings, on the period they were found on
        a = (c.analysis or {}).get("period")
        stored = (ensure_utc(a[0]), ensure_utc(a[1])) if a else None
        series = load_series(session, c, period=stored)
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
        skipped=skipped_analyses(c),
        production_unit=series.production_unit,
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
