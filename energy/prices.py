"""Price series per ISP in the store (day-ahead market prices, all-in site tariffs).

A series is named (``epex-nl-day-ahead``, ``dorpshuis-import``, …) and holds one price per
15-minute ISP in ``EUR/kWh`` (negative prices allowed). Prices are imported from CSV with the
columns ``timestamp`` (ISP start, ISO 8601 with offset) and ``price_eur_per_kwh``; a file with a
bad row is refused whole, naming the line, and re-importing the same file changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd
from sqlalchemy import Numeric, String, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.db import Base, UTCDateTime
from energy.errors import ValidationError
from energy.timegrid import ISP_NS, ensure_utc

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
