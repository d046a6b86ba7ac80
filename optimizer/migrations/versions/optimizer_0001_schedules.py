"""optimizer: stored schedules per site, step and asset

Revision ID: optimizer_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "optimizer_0001"
down_revision = None
branch_labels = ("optimizer",)
depends_on = "0001_core"


def upgrade() -> None:
    op.create_table(
        "optimizer_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_name", sa.String(length=100), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.Column("start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("end", energy.db.UTCDateTime(), nullable=False),
        sa.Column("step_minutes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("objective_eur", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimizer_schedules")),
    )
    op.create_index(
        "ix_optimizer_schedules_site_start", "optimizer_schedules", ["site_name", "start"]
    )
    op.create_table(
        "optimizer_schedule_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("ts", energy.db.UTCDateTime(), nullable=False),
        sa.Column("asset", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("owner_ref", sa.String(length=64), nullable=True),
        sa.Column("power_kw", sa.Float(), nullable=False),
        sa.Column("soc_pct", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["optimizer_schedules.id"],
            name=op.f("fk_optimizer_schedule_steps_schedule_id_optimizer_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimizer_schedule_steps")),
        sa.UniqueConstraint("schedule_id", "ts", "asset", name="uq_optimizer_schedule_steps_key"),
    )
    op.create_index(
        op.f("ix_optimizer_schedule_steps_schedule_id"), "optimizer_schedule_steps", ["schedule_id"]
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_optimizer_schedule_steps_schedule_id"), table_name="optimizer_schedule_steps"
    )
    op.drop_table("optimizer_schedule_steps")
    op.drop_index("ix_optimizer_schedules_site_start", table_name="optimizer_schedules")
    op.drop_table("optimizer_schedules")
