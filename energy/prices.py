"""Price series per ISP in the store (day-ahead market prices, all-in site tariffs).

A series is named (``epex-nl-day-ahead``, ``dorpshuis-import``, …) and holds one price per
15-minute ISP in ``EUR/kWh`` (negative prices allowed). Prices are imported from CSV with the
columns ``timestamp`` (ISP start, ISO 8601 with offset) and ``price_eur_per_kwh``; a file with a
bad row is refused whole, naming the line, and re-importing the same file changes nothing.

Day-ahead prices are also fetched from the ENTSO-E Transparency Platform
(:func:`fetch_day_ahead`, ``noaber prices fetch --zone NL --day D``) through ``entsoe-py``'s raw
client and price parser: one local day of a bidding zone (92, 96 or 100 ISPs), PT15M or PT60M
products (an hourly price holds for its four ISPs), EUR/MWh stored as EUR/kWh.
:func:`compare_prices` and :func:`store_new_prices` keep what is stored: a price that differs
from the stored one for the same ISP is reported and kept unless the caller replaces it on
purpose (an audited correction), for a fetch and a CSV import alike.

A plan's horizon often reaches past the prices known (the day-ahead auction publishes the
next day's prices around 12:45 local): :func:`fill_unknown_prices` gives every step a price,
the known one where there is one and the last known week's shape beyond, and says so.
"""

from __future__ import annotations

import csv
import datetime as dt
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from bs4 import XMLParsedAsHTMLWarning
from defusedxml.ElementTree import fromstring as parse_xml
from entsoe import EntsoeRawClient
from entsoe.exceptions import NoMatchingDataError
from entsoe.mappings import lookup_area
from entsoe.parsers import parse_prices
from sqlalchemy import Numeric, String, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.db import Base, UTCDateTime
from energy.errors import NoaberError, ValidationError
from energy.timegrid import ISP_NS, LOCAL_TZ, ensure_utc, floor_isp

SERIES_MAX_LEN = 100
#: Prices beyond this magnitude are refused as typos (EUR/MWh given as EUR/kWh, say).
PRICE_LIMIT_EUR_PER_KWH = Decimal("10")


class PricePoint(Base):
    """One price of a series for one ISP (``isp_start`` in UTC)."""

    __tablename__ = "price_points"

    series: Mapped[str] = mapped_column(String(SERIES_MAX_LEN), primary_key=True)
    isp_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    price_eur_per_kwh: Mapped[Decimal] = mapped_column(Numeric(12, 6))


