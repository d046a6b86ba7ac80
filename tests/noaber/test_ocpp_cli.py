"""``noaber ocpp serve`` and ``noaber ocpp simulate`` as processes: a charger boots, charges and
its meter values are stored; SIGTERM stops the central system cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.net import scaled, wait_for_line

SITE = Path(__file__).parents[1] / "data" / "ocpp" / "site_ocpp.yaml"
ROOT = Path(__file__).parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(NOABER_DATA_DIR=str(tmp_path / "data"), NOABER_MODE="local", PYTHONPATH=str(ROOT))
    env.pop("NOABER_DATABASE_URL", None)
    return env


def _noaber(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noaber.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )


@pytest.mark.slow  # four CLI processes: ~20 s of imports each on a busy machine
def test_serve_and_simulate(tmp_path):
    env = _env(tmp_path)
    for args in (("db", "upgrade"), ("site", "import", str(SITE))):
        done = _noaber(*args, env=env)
        assert done.returncode == 0, done.stderr
    err = tmp_path / "serve.err"
    with err.open("w") as f:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "noaber.cli",
                "ocpp",
                "serve",
                "--site",
                str(SITE),
                "--port",
                "0",
                "--duration",
                "120",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=f,
            text=True,
        )
    try:
        m = wait_for_line(err, r"on ws://127\.0\.0\.1:(\d+)/", timeout_s=scaled(60), proc=serve)
        port = m[0].group(1)
        sim = _noaber(
            "ocpp", "simulate", "--url", f"ws://127.0.0.1:{port}", "--id", "CP-1",
            "--version", "2.0.1", "--meter-interval", "0.1", "--duration", "1.5",
            env=env,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stdout + sim.stderr
        assert "boot Accepted, token Accepted" in sim.stdout
        assert "(TxDefaultProfile)" in sim.stdout and "now 4140 W" in sim.stdout
        stranger = _noaber(
            "ocpp", "simulate", "--url", f"ws://127.0.0.1:{port}", "--id", "CP-9",
            "--duration", "1", env=env,
        )  # fmt: skip
        assert stranger.returncode == 1 and "boot Rejected" in stranger.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=scaled(60))
    assert serve.returncode == 0, err.read_text()
    line = next(x for x in out.splitlines() if "samples received" in x)
    m2 = re.match(r"(\d+) samples received, (\d+) stored, 0 dead-lettered", line)
    assert m2 is not None, line
    received, stored = int(m2.group(1)), int(m2.group(2))
    assert received > 0 and stored == received, line


def test_check_names_the_place_of_a_bad_charge_point(tmp_path, capsys):
    from noaber.cli import main

    bad = tmp_path / "site.yaml"
    text = SITE.read_text().replace(
        'ocpp_version: "2.0.1"', 'ocpp_version: "2.0.1"\n      min_power_w: -3700'
    )
    bad.write_text(text)
    with pytest.raises(SystemExit) as exc:
        main(["ocpp", "check", "--site", str(bad)])
    assert exc.value.code == 1
    err = "".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "site.yaml:ocpp.charge_points[0]:min_power_w-3700W" in err
    assert "needsocpp_version2.1" in err
    main_ok = SITE
    with pytest.raises(SystemExit) as exc:
        main(["ocpp", "check", "--site", str(main_ok)])
    assert exc.value.code == 0
    out = "".join(capsys.readouterr().out.split())
    assert "CP-1:OCPP2.0.1,drivesev-1,profilesinW,0..7400W,fallback4140W" in out


def test_hash_password_prints_an_argon2id_hash_the_central_system_checks(tmp_path):
    """``noaber ocpp hash-password --stdin``: the hash for a charger's ``password_hash:``
    (verifies with the password, not with another); a too short one is one error line."""
    from energy.ocppconfig import parse_ocpp_section
    from energy.security import verify_password

    env = _env(tmp_path)
    password = "Zon0p-Het-Dak!2026"
    done = subprocess.run(
        [sys.executable, "-m", "noaber.cli", "ocpp", "hash-password", "--stdin"],
        input=password + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip()
    assert digest.startswith("$argon2id$") and password not in done.stdout
    assert verify_password(digest, password) and not verify_password(digest, password + "x")
    cp = {"id": "CP-1", "asset": "ev-1", "max_power_w": 11000, "fallback_power_w": 0}
    section = {"security_profile": 1, "charge_points": [{**cp, "password_hash": digest}]}
    assert parse_ocpp_section(section, "site.yaml").charge_points[0].password_hash == digest
    short = subprocess.run(
        [sys.executable, "-m", "noaber.cli", "ocpp", "hash-password", "--stdin"],
        input="kort\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert short.returncode == 1 and "16 to 40 characters" in short.stderr
    assert "Traceback" not in short.stderr and short.stdout == ""
