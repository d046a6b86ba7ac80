"""settlement: a community's tariff versions as the operator sets them

Revision ID: settlement_0004_tariff_versions
Revises: settlement_0003_speed
Create Date: 2026-12-03

``settlement_community_tariffs``: one row per change, the whole tariff after it (canonical
YAML and its sha256); the newest row of a community is in force for its new runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "settlement_0004_tariff_versions"
down_revision = "settlement_0003_speed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settlement_community_tariffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("changed_from", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_community_tariffs")),
    )
    op.create_index(
        op.f("ix_settlement_community_tariffs_community"),
        "settlement_community_tariffs",
        ["community"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_settlement_community_tariffs_community"), "settlement_community_tariffs")
    op.drop_table("settlement_community_tariffs")
