"""The settlement migration matches the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

import energy.models  # noqa: F401  (the core tables)
import settlement.models  # noqa: F401
from energy.db import Base, is_postgres


def test_migration_matches_models(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if "settlement" in repr(d)]
    assert diff == []


def test_chain_heads_are_seeded_and_triggers_exist(engine):
    """Row 1 is the transfers' chain, row 2 the sealed records'; every immutable table has
    its UPDATE/DELETE triggers."""
    with engine.connect() as conn:
        heads = conn.execute(
            text("SELECT id, last_seq, last_hash FROM settlement_chain_head ORDER BY id")
        ).all()
        assert [tuple(h) for h in heads] == [(1, 0, "0" * 64), (2, 0, "0" * 64)]
        for table in (
            "settlement_transfers",
            "settlement_records",
            "settlement_period_roots",
            "settlement_member_days",
            "settlement_statements",
        ):
            if is_postgres(engine):
                q = f"SELECT tgname FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal"
            else:
                q = f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{table}'"
            names = {r[0] for r in conn.execute(text(q))}
            assert len(names) >= 2, table
