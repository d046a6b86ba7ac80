"""settlement: transfers keep only the indexes a query or a constraint needs; references
checked once per statement

Revision ID: settlement_0003_speed
Revises: settlement_0002_proof
Create Date: 2026-12-02

Posting is a bulk insert into ``settlement_transfers``; each index and each foreign key costs
per row. What stays, and why:

- primary key ``seq`` (the chain order, every reference);
- unique ``idempotency_id`` (a transfer is posted once);
- unique ``reverses_id`` (a transfer is reversed at most once; the "not reversed" test of
  ``effective_transfers``), now a partial index over the reversals only;
- ``(community, period, member_ref)`` in place of ``(member_ref, community, period)`` and
  ``(community, period)``: the period queries use its prefix, a member's statement all three;
- ``(run_id) WHERE flags = 'pending'`` in place of ``(run_id)``: the only query by run (the
  pending transfers of a provisional run being posted or voided).

Dropped: unique ``hash`` (no query reads by hash; the hash covers ``seq``, so two rows cannot
share one unless sha256 collides, and ``ledger verify`` recomputes every hash anyway).

The three foreign keys (``run_id`` -> runs, ``reverses_id`` and ``pending_id`` -> transfers)
become one check per INSERT statement with the same guarantee: an insert referring to a run or
transfer that does not exist fails, naming it. PostgreSQL: a statement-level trigger over the
inserted rows (transition table), one anti-join per ``COPY``; SQLite (no statement triggers):
a row trigger. The referred side: transfers cannot be deleted or updated (their own
triggers); deleting a run, or changing its id, is refused while transfers refer to it
(``TRUNCATE settlement_runs`` stays refused by the other tables' foreign keys to it).

SQLite cannot drop a constraint: ``settlement_transfers`` is rebuilt (rows copied, its
immutability triggers created again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "settlement_0003_speed"
down_revision = "settlement_0002_proof"
branch_labels = None
depends_on = None

T = "settlement_transfers"
COLUMNS = (
    "seq, ledger, debit_account, credit_account, amount, idempotency_id, reverses_id, "
    "pending_id, run_id, community, period, code, day, member_ref, flags, prev_hash, hash"
)
PG_REFS = """
CREATE FUNCTION settlement_transfers_refs() RETURNS trigger AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.seq, n.run_id, n.reverses_id, n.pending_id,
           NOT EXISTS (SELECT 1 FROM settlement_runs r WHERE r.id = n.run_id) AS no_run,
           n.reverses_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM settlement_transfers o WHERE o.seq = n.reverses_id)
               AS no_rev
      INTO bad
      FROM new_rows n
     WHERE NOT EXISTS (SELECT 1 FROM settlement_runs r WHERE r.id = n.run_id)
        OR (n.reverses_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM settlement_transfers o WHERE o.seq = n.reverses_id))
        OR (n.pending_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM settlement_transfers o WHERE o.seq = n.pending_id))
     ORDER BY n.seq
     LIMIT 1;
    IF FOUND THEN
        IF bad.no_run THEN
            RAISE EXCEPTION 'settlement_transfers: transfer % refers to run %, which does not exist',
                bad.seq, bad.run_id USING ERRCODE = 'foreign_key_violation';
        ELSIF bad.no_rev THEN
            RAISE EXCEPTION 'settlement_transfers: transfer % reverses transfer %, which does not exist',
                bad.seq, bad.reverses_id USING ERRCODE = 'foreign_key_violation';
        ELSE
            RAISE EXCEPTION 'settlement_transfers: transfer % posts or voids transfer %, which does not exist',
                bad.seq, bad.pending_id USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
