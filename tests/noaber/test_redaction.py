"""No command prints the database password (issue 12, point 7).

PostgreSQL here trusts every local connection, so a URL with a made-up password connects; each
command that names its database (``db upgrade``, ``site import``, ``user add``)
must print the URL with ``***`` in place of the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from energy.settings import redact_database_url
from tests.conftest import _drop_pg_database, _new_pg_database

PASSWORD = "Zq8-not-for-logs"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://noaber:s3cret@db:5432/noaber", "postgresql://noaber:***@db:5432/noaber"),
        ("postgresql+psycopg://u:p%40ss@h/d", "postgresql+psycopg://u:***@h/d"),
        ("postgresql://u:p@ss/wo#rd@h/d", "postgresql://u:***@h/d"),
        ("postgresql://only-user@h/d", "postgresql://only-user@h/d"),
        ("sqlite:////var/lib/noaber/noaber.db", "sqlite:////var/lib/noaber/noaber.db"),
    ],
)
def test_redact_database_url(url: str, shown: str) -> None:
    assert redact_database_url(url) == shown


@pytest.mark.postgres
def test_commands_print_no_database_password(tmp_path: Path, pg_template: str | None) -> None:
    from tests.conftest import need

    need(pg_template is not None, "PostgreSQL is not reachable")
    assert pg_template is not None
    name, url = _new_pg_database(pg_template)
    secret_url = url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    env = {
        **os.environ,
        "NOABER_DATA_DIR": str(tmp_path / "data"),
        "NOABER_MODE": "local",
        "NOABER_DATABASE_URL": secret_url,
        "NOABER_NEW_USER_PASSWORD": "a-long-enough-password",
        "COLUMNS": "200",
    }
    site = Path(str(resources.files("noaber.services.demo") / "data" / "demo_site.yaml"))
    commands = [
        ("db", "upgrade"),
        ("site", "import", str(site)),
        ("user", "add", "operator1", "--role", "operator"),
    ]
    try:
        for args in commands:
            out = subprocess.run(
                [sys.executable, "-m", "noaber.cli", *args],
                capture_output=True,
                text=True,
                timeout=180,
                env=env,
            )
            assert out.returncode == 0, (args, out.stderr)
            printed = out.stdout + out.stderr
            assert PASSWORD not in printed, (args, printed)
            assert "postgres:***@" in printed, (args, printed)
    finally:
        _drop_pg_database(name)
