"""Fixtures of the API tests: the world of ``tests/noaber/api_world.py`` with every domain
package's seed, and an app on it (test mode, :data:`tests.noaber.test_api_authz.SECRET`)."""

from __future__ import annotations

import pytest

from energy.settings import Settings
from noaber.api import create_app
from tests.noaber.api_world import build_world
from tests.noaber.test_api_authz import SECRET, _plugin_modules


@pytest.fixture
def world_app(engine, sessions, tmp_path):
    """``(app, world)``: the seeded world on ``engine`` (SQLite and PostgreSQL); its data
    directory (ledger checkpoints, signing key) is the test's own, never ``./data``."""
    with sessions() as session, session.begin():
        world = build_world(session)
        for mod in _plugin_modules():
            if hasattr(mod, "seed"):
                mod.seed(session, world)
    world.extra["sessions"] = sessions  # cases that need the store (a TOTP code) read it here
    settings = Settings(mode="test", secret_key=SECRET, data_dir=tmp_path / "data")
    return create_app(settings, engine), world
