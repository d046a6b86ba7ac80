"""settlement: runs, hash-chained immutable transfers, member days, statements

Revision ID: settlement_0001
Revises:
Create Date: 2026-11-23

Transfers are immutable in the database itself: on PostgreSQL a trigger function raises on
UPDATE or DELETE of ``settlement_transfers``; on SQLite two triggers do the same.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "settlement_0001"
down_revision = None
branch_labels = ("settlement",)
depends_on = "0001_core"

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "settlement_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_chain_head")),
    )
    op.create_table(
        "settlement_doc_counters",
        sa.Column("series", sa.String(length=40), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("series", name=op.f("pk_settlement_doc_counters")),
    )
    op.create_table(
        "settlement_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("data_version", sa.String(length=64), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("tariff_digest", sa.String(length=64), nullable=False),
        sa.Column("n_transfers", sa.Integer(), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('posted', 'pending', 'voided')",
            name=op.f("ck_settlement_runs_status_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_runs")),
        sa.UniqueConstraint("community", "period", "data_version", name="uq_settlement_runs_key"),
    )
    op.create_index(
        op.f("ix_settlement_runs_community"), "settlement_runs", ["community"], unique=False
    )
    op.create_table(
        "settlement_member_days",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("member_ref", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("offtake_wh", sa.BigInteger(), nullable=False),
        sa.Column("shared_wh", sa.BigInteger(), nullable=False),
        sa.Column("injection_wh", sa.BigInteger(), nullable=False),
        sa.Column("supplied_wh", sa.BigInteger(), nullable=False),
        sa.Column("discharge_wh", sa.BigInteger(), nullable=False),
        sa.Column("green_discharge_wh", sa.BigInteger(), nullable=False),
        sa.Column("green_supplied_wh", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_member_days_run_id_settlement_runs"),
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "member_ref", "day", name=op.f("pk_settlement_member_days")
        ),
    )
    op.create_table(
        "settlement_statements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("member_ref", sa.String(length=64), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("corrects_id", sa.Integer(), nullable=True),
        sa.Column("max_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('statement', 'correction')", name=op.f("ck_settlement_statements_kind_valid")
        ),
        sa.ForeignKeyConstraint(
            ["corrects_id"],
            ["settlement_statements.id"],
            name=op.f("fk_settlement_statements_corrects_id_settlement_statements"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_statements_run_id_settlement_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_statements")),
        sa.UniqueConstraint("number", name=op.f("uq_settlement_statements_number")),
    )
    op.create_index(
        op.f("ix_settlement_statements_member_ref"),
        "settlement_statements",
        ["member_ref"],
        unique=False,
    )
    op.create_table(
        "settlement_transfers",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ledger", sa.String(length=5), nullable=False),
        sa.Column("debit_account", sa.String(length=120), nullable=False),
        sa.Column("credit_account", sa.String(length=120), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_id", sa.String(length=200), nullable=False),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column("pending_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("member_ref", sa.String(length=64), nullable=True),
        sa.Column("flags", sa.String(length=12), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "flags IN ('posted', 'pending', 'post_pending', 'void_pending')",
            name=op.f("ck_settlement_transfers_flags_valid"),
        ),
        sa.CheckConstraint(
            "ledger IN ('wh', 'cents')", name=op.f("ck_settlement_transfers_ledger_valid")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_settlement_transfers_amount_positive")),
        sa.CheckConstraint(
            "debit_account <> credit_account", name=op.f("ck_settlement_transfers_accounts_differ")
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["settlement_transfers.seq"],
            name=op.f("fk_settlement_transfers_pending_id_settlement_transfers"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["settlement_transfers.seq"],
            name=op.f("fk_settlement_transfers_reverses_id_settlement_transfers"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_transfers_run_id_settlement_runs"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_settlement_transfers")),
        sa.UniqueConstraint("hash", name=op.f("uq_settlement_transfers_hash")),
        sa.UniqueConstraint("idempotency_id", name=op.f("uq_settlement_transfers_idempotency_id")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_settlement_transfers_reverses_id")),
    )
    op.create_index(
        "ix_settlement_transfers_member",
        "settlement_transfers",
        ["member_ref", "community", "period"],
        unique=False,
    )
    op.create_index(
        op.f("ix_settlement_transfers_run_id"), "settlement_transfers", ["run_id"], unique=False
    )
    op.create_index(
        "ix_settlement_transfers_community_period",
        "settlement_transfers",
        ["community", "period"],
        unique=False,
    )
    op.bulk_insert(
        sa.table(
            "settlement_chain_head",
            sa.column("id", sa.Integer),
            sa.column("last_seq", sa.BigInteger),
            sa.column("last_hash", sa.String),
        ),
        [{"id": 1, "last_seq": 0, "last_hash": GENESIS_HASH}],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION settlement_transfers_immutable() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'settlement_transfers are immutable: % refused (add a reversing transfer instead)', TG_OP;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            """
            CREATE TRIGGER settlement_transfers_no_update_delete
            BEFORE UPDATE OR DELETE ON settlement_transfers
            FOR EACH ROW EXECUTE FUNCTION settlement_transfers_immutable()
            """
        )
        op.execute(
            """
            CREATE TRIGGER settlement_transfers_no_truncate
            BEFORE TRUNCATE ON settlement_transfers
            FOR EACH STATEMENT EXECUTE FUNCTION settlement_transfers_immutable()
            """
        )
    elif op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"""
                CREATE TRIGGER settlement_transfers_no_{action.lower()}
                BEFORE {action} ON settlement_transfers
                BEGIN
                    SELECT RAISE(ABORT, 'settlement_transfers are immutable: {action} refused');
                END
                """
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP TRIGGER IF EXISTS settlement_transfers_no_truncate ON settlement_transfers"
        )
        op.execute(
            "DROP TRIGGER IF EXISTS settlement_transfers_no_update_delete ON settlement_transfers"
        )
        op.execute("DROP FUNCTION IF EXISTS settlement_transfers_immutable()")
    for table in (
        "settlement_statements",
        "settlement_member_days",
        "settlement_transfers",
        "settlement_runs",
        "settlement_doc_counters",
        "settlement_chain_head",
    ):
        op.drop_table(table)
