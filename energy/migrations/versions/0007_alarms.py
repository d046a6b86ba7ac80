"""device alarms of the closed loop (control lost / restored)

Revision ID: 0007_alarms
Revises: 0007_gateways
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0007_alarms"
down_revision = "0007_gateways"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("asset", sa.String(length=100), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_device_alarms_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_alarms")),
    )
    op.create_index(op.f("ix_device_alarms_site_id"), "device_alarms", ["site_id"])
    op.create_index(op.f("ix_device_alarms_at"), "device_alarms", ["at"])


def downgrade() -> None:
    op.drop_index("ix_device_alarms_at", table_name="device_alarms")
    op.drop_index("ix_device_alarms_site_id", table_name="device_alarms")
    op.drop_table("device_alarms")
