"""Raw samples in PostgreSQL itself: the sample store of a deployment with several ingest workers.

:class:`PgSampleStore` has the interface of the Parquet :class:`energy.samples.SampleStore`
(``append``, ``append_new``, ``read``, ``channels``, ``compact``) over three tables:

``raw_samples`` (:class:`RawSample`)
    One row per (channel, ts): ``ts`` int64 [ns since the epoch, UTC], ``value`` float8 (NaN is
    a flagged missing value), ``quality`` (:class:`energy.samples.Quality`). On PostgreSQL it is
    declaratively partitioned by range of ``ts``, one partition per UTC month
    (``raw_samples_yYYYYmMM``), created on demand by the first writer that needs it (under a
    transaction-level advisory lock, so two workers never race on the DDL); a BRIN index on
    ``ts`` (time-ordered inserts make it tiny) and the primary key (channel_id, ts) serve the
    reads. On SQLite the migration makes a plain table of the same columns (the embedded store
    stays Parquet; the table is there so the schema is one on both backends).
``raw_sample_changes`` (:class:`RawSampleChange`)
    Insert-only: what each write stored, as ``(channel_id, ts_min, ts_max)`` per channel and
    hour touched, in the same transaction as the samples. The interval pipeline
    (:mod:`energy.pipeline`) reads and deletes them with the readings it computes from them.
``raw_sample_state`` (:class:`RawSampleState`)
    Per channel: the aggregation settings and the newest sample the pipeline has aggregated.

Writes are one binary ``COPY`` (the rows encoded with NumPy, no Python loop) into a temporary
staging table, then ``INSERT ... SELECT ... ON CONFLICT (channel_id, ts) DO NOTHING`` in
(channel, ts) order: idempotent, and safe with several writers (a writer that meets a row
another has inserted but not committed waits for it, then skips it). Rows that were not
inserted are compared with what is stored afterwards: a different value is returned as a
conflict (the caller quarantines it), never written. :meth:`PgSampleStore.append` is the
correction path (``DO UPDATE``).

:func:`open_sample_store` picks the store the settings name (``NOABER_SAMPLE_STORE``).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Engine,
    Float,
    Index,
    Integer,
    SmallInteger,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from energy.clock import utc_now
from energy.db import Base, UTCDateTime, make_engine
from energy.errors import NoaberError
from energy.samples import Conflicts, Quality, Samples, SampleStore
from energy.settings import Settings

LOCK_NAMESPACE = 0x4E42  # "NB": the first key of every advisory lock of the raw store
PARTITION_LOCK = 0
"""Second key of the advisory lock held while a partition is created."""
PIPELINE_LOCK_NAMESPACE = 0x4E43
"""First key of the per-channel advisory locks of the interval pipeline (second: channel id)."""
CHANGE_BUCKET_NS = 3_600 * 1_000_000_000
"""A change row covers at most one hour of one channel (late data does not widen a range)."""

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_IN_DTYPE = np.dtype(
    [
        ("n", ">i2"),
        ("l1", ">i4"),
        ("channel_id", ">i4"),
        ("l2", ">i4"),
        ("ts", ">i8"),
        ("l3", ">i4"),
        ("value", ">f8"),
        ("l4", ">i4"),
        ("quality", ">i2"),
    ]
)
_OUT_DTYPE = np.dtype(
    [
        ("n", ">i2"),
        ("l1", ">i4"),
        ("ts", ">i8"),
        ("l2", ">i4"),
        ("value", ">f8"),
        ("l3", ">i4"),
        ("quality", ">i2"),
    ]
)


class RawSample(Base):
    """One raw sample (partitioned by month of ``ts`` on PostgreSQL)."""

    __tablename__ = "raw_samples"
    __table_args__ = (
        Index("ix_raw_samples_ts_brin", "ts", postgresql_using="brin"),
        {"postgresql_partition_by": "RANGE (ts)"},
    )

    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    quality: Mapped[int] = mapped_column(SmallInteger)


class RawSampleChange(Base):
    """What a write stored for one channel and hour: the interval pipeline's work."""

    __tablename__ = "raw_sample_changes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    channel_id: Mapped[int] = mapped_column(Integer, index=True)
    ts_min: Mapped[int] = mapped_column(BigInteger)
    ts_max: Mapped[int] = mapped_column(BigInteger)