def parse_price_csv(path: Path | str) -> pd.Series:
    """Read and validate a price CSV; returns Decimal prices indexed by UTC ISP start.

    Raises
    ------
    ValidationError
        Naming the file and line: a missing column, a timestamp without offset or off the ISP
        grid, a duplicate ISP, a price that is not a number or beyond +/-10 EUR/kWh.
    """
    path = Path(path)
    source = str(path)
    try:
        fh = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError("file not found", source) from None
    with fh:
        reader = csv.DictReader(fh)
        need = {"timestamp", "price_eur_per_kwh"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValidationError(
                f"columns must include timestamp and price_eur_per_kwh, got {reader.fieldnames}",
                source,
                "line 1",
            )
        index: list[pd.Timestamp] = []
        values: list[Decimal] = []
        seen: dict[int, int] = {}
        for row in reader:
            line = reader.line_num
            where = f"line {line}"
            try:
                ts = ensure_utc(row["timestamp"])
            except (ValueError, TypeError) as exc:
                raise ValidationError(
                    f"timestamp {row['timestamp']!r}: {exc}", source, where
                ) from None
            if ts.value % ISP_NS:
                raise ValidationError(
                    f"timestamp {row['timestamp']!r} is not the start of a 15-minute ISP",
                    source,
                    where,
                )
            if ts.value in seen:
                raise ValidationError(
                    f"ISP {ts.isoformat()} also on line {seen[ts.value]}", source, where
                )
            seen[ts.value] = line
            raw = (row["price_eur_per_kwh"] or "").strip()
            try:
                price = Decimal(raw)
            except InvalidOperation:
                raise ValidationError(
                    f"price_eur_per_kwh {raw!r} is not a number", source, where
                ) from None
            if not price.is_finite() or abs(price) > PRICE_LIMIT_EUR_PER_KWH:
                raise ValidationError(
                    f"price_eur_per_kwh {raw} is outside +/-{PRICE_LIMIT_EUR_PER_KWH} EUR/kWh "
                    "(a price in EUR/MWh?)",
                    source,
                    where,
                )
            index.append(ts)
            values.append(price)
    if not index:
        raise ValidationError("no price rows", source)
    return pd.Series(
        values, index=pd.DatetimeIndex(index).as_unit("ns"), name="price_eur_per_kwh"
    ).sort_index()


def _check_series(series: str) -> str:
    if (
        not series
        or len(series) > SERIES_MAX_LEN
        or not series.replace("-", "").replace("_", "").isalnum()
    ):
        raise ValidationError(
            f"series name must be letters, digits, '-' or '_' (max 100), got {series!r}"
        )
    return series


def store_prices(session: Session, series: str, prices: pd.Series) -> int:
    """Insert or replace prices of a series (idempotent); returns the number of ISPs written."""
    _check_series(series)
    rows = [
        {"series": series, "isp_start": ts.to_pydatetime(), "price_eur_per_kwh": Decimal(str(v))}
        for ts, v in prices.items()
    ]
    if not rows:
        return 0
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(PricePoint)
    stmt = stmt.on_conflict_do_update(
        index_elements=["series", "isp_start"],
        set_={"price_eur_per_kwh": stmt.excluded.price_eur_per_kwh},
    )
    session.execute(stmt, rows)
    return len(rows)


def read_prices(
    session: Session, series: str, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> pd.Series:
    """Prices of a series in ``[start, end)`` as float EUR/kWh indexed by UTC ISP start."""
    q = select(PricePoint.isp_start, PricePoint.price_eur_per_kwh).where(
        PricePoint.series == series
    )
    if start is not None:
        q = q.where(PricePoint.isp_start >= start)
    if end is not None:
        q = q.where(PricePoint.isp_start < end)
    rows = session.execute(q.order_by(PricePoint.isp_start)).all()
    index = pd.DatetimeIndex([r[0] for r in rows], tz="UTC").as_unit("ns")
    return pd.Series(
        [float(r[1]) for r in rows], index=index, name="price_eur_per_kwh", dtype=float
    )


def list_series(session: Session) -> list[tuple[str, int, dt.datetime, dt.datetime]]:
    """``(series, ISPs, first, last)`` of every stored series."""
    q = select(
        PricePoint.series,
        func.count(),
        func.min(PricePoint.isp_start),
        func.max(PricePoint.isp_start),
    ).group_by(PricePoint.series)
    return [(s, int(n), a, b) for s, n, a, b in session.execute(q)]


@dataclass(frozen=True)
class PriceChange:
    """A stored price and the different one offered for the same ISP."""

    isp_start: pd.Timestamp
    stored_eur_per_kwh: Decimal
    offered_eur_per_kwh: Decimal


@dataclass(frozen=True)
class PriceDiff:
    """What writing ``prices`` to a series would do: new ISPs, unchanged ones, changed ones."""

    new: pd.Series
    unchanged: int
    changed: list[PriceChange] = field(default_factory=list)

    def changed_text(self, tz: str = LOCAL_TZ, shown: int = 3) -> str:
        """The changed prices in words (the first ``shown``), for a report line."""
        parts = [
            f"{c.isp_start.tz_convert(tz):%d-%m-%Y %H:%M}: stored {c.stored_eur_per_kwh}, "
            f"now {c.offered_eur_per_kwh} EUR/kWh"
            for c in self.changed[:shown]
        ]
        more = f" and {len(self.changed) - shown} more" if len(self.changed) > shown else ""
        return "; ".join(parts) + more


def _as_decimal(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def compare_prices(session: Session, series: str, prices: pd.Series) -> PriceDiff:
    """Compare ``prices`` (by UTC ISP start) with what the series holds for the same ISPs."""
    _check_series(series)
    if prices.empty:
        return PriceDiff(prices, 0, [])
    stored: dict[pd.Timestamp, Decimal] = {}
    q = select(PricePoint.isp_start, PricePoint.price_eur_per_kwh).where(
        PricePoint.series == series,
        PricePoint.isp_start >= prices.index.min().to_pydatetime(),
        PricePoint.isp_start <= prices.index.max().to_pydatetime(),
    )
    for ts, price in session.execute(q):
        stored[pd.Timestamp(ts).tz_convert("UTC")] = Decimal(price)
    new_mask = []
    unchanged = 0
    changed: list[PriceChange] = []
    for ts, value in prices.items():
        offered = _as_decimal(value)
        key = pd.Timestamp(ts).tz_convert("UTC")
        old = stored.get(key)
        new_mask.append(old is None)
        if old is None:
            continue
        if old == offered:
            unchanged += 1
        else:
            changed.append(PriceChange(key, old, offered))
    return PriceDiff(prices[np.array(new_mask, bool)], unchanged, changed)


def store_new_prices(
    session: Session, series: str, prices: pd.Series, replace_changed: bool = False
) -> PriceDiff:
    """Store the ISPs of ``prices`` the series does not hold; a different price for a stored
    ISP is left as it is (and returned in ``changed``) unless ``replace_changed``.

    Re-storing the same prices changes nothing. The caller records a replacement in the audit
    log (``noaber prices import/fetch --replace``).
    """
    diff = compare_prices(session, series, prices)
    store_prices(session, series, diff.new)
    if replace_changed and diff.changed:
        replaced = pd.Series(
            [c.offered_eur_per_kwh for c in diff.changed],
            index=pd.DatetimeIndex([c.isp_start for c in diff.changed]),
        )
        store_prices(session, series, replaced)
    return diff


# ----------------------------------------------------------------------------- ENTSO-E


def entsoe_area(zone: str) -> tuple[str, str]:
    """The EIC code and time zone of a bidding zone (``NL`` -> ``10YNL----------L``).

    Raises
    ------
    ValidationError
        For a zone entsoe-py does not know.
    """
    try:
        area = lookup_area(zone.strip().upper())
    except (ValueError, KeyError):
        raise ValidationError(
            f"--zone {zone!r} is not an ENTSO-E area (e.g. NL, BE, DE_LU)"
        ) from None
    return area.code, area.tz


def day_interval(day: dt.date, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` in UTC of the local day ``day`` (23, 24 or 25 hours)."""
    start = pd.Timestamp(day).tz_localize(tz)
    end = pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(tz)
    return start.tz_convert("UTC"), end.tz_convert("UTC")


class NoPricesPublished(NoaberError):
    """ENTSO-E answered with an acknowledgement: no prices (yet) for the day asked."""


@dataclass(frozen=True)
class DayAheadPrices:
    """One local day of day-ahead prices of a bidding zone, as fetched.

    ``prices`` are Decimal EUR/kWh by UTC ISP start (every ISP of the day);
    ``resolutions`` the products found (``PT15M``, ``PT60M``); ``document`` the publication's
    ``mRID``, ``revision`` its ``revisionNumber`` and ``created`` its ``createdDateTime``.
    """

    zone: str
    area_code: str
    day: dt.date
    prices: pd.Series
    resolutions: tuple[str, ...]
    document: str | None
    revision: str | None
    created: str | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


_RESOLUTION_ISPS = {"PT15M": 1, "PT30M": 2, "PT60M": 4}
_PANDAS_RESOLUTION = {"15min": "PT15M", "30min": "PT30M", "60min": "PT60M"}


def parse_day_ahead_xml(
    xml_text: str, zone: str, day: dt.date, source: str = "ENTSO-E"
) -> DayAheadPrices:
    """The prices of the local ``day`` in a Publication_MarketDocument (document type A44).

    The values come from ``entsoe.parsers.parse_prices`` (which fills the positions a curve
    type A03 omits with the previous price); this function checks the document first (type,
    bidding zone, EUR per MWH, resolution) and then that every ISP of the day has a price. A
    PT60M (or PT30M) price holds for each of its ISPs; where a document has a PT15M price for
    an ISP it wins.

    Raises
    ------
    NoPricesPublished
        For an Acknowledgement_MarketDocument (with its reason text).
    ValidationError
        Naming ``source`` and what is wrong: not XML, another document type, zone or unit, a
        resolution not PT15M/PT30M/PT60M, an ISP of the day without a price.
    """
    area_code, tz = entsoe_area(zone)
    try:
        root = parse_xml(xml_text)
    except ET.ParseError as exc:
        raise ValidationError(f"the answer is not XML: {exc}", source) from None
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        reasons = [
            f"{_child_text(r, 'code') or '?'}: {_child_text(r, 'text') or ''}".strip()
            for r in root
            if _local(r.tag) == "Reason"
        ]
        raise NoPricesPublished(
            f"ENTSO-E has no day-ahead prices for {zone} on {day.isoformat()} "
            f"({'; '.join(reasons) or 'acknowledgement without a reason'}); the auction "
            "publishes the next day's prices around 12:45 local time"
        )
    if kind != "Publication_MarketDocument" or _child_text(root, "type") not in {None, "A44"}:
        raise ValidationError(
            f"expected a Publication_MarketDocument of type A44 (day-ahead prices), got {kind} "
            f"type {_child_text(root, 'type')}",
            source,
        )
    resolutions: set[str] = set()
    for i, ts in enumerate(e for e in root if _local(e.tag) == "TimeSeries"):
        where = f"TimeSeries[{i}]"
        for name, want in (
            ("in_Domain.mRID", area_code),
            ("currency_Unit.name", "EUR"),
            ("price_Measure_Unit.name", "MWH"),
        ):
            got = _child_text(ts, name)
            if got is not None and got != want:
                raise ValidationError(f"{name} is {got!r}, expected {want!r}", source, where)
        for period in (e for e in ts if _local(e.tag) == "Period"):
            res = _child_text(period, "resolution")
            if res not in _RESOLUTION_ISPS:
                raise ValidationError(
                    f"resolution {res!r} is not one of PT15M, PT30M, PT60M", source, where
                )
            resolutions.add(res)
    start, end = day_interval(day, tz)
    isps = pd.date_range(start, end, freq="15min", inclusive="left").as_unit("ns")
    try:
        with warnings.catch_warnings():  # entsoe-py reads XML with bs4's HTML parser on purpose
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            parsed = parse_prices(xml_text)
    except (AttributeError, ValueError, TypeError) as exc:
        raise ValidationError(f"the price document does not parse: {exc}", source) from None
    values = pd.Series(np.nan, index=isps)
    chosen: set[str] = set()
    # coarse first, so that a finer product overwrites it where both exist
    for key in ("60min", "30min", "15min"):
        got = parsed.get(key)
        if got is None or len(got) == 0:
            continue
        got = got.copy()
        got.index = pd.DatetimeIndex(got.index).tz_convert("UTC").as_unit("ns")
        got = got[~got.index.duplicated(keep="last")]
        n = _RESOLUTION_ISPS[_PANDAS_RESOLUTION[key]]
        for k in range(n):
            shifted = got.copy()
            shifted.index = shifted.index + pd.Timedelta(minutes=15 * k)
            inside = shifted[(shifted.index >= start) & (shifted.index < end)]
            if len(inside):
                values.loc[inside.index] = inside.to_numpy(float)
                chosen.add(_PANDAS_RESOLUTION[key])
    missing = values.index[~np.isfinite(values.to_numpy(float))]
    if len(missing):
        first = missing[0].tz_convert(tz)
        raise ValidationError(
            f"no price for {len(missing)} of the {len(isps)} ISPs of {day.isoformat()} "
            f"(first {first:%d-%m-%Y %H:%M} local); nothing stored",
            source,
        )
    per_kwh = [
        (Decimal(repr(float(v))) / 1000).quantize(Decimal("0.000001")) for v in values.to_numpy()
    ]
    for ts, p in zip(values.index, per_kwh, strict=True):
        if abs(p) > PRICE_LIMIT_EUR_PER_KWH:
            raise ValidationError(
                f"price {p} EUR/kWh at {ts.isoformat()} is outside +/-{PRICE_LIMIT_EUR_PER_KWH}",
                source,
            )
    return DayAheadPrices(
        zone=zone.upper(),
        area_code=area_code,
        day=day,
        prices=pd.Series(per_kwh, index=values.index, name="price_eur_per_kwh"),
        resolutions=tuple(sorted(chosen or resolutions)),
        document=_child_text(root, "mRID"),
        revision=_child_text(root, "revisionNumber"),
        created=_child_text(root, "createdDateTime"),
    )


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def fetch_day_ahead(
    token: str,
    zone: str,
    day: dt.date,
    session: object | None = None,
    timeout_s: float = 60.0,
    retry_count: int = 3,
    retry_delay_s: int = 10,
) -> DayAheadPrices:
    """Fetch and parse one local day of day-ahead prices from ENTSO-E.

    ``session`` is the ``requests.Session`` entsoe-py's :class:`EntsoeRawClient` sends through
    (tests mount an adapter that serves recorded answers); the token never appears in an error.

    Raises
    ------
    NoPricesPublished
        When ENTSO-E has no prices for the day (not yet published, or a zone without them).
    NoaberError
        For an HTTP error (with ENTSO-E's reason text, e.g. an invalid token) or no connection.
    ValidationError
        For an answer that is not a complete day of prices (see :func:`parse_day_ahead_xml`).

    References
    ----------
    ENTSO-E Transparency Platform RESTful API guide, 4.2.10 Day-ahead prices [12.1.D]
    (documentType A44); the response covers the whole day in the zone's time zone.
    """
    if not token:
        raise NoaberError(
            "no ENTSO-E token: set NOABER_ENTSOE_TOKEN (request one from the Transparency "
            "Platform, 'Web API Security Token')"
        )
    area_code, tz = entsoe_area(zone)
    start, end = day_interval(day, tz)
    client = EntsoeRawClient(
        api_key=token,
        session=session,  # type: ignore[arg-type]
        retry_count=retry_count,
        retry_delay=retry_delay_s,
        timeout=timeout_s,  # type: ignore[arg-type]
    )
    try:
        with warnings.catch_warnings():  # entsoe-py reads error answers with bs4's HTML parser
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            text = client.query_day_ahead_prices(area_code, start=start, end=end)
    except NoMatchingDataError:
        raise NoPricesPublished(
            f"ENTSO-E has no day-ahead prices for {zone} on {day.isoformat()} (No matching "
            "data found); the auction publishes the next day's prices around 12:45 local time"
        ) from None
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        reason = ""
        if exc.response is not None:
            try:
                ack = parse_xml(exc.response.text)
                reason = " ".join(
                    t.text or "" for t in ack.iter() if _local(t.tag) == "text"
                ).strip()
            except ET.ParseError:
                reason = exc.response.text[:200]
        raise NoaberError(
            _redact(f"ENTSO-E answered HTTP {status}: {reason or 'no reason given'}", token)
        ) from None
    except requests.RequestException as exc:
        raise NoaberError(_redact(f"ENTSO-E not reachable: {exc}", token)) from None
    return parse_day_ahead_xml(text, zone, day, source=f"ENTSO-E {area_code} {day.isoformat()}")


def entsoe_series_name(zone: str) -> str:
    """The default series of a zone's fetched day-ahead prices (``entsoe-nl-day-ahead``)."""
    return f"entsoe-{zone.strip().lower().replace('_', '-')}-day-ahead"


# ----------------------------------------------------------------------------- horizon

#: When the day-ahead auction's prices for the next local day are published (EPEX/SDAC results
#: around 12:45-13:00 CET; docs/ARCHITECTURE.md): before this, tomorrow's prices are unknown.
DAY_AHEAD_PUBLISHED_LOCAL = dt.time(12, 45)
#: How many weeks back :func:`fill_unknown_prices` looks for the same local time of week.
FALLBACK_WEEKS = 4


def day_ahead_known_until(
    now: dt.datetime | pd.Timestamp,
    tz: str = LOCAL_TZ,
    published: dt.time = DAY_AHEAD_PUBLISHED_LOCAL,
) -> pd.Timestamp:
    """The end (UTC, exclusive) of the day-ahead prices known at ``now``.

    The end of today local before ``published``, the end of tomorrow local from then on, so a
    23- or 25-hour local day counts in full.
    """
    local = pd.Timestamp(now).tz_convert(tz)
    days = 2 if local.time() >= published else 1
    midnight = local.tz_localize(None).normalize() + pd.Timedelta(days=days)
    return midnight.tz_localize(tz).tz_convert("UTC")


@dataclass(frozen=True)
class HorizonPrices:
    """Prices for every step of a horizon, known where ``known`` and a stated fallback elsewhere.

    ``fallback`` says, in one sentence, which steps took which fallback (None: all known);
    ``known_until`` is the start (UTC) of the first step without a known price (None: all
    known). :meth:`as_meta` is what a scenario's meta records of it.
    """

    values: np.ndarray
    known: np.ndarray
    fallback: str | None
    known_until: pd.Timestamp | None = None

    def as_meta(self, series: str) -> dict[str, object]:
        """``{series, known_steps, fallback_steps, known_until}`` for a scenario's meta."""
        return {
            "series": series,
            "known_steps": int(self.known.sum()),
            "fallback_steps": int((~self.known).sum()),
            "known_until": None if self.known_until is None else self.known_until.isoformat(),
        }


def _week_before(index: pd.DatetimeIndex, weeks: int, tz: str) -> pd.DatetimeIndex:
    """The same local wall time ``weeks`` weeks earlier (UTC), for each step of ``index``.

    Wall time, not UTC: across a DST change the evening peak stays the evening peak. A wall
    time that does not exist then (the skipped hour) moves forward; a doubled one takes the
    first occurrence.
    """
    wall = index.tz_convert(tz).tz_localize(None) - pd.Timedelta(days=7 * weeks)
    back = wall.tz_localize(tz, ambiguous=np.ones(len(wall), bool), nonexistent="shift_forward")
    return back.tz_convert("UTC")


def fill_unknown_prices(
    known: pd.Series,
    index: pd.DatetimeIndex,
    tz: str = LOCAL_TZ,
    known_until: pd.Timestamp | None = None,
    name: str = "prices",
) -> HorizonPrices:
    """Prices per step of ``index``: the known price of the ISP a step starts in, else the
    last known week's shape (the price at the same local time of week one week earlier, or
    two, up to :data:`FALLBACK_WEEKS`), taken only from known prices.

    ``known`` holds float prices by UTC ISP start; prices at or after ``known_until`` are not
    treated as known (a replay that holds the whole month must not see tomorrow's day-ahead
    prices at 06:00).

    Raises
    ------
    ValidationError
        If a step has neither a known price nor one in the weeks before (nothing to fall back
        on: a broken input, named with the series and step).
    """
    known = known.dropna()
    if known_until is not None:
        known = known[known.index < known_until]
    isp = pd.DatetimeIndex(floor_isp(pd.DatetimeIndex(index).as_unit("ns")))
    values = np.array(known.reindex(isp).to_numpy(float), float)  # a copy: filled below
    is_known = np.isfinite(values)
    used_weeks: dict[int, int] = {}
    for weeks in range(1, FALLBACK_WEEKS + 1):
        missing = np.flatnonzero(~np.isfinite(values))
        if not len(missing):
            break
        src = pd.DatetimeIndex(floor_isp(_week_before(isp[missing], weeks, tz)))
        got = known.reindex(src).to_numpy(float)
        ok = np.isfinite(got)
        values[missing[ok]] = got[ok]
        if ok.any():
            used_weeks[weeks] = int(ok.sum())
    missing = np.flatnonzero(~np.isfinite(values))
    if len(missing):
        raise ValidationError(
            f"no price for {isp[missing[0]].isoformat()} and none at the same local time in the "
            f"{FALLBACK_WEEKS} weeks before to fall back on ({len(missing)} of {len(index)} steps); "
            f"noaber prices import {name} FILE",
            f"store:{name}",
        )
    note = None
    first_unknown = None
    if not is_known.all():
        first_unknown = pd.Timestamp(index[int(np.flatnonzero(~is_known)[0])]).tz_convert("UTC")
    if used_weeks:
        first = isp[int(np.flatnonzero(~is_known)[0])].tz_convert(tz)
        parts = ", ".join(
            f"{n} step(s) from {w} week(s) before" for w, n in sorted(used_weeks.items())
        )
        note = (
            f"{name}: prices known until {first:%d-%m-%Y %H:%M}; beyond that the last known "
            f"week's shape (the same local time of week): {parts}"
        )
    return HorizonPrices(values, is_known, note, first_unknown)


def read_horizon_prices(
    session: Session,
    series: str,
    index: pd.DatetimeIndex,
    tz: str = LOCAL_TZ,
    known_until: pd.Timestamp | None = None,
) -> HorizonPrices:
    """:func:`fill_unknown_prices` on a stored series (reads the horizon and the weeks before)."""
    start = (index[0] - pd.Timedelta(days=7 * FALLBACK_WEEKS + 1)).to_pydatetime()
    end = (index[-1] + pd.Timedelta(hours=1)).to_pydatetime()
    return fill_unknown_prices(
        read_prices(session, series, start, end), index, tz, known_until, series
    )
