"""The meetkoffer Alembic branch creates exactly the tables of meetkoffer.models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import energy.models  # noqa: F401
import meetkoffer.models  # noqa: F401
from energy.db import Base


def test_migration_matches_models(engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    ours = [d for d in diffs if "mk_" in repr(d)]
    assert ours == []
    tables = set(inspect(engine).get_table_names())
    assert {
        "mk_campaigns",
        "mk_equipment",
        "mk_production",
        "mk_temperature",
        "mk_findings",
        "mk_savings",
        "mk_nonroutine",
    } <= tables