PG_RUN_REFERRED = """
CREATE FUNCTION settlement_runs_referred() RETURNS trigger AS $$
BEGIN
    IF (TG_OP = 'DELETE' OR NEW.id IS DISTINCT FROM OLD.id)
       AND EXISTS (SELECT 1 FROM settlement_transfers t WHERE t.run_id = OLD.id) THEN
        RAISE EXCEPTION 'settlement_runs: run % has transfers: % refused', OLD.id, TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER settlement_transfers_refs
    BEFORE INSERT ON settlement_transfers
    BEGIN
        SELECT RAISE(ABORT, 'settlement_transfers: a transfer refers to a run that does not exist')
        WHERE NOT EXISTS (SELECT 1 FROM settlement_runs r WHERE r.id = NEW.run_id);
        SELECT RAISE(ABORT,
            'settlement_transfers: a transfer reverses a transfer that does not exist')
        WHERE NEW.reverses_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM settlement_transfers o WHERE o.seq = NEW.reverses_id);
        SELECT RAISE(ABORT,
            'settlement_transfers: a transfer posts or voids a transfer that does not exist')
        WHERE NEW.pending_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM settlement_transfers o WHERE o.seq = NEW.pending_id);
    END
    """,
    """
    CREATE TRIGGER settlement_runs_referred_delete
    BEFORE DELETE ON settlement_runs
    WHEN EXISTS (SELECT 1 FROM settlement_transfers t WHERE t.run_id = OLD.id)
    BEGIN
        SELECT RAISE(ABORT, 'settlement_runs: the run has transfers: DELETE refused');
    END
    """,
    """
    CREATE TRIGGER settlement_runs_referred_update
    BEFORE UPDATE OF id ON settlement_runs
    WHEN NEW.id IS NOT OLD.id
     AND EXISTS (SELECT 1 FROM settlement_transfers t WHERE t.run_id = OLD.id)
    BEGIN
        SELECT RAISE(ABORT, 'settlement_runs: the run has transfers: UPDATE of id refused');
    END
    """,
)
SQLITE_IMMUTABLE = tuple(
    f"""
    CREATE TRIGGER settlement_transfers_no_{action.lower()}
    BEFORE {action} ON settlement_transfers
    BEGIN
        SELECT RAISE(ABORT, 'settlement_transfers are immutable: {action} refused');
    END
    """
    for action in ("UPDATE", "DELETE")
)


def _table(name: str, with_fks: bool) -> None:
    """``settlement_transfers`` as of settlement_0001 (``with_fks``) or of this revision."""
    constraints: list[sa.Constraint] = [
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
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_settlement_transfers")),
        sa.UniqueConstraint("idempotency_id", name=op.f("uq_settlement_transfers_idempotency_id")),
    ]
    if with_fks:
        constraints += [
            sa.ForeignKeyConstraint(
                ["pending_id"],
                [f"{T}.seq"],
                name=op.f("fk_settlement_transfers_pending_id_settlement_transfers"),
            ),
            sa.ForeignKeyConstraint(
                ["reverses_id"],
                [f"{T}.seq"],
                name=op.f("fk_settlement_transfers_reverses_id_settlement_transfers"),
            ),
            sa.ForeignKeyConstraint(
                ["run_id"],
                ["settlement_runs.id"],
                name=op.f("fk_settlement_transfers_run_id_settlement_runs"),
            ),
            sa.UniqueConstraint("hash", name=op.f("uq_settlement_transfers_hash")),
            sa.UniqueConstraint("reverses_id", name=op.f("uq_settlement_transfers_reverses_id")),
        ]
    op.create_table(
        name,
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
        *constraints,
    )


def _rebuild_sqlite(with_fks: bool) -> None:
    """Copy the transfers into a table of the other shape and put it in place (the old
    table's triggers and indexes go with it)."""
    op.execute("UPDATE settlement_chain_head SET last_seq = last_seq WHERE id = 1")
    op.execute("PRAGMA defer_foreign_keys = ON")
    _table("_settlement_transfers_new", with_fks)
    op.execute(f"INSERT INTO _settlement_transfers_new ({COLUMNS}) SELECT {COLUMNS} FROM {T}")
    for trigger in ("refs", "no_update", "no_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS settlement_transfers_{trigger}")
    op.execute(f"DROP TABLE {T}")
    op.execute(f"ALTER TABLE _settlement_transfers_new RENAME TO {T}")
    for sql in SQLITE_IMMUTABLE:
        op.execute(sql)


