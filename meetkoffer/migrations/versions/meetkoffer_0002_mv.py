"""meetkoffer: frozen, versioned savings verifications (mk_verifications, version columns)

Every existing savings record becomes version 1 of its own verification (with the same id).
Those records have no frozen result: showing them asks for a recompute, which freezes
version 2.

Revision ID: meetkoffer_0002_mv
Revises: meetkoffer_0002_data
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "meetkoffer_0002_mv"
down_revision = "meetkoffer_0002_data"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mk_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.Column("withdrawn_at", energy.db.UTCDateTime(), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=200), nullable=True),
        sa.Column("withdrawn_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "(withdrawn_at IS NULL AND withdrawn_by IS NULL AND withdrawn_reason IS NULL) OR "
            "(withdrawn_at IS NOT NULL AND length(withdrawn_by) > 0 "
            "AND length(withdrawn_reason) > 0)",
            name=op.f("ck_mk_verifications_withdrawal_complete"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["mk_campaigns.id"],
            name=op.f("fk_mk_verifications_campaign_id_mk_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mk_verifications")),
    )
    op.create_index(
        op.f("ix_mk_verifications_campaign_id"), "mk_verifications", ["campaign_id"], unique=False
    )
    op.execute(
        "INSERT INTO mk_verifications (id, campaign_id, created_at) "
        "SELECT id, campaign_id, created_at FROM mk_savings"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('mk_verifications', 'id'), "
            "COALESCE((SELECT MAX(id) FROM mk_verifications), 0) + 1, false)"
        )
    with op.batch_alter_table("mk_savings") as b:
        b.add_column(sa.Column("verification_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("version", sa.Integer(), nullable=True))
        b.add_column(sa.Column("data_digest", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("result_digest", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("params", sa.JSON(), nullable=True))
        b.add_column(sa.Column("changes", sa.JSON(), nullable=True))
        b.add_column(sa.Column("frozen", sa.JSON(), nullable=True))
    op.execute("UPDATE mk_savings SET verification_id = id, version = 1")
    with op.batch_alter_table("mk_savings") as b:
        b.alter_column("verification_id", existing_type=sa.Integer(), nullable=False)
        b.alter_column("version", existing_type=sa.Integer(), nullable=False)
        b.create_foreign_key(
            op.f("fk_mk_savings_verification_id_mk_verifications"),
            "mk_verifications",
            ["verification_id"],
            ["id"],
            ondelete="CASCADE",
        )
        b.create_unique_constraint(
            op.f("uq_mk_savings_verification_id"), ["verification_id", "version"]
        )
        b.create_check_constraint(op.f("ck_mk_savings_version_positive"), "version >= 1")
        b.create_index(op.f("ix_mk_savings_verification_id"), ["verification_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mk_savings") as b:
        b.drop_index(op.f("ix_mk_savings_verification_id"))
        b.drop_constraint(op.f("ck_mk_savings_version_positive"), type_="check")
        b.drop_constraint(op.f("uq_mk_savings_verification_id"), type_="unique")
        b.drop_constraint(
            op.f("fk_mk_savings_verification_id_mk_verifications"), type_="foreignkey"
        )
        for col in (
            "frozen",
            "changes",
            "params",
            "result_digest",
            "data_digest",
            "version",
            "verification_id",
        ):
            b.drop_column(col)
    op.drop_index(op.f("ix_mk_verifications_campaign_id"), table_name="mk_verifications")
    op.drop_table("mk_verifications")
