"""Gateways bound to sites, the centre's dead letters and quarantined samples

Revision ID: 0007_gateways
Revises: 0007_derived
Create Date: 2026-12-02

``gateways`` (an edge gateway's MQTT identity; only the hash of its broker password),
``gateway_sites`` (the sites whose channels it may send), ``ingest_dead_letters`` (what the
centre refused, with the reason) and ``sample_quarantine`` (a sample for a (channel, ts) that
already holds a different value, until an operator accepts or rejects it). See
``energy/gateways.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0007_gateways"
down_revision = "0007_derived"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("name", name=op.f("uq_gateways_name")),
    )
    op.create_table(
        "gateway_sites",
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_gateway_sites_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_gateway_sites_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("gateway_id", "site_id", name=op.f("pk_gateway_sites")),
    )
    op.create_table(
        "ingest_dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("gateway", sa.String(length=255), nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_dead_letters")),
    )
    op.create_index(
        "ix_ingest_dead_letters_gateway_batch", "ingest_dead_letters", ["gateway", "batch_id"]
    )
    op.create_index(
        op.f("ix_ingest_dead_letters_reason"), "ingest_dead_letters", ["reason"], unique=False
    )
    op.create_index(
        op.f("ix_ingest_dead_letters_received_at"),
        "ingest_dead_letters",
        ["received_at"],
        unique=False,
    )
    op.create_table(
        "sample_quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("gateway", sa.String(length=255), nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=True),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("stored_value", sa.Float(), nullable=True),
        sa.Column("stored_quality", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_sample_quarantine_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sample_quarantine")),
    )
    op.create_index(
        "ix_sample_quarantine_channel_ts", "sample_quarantine", ["channel_id", "ts_ns"]
    )
    op.create_index(
        op.f("ix_sample_quarantine_received_at"), "sample_quarantine", ["received_at"]
    )
    op.create_index(op.f("ix_sample_quarantine_status"), "sample_quarantine", ["status"])


def downgrade() -> None:
    op.drop_table("sample_quarantine")
    op.drop_table("ingest_dead_letters")
    op.drop_table("gateway_sites")
    op.drop_table("gateways")
