"""derived channels, the last value of an ISP and the gaps of derived channels

Revision ID: 0007_derived
Revises: 0006_member_iban
Create Date: 2026-12-02

``channels.derived`` holds a derived channel's definition (formula, terms, minimum coverage);
``interval_readings.value_last`` the last valid sample of the ISP (state of charge, setpoints,
status); ``derived_gaps`` the ISPs a derived channel has no reading for, with the reason.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "0007_derived"
down_revision = "0006_member_iban"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("channels", sa.Column("derived", sa.JSON(), nullable=True))
    op.add_column("interval_readings", sa.Column("value_last", sa.Float(), nullable=True))
    op.create_table(
        "derived_gaps",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("isp_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_derived_gaps_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", "isp_start", name=op.f("pk_derived_gaps")),
    )


def downgrade() -> None:
    op.drop_table("derived_gaps")
    with op.batch_alter_table("interval_readings") as batch:
        batch.drop_column("value_last")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("derived")
