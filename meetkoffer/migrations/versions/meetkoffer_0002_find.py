"""meetkoffer: the latest analysis of a campaign (period, totals, skipped analyses) and
key figures among the findings (counted = false)

Revision ID: meetkoffer_0002_find
Revises: meetkoffer_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "meetkoffer_0002_find"
down_revision = "meetkoffer_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mk_campaigns") as batch:
        batch.add_column(sa.Column("analysis", sa.JSON(), nullable=True))
    with op.batch_alter_table("mk_findings") as batch:
        batch.add_column(
            sa.Column("counted", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("mk_findings") as batch:
        batch.drop_column("counted")
    with op.batch_alter_table("mk_campaigns") as batch:
        batch.drop_column("analysis")
