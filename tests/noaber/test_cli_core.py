"""``noaber serve/demo/site import/user add``: help everywhere, one-line errors, exit codes."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from energy.db import make_engine, session_factory
from energy.models import AuditEntry, Role, User
from tests.net import wait_for_http, wait_for_line


def _noaber(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {
        **os.environ,
        "NOABER_DATA_DIR": str(tmp_path / "data"),
        "NOABER_MODE": "local",
        "COLUMNS": "200",
        **env,
    }
    e.pop("NOABER_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "noaber.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=e,
    )


@pytest.mark.parametrize(
    "args", [("serve",), ("demo",), ("site",), ("site", "import"), ("user",), ("user", "add")]
)
def test_help(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = _noaber(tmp_path, *args, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


@pytest.mark.slow
def test_site_import_and_user_add(tmp_path: Path) -> None:
    from importlib import resources

    site = Path(str(resources.files("noaber.services.demo") / "data" / "demo_site.yaml"))
    out = _noaber(tmp_path, "site", "import", str(site))
    assert out.returncode == 0, out.stderr
    assert "created" in out.stdout
    out = _noaber(tmp_path, "site", "import", str(site))
    assert out.returncode == 0 and "already up to date" in out.stdout
    out = _noaber(
        tmp_path,
        "user",
        "add",
        "anna",
        "--role",
        "member",
        "--member",
        "m-4c1e7a",
        NOABER_NEW_USER_PASSWORD="anna-secret-pw",
    )
    assert out.returncode == 1 and "user:username: username 'anna' contains 'anna'" in out.stderr
    out = _noaber(
        tmp_path,
        "--as",
        "beheerder",
        "user",
        "add",
        "lid-1",
        "--role",
        "member",
        "--member",
        "m-4c1e7a",
        NOABER_NEW_USER_PASSWORD="anna-secret-pw",
    )
    assert out.returncode == 0, out.stderr
    out = _noaber(
        tmp_path,
        "user",
        "add",
        "boss",
        "--role",
        "site_manager",
        "--site",
        "dorpshuis-noaberhof",
        NOABER_NEW_USER_PASSWORD="boss-secret-pw",
    )
    assert out.returncode == 0, out.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'noaber.db'}")
    with session_factory(engine)() as session:
        users = {u.username: u for u in session.scalars(select(User))}
        assert users["lid-1"].role is Role.MEMBER and users["lid-1"].member.ref == "m-4c1e7a"
        assert [s.name for s in users["boss"].sites] == ["dorpshuis-noaberhof"]
        assert "anna-secret-pw" not in users["lid-1"].password_hash
        log = [(e.actor, e.action, e.target) for e in session.scalars(select(AuditEntry))]
        me = getpass.getuser()
        assert log == [
            (me, "site.import", "dorpshuis-noaberhof"),
            ("beheerder", "user.add", "lid-1"),
            (me, "user.add", "boss"),
        ]
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("site", "import", "/no/such/site.yaml"), "no such file"),
        (("user", "add", "anna", "--role", "member", "--member", "m-nobody"), "member_ref"),
        (("user", "add", "anna", "--role", "king"), "role"),
        (("user", "add", "anna", "--role", "operator"), "password"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    pw = "short" if args[-1] == "operator" else "long-enough-pw"
    out = _noaber(tmp_path, *args, NOABER_NEW_USER_PASSWORD=pw)
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_bad_site_file_names_the_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site:\n  name: x\n  ean: 12\n")
    out = _noaber(tmp_path, "site", "import", str(bad))
    assert out.returncode == 1
    assert "bad.yaml" in out.stderr and "Traceback" not in out.stderr


def test_serve_answers_on_a_free_port(tmp_path: Path) -> None:
    env = {**os.environ, "NOABER_DATA_DIR": str(tmp_path / "data"), "NOABER_MODE": "local"}
    env.pop("NOABER_DATABASE_URL", None)
    env["COLUMNS"] = "200"  # the URL on one line
    log = tmp_path / "serve.log"
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "noaber.cli", "serve", "--port", "0"],  # it binds a free port
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        (said,) = wait_for_line(log, r"Noaber API on http://127\.0\.0\.1:(\d+)/", 60, proc)
        port = int(said.group(1))
        body = wait_for_http(f"http://127.0.0.1:{port}/health", 60, proc)
        assert body == b'{"status":"ok","database":"ok"}'  # /health checks the database
        assert (tmp_path / "data" / "noaber.db").exists()  # migrated on start
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("args", [("serve",), ("demo", "--no-serve"), ("user", "add", "x-user")])
def test_production_without_secret_is_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    extra = ("--role", "operator") if args[0] == "user" else ()
    out = _noaber(
        tmp_path,
        *args,
        *extra,
        NOABER_MODE="production",
        NOABER_NEW_USER_PASSWORD="long-enough-pw",
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOABER_SECRET_KEY must be set" in lines[0], lines
    assert not (tmp_path / "data").exists()  # nothing created


def test_serve_socket_sends_small_responses_without_delay() -> None:
    """The connections `noaber serve` accepts have TCP_NODELAY (asyncio sets it only on
    sockets it made): else a small response's second write waits for a delayed ACK."""
    import socket

    from noaber.cli.serve import _bind

    with _bind("127.0.0.1", 0) as listener:
        with socket.create_connection(listener.getsockname()[:2], timeout=5) as client:
            conn, _addr = listener.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                client.sendall(b"x")
                assert conn.recv(1) == b"x"
