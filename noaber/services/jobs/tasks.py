"""What each kind of job does (run by a worker, :class:`noaber.services.jobs.queue.JobQueue`).

Every task may run more than once for one job (a worker killed mid-run; a retry after a
transient error), so each is idempotent:

- ``replan``: plans a site from the store (prices from ``NOABER_PRICE_SERIES``, the measured
  state of charge as :func:`optimizer.mpc.with_measurements` applies it) and stores the
  schedule in the same transaction that marks the job done, so a killed attempt leaves
  nothing and the next one stores once.
- ``nightly``: the nightly batch, fanned out as one ``replan`` job per plannable site for
  the next local day (keys per site and horizon start: a second run adds no job); the
  workers of the deployment plan them in parallel.
- ``settle``: a community's month through :func:`settlement.settle.post_run`, which posts
  only the difference between what the data say and what the ledger holds: a second attempt
  after a committed posting posts nothing and returns the same run. Its audit entry and
  the follow-up ``statements_pdf`` job are written with the job's "done".
- ``prices_fetch``: one local day of a zone's day-ahead prices from ENTSO-E into the store
  (:func:`noaber.services.prices.store_fetched`: new ISPs stored, a changed price kept as
  stored and reported, audited ``tariff.fetch``), in the transaction that marks the job done;
  a second attempt stores nothing twice. "No prices yet" fails the job with ENTSO-E's answer
  (the scheduler tries again the next hour).
- ``statements_pdf``: every statement of the period as a PDF in
  ``<data_dir>/statements/<community>/<period>/`` (written to a temporary file, then
  renamed: a killed attempt leaves no half file).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy import jobs as jobstore
from energy.errors import NoaberError, ValidationError
from energy.models import AssetKind, Site
from noaber.services.jobs.queue import JobContext, Task

#: Asset kinds that make a site worth planning (something to steer).
PLANNABLE = (AssetKind.BATTERY, AssetKind.EV)


def plannable_sites(session: Session) -> list[Site]:
    """Sites with a battery or an EV, by name."""
    return [
        site
        for site in session.scalars(select(Site).order_by(Site.name))
        if any(a.kind in PLANNABLE for a in site.assets)
    ]


def iso(t: dt.datetime | pd.Timestamp) -> str:
    """A UTC instant as ``2026-12-02T06:15:00Z`` (job keys and arguments)."""
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def replan_key(site: str, start: dt.datetime | pd.Timestamp) -> str:
    """The job key of a site's plan for the horizon starting at ``start``."""
    return f"replan:{site}:{iso(start)}"


def settle_key(community: str, period: str, provisional: bool = False) -> str:
    """The job key of a community's settlement run of ``period`` (YYYY-MM); a preview
    (a provisional run, posted or voided after checking) has its own."""
    return f"settle:{community}:{period}" + (":preview" if provisional else "")


def _price_series(ctx: JobContext) -> tuple[str, str]:
    from optimizer.sitestore import parse_price_series

    series = parse_price_series(ctx.settings.price_series or None)
    if series is None:
        raise NoaberError(
            "re-plans need prices: set NOABER_PRICE_SERIES=IMPORT,EXPORT (noaber prices import)"
        )
    return series


