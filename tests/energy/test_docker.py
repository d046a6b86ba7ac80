"""docker/: the compose file needs every secret from the environment, and each image's command
is a real ``noaber`` command with options that exist (checked against the installed CLI).

No Docker daemon or compose plugin is needed: the files are checked as data.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from energy import cli

DOCKER = Path(__file__).resolve().parents[2] / "docker"
SECRETS = ("NOABER_SECRET_KEY", "POSTGRES_PASSWORD", "MQTT_PASSWORD")


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_services_and_production_mode() -> None:
    doc = _compose()
    assert set(doc["services"]) == {"db", "mqtt", "api", "gateway", "worker"}
    for name in ("api", "gateway", "worker"):
        svc = doc["services"][name]
        assert svc["build"]["target"] == name
        assert svc["environment"]["NOABER_MODE"] == "production"
        assert svc["environment"]["NOABER_DATABASE_URL"].startswith("postgresql://")
    assert doc["services"]["db"]["image"].startswith("postgres:")
    assert doc["services"]["mqtt"]["image"].startswith("eclipse-mosquitto:")


def test_secrets_have_no_defaults() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"(?=[:}])([^}]*)\}", text)
        assert uses, f"{secret} is not used"
        for rest in uses:
            assert rest.startswith(":?"), f"${{{secret}{rest}}} must be required (:?), no default"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for secret in SECRETS:
        assert not re.search(rf"^\s*(ENV|ARG)\b.*\b{secret}\b", dockerfile, re.M), secret


def _targets() -> dict[str, list[str]]:
    """CMD of each target of the Dockerfile, as an argv list."""
    cmds: dict[str, list[str]] = {}
    target = None
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        m = re.match(r"FROM \S+ AS (\w+)", line)
        if m:
            target = m.group(1)
        if line.startswith("CMD ") and target:
            cmds[target] = json.loads(line[4:])
    return cmds


def test_image_commands_exist_in_the_cli() -> None:
    cmds = _targets()
    assert set(cmds) >= {"api", "gateway", "worker"}
    cli._mount()
    runner = CliRunner()
    for target, argv in cmds.items():
        if argv[:2] == ["sh", "-c"]:
            argv = shlex.split(argv[2].replace("exec ", "", 1))
        assert argv[0] == "noaber", (target, argv)
        words = [a for a in argv[1:] if not a.startswith("$")]
        sub = [w for w in words if not w.startswith("-") and not w.startswith("/")]
        sub = [w for w in sub if not re.fullmatch(r"[\d.]+", w)]
        result = runner.invoke(cli.app, [*sub, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, (target, sub, result.output)
        for opt in (w for w in words if w.startswith("--")):
            assert opt in result.output, f"{target}: {opt} is not an option of noaber {sub}"
