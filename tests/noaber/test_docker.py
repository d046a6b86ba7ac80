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

from noaber import cli

DOCKER = Path(__file__).resolve().parents[2] / "docker"
SECRETS = ("NOABER_SECRET_KEY", "POSTGRES_PASSWORD", "MQTT_PASSWORD", "GATEWAY_MQTT_PASSWORD")


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_services_and_production_mode() -> None:
    doc = _compose()
    assert set(doc["services"]) == {"db", "mqtt", "api", "gateway", "ingest", "worker"}
    for name in ("api", "gateway", "ingest", "worker"):
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


def test_samples_flow_from_the_gateway_over_mqtt_to_ingest() -> None:
    """The gateway publishes to the broker of NOABER_MQTT_URL and ingest consumes from it,
    both with the broker's credentials; the broker admits no anonymous client."""
    from modbus_gateway.mqtt import parse_broker_url

    doc = _compose()
    cmds = _targets()
    gateway, ingest = cmds["gateway"], cmds["ingest"]
    assert gateway[:3] == ["noaber", "gateway", "run"] and "--mqtt-from-env" in gateway
    assert ingest[:3] == ["noaber", "gateway", "consume"] and "--intervals-every" in ingest
    assert "--mqtt" not in ingest  # NOABER_MQTT_URL, not a password in the process list
    url = doc["services"]["ingest"]["environment"]["NOABER_MQTT_URL"]
    broker = parse_broker_url(url.replace("${MQTT_PASSWORD:?set MQTT_PASSWORD}", "pw-1"))
    assert (broker.host, broker.port, broker.username, broker.password) == (
        "mqtt", 1883, "noaber", "pw-1"
    )  # fmt: skip
    # the gateway has its own identity (noaber gateway add), not the centre's
    url = doc["services"]["gateway"]["environment"]["NOABER_MQTT_URL"]
    url = re.sub(r"\$\{NOABER_GATEWAY[^}]*\}", "gw-1", url)
    url = re.sub(r"\$\{GATEWAY_MQTT_PASSWORD[^}]*\}", "pw-2", url)
    broker = parse_broker_url(url)
    assert (broker.host, broker.username, broker.password) == ("mqtt", "gw-1", "pw-2")
    assert "MQTT_PASSWORD}" not in url
    depends = doc["services"]["ingest"]["depends_on"]
    assert depends["mqtt"]["condition"] == "service_started"
    assert depends["api"]["condition"] == "service_healthy"  # the database is migrated
    assert "mqtt" in doc["services"]["gateway"]["depends_on"]
    conf = (DOCKER / "mosquitto.conf").read_text().split("\n")
    assert "allow_anonymous false" in conf
    mounts = doc["services"]["mqtt"]["volumes"]
    for key in ("password_file", "acl_file"):
        path = next(line.split()[1] for line in conf if line.startswith(key + " "))
        assert any(m.endswith(f":{path}:ro") for m in mounts), (key, mounts)
    # the broker keeps what it accepts (issue 12): saved on every change, no count limit
    for must in ("persistence true", "autosave_on_changes true", "autosave_interval 1",
                 "max_queued_messages 0"):  # fmt: skip
        assert must in conf, must
    assert any(line.startswith("max_queued_bytes ") for line in conf)


def test_image_commands_exist_in_the_cli() -> None:
    cmds = _targets()
    assert set(cmds) >= {"api", "gateway", "ingest", "worker"}
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
