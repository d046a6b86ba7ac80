"""Prometheus metrics (``prometheus-client``).

Two kinds, because Noaber runs as several processes:

- **Per process** (counters and histograms of what this process did): job durations and
  outcomes, plan failures and dead letters in a ``noaber worker``; samples ingested and dead
  letters in the ingest. A process without an HTTP server serves them on its own port
  (``noaber worker --metrics-port``, :func:`serve`), bound to loopback by default.
- **Of the deployment** (gauges read from the database and the broker at scrape time,
  :class:`StateCollector`): jobs per kind and state, queue depth and dead letters, the
  latest job duration per kind, failed plans, and device health (the age of each device's
  newest interval reading). The API serves these and its own process metrics on
  ``GET /metrics``, to an operator or a scraper with ``NOABER_METRICS_TOKEN``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from energy.clock import utc_now

log = logging.getLogger("noaber.metrics")

#: This process's metrics (not the library's global registry: tests build several apps).
REGISTRY = CollectorRegistry(auto_describe=True)

JOB_DURATION = Histogram(
    "noaber_job_duration_seconds",
    "Wall time of one job attempt [s], by kind and outcome (done, retry, failed)",
    ["kind", "outcome"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
    registry=REGISTRY,
)
PLAN_FAILURES = Counter(
    "noaber_plan_failures",
    "Re-plans and nightly batches that failed for good",
    ["kind"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "noaber_job_dead_letters",
    "Job messages this process moved to the dead-letter queue",
    registry=REGISTRY,
)
SAMPLES_INGESTED = Counter(
    "noaber_samples_ingested",
    "Samples the centre's ingest stored",
    registry=REGISTRY,
)
SAMPLES_DEAD_LETTERED = Counter(
    "noaber_samples_dead_lettered",
    "Samples the centre's ingest could not store (to the dead-letter file, with the reason)",
    ["reason"],
    registry=REGISTRY,
)


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Serve this process's metrics on ``http://host:port/metrics``; returns the port
    (0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return int(server.server_address[1])


class StateCollector(Collector):
    """Gauges of the deployment, read at scrape time from the database and the broker.

    A part that cannot be read (the broker away) is left out and counted in
    ``noaber_metrics_errors`` instead of failing the whole scrape.
    """

    def __init__(self, sessions: sessionmaker[Session], queue_depth: Any = None) -> None:
        self.sessions = sessions
        self.queue_depth = queue_depth  # () -> {"queued", "delayed", "dead"} or None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from energy.jobs import Job, counts_by_state
        from energy.models import Asset, Channel, Device, IntervalReading, Site

        errors = GaugeMetricFamily(
            "noaber_metrics_errors", "Parts of this scrape that could not be read", labels=["part"]
        )
        try:
            with self.sessions() as s:
                jobs = GaugeMetricFamily(
                    "noaber_jobs", "Jobs by kind and state", labels=["kind", "state"]
                )
                for (kind, state), n in sorted(counts_by_state(s).items()):
                    jobs.add_metric([kind, state], n)
                yield jobs
                last = GaugeMetricFamily(
                    "noaber_job_last_duration_seconds",
                    "Wall time of the latest finished job of each kind [s]",
                    labels=["kind"],
                )
                newest = (
                    select(Job.kind, func.max(Job.finished_at))
                    .where(Job.state == "done")
                    .group_by(Job.kind)
                )
                for kind, at in s.execute(newest):
                    job = s.scalars(
                        select(Job).where(Job.kind == kind, Job.finished_at == at).limit(1)
                    ).first()
                    if job is not None and job.duration_s is not None:
                        last.add_metric([kind], job.duration_s)
                yield last
                failed_plans = GaugeMetricFamily(
                    "noaber_failed_plans",
                    "Re-plan and nightly jobs in state failed",
                )
                failed_plans.add_metric(
                    [],
                    int(
                        s.scalar(
                            select(func.count())
                            .select_from(Job)
                            .where(Job.state == "failed", Job.kind.in_(("replan", "nightly")))
                        )
                        or 0
                    ),
                )
                yield failed_plans
                health = GaugeMetricFamily(
                    "noaber_device_reading_age_seconds",
                    "Age of each device's newest interval reading [s] (a stale device is silent)",
                    labels=["site", "device"],
                )
                now = utc_now()
                rows = s.execute(
                    select(Site.name, Device.name, func.max(IntervalReading.isp_start))
                    .join(Channel, Channel.id == IntervalReading.channel_id)
                    .join(Asset, Asset.id == Channel.asset_id)
                    .join(Device, Device.id == Channel.device_id)
                    .join(Site, Site.id == Asset.site_id)
                    .group_by(Site.name, Device.name)
                )
                for site, device, newest_at in rows:
                    if newest_at is not None:
                        health.add_metric([site, device], (now - newest_at).total_seconds())
                yield health
        except Exception:
            log.warning("metrics: database not readable", exc_info=True)
            errors.add_metric(["database"], 1)
        if self.queue_depth is not None:
            try:
                depth = self.queue_depth()
                g = GaugeMetricFamily(
                    "noaber_queue_depth", "Job messages in the broker", labels=["state"]
                )
                for state in ("queued", "delayed"):
                    g.add_metric([state], depth[state])
                yield g
                dead = GaugeMetricFamily(
                    "noaber_queue_dead_letters", "Job messages in the dead-letter queue"
                )
                dead.add_metric([], depth["dead"])
                yield dead
            except Exception:
                log.warning("metrics: broker not readable", exc_info=True)
                errors.add_metric(["broker"], 1)
        yield errors


def exposition(*registries: CollectorRegistry) -> bytes:
    """The text exposition of ``registries`` (Prometheus' format 0.0.4)."""
    return b"".join(generate_latest(r) for r in registries)
