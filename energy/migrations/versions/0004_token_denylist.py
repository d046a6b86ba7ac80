"""token revocation: a per-user token version and a denylist of logged-out token ids

Revision ID: 0004_token_denylist
Revises: 0003_channel_max_gap
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0004_token_denylist"
down_revision = "0003_channel_max_gap"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("token_version", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "token_denylist",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_token_denylist_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_token_denylist")),
    )
    op.create_index("ix_token_denylist_user_id", "token_denylist", ["user_id"])
    op.create_index("ix_token_denylist_expires_at", "token_denylist", ["expires_at"])


def downgrade() -> None:
    op.drop_table("token_denylist")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
