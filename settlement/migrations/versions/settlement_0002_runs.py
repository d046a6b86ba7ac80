"""settlement: runs compare with the ledger, coverage, price inputs, tariffs, payment runs

Revision ID: settlement_0002_runs
Revises: settlement_0001
Create Date: 2026-12-02

A data version is no longer unique per community and period (data A, B, then A again posts
back to A); runs record their coverage, kind and the taxed energy that set the tax band;
member days record the taxed energy and the connection; tariffs are kept as priced; payment
runs (SEPA) are one per community and period.

On SQLite, dropping the unique constraint rebuilds ``settlement_runs`` by hand (see
:func:`_recreate_runs_sqlite`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import energy.db

revision = "settlement_0002_runs"
down_revision = "settlement_0001"
branch_labels = None
depends_on = None


OLD_COLUMNS = (
    "id, community, period, data_version, provisional, status, tariff_digest, n_transfers, "
    "created_at"
)


def _new_columns() -> list[sa.Column]:
    return [
        sa.Column("kind", sa.String(length=10), nullable=False, server_default="settle"),
        sa.Column("energy_version", sa.String(length=64), nullable=True),
        sa.Column("coverage_days", sa.Integer(), nullable=True),
        sa.Column("period_days", sa.Integer(), nullable=True),
        sa.Column("prior_wh", sa.JSON(), nullable=True),
    ]


def _recreate_runs_sqlite() -> None:
    """SQLite cannot drop a unique constraint: the table is rebuilt by hand. Transfers,
    statements and member days refer to it, so foreign-key checks are deferred to the commit
    (the driver opens the transaction only before DML, hence the no-op UPDATE first); the rows
    are copied back into the table of the same name, which satisfies the deferred checks (an
    ``ALTER TABLE RENAME`` of a copy would not)."""
    op.execute("UPDATE settlement_chain_head SET last_seq = last_seq WHERE id = 1")
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute(
        f"CREATE TEMP TABLE _settlement_runs_copy AS SELECT {OLD_COLUMNS} FROM settlement_runs"
    )
    op.execute("DROP TABLE settlement_runs")
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
        *_new_columns(),
        sa.CheckConstraint(
            "status IN ('posted', 'pending', 'voided')",
            name=op.f("ck_settlement_runs_status_valid"),
        ),
        sa.CheckConstraint(
            "kind IN ('settle', 'reprice')", name=op.f("ck_settlement_runs_kind_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_runs")),
    )
    op.execute(
        f"INSERT INTO settlement_runs ({OLD_COLUMNS}) SELECT {OLD_COLUMNS} FROM _settlement_runs_copy"
    )
    op.execute("DROP TABLE _settlement_runs_copy")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recreate_runs_sqlite()
        op.create_index(
            op.f("ix_settlement_runs_community"), "settlement_runs", ["community"], unique=False
        )
    else:
        op.drop_constraint("uq_settlement_runs_key", "settlement_runs", type_="unique")
        for col in _new_columns():
            op.add_column("settlement_runs", col)
        op.create_check_constraint("kind_valid", "settlement_runs", "kind IN ('settle', 'reprice')")
    op.create_index("ix_settlement_runs_period", "settlement_runs", ["community", "period"])
    op.add_column(
        "settlement_member_days",
        sa.Column("taxed_wh", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "settlement_member_days", sa.Column("connection", sa.String(length=64), nullable=True)
    )
    op.create_table(
        "settlement_tariffs",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_settlement_tariffs")),
    )
    op.create_table(
        "settlement_payment_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("execution_date", sa.Date(), nullable=False),
        sa.Column("n_payouts", sa.Integer(), nullable=False),
        sa.Column("payout_cents", sa.BigInteger(), nullable=False),
        sa.Column("n_collections", sa.Integer(), nullable=False),
        sa.Column("collection_cents", sa.BigInteger(), nullable=False),
        sa.Column("payout_digest", sa.String(length=64), nullable=True),
        sa.Column("collection_digest", sa.String(length=64), nullable=True),
        sa.Column("payout_xml", sa.Text(), nullable=True),
        sa.Column("collection_xml", sa.Text(), nullable=True),
        sa.Column("max_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", energy.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_payment_runs")),
        sa.UniqueConstraint("community", "period", name="uq_settlement_payment_runs_period"),
    )


def downgrade() -> None:
    op.drop_table("settlement_payment_runs")
    op.drop_table("settlement_tariffs")
    with op.batch_alter_table("settlement_member_days") as batch:
        batch.drop_column("connection")
        batch.drop_column("taxed_wh")
    op.drop_index("ix_settlement_runs_period", "settlement_runs")
    with op.batch_alter_table("settlement_runs") as batch:
        batch.drop_constraint("kind_valid", type_="check")
        for col in ("prior_wh", "period_days", "coverage_days", "energy_version", "kind"):
            batch.drop_column(col)
        batch.create_unique_constraint(
            "uq_settlement_runs_key", ["community", "period", "data_version"]
        )
