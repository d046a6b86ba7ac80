"""The Alembic migrations of every branch build exactly the tables the models declare."""

import importlib
import re
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from energy.db import Base, current_revisions

#: Every module that declares tables on energy.db.Base.
MODEL_MODULES = (
    "energy.alarms",
    "energy.chargepoints",
    "energy.gateways",
    "energy.jobs",
    "energy.models",
    "energy.prices",
    "energy.rawstore",
    "energy.sitecontrols",
    "energy.tariffs",
    "meetkoffer.models",
    "optimizer.store",
    "settlement.models",
)


def test_every_table_module_is_listed():
    """A new module with tables must be added above, or its migration goes unchecked."""
    root = Path(__file__).parents[2]
    declaring = set()
    for pkg in ("energy", "meetkoffer", "modbus_gateway", "optimizer", "settlement"):
        for f in (root / pkg).rglob("*.py"):
            if "migrations" in f.parts:
                continue
            if re.search(r"^class \w+\(Base\):", f.read_text(encoding="utf-8"), re.M):
                declaring.add(".".join(f.relative_to(root).with_suffix("").parts))
    assert declaring == set(MODEL_MODULES)


def test_migrations_match_models(engine):
    for m in MODEL_MODULES:
        importlib.import_module(m)
    assert {"0009_readings_version", "settlement_0004_tariff_versions"} <= current_revisions(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
