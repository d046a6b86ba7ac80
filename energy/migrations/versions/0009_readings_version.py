"""readings version: a counter per channel that every write of its readings bumps

Revision ID: 0009_readings_version
Revises: 0009_ocpp
Create Date: 2026-12-03

``channels.readings_version`` grows by one in each transaction that writes or deletes the
channel's interval readings (:func:`energy.readings.upsert_readings`, bumped once at commit):
the API keeps a dashboard until one of its channels' versions changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_readings_version"
down_revision = "0009_ocpp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "channels",
        sa.Column("readings_version", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("readings_version")
