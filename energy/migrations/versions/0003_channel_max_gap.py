"""per-channel gap rule of the interval pipeline

Revision ID: 0003_channel_max_gap
Revises: 0002_prices
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_channel_max_gap"
down_revision = "0002_prices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("channels", sa.Column("max_gap_s", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("max_gap_s")
