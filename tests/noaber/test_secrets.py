"""Secrets and demo logins (issue 14, point 1): tokens verify only with the data dir's key,
the demo's printed credentials are refused outside local mode, and ``serve`` says when local
mode listens beyond this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from energy.security import create_access_token
from energy.settings import Settings
from energy.users import create_user
from noaber.api import create_app
from tests.net import wait_for_http, wait_for_line
from tests.noaber.api_world import build_world

#: The signing secret that used to be in energy/settings.py (the literal, not imported).
OLD_DEV_SECRET = "noaber-local-development-secret-not-for-deployment"
PRODUCTION_KEY = "p" * 48


def test_only_the_data_dirs_secret_signs_tokens(engine, sessions, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NOABER_SECRET_KEY", raising=False)
    with sessions() as session, session.begin():
        build_world(session)
    settings = Settings(mode="local", data_dir=tmp_path / "a")
    app = create_app(settings, engine)
    own = create_access_token("oper", "operator", settings.signing_key, 600)
    old = create_access_token("oper", "operator", OLD_DEV_SECRET, 600)
    other_dir = Settings(mode="local", data_dir=tmp_path / "b").signing_key
    foreign = create_access_token("oper", "operator", other_dir, 600)
    with TestClient(app) as client:
        assert (
            client.get("/users/me", headers={"Authorization": f"Bearer {own}"}).status_code == 200
        )
        for token in (old, foreign):
            r = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, r.text
            assert "Signature verification failed" in r.json()["detail"]
            cookie = client.get("/sites", cookies={"noaber_token": token})
            assert cookie.status_code == 401


def _demo_users(sessions) -> None:
    with sessions() as session, session.begin():
        create_user(session, "operator", "noaber-operator", "operator")
        create_user(session, "beheer-noaberhof", "a-real-password-of-our-own", "operator")


@pytest.mark.parametrize("mode", ["production", "test"])
def test_demo_logins_are_refused_outside_local_mode(engine, sessions, mode) -> None:
    _demo_users(sessions)
    app = create_app(Settings(mode=mode, secret_key=PRODUCTION_KEY), engine)
    with TestClient(app) as client:
        r = client.post("/auth/token", data={"username": "operator", "password": "noaber-operator"})
        assert r.status_code == 403, r.text
        assert r.json()["detail"] == "demo users sign in only in local mode"
        page = client.post(
            "/login",
            data={"username": "operator", "password": "noaber-operator", "next": "/"},
            follow_redirects=False,
        )
        assert page.status_code == 403 and "set-cookie" not in page.headers
        assert "Demogebruikers kunnen alleen in de lokale modus inloggen." in page.text
        # a real user who shares a demo username keeps their own password
        ok = client.post(
            "/auth/token",
            data={"username": "beheer-noaberhof", "password": "a-real-password-of-our-own"},
        )
        assert ok.status_code == 200


def test_demo_logins_work_in_local_mode(engine, sessions, tmp_path) -> None:
    _demo_users(sessions)
    app = create_app(Settings(mode="local", data_dir=tmp_path, secret_key=PRODUCTION_KEY), engine)
    with TestClient(app) as client:
        r = client.post("/auth/token", data={"username": "operator", "password": "noaber-operator"})
        assert r.status_code == 200, r.text


def _serve(tmp_path: Path, *args: str) -> tuple[str, str]:
    """Start ``noaber serve --port 0 ARGS`` in local mode; its stdout and stderr once it answers."""
    env = {**os.environ, "NOABER_DATA_DIR": str(tmp_path / "data"), "NOABER_MODE": "local"}
    env.pop("NOABER_DATABASE_URL", None)
    env.pop("NOABER_SECRET_KEY", None)
    env["COLUMNS"] = "200"
    tmp_path.mkdir(parents=True)
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "noaber.cli", "serve", "--port", "0", *args],
            env=env,
            stdout=o,
            stderr=e,
        )
    try:
        (said,) = wait_for_line(out, r"Noaber API on http://[^:]+:(\d+)/", 60, proc)
        wait_for_http(f"http://127.0.0.1:{said.group(1)}/health", 60, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return out.read_text(), err.read_text()


def test_serve_warns_once_when_local_mode_listens_beyond_loopback(tmp_path: Path) -> None:
    _out, err = _serve(tmp_path / "wide", "--host", "0.0.0.0")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0], err
    _out, err = _serve(tmp_path / "loop")
    assert "warning:" not in err, err
    secret = tmp_path / "loop" / "data" / "secret_key"
    assert not secret.exists() or oct(secret.stat().st_mode & 0o777) == "0o600"
