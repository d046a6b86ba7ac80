"""tariff: a site's capacity tariff (the Dutch monthly kW-max) and contracted kW

Revision ID: 0008_tariff
Revises: 0007_web
Create Date: 2026-12-02

``site_tariffs``: per site the kW-max price [EUR/kW per month], the contracted kW and the
source of the numbers, from the site file's ``site.tariff`` (:mod:`energy.tariffs`); the
optimiser reads it with this month's peak so far (:func:`optimizer.sitestore.scenario_from_store`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0008_tariff"
down_revision = "0007_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_tariffs",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("capacity_eur_per_kw_month", sa.Float(), nullable=False),
        sa.Column("contracted_kw", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("capacity_eur_per_kw_month >= 0", name="capacity_price_nonneg"),
        sa.CheckConstraint("contracted_kw >= 0", name="contracted_nonneg"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id"),
    )


def downgrade() -> None:
    op.drop_table("site_tariffs")
