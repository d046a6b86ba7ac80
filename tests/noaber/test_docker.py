"""docker/: the compose file needs every secret from the environment, and each image's command
is a real ``noaber`` command with options that exist (checked against the installed CLI).

No Docker daemon or compose plugin is needed: the files are checked as data.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from noaber import cli

DOCKER = Path(__file__).resolve().parents[2] / "docker"
SECRETS = ("NOABER_SECRET_KEY", "POSTGRES_PASSWORD", "MQTT_PASSWORD", "GATEWAY_MQTT_PASSWORD")


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_services_and_production_mode() -> None:
    doc = _compose()
    assert set(doc["services"]) == {
        "db", "mqtt", "queue", "api", "gateway", "ingest", "worker", "scheduler"
    }  # fmt: skip
    for name in ("api", "ingest", "worker", "scheduler"):
        svc = doc["services"][name]
        assert svc["build"]["target"] == name
        assert svc["environment"]["NOABER_MODE"] == "production"
        assert svc["environment"]["NOABER_DATABASE_URL"].startswith("postgresql://")
        assert svc["environment"]["NOABER_QUEUE_URL"] == "redis://queue:6379/0"
    assert doc["services"]["gateway"]["build"]["target"] == "gateway"
    assert doc["services"]["queue"]["image"].startswith("redis:")
    assert doc["services"]["db"]["image"].startswith("postgres:")
    assert doc["services"]["mqtt"]["image"].startswith("eclipse-mosquitto:")


def test_centre_services_keep_raw_samples_in_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several ingest workers need one store: the centre's services read and write the raw
    samples in PostgreSQL (NOABER_SAMPLE_STORE=postgresql), the settings accept it and the
    store they open is the PostgreSQL one; the gateway has no database at all."""
    from energy.rawstore import PgSampleStore, open_sample_store
    from energy.settings import load_settings

    doc = _compose()
    for name in ("api", "ingest", "worker", "scheduler"):
        assert doc["services"][name]["environment"]["NOABER_SAMPLE_STORE"] == "postgresql", name
    assert "NOABER_SAMPLE_STORE" not in doc["services"]["gateway"]["environment"]
    env = doc["services"]["ingest"]["environment"]
    for key in list(os.environ):
        if key.startswith("NOABER_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        value = re.sub(r"\$\{(\w+)[^}]*\}", lambda m: "x" * 40, str(value))
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(Path(__file__).parent)  # no .env of the checkout
    settings = load_settings()
    assert settings.sample_store == "postgresql"
    store = open_sample_store(settings)  # no connection yet: the engine is lazy
    try:
        assert isinstance(store, PgSampleStore) and store.kind == "postgresql"
    finally:
        store.engine.dispose()


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
    assert set(cmds) >= {"api", "gateway", "ingest", "worker", "scheduler"}
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


def _healthchecks() -> dict[str, list[str]]:
    """HEALTHCHECK command of each target of the Dockerfile, as an argv list."""
    checks: dict[str, list[str]] = {}
    target = None
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        m = re.match(r"FROM \S+ AS (\w+)", line)
        if m:
            target = m.group(1)
        m = re.match(r"\s+CMD (\[.*\])$", line)
        if m and target:
            checks[target] = json.loads(m.group(1))
    return checks


def test_gateway_gets_only_its_own_mqtt_login() -> None:
    from energy.settings import Settings

    env = _compose()["services"]["gateway"]["environment"]
    assert set(env) == {"NOABER_MODE", "NOABER_MQTT_URL", "NOABER_DATA_DIR"}
    assert env["NOABER_MODE"] == "gateway"
    text = json.dumps(env)
    for secret in ("NOABER_SECRET_KEY", "POSTGRES_PASSWORD", "${MQTT_PASSWORD", "DATABASE"):
        assert secret not in text, secret
    # the mode itself refuses the centre's secrets, so a copied environment fails loudly
    Settings(mode="gateway", mqtt_url="mqtt://hall-a:pw@mqtt:1883")
    for field in ("secret_key", "database_url", "queue_url"):
        try:
            Settings(mode="gateway", **{field: "x" * 40})
        except ValueError as exc:
            assert "must not be set in mode 'gateway'" in str(exc)
        else:
            raise AssertionError(f"{field} accepted in mode gateway")


