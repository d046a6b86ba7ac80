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


def test_chain_head_is_seeded_and_triggers_exist(engine):
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT last_seq, last_hash FROM settlement_chain_head")
        ).one() == (0, "0" * 64)
        if is_postgres(engine):
            q = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'settlement_transfers'::regclass AND NOT tgisinternal"
        else:
            q = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'settlement_transfers'"
        names = {r[0] for r in conn.execute(text(q))}
    assert len(names) >= 2