class RawSampleState(Base):
    """The interval pipeline's state of one channel of the PostgreSQL raw store."""

    __tablename__ = "raw_sample_state"

    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_ts: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)


def month_bounds_ns(month: np.datetime64) -> tuple[int, int]:
    """``[start, end)`` of a UTC month [ns]."""
    m = np.asarray(month).astype("datetime64[M]")
    return int(m.astype("datetime64[ns]").astype(np.int64)), int(
        (m + 1).astype("datetime64[ns]").astype(np.int64)
    )


def partition_name(month: np.datetime64) -> str:
    """``raw_samples_y2026m12`` for December 2026."""
    y, m = str(np.asarray(month).astype("datetime64[M]")).split("-")
    return f"raw_samples_y{y}m{m}"


def encode_copy_rows(
    channel_id: np.ndarray, ts: np.ndarray, value: np.ndarray, quality: np.ndarray
) -> bytes:
    """The rows in PostgreSQL's binary COPY format (``int4, int8, float8, int2``).

    References
    ----------
    PostgreSQL documentation, "COPY", section "Binary Format".
    """
    rows = np.empty(ts.shape[0], _IN_DTYPE)
    rows["n"] = 4
    rows["l1"], rows["l3"] = 4, 8
    rows["l2"], rows["l4"] = 8, 2
    rows["channel_id"] = channel_id
    rows["ts"] = ts
    rows["value"] = value
    rows["quality"] = quality
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def decode_copy_rows(data: bytes) -> Samples:
    """``ts, value, quality`` rows of a binary ``COPY ... TO STDOUT`` (no NULLs)."""
    body = memoryview(data)[len(_COPY_HEADER) : len(data) - len(_COPY_TRAILER)]
    if len(data) < len(_COPY_HEADER) + 2 or data[: len(_COPY_HEADER) - 8] != _COPY_HEADER[:11]:
        raise ValueError("not a binary COPY stream")
    rows = np.frombuffer(body, _OUT_DTYPE)
    if rows.size and not (rows["n"] == 3).all():
        raise ValueError("unexpected COPY row layout")
    return Samples(
        rows["ts"].astype(np.int64),
        rows["value"].astype(np.float64),
        rows["quality"].astype(np.uint8),
    )


@dataclass(slots=True)
class ManyConflicts:
    """What :meth:`PgSampleStore.append_new_many` wrote, and the samples it refused (their
    (channel, ts) holds a different value), with the stored values."""

    written: int
    channel_id: np.ndarray  # int64
    ts: np.ndarray  # int64 [ns]
    value: np.ndarray  # float64, offered
    quality: np.ndarray  # uint8, offered
    stored_value: np.ndarray  # float64
    stored_quality: np.ndarray  # uint8

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def _dedupe_last(
    cid: np.ndarray, ts: np.ndarray, value: np.ndarray, quality: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Sorted by (channel, ts), the last given of each (channel, ts)."""
    n = ts.shape[0]
    order = np.lexsort((np.arange(n), ts, cid))
    c, t = cid[order], ts[order]
    keep = np.ones(n, dtype=bool)
    keep[:-1] = (c[1:] != c[:-1]) | (t[1:] != t[:-1])
    sel = order[keep]
    return cid[sel], ts[sel], value[sel], quality[sel]


def _check_arrays(
    channel_id: np.ndarray | int, ts: np.ndarray, value: np.ndarray, quality: np.ndarray | None
) -> tuple[np.ndarray, ...]:
    ts = np.asarray(ts, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    if quality is None:
        quality = np.where(np.isnan(value), Quality.INVALID, Quality.GOOD).astype(np.uint8)
    quality = np.asarray(quality, dtype=np.uint8)
    cid = np.broadcast_to(np.asarray(channel_id, dtype=np.int64), ts.shape)
    if not (ts.shape == value.shape == quality.shape) or ts.ndim != 1:
        raise ValueError(
            f"channel {channel_id if np.ndim(channel_id) == 0 else '(many)'}: ts, value and "
            f"quality must be 1-D of equal length, got {ts.shape}, {value.shape}, "
            f"{quality.shape}"
        )
    return cid, ts, value, quality


_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS raw_stage (channel_id int4 NOT NULL, ts int8 NOT "
    "NULL, value float8 NOT NULL, quality int2 NOT NULL) ON COMMIT DELETE ROWS"
)
_COPY_IN = "COPY raw_stage (channel_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
_CHANGES = f"""
, ch AS (
  INSERT INTO raw_sample_changes (channel_id, ts_min, ts_max)
  SELECT channel_id, min(ts), max(ts) FROM w GROUP BY channel_id, ts / {CHANGE_BUCKET_NS}
  RETURNING 1
)
SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM ch)
"""
_INSERT_NEW = (
    """
