"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, tmp data dirs, settings,
and the demo built once per session.

PostgreSQL (127.0.0.1:5432, trust auth) is used through a throw-away database per test, cloned
from a migrated template made once per session. Where PostgreSQL is absent the PostgreSQL
variants skip with a clear message, except under ``CI=true``, where that is a failure.

The demo (:func:`noaber.services.demo.build_demo` with every domain step, as ``noaber demo``
runs it) is built once per session at :data:`DEMO_NOW`: :func:`demo` shares it read-only,
:func:`demo_copy` gives a test that writes its own copy of the demo's data directory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, text

from energy.db import make_engine, session_factory, upgrade

if TYPE_CHECKING:
    from noaber.services.demo import DemoContext

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("NOABER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
#: The clock of the session demo: its week is 26 November - 2 December 2026 (local), so it
#: crosses a month boundary (two settlement months, each with a few days of data).
DEMO_NOW = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)
#: Sample period of the session demo [s] (the CLI's is 60 s; 5 minutes keeps the build short).
DEMO_SAMPLE_PERIOD_S = 300


def need(condition: bool, why: str) -> None:
    """Skip with ``why`` unless under CI, where a missing part is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {why}")
    pytest.skip(why)


def need_executable(name: str) -> str:
    """Path of an executable (a Debian package the tests need), or skip/fail."""
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (apt-get install {name}; .ci/run does)")
    assert path is not None
    return path


def _pg_admin() -> Engine | None:
    try:
        eng = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
        with eng.connect() as c:
            c.execute(text("select 1"))
        return eng
    except Exception:
        return None


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """Name of a migrated PostgreSQL template database, or None if PostgreSQL is absent."""
    admin = _pg_admin()
    if admin is None:
        yield None
        return
    name = f"noaber_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    upgrade(eng)
    eng.dispose()
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _new_pg_database(template: str) -> tuple[str, str]:
    admin = _pg_admin()
    assert admin is not None
    name = f"noaber_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg_database(name: str) -> None:
    admin = _pg_admin()
    if admin is None:
        return
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_template: str | None
) -> Iterator[str]:
    """URL of a fresh, migrated database: once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'noaber.db'}"
        eng = make_engine(url)
        upgrade(eng)
        eng.dispose()
        yield url
        return
    need(pg_template is not None, f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    assert pg_template is not None
    name, url = _new_pg_database(pg_template)
    yield url
    _drop_pg_database(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the fresh database of :func:`db_url`."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine):
    """A session factory on :func:`engine`."""
    return session_factory(engine)


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's default data directory (``Settings().data_dir``: ledger checkpoints and
    signing key, secrets, samples) is its own, never the checkout's ``./data``: a checkpoint
    one test signs there would make another test's fresh ledger refuse to verify."""
    monkeypatch.setenv("NOABER_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point NOABER_* at a temporary data dir (SQLite) and return fresh settings."""
    from energy.settings import get_settings

    monkeypatch.setenv("NOABER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NOABER_MODE", "local")
    monkeypatch.delenv("NOABER_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoContext]:
    """The demo with every domain step, built once per session at :data:`DEMO_NOW`.

    Shared by every test that asks for it: read it, never write to it (use :func:`demo_copy`).
    """
    from energy.settings import Settings
    from noaber.services.demo import DOMAIN_STEPS, build_demo

    ctx = build_demo(
        tmp_path_factory.mktemp("session-demo") / "demo",
        Settings(mode="local", database_url=None),  # SQLite, whatever NOABER_DATABASE_URL says
        extra_steps=DOMAIN_STEPS,
        now=DEMO_NOW,
        sample_period_s=DEMO_SAMPLE_PERIOD_S,
    )
    yield ctx
    ctx.engine.dispose()


def copy_demo(demo: DemoContext, data_dir: Path) -> Iterator[DemoContext]:
    """A copy of the session :func:`demo` in ``data_dir`` (a generator for a fixture: the
    copy's engine is disposed after the test or module that writes to it)."""
    from energy.samples import SampleStore
    from noaber.services.demo import demo_settings

    demo.engine.dispose()  # the last connection closed: the SQLite WAL is checkpointed
    shutil.copytree(demo.data_dir, data_dir)
    settings = demo_settings(data_dir, demo.settings)
    engine = make_engine(settings.sqlalchemy_url)
    yield dataclasses.replace(
        demo,
        data_dir=data_dir,
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        store=SampleStore(settings.samples_dir),
        channels=dict(demo.channels),
        notes=list(demo.notes),
    )
    engine.dispose()


@pytest.fixture
def demo_copy(demo: DemoContext, tmp_path: Path) -> Iterator[DemoContext]:
    """A copy of the session :func:`demo` in ``tmp_path``, for a test that writes to it."""
    yield from copy_demo(demo, tmp_path / "demo")