def test_healthchecks_check_the_database_and_the_brokers() -> None:
    checks = _healthchecks()
    assert set(checks) == {"api", "gateway", "ingest", "worker", "scheduler"}
    assert "/ready" in checks["api"][-1]  # database and job broker (tests/noaber/test_ops.py)
    runner = CliRunner()
    out = runner.invoke(cli.app, ["check", "--help"], env={"COLUMNS": "300"}).output
    for target in ("gateway", "ingest", "worker", "scheduler"):
        argv = checks[target]
        assert argv[:2] == ["noaber", "check"], (target, argv)
        for opt in argv[2:]:
            assert opt in out, (target, opt)
    assert "--no-database" not in checks["ingest"] and "--mqtt" in checks["ingest"]
    assert "--no-database" not in checks["worker"] and "--no-queue" not in checks["worker"]
    assert checks["gateway"] == ["noaber", "check", "--no-database", "--no-queue", "--mqtt"]
    compose = _compose()["services"]
    assert compose["queue"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert compose["api"]["depends_on"]["queue"]["condition"] == "service_healthy"


def test_pdf_runtime_needs_are_declared() -> None:
    """Statements print through energy.pdf: Playwright driving Debian chromium. Playwright
    is a runtime dependency of the package and the image installs chromium."""
    import tomllib

    deps = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower() for d in deps["dependencies"]}
    assert "playwright" in names
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"apt-get install[^\n]*\bchromium\b", dockerfile)
    assert "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1" in dockerfile


WHEEL_SCRIPT = r"""
import datetime as dt, sys
from pathlib import Path
import energy, settlement, noaber
here = Path(sys.argv[1]).resolve()
for mod in (energy, settlement, noaber):
    assert Path(mod.__file__).resolve().is_relative_to(here), (mod.__name__, mod.__file__)
from energy.settings import Settings
from noaber.services.demo import build_demo
from noaber.services.demo import settlement as demo_settlement
from settlement.models import Statement
from settlement.statements import render_pdf
from sqlalchemy import select
ctx = build_demo(
    Path(sys.argv[2]), Settings(mode="local", database_url=None),
    extra_steps=[("settlement", demo_settlement.demo_step)],
    now=dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC), sample_period_s=3600,
)
with ctx.sessions() as s:
    sid = s.scalars(select(Statement.id).order_by(Statement.id)).first()
    out = render_pdf(s, sid, Path(sys.argv[2]) / "statement.pdf")
print(out, out.stat().st_size)
"""


@pytest.mark.slow
def test_a_statement_pdf_from_the_installed_wheel(tmp_path: Path) -> None:
    """Build the wheel, install it (no dependencies: those of the development venv are put
    on the path behind it) into a fresh environment outside the repository, and print a
    statement PDF there: templates, catalogues, tariffs and the demo data are in the wheel,
    and the PDF path needs only declared dependencies plus Debian chromium."""
    import subprocess
    import sys
    import sysconfig

    from energy.pdf import chromium_available
    from tests.conftest import need

    need(chromium_available(), "Debian chromium is not installed (apt-get install chromium)")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            str(DOCKER.parent),
        ],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    (wheel,) = wheels.glob("noaber-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )  # fmt: skip
    deps = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NOABER_"))}
    # -S: no site processing, so the development venv's editable install (a .pth finder)
    # cannot shadow the wheel; the wheel first, the dependencies behind it
    env["PYTHONPATH"] = f"{target}:{deps}"
    run = subprocess.run(
        [sys.executable, "-S", "-c", WHEEL_SCRIPT, str(target), str(tmp_path / "demo")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    pdf = tmp_path / "demo" / "statement.pdf"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 10_000
