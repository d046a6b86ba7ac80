"""price series per ISP

Revision ID: 0002_prices
Revises: 0001_core
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "0002_prices"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_points",
        sa.Column("series", sa.String(length=100), nullable=False),
        sa.Column("isp_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("price_eur_per_kwh", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.PrimaryKeyConstraint("series", "isp_start", name=op.f("pk_price_points")),
    )


def downgrade() -> None:
    op.drop_table("price_points")