def _new_indexes() -> None:
    op.create_index(
        "uq_settlement_transfers_reverses_id",
        T,
        ["reverses_id"],
        unique=True,
        postgresql_where=sa.text("reverses_id IS NOT NULL"),
        sqlite_where=sa.text("reverses_id IS NOT NULL"),
    )
    op.create_index(
        "ix_settlement_transfers_period_member", T, ["community", "period", "member_ref"]
    )
    op.create_index(
        "ix_settlement_transfers_pending_run",
        T,
        ["run_id"],
        postgresql_where=sa.text("flags = 'pending'"),
        sqlite_where=sa.text("flags = 'pending'"),
    )


def _old_indexes() -> None:
    op.create_index("ix_settlement_transfers_member", T, ["member_ref", "community", "period"])
    op.create_index(op.f("ix_settlement_transfers_run_id"), T, ["run_id"])
    op.create_index("ix_settlement_transfers_community_period", T, ["community", "period"])


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _rebuild_sqlite(with_fks=False)
        _new_indexes()
        for sql in SQLITE_TRIGGERS:
            op.execute(sql)
        return
    for fk in (
        "fk_settlement_transfers_pending_id_settlement_transfers",
        "fk_settlement_transfers_reverses_id_settlement_transfers",
        "fk_settlement_transfers_run_id_settlement_runs",
    ):
        op.drop_constraint(fk, T, type_="foreignkey")
    op.drop_constraint("uq_settlement_transfers_hash", T, type_="unique")
    op.drop_constraint("uq_settlement_transfers_reverses_id", T, type_="unique")
    op.drop_index("ix_settlement_transfers_member", T)
    op.drop_index("ix_settlement_transfers_community_period", T)
    op.drop_index(op.f("ix_settlement_transfers_run_id"), T)
    _new_indexes()
    if dialect == "postgresql":
        op.execute(PG_REFS)
        op.execute(
            f"""
            CREATE TRIGGER settlement_transfers_refs
            AFTER INSERT ON {T} REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION settlement_transfers_refs()
            """
        )
        op.execute(PG_RUN_REFERRED)
        op.execute(
            """
            CREATE TRIGGER settlement_runs_referred
            BEFORE UPDATE OR DELETE ON settlement_runs
            FOR EACH ROW EXECUTE FUNCTION settlement_runs_referred()
            """
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS settlement_runs_referred_delete")
        op.execute("DROP TRIGGER IF EXISTS settlement_runs_referred_update")
        _rebuild_sqlite(with_fks=True)
        _old_indexes()
        return
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS settlement_runs_referred ON settlement_runs")
        op.execute("DROP FUNCTION IF EXISTS settlement_runs_referred()")
        op.execute(f"DROP TRIGGER IF EXISTS settlement_transfers_refs ON {T}")
        op.execute("DROP FUNCTION IF EXISTS settlement_transfers_refs()")
    op.drop_index("ix_settlement_transfers_pending_run", T)
    op.drop_index("ix_settlement_transfers_period_member", T)
    op.drop_index("uq_settlement_transfers_reverses_id", T)
    _old_indexes()
    op.create_unique_constraint("uq_settlement_transfers_reverses_id", T, ["reverses_id"])
    op.create_unique_constraint("uq_settlement_transfers_hash", T, ["hash"])
    op.create_foreign_key(
        "fk_settlement_transfers_run_id_settlement_runs", T, "settlement_runs", ["run_id"], ["id"]
    )
    op.create_foreign_key(
        "fk_settlement_transfers_reverses_id_settlement_transfers",
        T,
        T,
        ["reverses_id"],
        ["seq"],
    )
    op.create_foreign_key(
        "fk_settlement_transfers_pending_id_settlement_transfers", T, T, ["pending_id"], ["seq"]
    )
