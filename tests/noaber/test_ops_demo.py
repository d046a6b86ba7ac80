"""``noaber demo`` honours NOABER_DATABASE_URL: the demo goes into that database (here a
fresh PostgreSQL database), is rebuilt there on the next run, and a database the demo did
not make is refused before anything is cleared."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from energy.db import make_engine
from energy.errors import NoaberError
from energy.models import Site
from energy.settings import Settings
from noaber.services.demo import build_demo
from noaber.services.demo.builder import MARKER
from tests.conftest import PG_ADMIN_URL, _pg_admin, need

NOW = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)


def _fresh_pg(name: str) -> str:
    admin = _pg_admin()
    need(admin is not None, f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    assert admin is not None
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop(name: str) -> None:
    admin = _pg_admin()
    if admin is not None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_demo_uses_the_database_url_and_refuses_a_foreign_one(tmp_path: Path) -> None:
    import uuid

    name = f"noaber_demo_{uuid.uuid4().hex[:8]}"
    foreign_name = f"noaber_foreign_{uuid.uuid4().hex[:8]}"
    url = _fresh_pg(name)
    foreign = _fresh_pg(foreign_name)
    try:
        settings = Settings(mode="local", database_url=url)
        for _run in range(2):  # the second run empties and rebuilds what the first made
            ctx = build_demo(tmp_path / "demo", settings, now=NOW, sample_period_s=3600)
            ctx.engine.dispose()
            assert ctx.settings.database_url == url
            assert not (tmp_path / "demo" / "noaber.db").exists()  # nothing in SQLite
            engine = make_engine(url)
            with engine.connect() as c:
                assert c.execute(select(func.count()).select_from(Site)).scalar() == 2
            engine.dispose()
        # a database with tables the demo did not make: refused, the demo dir untouched
        eng = make_engine(foreign)
        with eng.begin() as c:
            c.execute(text("CREATE TABLE precious (v int)"))
            c.execute(text("INSERT INTO precious VALUES (42)"))
        eng.dispose()
        before = sorted(p.name for p in (tmp_path / "demo").iterdir())
        with pytest.raises(NoaberError, match="tables the demo did not make") as err:
            build_demo(tmp_path / "demo", Settings(mode="local", database_url=foreign), now=NOW)
        assert foreign_name in str(err.value)  # names the database (its password redacted)
        assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == before
        assert MARKER in before
        eng = make_engine(foreign)
        with eng.connect() as c:
            assert c.execute(text("SELECT v FROM precious")).scalar() == 42
        eng.dispose()
    finally:
        _drop(name)
        _drop(foreign_name)


def test_demo_without_a_database_url_stays_in_sqlite(tmp_path: Path) -> None:
    from noaber.services.demo import demo_settings

    s = demo_settings(tmp_path, Settings(mode="local", database_url=None))
    assert s.sqlalchemy_url == f"sqlite:///{(tmp_path / 'noaber.db').resolve()}"
    with_url = demo_settings(tmp_path, Settings(mode="local", database_url="postgresql://x@h/db"))
    assert with_url.sqlalchemy_url == "postgresql://x@h/db"