WITH w AS (
  INSERT INTO raw_samples (channel_id, ts, value, quality)
  SELECT channel_id, ts, value, quality FROM raw_stage ORDER BY channel_id, ts
  ON CONFLICT (channel_id, ts) DO NOTHING
  RETURNING channel_id, ts
)"""
    + _CHANGES
)
_UPSERT = (
    """
WITH w AS (
  INSERT INTO raw_samples AS r (channel_id, ts, value, quality)
  SELECT channel_id, ts, value, quality FROM raw_stage ORDER BY channel_id, ts
  ON CONFLICT (channel_id, ts) DO UPDATE SET value = EXCLUDED.value, quality = EXCLUDED.quality
  WHERE r.value IS DISTINCT FROM EXCLUDED.value OR r.quality <> EXCLUDED.quality
  RETURNING channel_id, ts
)"""
    + _CHANGES
)
_CONFLICTS = """
SELECT s.channel_id, s.ts, s.value, s.quality, r.value, r.quality
FROM raw_stage s JOIN raw_samples r ON r.channel_id = s.channel_id AND r.ts = s.ts
WHERE r.value <> s.value OR r.quality <> s.quality
ORDER BY s.channel_id, s.ts
"""


class PgSampleStore:
    """Raw samples in the PostgreSQL database of ``engine`` (see the module docstring).

    Parameters
    ----------
    engine : Engine
        A PostgreSQL engine (psycopg 3) on a database migrated to ``0008_raw_samples``.
    root : Path
        A local directory for what the interval pipeline keeps beside the store of a derived
        channel (its formula's sidecar state, :func:`energy.pipeline.derived_state_path`).
    """

    kind = "postgresql"

    def __init__(self, engine: Engine, root: Path | str):
        if engine.dialect.name != "postgresql":
            raise NoaberError(
                f"the PostgreSQL sample store needs a PostgreSQL database, not "
                f"{engine.dialect.name} (set NOABER_SAMPLE_STORE=parquet)"
            )
        self.engine = engine
        self.root = Path(root)
        self._months: set[str] = set()

    # ------------------------------------------------------------------ partitions

    def _known_partitions(self, conn: Any) -> set[str]:
        rows = conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'raw_samples'"
            )
        )
        return {r[0] for r in rows}

    def ensure_partitions(self, ts_ns: np.ndarray) -> list[str]:
        """Create the monthly partitions ``ts_ns`` falls in that do not exist; their names.

        Race-safe: the creation runs under ``pg_advisory_xact_lock`` and checks again under
        it, so two workers that need the same new month create it once.
        """
        if ts_ns.size == 0:
            return []
        months = np.unique(np.asarray(ts_ns, np.int64).astype("datetime64[ns]").astype("M8[M]"))
        wanted = {partition_name(m): m for m in months}
        todo = [n for n in wanted if n not in self._months]
        if not todo:
            return []
        created = []
        with self.engine.begin() as conn:
            have = self._known_partitions(conn)
            missing = [n for n in todo if n not in have]
            if missing:
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:a, :b)"),
                    {"a": LOCK_NAMESPACE, "b": PARTITION_LOCK},
                )
                have = self._known_partitions(conn)
                for name in missing:
                    if name in have:
                        continue
                    lo, hi = month_bounds_ns(wanted[name])
                    conn.execute(
                        text(
                            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF raw_samples "
                            f"FOR VALUES FROM ({lo}) TO ({hi})"
                        )
                    )
                    created.append(name)
                    have.add(name)
            self._months |= have
        return created

    def partitions(self) -> list[str]:
        """Names of the monthly partitions, oldest first."""
        with self.engine.connect() as conn:
            return sorted(self._known_partitions(conn))

    # ------------------------------------------------------------------ writes

    def _stage(
        self, dbapi: Any, cid: np.ndarray, ts: np.ndarray, value: np.ndarray, q: np.ndarray
    ) -> Any:
        cur = dbapi.cursor()
        cur.execute(_STAGE)
        with cur.copy(_COPY_IN) as copy:
            copy.write(encode_copy_rows(cid, ts, value, q))
        return cur

    def append_new_many(
        self,
        channel_id: np.ndarray,
        ts_ns: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray,
    ) -> ManyConflicts:
        """Store samples of many channels at (channel, ts) not stored yet, in one transaction.

        A sample equal to the stored one (value and quality; NaN equals NaN) is skipped; one
        with a different value or quality is not written but returned as a conflict, with
        the stored value. Duplicates within the call keep the last one.
        """
        cid, ts, val, q = _check_arrays(channel_id, ts_ns, value, quality)
        empty = np.empty(0, np.int64)
        if ts.size == 0:
            f, u = np.empty(0, np.float64), np.empty(0, np.uint8)
            return ManyConflicts(0, empty, empty.copy(), f, u, f.copy(), u.copy())
        cid, ts, val, q = _dedupe_last(cid, ts, val, q)
        self.ensure_partitions(ts)
        with self.engine.begin() as conn:
            dbapi = conn.connection.driver_connection
            cur = self._stage(dbapi, cid, ts, val, q)
            cur.execute(_INSERT_NEW)
            written = int(cur.fetchone()[0])
            rows: list[tuple] = []
            if written < ts.size:  # some were stored already: equal, or a conflict
                cur.execute(_CONFLICTS)
                rows = cur.fetchall()
            cur.close()
        if not rows:
            f, u = np.empty(0, np.float64), np.empty(0, np.uint8)
            return ManyConflicts(written, empty, empty.copy(), f, u, f.copy(), u.copy())
        cols = list(zip(*rows, strict=True))
        return ManyConflicts(
            written,
            np.array(cols[0], np.int64),
            np.array(cols[1], np.int64),
            np.array(cols[2], np.float64),
            np.array(cols[3], np.uint8),
            np.array(cols[4], np.float64),
            np.array(cols[5], np.uint8),
        )

    def append_new(
        self, channel_id: int, ts_ns: np.ndarray, value: np.ndarray, quality: np.ndarray
    ) -> Conflicts:
        """One channel's :meth:`append_new_many` (the interface of the Parquet store)."""
        res = self.append_new_many(np.int64(channel_id), ts_ns, value, quality)  # type: ignore[arg-type]
        out = Conflicts.none()
        out.written = res.written
        out.ts, out.value, out.quality = res.ts, res.value, res.quality
        out.stored_value, out.stored_quality = res.stored_value, res.stored_quality
        return out

    def append(
        self,
        channel_id: int,
        ts_ns: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray | None = None,
    ) -> int:
        """Store samples of one channel, replacing a different stored value at the same
        timestamp (a correction, or an import); returns the samples new or changed."""
        cid, ts, val, q = _check_arrays(channel_id, ts_ns, value, quality)
        if ts.size == 0:
            return 0
        cid, ts, val, q = _dedupe_last(cid, ts, val, q)
        self.ensure_partitions(ts)
        with self.engine.begin() as conn:
            cur = self._stage(conn.connection.driver_connection, cid, ts, val, q)
            cur.execute(_UPSERT)
            written = int(cur.fetchone()[0])
            cur.close()
        return written

    # ------------------------------------------------------------------ reads

    def read(
        self, channel_id: int, start_ns: int | None = None, end_ns: int | None = None
    ) -> Samples:
        """Samples of a channel in ``[start_ns, end_ns)``, sorted by time (binary COPY out)."""
        lo = np.iinfo(np.int64).min if start_ns is None else int(start_ns)
        hi = np.iinfo(np.int64).max if end_ns is None else int(end_ns)
        sql = (
            f"COPY (SELECT ts, value, quality FROM raw_samples WHERE channel_id = {int(channel_id)}"
            f" AND ts >= {lo} AND ts < {hi} ORDER BY ts) TO STDOUT (FORMAT BINARY)"
        )
        with self.engine.connect() as conn:
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            cur = dbapi.cursor()
            with cur, cur.copy(sql) as copy:
                data = b"".join(bytes(b) for b in copy)
            conn.rollback()
        return decode_copy_rows(data)

    def ts_range(self, channel_id: int) -> tuple[int, int] | None:
        """First and last stored timestamp of a channel [ns]."""
        with self.engine.connect() as conn:
            lo, hi = conn.execute(
                text("SELECT min(ts), max(ts) FROM raw_samples WHERE channel_id = :c"),
                {"c": int(channel_id)},
            ).one()
        return None if lo is None else (int(lo), int(hi))

    def channels(self) -> list[int]:
        """Channel ids with stored samples (aggregated or waiting for the pipeline)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT channel_id FROM raw_sample_state UNION "
                    "SELECT DISTINCT channel_id FROM raw_sample_changes ORDER BY 1"
                )
            )
            return [int(r[0]) for r in rows]

    def dirty_channels(self) -> list[int]:
        """Channel ids with writes the interval pipeline has not aggregated yet."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT DISTINCT channel_id FROM raw_sample_changes"))
            return sorted(int(r[0]) for r in rows)

    def days(self, channel_id: int) -> list[int]:
        """Day indices (days since the epoch, UTC) that hold samples of a channel."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT DISTINCT div(ts, 86400000000000) FROM raw_samples "
                    "WHERE channel_id = :c ORDER BY 1"
                ),
                {"c": int(channel_id)},
            )
            return [int(r[0]) for r in rows]

    def count(self, channel_id: int | None = None) -> int:
        """Rows stored (of one channel, or all)."""
        sql = "SELECT count(*) FROM raw_samples" + (
            "" if channel_id is None else f" WHERE channel_id = {int(channel_id)}"
        )
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())

    def compact(self, channel_id: int | None = None) -> int:
        """Nothing to merge: one row per (channel, ts) by the primary key. Returns 0."""
        return 0

    # ------------------------------------------------------------------ the pipeline's locks

    @staticmethod
    def claim(session: Session, channel_ids: Sequence[int], limit: int | None = None) -> list[int]:
        """The channels of ``channel_ids`` whose pipeline lock this session's transaction got
        (``pg_try_advisory_xact_lock``: never waits; a channel another worker is updating is
        left out, for a later round), at most ``limit``, in the given order."""
        if not channel_ids:
            return []
        ids = [int(c) for c in channel_ids]
        rows = session.execute(
            text(
                "SELECT c FROM unnest(CAST(:ids AS int[])) WITH ORDINALITY AS u(c, o) "
                "WHERE pg_try_advisory_xact_lock(:ns, c) "
                + ("" if limit is None else f"LIMIT {int(limit)}")
            ),
            {"ids": ids, "ns": PIPELINE_LOCK_NAMESPACE},
        )
        return [int(r[0]) for r in rows]


AnySampleStore = SampleStore | PgSampleStore
"""Either raw-sample store: the Parquet files (embedded default) or PostgreSQL."""


def open_sample_store(settings: Settings, engine: Engine | None = None) -> AnySampleStore:
    """The raw-sample store ``settings.sample_store`` names: ``parquet`` (the default, files
    under :attr:`~energy.settings.Settings.samples_dir`) or ``postgresql`` (the database
    itself; ``engine`` or a new one on :attr:`~energy.settings.Settings.sqlalchemy_url`)."""
    if settings.sample_store == "parquet":
        return SampleStore(settings.samples_dir)
    url = settings.sqlalchemy_url
    if not url.startswith("postgresql"):
        raise NoaberError(
            "NOABER_SAMPLE_STORE=postgresql needs a PostgreSQL NOABER_DATABASE_URL, "
            f"not {settings.database_for_display}"
        )
    return PgSampleStore(engine if engine is not None else make_engine(url), settings.samples_dir)
