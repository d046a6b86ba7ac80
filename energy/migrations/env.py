"""Alembic environment: uses the engine handed over by :func:`energy.db.alembic_config`."""

from __future__ import annotations

from alembic import context

from energy import models, prices  # noqa: F401  (registers the core tables on Base.metadata)
from energy.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from energy.settings import get_settings

        engine = make_engine(get_settings().sqlalchemy_url)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `noaber db upgrade`")
run_migrations_online()
