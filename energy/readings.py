"""Interval readings (per channel per ISP) in SQL: idempotent upsert and reads as DataFrames."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import event, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from energy.models import Channel, IntervalReading
from energy.timegrid import ISP_NS

READING_COLUMNS = (
    "energy_wh",
    "power_mean_w",
    "power_min_w",
    "power_max_w",
    "sample_count",
    "coverage",
    "value_last",
)
"""Columns of a reading besides ``channel_id, isp_start``; ``value_last`` is the last valid
sample in the ISP (NULL for counters and derived channels)."""


def _check(channel_id: int, frame: pd.DataFrame) -> None:
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
        raise ValueError(
            f"channel {channel_id}: readings need a timezone-aware DatetimeIndex of ISP starts"
        )
    off = frame.index.as_unit("ns").asi8 % ISP_NS
    if off.any():
        bad = frame.index[np.flatnonzero(off)[0]]
        raise ValueError(f"channel {channel_id}: {bad.isoformat()} is not the start of an ISP")
    missing = [c for c in ("energy_wh", "sample_count", "coverage") if c not in frame.columns]
    if missing:
        raise ValueError(f"channel {channel_id}: readings lack column(s) {', '.join(missing)}")
    cov = frame["coverage"].to_numpy(dtype=float)
    if ((cov < 0) | (cov > 1) | np.isnan(cov)).any():
        raise ValueError(f"channel {channel_id}: coverage must lie in [0, 1]")


#: ``Session.info`` key of the channels whose readings the session's transaction changed.
_CHANGED_KEY = "energy.readings.changed_channels"


def readings_changed(session: Session, channel_id: int) -> None:
    """Note that this transaction wrote or deleted readings of ``channel_id``: its
    ``channels.readings_version`` grows by one when the transaction commits.

    The bump waits for the commit, in one ``UPDATE`` of all noted channels in id order, so a
    writer holds the channel rows' locks only while committing (concurrent ingest workers do
    not queue behind each other for a whole transaction, nor deadlock over the order).
    """
    session.info.setdefault(_CHANGED_KEY, set()).add(int(channel_id))


@event.listens_for(Session, "before_commit")
def _bump_readings_versions(session: Session) -> None:
    changed = session.info.pop(_CHANGED_KEY, None)
    if changed:
        session.execute(
            update(Channel)
            .where(Channel.id.in_(sorted(changed)))
            .values(readings_version=Channel.readings_version + 1)
            .execution_options(synchronize_session=False)
        )


@event.listens_for(Session, "after_rollback")
def _forget_readings_changes(session: Session) -> None:
    session.info.pop(_CHANGED_KEY, None)


def readings_versions(session: Session, channel_ids: Sequence[int]) -> dict[int, int]:
    """``channels.readings_version`` of each channel (see :func:`readings_changed`)."""
    if not channel_ids:
        return {}
    return dict(
        session.execute(
            select(Channel.id, Channel.readings_version).where(Channel.id.in_(list(channel_ids)))
        ).all()
    )


def upsert_readings(session: Session, channel_id: int, frame: pd.DataFrame) -> int:
    """Insert or replace the readings of one channel, indexed by ISP start (UTC).

    Writing the same readings again leaves the table as it was (idempotent). Returns the
    number of rows written.

    One ``INSERT ... ON CONFLICT DO UPDATE`` compiled once by SQLAlchemy and sent as one
    DBAPI ``executemany`` with the parameters prepared column-wise (no per-row ORM or type
    processing): ``isp_start`` as SQLAlchemy's own bind value of :class:`energy.db.UTCDateTime`
    on the backend (SQLite: its ``DATETIME`` text, PostgreSQL: a naive UTC datetime), so the
    stored rows are the same as through the ORM.
    """
    if frame.empty:
        return 0
    _check(channel_id, frame)
    n = len(frame)
    dialect = session.get_bind().dialect
    starts = frame.index.tz_convert("UTC").as_unit("us").asi8.astype("datetime64[us]")
    columns: dict[str, list[Any]] = {
        "channel_id": [channel_id] * n,
        "isp_start": _isp_bind_values(starts, dialect.name),
    }
    for col in READING_COLUMNS:
        if col not in frame.columns:
            columns[col] = [None] * n
            continue
        values = frame[col].to_numpy(dtype=float)
        if col == "sample_count":
            columns[col] = np.nan_to_num(values, nan=0.0).astype(np.int64).tolist()
        elif col == "energy_wh":
            columns[col] = np.nan_to_num(values, nan=0.0).tolist()
        else:
            obj = values.astype(object)
            obj[np.isnan(values)] = None
            columns[col] = obj.tolist()
    insert = pg_insert if dialect.name == "postgresql" else sqlite_insert
    stmt = insert(IntervalReading)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel_id", "isp_start"],
        set_={c: getattr(stmt.excluded, c) for c in READING_COLUMNS},
    )
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    if compiled.positional:  # qmark (SQLite): tuples in the compiled order
        order = [columns[k] for k in compiled.positiontup or ()]
        params: list[Any] = list(zip(*order, strict=True))
    else:  # named (psycopg's pyformat)
        keys = list(columns)
        params = [dict(zip(keys, row, strict=True)) for row in zip(*columns.values())]
    session.flush()  # pending ORM changes go first, as with session.execute
    session.connection().exec_driver_sql(compiled.string, params)
    readings_changed(session, channel_id)
    return n


def _isp_bind_values(starts_us: np.ndarray, dialect: str) -> list[Any]:
    """``isp_start`` values as the backend stores :class:`energy.db.UTCDateTime` (naive UTC).

    SQLite: the text SQLAlchemy's ``DATETIME`` writes (``YYYY-MM-DD HH:MM:SS.ffffff``);
    otherwise naive ``datetime`` objects (the driver adapts them to ``timestamp``).
    """
    if dialect == "sqlite":
        return np.char.replace(np.datetime_as_string(starts_us, unit="us"), "T", " ").tolist()
    return starts_us.astype(object).tolist()


def read_readings(
    session: Session,
    channel_ids: Sequence[int] | int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pd.DataFrame:
    """Readings of one or more channels in ``[start, end)`` as a long DataFrame.

    Columns: ``channel_id, isp_start`` (UTC) and :data:`READING_COLUMNS`.
    """
    ids = [channel_ids] if isinstance(channel_ids, int) else list(channel_ids)
    cols = [IntervalReading.channel_id, IntervalReading.isp_start]
    cols += [getattr(IntervalReading, c) for c in READING_COLUMNS]
    q = select(*cols).where(IntervalReading.channel_id.in_(ids))
    if start is not None:
        q = q.where(IntervalReading.isp_start >= start)
    if end is not None:
        q = q.where(IntervalReading.isp_start < end)
    q = q.order_by(IntervalReading.channel_id, IntervalReading.isp_start)
    recs = [tuple(r) for r in session.execute(q)]
    df = pd.DataFrame.from_records(recs, columns=["channel_id", "isp_start", *READING_COLUMNS])
    if not df.empty:
        df["isp_start"] = pd.to_datetime(df["isp_start"], utc=True)
    return df
