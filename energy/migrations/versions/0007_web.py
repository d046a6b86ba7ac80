"""web: EV owners' charging sessions and site managers' operating limits

Revision ID: 0007_web
Revises: 0007_jobs
Create Date: 2026-12-02

``ev_sessions``: an owner's announced stay of a car (arrival, departure, target and minimum
SoC, V2G allowed), read by the next plans; ``site_operating_limits``: a manager's grid import
limit and battery reserve, within the site's own (:mod:`energy.sitecontrols`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0007_web"
down_revision = "0007_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ev_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("arrival_at", UTCDateTime(), nullable=False),
        sa.Column("departure_at", UTCDateTime(), nullable=False),
        sa.Column("soc_target_pct", sa.Float(), nullable=False),
        sa.Column("soc_min_pct", sa.Float(), nullable=False),
        sa.Column("soc_arrival_pct", sa.Float(), nullable=True),
        sa.Column("v2g_allowed", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("departure_at > arrival_at", name="departure_after_arrival"),
        sa.CheckConstraint(
            "soc_min_pct >= 0 AND soc_min_pct <= soc_target_pct AND soc_target_pct <= 100",
            name="soc_order",
        ),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ev_sessions_asset_id", "ev_sessions", ["asset_id"])
    op.create_index("ix_ev_sessions_member_id", "ev_sessions", ["member_id"])
    op.create_index("ix_ev_sessions_departure_at", "ev_sessions", ["departure_at"])
    op.create_table(
        "site_operating_limits",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("grid_import_limit_kw", sa.Float(), nullable=False),
        sa.Column("battery_reserve_pct", sa.Float(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.CheckConstraint("grid_import_limit_kw > 0", name="operating_import_limit_positive"),
        sa.CheckConstraint(
            "battery_reserve_pct IS NULL OR (battery_reserve_pct >= 0 AND "
            "battery_reserve_pct <= 100)",
            name="battery_reserve_range",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id"),
    )


def downgrade() -> None:
    op.drop_table("site_operating_limits")
    op.drop_index("ix_ev_sessions_departure_at", table_name="ev_sessions")
    op.drop_index("ix_ev_sessions_member_id", table_name="ev_sessions")
    op.drop_index("ix_ev_sessions_asset_id", table_name="ev_sessions")
    op.drop_table("ev_sessions")
