"""meetkoffer: campaigns, equipment, production, temperature, findings, savings

Revision ID: meetkoffer_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "meetkoffer_0001"
down_revision = None
branch_labels = ("meetkoffer",)
depends_on = "0001_core"


def upgrade() -> None:
    op.create_table(
        "mk_campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("firm_member_id", sa.Integer(), nullable=False),
        sa.Column("start_at", energy.db.UTCDateTime(), nullable=False),
        sa.Column("end_at", energy.db.UTCDateTime(), nullable=False),
        sa.Column("price_eur_per_kwh", sa.Float(), nullable=False),
        sa.Column("operating_hours", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("analyzed_at", energy.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_mk_campaigns_period_positive")),
        sa.CheckConstraint("price_eur_per_kwh >= 0", name=op.f("ck_mk_campaigns_price_nonneg")),
        sa.ForeignKeyConstraint(
            ["firm_member_id"], ["members.id"], name=op.f("fk_mk_campaigns_firm_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_mk_campaigns_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_mk_campaigns_name")),
    )
    op.create_index(
        op.f("ix_mk_campaigns_firm_member_id"), "mk_campaigns", ["firm_member_id"], unique=False
    )
    op.create_index(op.f("ix_mk_campaigns_site_id"), "mk_campaigns", ["site_id"], unique=False)
    op.create_table(
        "mk_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("equipment", sa.String(length=100), nullable=True),
        sa.Column("energy_kwh_per_year", sa.Float(), nullable=False),
        sa.Column("cost_eur_per_year", sa.Float(), nullable=False),
        sa.Column("co2_t_per_year", sa.Float(), nullable=False),
        sa.Column("chart", sa.String(length=120), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["mk_campaigns.id"],
            name=op.f("fk_mk_findings_campaign_id_mk_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mk_findings")),
    )
    op.create_index(
        op.f("ix_mk_findings_campaign_id"), "mk_findings", ["campaign_id"], unique=False
    )
    op.create_table(
        "mk_production",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("period_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("period_end", energy.db.UTCDateTime(), nullable=False),
        sa.Column("units", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "period_end > period_start", name=op.f("ck_mk_production_period_positive")
        ),
        sa.CheckConstraint("units >= 0", name=op.f("ck_mk_production_units_nonneg")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["mk_campaigns.id"],
            name=op.f("fk_mk_production_campaign_id_mk_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "period_start", name=op.f("pk_mk_production")),
    )
    op.create_table(
        "mk_temperature",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("ts", energy.db.UTCDateTime(), nullable=False),
        sa.Column("temp_c", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["mk_campaigns.id"],
            name=op.f("fk_mk_temperature_campaign_id_mk_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "ts", name=op.f("pk_mk_temperature")),
    )
    op.create_table(
        "mk_equipment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "role IN ('incomer', 'submeter')", name=op.f("ck_mk_equipment_role_known")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["mk_campaigns.id"],
            name=op.f("fk_mk_equipment_campaign_id_mk_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_mk_equipment_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mk_equipment")),
        sa.UniqueConstraint("campaign_id", "name", name=op.f("uq_mk_equipment_campaign_id")),
    )
    op.create_index(
        op.f("ix_mk_equipment_campaign_id"), "mk_equipment", ["campaign_id"], unique=False
    )
    op.create_table(
        "mk_savings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("equipment_id", sa.Integer(), nullable=True),
        sa.Column("option", sa.String(length=1), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("baseline_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("baseline_end", energy.db.UTCDateTime(), nullable=False),
        sa.Column("reporting_start", energy.db.UTCDateTime(), nullable=False),
        sa.Column("reporting_end", energy.db.UTCDateTime(), nullable=False),
        sa.Column("adjusted_baseline_kwh", sa.Float(), nullable=False),
        sa.Column("reporting_kwh", sa.Float(), nullable=False),
        sa.Column("nonroutine_kwh", sa.Float(), nullable=False),
        sa.Column("avoided_kwh", sa.Float(), nullable=False),
        sa.Column("avoided_eur", sa.Float(), nullable=False),
        sa.Column("avoided_co2_t", sa.Float(), nullable=False),
        sa.Column("fsu_68", sa.Float(), nullable=True),
        sa.Column("fsu_90", sa.Float(), nullable=True),
        sa.Column("cv_rmse", sa.Float(), nullable=False),
        sa.Column("nmbe", sa.Float(), nullable=False),
        sa.Column("r2", sa.Float(), nullable=False),
        sa.Column("ashrae14_pass", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint("option IN ('B', 'C')", name=op.f("ck_mk_savings_option_known")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["mk_campaigns.id"],
            name=op.f("fk_mk_savings_campaign_id_mk_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["equipment_id"],
            ["mk_equipment.id"],
            name=op.f("fk_mk_savings_equipment_id_mk_equipment"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mk_savings")),
    )
    op.create_index(op.f("ix_mk_savings_campaign_id"), "mk_savings", ["campaign_id"], unique=False)
    op.create_table(
        "mk_nonroutine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("savings_id", sa.Integer(), nullable=False),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("start_at", energy.db.UTCDateTime(), nullable=True),
        sa.Column("end_at", energy.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint("length(reason) > 0", name=op.f("ck_mk_nonroutine_reason_given")),
        sa.ForeignKeyConstraint(
            ["savings_id"],
            ["mk_savings.id"],
            name=op.f("fk_mk_nonroutine_savings_id_mk_savings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mk_nonroutine")),
    )
    op.create_index(
        op.f("ix_mk_nonroutine_savings_id"), "mk_nonroutine", ["savings_id"], unique=False
    )


def downgrade() -> None:
    for name in (
        "mk_nonroutine",
        "mk_savings",
        "mk_equipment",
        "mk_temperature",
        "mk_production",
        "mk_findings",
        "mk_campaigns",
    ):
        op.drop_table(name)
