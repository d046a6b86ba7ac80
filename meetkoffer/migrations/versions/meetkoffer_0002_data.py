"""meetkoffer: channel declarations, interval energy, spread counter gaps, billing, import audit

Revision ID: meetkoffer_0002_data
Revises: meetkoffer_0002_find
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "meetkoffer_0002_data"
down_revision = "meetkoffer_0002_find"
branch_labels = None
depends_on = None


def _equipment_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["equipment_id"],
        ["mk_equipment.id"],
        name=op.f(f"fk_{table}_equipment_id_mk_equipment"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    with op.batch_alter_table("mk_equipment") as b:
        b.add_column(sa.Column("data_kind", sa.String(length=20), nullable=True))
        b.add_column(sa.Column("interval", sa.String(length=10), nullable=True))
        b.add_column(sa.Column("rated_power_kw", sa.Float(), nullable=True))
    op.create_table(
        "mk_energy_periods",
        sa.Column("equipment_id", sa.Integer(), nullable=False),
        sa.Column("period_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("period_end", energy.db.UTCDateTime(), nullable=False),
        sa.Column("energy_wh", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.CheckConstraint(
            "period_end > period_start", name=op.f("ck_mk_energy_periods_period_positive")
        ),
        sa.CheckConstraint("energy_wh >= 0", name=op.f("ck_mk_energy_periods_energy_nonneg")),
        _equipment_fk("mk_energy_periods"),
        sa.PrimaryKeyConstraint("equipment_id", "period_start", name=op.f("pk_mk_energy_periods")),
    )
    op.create_table(
        "mk_spread_gaps",
        sa.Column("equipment_id", sa.Integer(), nullable=False),
        sa.Column("gap_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("gap_end", energy.db.UTCDateTime(), nullable=False),
        sa.Column("energy_wh", sa.Float(), nullable=False),
        _equipment_fk("mk_spread_gaps"),
        sa.PrimaryKeyConstraint("equipment_id", "gap_start", name=op.f("pk_mk_spread_gaps")),
    )
    op.create_table(
        "mk_billing",
        sa.Column("equipment_id", sa.Integer(), nullable=False),
        sa.Column("period_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("period_end", energy.db.UTCDateTime(), nullable=False),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_mk_billing_period_positive")),
        sa.CheckConstraint("energy_kwh >= 0", name=op.f("ck_mk_billing_energy_nonneg")),
        _equipment_fk("mk_billing"),
        sa.PrimaryKeyConstraint("equipment_id", "period_start", name=op.f("pk_mk_billing")),
    )
    op.create_table(
        "mk_import_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ts", energy.db.UTCDateTime(), nullable=False),
        sa.Column("old_value", sa.Float(), nullable=False),
        sa.Column("new_value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("user", sa.String(length=100), nullable=False),
        sa.Column("replaced_at", energy.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["mk_campaigns.id"],
            name=op.f("fk_mk_import_audit_campaign_id_mk_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mk_import_audit")),
    )
    op.create_index(
        op.f("ix_mk_import_audit_campaign_id"), "mk_import_audit", ["campaign_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mk_import_audit_campaign_id"), table_name="mk_import_audit")
    op.drop_table("mk_import_audit")
    op.drop_table("mk_billing")
    op.drop_table("mk_spread_gaps")
    op.drop_table("mk_energy_periods")
    with op.batch_alter_table("mk_equipment") as b:
        b.drop_column("rated_power_kw")
        b.drop_column("interval")
        b.drop_column("data_kind")
