"""Price series per ISP in the store (day-ahead market prices, all-in site tariffs).

A series is named (``epex-nl-day-ahead``, ``dorpshuis-import``, …) and holds one price per
15-minute ISP in ``EUR/kWh`` (negative prices allowed). Prices are imported from CSV with the
columns ``timestamp`` (ISP start, ISO 8601 with offset) and ``price_eur_per_kwh``; a file with a
bad row is refused whole, naming the line, and re-importing the same file changes nothing.

A plan's horizon often reaches past the prices known (the day-ahead auction publishes the
next day's prices around 12:45 local): :func:`fill_unknown_prices` gives every step a price,
the known one where there is one and the last known week's shape beyond, and says so.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Numeric, String, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.db import Base, UTCDateTime
from energy.errors import ValidationError
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

    ``fallback`` says, in one sentence, which steps took which fallback (None: all known).
    """

    values: np.ndarray
    known: np.ndarray
    fallback: str | None


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
    if used_weeks:
        first = isp[int(np.flatnonzero(~is_known)[0])].tz_convert(tz)
        parts = ", ".join(
            f"{n} step(s) from {w} week(s) before" for w, n in sorted(used_weeks.items())
        )
        note = (
            f"{name}: prices known until {first:%d-%m-%Y %H:%M}; beyond that the last known "
            f"week's shape (the same local time of week): {parts}"
        )
    return HorizonPrices(values, is_known, note)


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
