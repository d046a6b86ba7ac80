"""Interval readings (per channel per ISP) in SQL: idempotent upsert and reads as DataFrames."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from energy.models import IntervalReading
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


def upsert_readings(session: Session, channel_id: int, frame: pd.DataFrame) -> int:
    """Insert or replace the readings of one channel, indexed by ISP start (UTC).

    Writing the same readings again leaves the table as it was (idempotent). Returns the
    number of rows written.
    """
    if frame.empty:
        return 0
    _check(channel_id, frame)
    n = len(frame)
    columns: dict[str, list[Any]] = {
        "channel_id": [channel_id] * n,
        "isp_start": list(frame.index.tz_convert("UTC").to_pydatetime()),
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
            columns[col] = [None if np.isnan(v) else v for v in values.tolist()]
    keys = list(columns)
    rows = [dict(zip(keys, vals, strict=True)) for vals in zip(*columns.values(), strict=True)]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(IntervalReading)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel_id", "isp_start"],
        set_={c: getattr(stmt.excluded, c) for c in READING_COLUMNS},
    )
    # One statement, many parameter sets: compiled once, sent as executemany batches.
    session.execute(stmt, rows)
    return len(rows)


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
