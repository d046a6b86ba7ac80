"""OCPP charge point ids bound to sites

Revision ID: 0009_ocpp
Revises: 0008_raw_samples
Create Date: 2026-12-03

``ocpp_charge_points``: a charge point id (unique) bound to the site whose ``ocpp:`` section
lists it and the asset it drives (see ``energy/chargepoints.py``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0009_ocpp"
down_revision = "0008_raw_samples"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocpp_charge_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.String(length=48), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("ocpp_version", sa.String(length=8), nullable=False),
        sa.Column("bound_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_ocpp_charge_points_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name=op.f("fk_ocpp_charge_points_asset_id_assets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocpp_charge_points")),
        sa.UniqueConstraint("charge_point_id", name=op.f("uq_ocpp_charge_points_charge_point_id")),
    )
    op.create_index(
        op.f("ix_ocpp_charge_points_site_id"), "ocpp_charge_points", ["site_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ocpp_charge_points_site_id"), table_name="ocpp_charge_points")
    op.drop_table("ocpp_charge_points")
