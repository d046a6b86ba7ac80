"""settlement: sealed records (member days, statements, period roots), period Merkle roots

Revision ID: settlement_0002_proof
Revises: settlement_0002_runs
Create Date: 2026-12-02

Member-day rows, statements, period roots and their records are immutable in the database like
transfers: triggers refuse UPDATE and DELETE (PostgreSQL: one trigger function; SQLite: one
trigger per table and action). A second chain head row (id 2) is the records' chain.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "settlement_0002_proof"
down_revision = "settlement_0002_runs"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64
IMMUTABLE = (
    "settlement_records",
    "settlement_period_roots",
    "settlement_member_days",
    "settlement_statements",
)


def upgrade() -> None:
    op.create_table(
        "settlement_records",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "kind IN ('member_day', 'statement', 'root')",
            name=op.f("ck_settlement_records_kind_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_records_run_id_settlement_runs"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_settlement_records")),
        sa.UniqueConstraint("hash", name=op.f("uq_settlement_records_hash")),
        sa.UniqueConstraint("key", name=op.f("uq_settlement_records_key")),
    )
    op.create_index(
        op.f("ix_settlement_records_run_id"), "settlement_records", ["run_id"], unique=False
    )
    op.create_table(
        "settlement_period_roots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("max_seq", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("days_root", sa.String(length=64), nullable=False),
        sa.Column("days_size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_period_roots_run_id_settlement_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_period_roots")),
        sa.UniqueConstraint("community", "period", "tree_size", name="uq_settlement_period_roots"),
    )
    op.bulk_insert(
        sa.table(
            "settlement_chain_head",
            sa.column("id", sa.Integer),
            sa.column("last_seq", sa.BigInteger),
            sa.column("last_hash", sa.String),
        ),
        [{"id": 2, "last_seq": 0, "last_hash": GENESIS_HASH}],
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION settlement_sealed_immutable() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% rows are immutable: % refused', TG_TABLE_NAME, TG_OP;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        for table in IMMUTABLE:
            op.execute(
                f"""
                CREATE TRIGGER {table}_no_update_delete
                BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION settlement_sealed_immutable()
                """
            )
            op.execute(
                f"""
                CREATE TRIGGER {table}_no_truncate
                BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION settlement_sealed_immutable()
                """
            )
    elif dialect == "sqlite":
        for table in IMMUTABLE:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"""
                    CREATE TRIGGER {table}_no_{action.lower()}
                    BEFORE {action} ON {table}
                    BEGIN
                        SELECT RAISE(ABORT, '{table} rows are immutable: {action} refused');
                    END
                    """
                )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in IMMUTABLE:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
        elif dialect == "sqlite":
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS settlement_sealed_immutable()")
    op.execute("DELETE FROM settlement_chain_head WHERE id = 2")
    op.drop_table("settlement_period_roots")
    op.drop_index(op.f("ix_settlement_records_run_id"), table_name="settlement_records")
    op.drop_table("settlement_records")