def replan(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
    """Plan ``args['site']`` for ``[start, start + horizon_hours)`` and store the schedule."""
    from noaber.services.control import stored_writer_limits
    from optimizer.limits import apply_writer_limits
    from optimizer.model import plan
    from optimizer.mpc import with_measurements
    from optimizer.report import compare
    from optimizer.sitestore import measured_soc_pct, scenario_from_store
    from optimizer.store import save_plan

    site = str(args["site"])
    start = pd.Timestamp(args["start"])
    hours = float(args.get("horizon_hours") or ctx.settings.replan_horizon_hours)
    series = _price_series(ctx)
    with ctx.sessions() as s:
        scenario = scenario_from_store(s, site, start, hours, price_series=series)
        # the measured state of charge, as the closed loop starts from (optimizer.mpc)
        scenario = with_measurements(scenario, measured_soc_pct(s, site), scenario.start)
        # within the safe writer's limits, as `optimize run` and `control run` plan
        scenario = apply_writer_limits(scenario, stored_writer_limits(s, site))
    result = plan(scenario)
    summary = compare(scenario, result)
    with ctx.sessions() as s, s.begin():
        schedule_id = save_plan(s, scenario, result, summary)
        out = {
            "schedule_id": schedule_id,
            "site": site,
            "start": iso(scenario.start),
            "end": iso(scenario.end),
            "status": result.status,
            "objective_eur": round(float(result.objective_eur), 4),
        }
        ctx.finish(s, out)
    return out


def nightly(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
    """Submit one ``replan`` job per plannable site for the local day ``args['day']``."""
    from energy.timegrid import local_day_bounds

    day = dt.date.fromisoformat(str(args["day"]))
    bounds = local_day_bounds(day, ctx.settings.timezone)
    start = pd.Timestamp(bounds.start)
    hours = (pd.Timestamp(bounds.end) - start).total_seconds() / 3600.0
    with ctx.sessions() as s, s.begin():
        made = []
        for site in plannable_sites(s):
            sub = jobstore.submit(
                s,
                "replan",
                replan_key(site.name, start),
                {"site": site.name, "start": iso(start), "horizon_hours": hours},
                f"job:{ctx.job_id}",
                site_id=site.id,
            )
            made.append(sub.job)
        s.flush()
        ids = [j.id for j in made]
        out = {"day": day.isoformat(), "replan_jobs": ids, "horizon_hours": hours}
        ctx.finish(s, out)
    if ctx.queue is not None:
        ctx.queue.publish(ids)
    return out


def community_file(ctx: JobContext, name: str) -> Path:
    """``<communities dir>/<name>.yaml``; an error naming the directory if it is not there."""
    if not name or "/" in name or name.startswith("."):
        raise ValidationError(f"community name {name!r} is not a plain name")
    path = ctx.settings.communities_path / f"{name}.yaml"
    if not path.is_file():
        raise NoaberError(
            f"no community file {path} (NOABER_COMMUNITIES_DIR holds <community>.yaml files)"
        )
    return path


def settle(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
    """Settle ``args['community']`` for ``args['period']`` (a final run, idempotent); with
    ``args['provisional']``, a preview: a pending run whose transfers do not count until an
    operator posts it (``post_pending``) or voids it."""
    from energy.audit import Actor, record
    from settlement.audit import after_posting
    from settlement.community import load_community, read_meter_store
    from settlement.pricing import load_tariff
    from settlement.settle import period_isps, plan_energy, post_run

    name, period = str(args["community"]), str(args["period"])
    provisional = bool(args.get("provisional", False))
    community = load_community(community_file(ctx, name))
    if community.name != name:
        raise ValidationError(
            f"{community_file(ctx, name)} is community {community.name!r}, not {name!r}"
        )
    isps = period_isps(period)
    with ctx.sessions() as s:
        data = read_meter_store(s, community, isps)
    plan = plan_energy(community, period, data, load_tariff(community.tariff_path))
    result = post_run(ctx.sessions, plan, provisional)
    with ctx.sessions() as s:
        after_posting(s, ctx.settings.data_dir)
    out = {
        "run_id": result.run_id,
        "status": result.status,
        "posted": result.created,
        "transfers": result.n_transfers,
        "reversals": result.n_reversals,
        "statements": list(result.statements),
        "coverage_days": result.coverage_days,
        "period_days": result.period_days,
        "data_version": result.data_version,
        "provisional": provisional,
    }
    with ctx.sessions() as s, s.begin():
        job = s.get(jobstore.Job, ctx.job_id)
        requested = job.requested_by if job is not None else "scheduler"
        via, _, who = requested.partition(":")
        if result.created or ctx.attempt > 1:
            from energy.models import AuditEntry

            already = any(
                (e.detail or {}).get("run_id") == result.run_id
                for e in s.scalars(
                    select(AuditEntry).where(
                        AuditEntry.action == "settlement.run",
                        AuditEntry.target == f"{name}/{period}",
                    )
                )
            )
            if not already:  # a retried attempt whose first one posted and then died
                record(
                    s,
                    Actor(who or via, "api" if via == "api" else "cli"),
                    "settlement.run",
                    f"{name}/{period}",
                    {
                        "run_id": result.run_id,
                        "status": result.status,
                        "transfers": result.n_transfers,
                        "job_id": ctx.job_id,
                        "tariff_digest": plan.tariff.digest,
                        "provisional": provisional,
                    },
                )
        pdf = None
        if not provisional:  # a preview issues no statements (posting it does)
            pdf = jobstore.submit(
                s,
                "statements_pdf",
                f"statements_pdf:{name}:{period}:{result.run_id}",
                {"community": name, "period": period, "run_id": result.run_id},
                f"job:{ctx.job_id}",
                community=name,
            )
            s.flush()
            out["statements_pdf_job"] = pdf.job.id
        ctx.finish(s, out)
    if ctx.queue is not None and pdf is not None and pdf.created:
        ctx.queue.publish([pdf.job.id])
    return out


def statements_pdf(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
    """Render every statement of a community's period as PDF (needs Chromium)."""
    from settlement.models import Statement
    from settlement.statements import render_pdf

    name, period = str(args["community"]), str(args["period"])
    out_dir = ctx.settings.data_dir / "statements" / name / period
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    with ctx.sessions() as s:
        ids = list(
            s.execute(
                select(Statement.id, Statement.number)
                .where(Statement.community == name, Statement.period == period)
                .order_by(Statement.id)
            )
        )
        for sid, number in ids:
            final = out_dir / f"{number}.pdf"
            tmp = out_dir / f".{number}.pdf.part"
            render_pdf(s, sid, tmp)
            tmp.replace(final)
            files.append(str(final))
    return {"files": files, "count": len(files)}


def http_session() -> object | None:
    """The ``requests`` session the ENTSO-E client sends through (None: entsoe-py makes its
    own); the tests replace it with one that serves recorded answers."""
    return None


def prices_fetch(ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
    """Fetch ``args['day']`` of zone ``args['zone']`` from ENTSO-E into ``args['series']``."""
    from energy.audit import Actor
    from energy.prices import entsoe_series_name, fetch_day_ahead
    from noaber.services.prices import store_fetched

    zone, day = str(args["zone"]), dt.date.fromisoformat(str(args["day"]))
    series = str(args.get("series") or entsoe_series_name(zone))
    token = ctx.settings.entsoe_token
    if token is None:
        raise NoaberError("no ENTSO-E token: set NOABER_ENTSOE_TOKEN for the workers")
    got = fetch_day_ahead(token.get_secret_value(), zone, day, session=http_session())
    with ctx.sessions() as s, s.begin():
        job = s.get(jobstore.Job, ctx.job_id)
        via, _, who = (job.requested_by if job is not None else "cli:scheduler").partition(":")
        diff = store_fetched(s, Actor(who or via, "api" if via == "api" else "cli"), got, series)
        out = {
            "series": series,
            "zone": got.zone,
            "day": day.isoformat(),
            "isps": len(got.prices),
            "new": len(diff.new),
            "unchanged": diff.unchanged,
            "changed_kept": len(diff.changed),
            "document": got.document,
            "revision": got.revision,
        }
        ctx.finish(s, out)
    return out


TASKS: dict[str, Task] = {
    "replan": replan,
    "nightly": nightly,
    "settle": settle,
    "statements_pdf": statements_pdf,
    "prices_fetch": prices_fetch,
}
