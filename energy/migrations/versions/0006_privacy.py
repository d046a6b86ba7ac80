"""privacy: IBAN, licence plate and label in personal data, erasure time, consents, audit log

The audit log is append-only in the database itself: on PostgreSQL a trigger function raises
on UPDATE, DELETE or TRUNCATE of ``audit_log``; on SQLite two triggers do the same.

Revision ID: 0006_privacy
Revises: 0005_user_totp
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from energy.db import UTCDateTime

revision = "0006_privacy"
down_revision = "0005_user_totp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("member_personal", sa.Column("iban", sa.String(length=34), nullable=True))
    op.add_column(
        "member_personal", sa.Column("licence_plate", sa.String(length=20), nullable=True)
    )
    op.add_column("member_personal", sa.Column("label", sa.String(length=100), nullable=True))
    op.add_column("members", sa.Column("erased_at", UTCDateTime(), nullable=True))
    op.create_table(
        "member_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum("EV_DETAIL_SITE_MANAGER", name="consentpurpose", native_enum=False, length=40),
            nullable=False,
        ),
        sa.Column("given_at", UTCDateTime(), nullable=False),
        sa.Column("withdrawn_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "withdrawn_at IS NULL OR withdrawn_at >= given_at",
            name=op.f("ck_member_consents_withdrawn_after_given"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_member_consents_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_consents")),
    )
    op.create_index("ix_member_consents_member_id", "member_consents", ["member_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("via", sa.String(length=10), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_log_prev_hash")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    _immutable("audit_log")


def _immutable(table: str) -> None:
    """Triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) of ``table``."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only: % refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_append_only()
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()
            """
        )
    elif dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"""
                CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
                BEGIN
                    SELECT RAISE(ABORT, '{table} is append-only: {action} refused');
                END
                """
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update_delete ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("member_consents")
    with op.batch_alter_table("members") as batch:
        batch.drop_column("erased_at")
    with op.batch_alter_table("member_personal") as batch:
        batch.drop_column("label")
        batch.drop_column("licence_plate")
        batch.drop_column("iban")
