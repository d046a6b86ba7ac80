"""Operations: /health checks the database, /ready the broker and queue, /metrics speaks
Prometheus' format to an operator or the scrape token, the job routes answer 202 with a
Location, and JSON log lines carry no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from energy.db import make_engine, session_factory, upgrade
from energy.security import create_access_token
from energy.settings import Settings
from noaber.api import create_app
from tests.net import refusing_port
from tests.noaber.api_world import build_world
from tests.noaber.test_jobs_queue import REDIS_URL, _redis

SECRET = "ops-secret-" + "x" * 40
SCRAPE = "scrape-token-" + "y" * 40
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world_engine(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'noaber.db'}")
    upgrade(engine)
    with session_factory(engine)() as s, s.begin():
        build_world(s)
    yield engine
    engine.dispose()


def _token(username: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_access_token(username, role, SECRET, 600)}"}


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(mode="test", secret_key=SECRET, data_dir=tmp_path, **kw)


def test_health_checks_the_database(tmp_path: Path, world_engine) -> None:
    with TestClient(create_app(_settings(tmp_path), world_engine)) as client:
        r = client.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}
    # a database that cannot be opened (its directory does not exist)
    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with TestClient(create_app(_settings(tmp_path), broken)) as client:
        r = client.get("/health")
        assert r.status_code == 503
        assert r.json()["problem"].startswith("database: ")


def test_ready_checks_broker_and_queue_and_prints_no_password(tmp_path: Path, world_engine) -> None:
    _redis()
    ns = f"noaber-test-{uuid.uuid4().hex[:10]}"
    ok = _settings(tmp_path, queue_url=REDIS_URL, queue_namespace=ns)
    with TestClient(create_app(ok, world_engine)) as client:
        r = client.get("/ready")
        assert r.status_code == 200, r.text
        assert r.json()["queue"] == {"queued": 0, "delayed": 0, "dead": 0, "workers": 0}
    with refusing_port() as port:
        url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
        bad = _settings(tmp_path, queue_url=url, queue_namespace=ns)
        with TestClient(create_app(bad, world_engine)) as client:
            r = client.get("/ready")
    assert r.status_code == 503
    assert r.json()["problems"] == ["queue: ConnectionError"]
    assert "hunter2" not in r.text
    # production without a queue is not ready; test mode is
    prod = Settings(mode="production", secret_key=SECRET, data_dir=tmp_path)
    with TestClient(create_app(prod, world_engine)) as client:
        assert client.get("/ready").status_code == 503


def test_replan_and_settlement_are_enqueued_with_a_location(tmp_path: Path, world_engine) -> None:
    from energy.models import Community

    client_redis = _redis()
    ns = f"noaber-test-{uuid.uuid4().hex[:10]}"
    with session_factory(world_engine)() as s, s.begin():
        s.add(Community(name="energie-ops", display_name="Ops"))
    settings = _settings(tmp_path, queue_url=REDIS_URL, queue_namespace=ns)
    try:
        with TestClient(create_app(settings, world_engine)) as client:
            mgr = _token("mgr", "site_manager")
            r = client.post("/api/sites/hall-a/replan", headers=mgr)
            assert r.status_code == 202, r.text
            job = r.json()
            assert r.headers["location"] == f"/api/jobs/{job['id']}"
            assert job["state"] == "queued" and job["kind"] == "replan"
            again = client.post("/api/sites/hall-a/replan", headers=mgr)
            assert again.status_code == 202 and again.json()["id"] == job["id"]
            got = client.get(r.headers["location"], headers=mgr)
            assert got.status_code == 200 and got.json()["state"] == "queued"
            assert client.post("/api/sites/hall-b/replan", headers=mgr).status_code == 404
            # one message in the broker for the one job, however often it was asked for
            assert client_redis.hlen(f"{ns}:jobs.msgs") == 1
            oper = _token("oper", "operator")
            body = {"period": "2026-06"}
            r = client.post("/api/communities/energie-ops/settlement-runs", json=body, headers=oper)
            assert r.status_code == 202 and r.json()["key"] == "settle:energie-ops:2026-06"
            bad = client.post(
                "/api/communities/energie-ops/settlement-runs",
                json={"period": "2026-13"},
                headers=oper,
            )
            assert bad.status_code == 422
            assert (
                client.post(
                    "/api/communities/unknown/settlement-runs", json=body, headers=oper
                ).status_code
                == 404
            )
            # the settlement job has no site: a site manager does not see it
            assert client.get(r.headers["location"], headers=mgr).status_code == 404
            assert client_redis.hlen(f"{ns}:jobs.msgs") == 2
    finally:
        keys = list(client_redis.scan_iter(f"{ns}:*"))
        if keys:
            client_redis.delete(*keys)


def test_metrics_for_operator_or_scrape_token(tmp_path: Path, world_engine) -> None:
    from energy import jobs as jobstore

    with session_factory(world_engine)() as s, s.begin():
        jobstore.submit(s, "replan", "replan:hall-a:x", {}, "cli:t")
        jobstore.submit(s, "replan", "replan:hall-b:x", {}, "cli:t")
    settings = _settings(tmp_path, metrics_token=SCRAPE)
    with TestClient(create_app(settings, world_engine)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=_token("mgr", "site_manager")).status_code == 403
        wrong = {"Authorization": "Bearer " + "z" * 52}
        assert client.get("/metrics", headers=wrong).status_code == 401
        r = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        jobs = {
            (s.labels["kind"], s.labels["state"]): s.value for s in families["noaber_jobs"].samples
        }
        assert jobs == {("replan", "queued"): 2.0}
        # the world's channels belong to no device: the device-health family has no sample
        assert families["noaber_device_reading_age_seconds"].samples == []
        assert "noaber_job_duration_seconds" in families
        assert "noaber_samples_ingested" in families
        op = client.get("/metrics", headers=_token("oper", "operator"))
        assert op.status_code == 200


def test_json_logs_redact_urls(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOABER_LOG_FORMAT": "json",
        "NOABER_DATA_DIR": str(tmp_path),
        "NOABER_MODE": "local",
    }
    code = (
        "import logging, sys; from noaber.cli import _configure_logging; _configure_logging(); "
        "logging.getLogger('noaber.jobs').warning('broker %s', "
        "'redis://:pa55w0rd@cache:6379/1')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    line = json.loads(out.stderr.strip().splitlines()[-1])
    assert line["level"] == "WARNING" and line["logger"] == "noaber.jobs"
    assert line["message"] == "broker redis://:***@cache:6379/1"
    assert line["time"].endswith("Z")
    assert "pa55w0rd" not in out.stderr


def test_check_command_names_what_failed_and_no_secret(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from energy.settings import get_settings
    from noaber import cli

    monkeypatch.setenv("NOABER_MODE", "local")
    monkeypatch.setenv("NOABER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NOABER_DATABASE_URL", raising=False)
    monkeypatch.setenv("NOABER_QUEUE_URL", REDIS_URL)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        _redis()
        ok = runner.invoke(cli.app, ["check"])
        assert ok.exit_code == 0 and "ok: database, job broker" in ok.output, ok.output
        with refusing_port() as port:
            monkeypatch.setenv("NOABER_QUEUE_URL", f"redis://:s3cret-pw@127.0.0.1:{port}/0")
            get_settings.cache_clear()
            res = subprocess.run(
                [sys.executable, "-m", "noaber.cli", "check", "--timeout", "2"],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert res.returncode == 1
        assert "job broker: ConnectionError" in res.stderr
        assert "s3cret" not in res.stdout + res.stderr
    finally:
        get_settings.cache_clear()
