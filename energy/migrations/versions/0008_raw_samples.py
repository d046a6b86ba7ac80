"""raw samples in PostgreSQL: monthly partitions, BRIN on time, the pipeline's change log

Revision ID: 0008_raw_samples
Revises: 0008_tariff
Create Date: 2026-12-02

``raw_samples`` (one row per channel and ts; on PostgreSQL declaratively partitioned by
range of ``ts``, one partition per UTC month made on demand by the writers, with a BRIN
index on ``ts``; on SQLite a plain table, unused by the embedded Parquet store),
``raw_sample_changes`` (what each write stored, for the interval pipeline) and
``raw_sample_state`` (the pipeline's state per channel). See ``energy/rawstore.py``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0008_raw_samples"
down_revision = "0008_tariff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    partitioned: dict[str, Any] = {"postgresql_partition_by": "RANGE (ts)"} if pg else {}
    op.create_table(
        "raw_samples",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("quality", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "ts", name=op.f("pk_raw_samples")),
        **partitioned,
    )
    op.create_index(
        "ix_raw_samples_ts_brin", "raw_samples", ["ts"], unique=False, postgresql_using="brin"
    )
    op.create_table(
        "raw_sample_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("ts_min", sa.BigInteger(), nullable=False),
        sa.Column("ts_max", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_sample_changes")),
    )
    op.create_index(op.f("ix_raw_sample_changes_channel_id"), "raw_sample_changes", ["channel_id"])
    op.create_table(
        "raw_sample_state",
        sa.Column("channel_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("max_ts", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_raw_sample_state")),
    )


def downgrade() -> None:
    op.drop_table("raw_sample_state")
    op.drop_index(op.f("ix_raw_sample_changes_channel_id"), table_name="raw_sample_changes")
    op.drop_table("raw_sample_changes")
    op.drop_index("ix_raw_samples_ts_brin", table_name="raw_samples")
    op.drop_table("raw_samples")  # drops its partitions
