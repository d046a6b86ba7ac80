"""``noaber worker``, ``noaber scheduler`` and ``noaber jobs …`` (the job queue)."""

from __future__ import annotations

import signal
import threading

import typer

from noaber.console import console

jobs_app = typer.Typer(help="Jobs on the queue: list them and see one.", no_args_is_help=True)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _sessions():
    from energy.db import make_engine, session_factory, upgrade
    from energy.settings import load_settings

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    return settings, session_factory(engine)


def worker(
    threads: int = typer.Option(2, min=1, max=64, help="Jobs run at once in this process"),
    metrics_port: int | None = typer.Option(
        None, min=0, max=65535, help="Serve this process's metrics on HOST:PORT/metrics"
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", help="Interface of the metrics port (0.0.0.0 in a container network)"
    ),
) -> None:
    """Run jobs from the queue (NOABER_QUEUE_URL) until SIGTERM/Ctrl-C; a job killed mid-run
    is taken over by another worker once its lease and heartbeat ran out."""
    from noaber.services.jobs.queue import JobQueue, run_worker

    settings, sessions = _sessions()
    queue = JobQueue(settings, sessions)
    stop = _stop_on_signals()
    if metrics_port is not None:
        from noaber.services.metrics import serve

        port = serve(metrics_port, metrics_host)
        console.print(f"metrics on http://{metrics_host}:{port}/metrics")

    def ready() -> None:
        console.print(
            f"worker {queue.worker} ready: {threads} threads on {settings.queue_for_display} "
            f"(namespace {settings.queue_namespace}), database {settings.database_for_display}"
        )

    run_worker(queue, threads, stop, on_ready=ready)
    queue.close()
    console.print("worker stopped")


def scheduler(
    every_s: float = typer.Option(30.0, "--every", min=1.0, help="Seconds between ticks"),
    once: bool = typer.Option(False, "--once", help="One tick, then exit"),
) -> None:
    """Submit the periodic jobs (re-plans every 15 minutes, the nightly batch, the monthly
    settlement runs) and re-send queued jobs the broker may not have."""
    from noaber.services.jobs.queue import JobQueue
    from noaber.services.jobs.schedule import run_scheduler, tick

    settings, sessions = _sessions()
    queue = JobQueue(settings, sessions) if settings.queue_url else None
    if queue is None:
        console.print("no NOABER_QUEUE_URL: jobs are recorded, not sent")
    if once:
        ids = tick(sessions, settings, queue=queue)
        console.print(f"{len(ids)} jobs scheduled" + (f": {ids}" if ids else ""))
        return
    console.print(f"scheduler ticking every {every_s:.0f} s")
    run_scheduler(sessions, settings, _stop_on_signals(), queue, every_s)


@jobs_app.command("list")
def jobs_list(
    state: str | None = typer.Option(None, help="Only jobs in this state"),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """The latest jobs."""
    from rich.table import Table
    from sqlalchemy import select

    from energy.jobs import STATES, Job

    if state is not None and state not in STATES:
        raise typer.BadParameter(f"state must be one of {', '.join(STATES)}, got {state!r}")
    _settings, sessions = _sessions()
    table = Table()
    for col in ("id", "key", "state", "attempts", "created", "finished", "error"):
        table.add_column(col)
    with sessions() as s:
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            q = q.where(Job.state == state)
        for j in s.scalars(q):
            table.add_row(
                str(j.id),
                j.key,
                j.state,
                str(j.attempts),
                j.created_at.isoformat(timespec="seconds"),
                j.finished_at.isoformat(timespec="seconds") if j.finished_at else "",
                (j.error or "")[:80],
            )
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: int = typer.Argument(..., help="Job id")) -> None:
    """One job as JSON: state, attempts, result or error."""
    import json

    from energy.errors import NotFoundError
    from energy.jobs import Job

    _settings, sessions = _sessions()
    with sessions() as s:
        j = s.get(Job, job_id)
        if j is None:
            raise NotFoundError(f"no job {job_id}")
        console.print_json(
            json.dumps(
                {
                    "id": j.id,
                    "key": j.key,
                    "kind": j.kind,
                    "state": j.state,
                    "attempts": j.attempts,
                    "result": j.result,
                    "error": j.error,
                },
                default=str,
            )
        )


def _check_mqtt(url: str, timeout_s: float) -> None:
    """Connect to the MQTT broker of ``url`` with its credentials and wait for CONNACK."""
    import threading
    import uuid
    from urllib.parse import unquote, urlsplit

    import paho.mqtt.client as mqtt

    from energy.errors import NoaberError

    parts = urlsplit(url)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"noaber-check-{uuid.uuid4().hex[:8]}"
    )
    if parts.username:
        client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
    answered = threading.Event()
    result: dict[str, object] = {}

    def on_connect(_c, _u, _flags, reason, _props) -> None:
        result["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(parts.hostname or "localhost", parts.port or 1883, keepalive=10)
    except OSError as exc:
        raise NoaberError(f"MQTT broker: {type(exc).__name__}: {exc}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            raise NoaberError(f"MQTT broker: no answer within {timeout_s:.0f} s")
        reason = result["reason"]
        if getattr(reason, "is_failure", False):
            raise NoaberError(f"MQTT broker refused the connection: {reason}")
    finally:
        client.loop_stop()
        client.disconnect()


def check(
    database: bool = typer.Option(True, help="Check the database (a query)"),
    queue: bool = typer.Option(True, help="Check the job broker (a ping), if configured"),
    mqtt_broker: bool = typer.Option(
        False, "--mqtt/--no-mqtt", help="Check the MQTT broker of NOABER_MQTT_URL (a login)"
    ),
    timeout_s: float = typer.Option(5.0, "--timeout", min=0.1, max=60.0),
) -> None:
    """Exit 0 when the parts this process needs answer (a container healthcheck), else 1
    with what failed. Prints no URL and no secret."""
    from sqlalchemy import text

    from energy.db import make_engine
    from energy.errors import NoaberError
    from energy.settings import load_settings

    settings = load_settings()
    ok = []
    if database:
        engine = make_engine(settings.sqlalchemy_url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise NoaberError(f"database: {type(exc).__name__}") from None
        finally:
            engine.dispose()
        ok.append("database")
    if queue and settings.queue_url:
        import redis

        client = redis.Redis.from_url(
            settings.queue_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            client.ping()
        except redis.RedisError as exc:
            raise NoaberError(f"job broker: {type(exc).__name__}") from None
        finally:
            client.close()
        ok.append("job broker")
    if mqtt_broker:
        if not settings.mqtt_url:
            raise NoaberError("MQTT broker: NOABER_MQTT_URL is not set")
        _check_mqtt(settings.mqtt_url, timeout_s)
        ok.append("MQTT broker")
    console.print(f"ok: {', '.join(ok) or 'nothing to check'}")


def register(app: typer.Typer) -> None:
    """Add ``worker``, ``scheduler`` and the ``jobs`` group to the root app."""
    app.command("worker")(worker)
    app.command("scheduler")(scheduler)
    app.command("check")(check)
    app.add_typer(jobs_app, name="jobs")
