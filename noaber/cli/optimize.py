"""``noaber optimize``: plan a scenario file, run the MPC loop for a site, plan many sites.

``noaber optimize SCENARIO.yaml --out schedule.csv`` is short for ``noaber optimize plan ...``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from energy.clock import LOCAL_TZ
from noaber.console import console, progress


class _PlanByDefault(TyperGroup):
    """A group that treats a first argument that is not a command as ``plan SCENARIO``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["plan", *args]
        return super().parse_args(ctx, args)


optimize_app = typer.Typer(
    cls=_PlanByDefault,
    help="Schedule PV, load, battery and V2G EVs under the grid limit (Pyomo + HiGHS). "
    "`noaber optimize SCENARIO.yaml --out schedule.csv` plans one scenario file.",
    no_args_is_help=True,
)


def _money(x: float) -> str:
    return f"{x:,.2f}"


def print_summary(summary: dict[str, Any]) -> None:
    """Costs against both baselines, KPIs and build/solve times, as a table."""
    import pandas as pd
    from rich.markup import escape
    from rich.table import Table

    tz = summary.get("timezone", LOCAL_TZ)
    k = summary["kpis"]
    table = Table(
        title=f"{summary['site']}: {summary['steps']} steps of {summary['step_minutes']} min from "
        f"{pd.Timestamp(summary['start']).tz_convert(tz):%d-%m-%Y %H:%M}"
    )
    table.add_column("")
    for name in ("optimized", "no_control", "self_consumption"):
        table.add_column(name.replace("_", " "), justify="right")
    rows: list[tuple[str, str, Callable[[Any], str]]] = [
        ("cost [EUR]", "cost_eur", _money),
        ("energy cost [EUR]", "energy_cost_eur", _money),
        ("capacity tariff [EUR]", "capacity_cost_eur", _money),
        ("degradation [EUR]", "degradation_eur", _money),
        ("peak import [kW]", "peak_import_kw", lambda x: f"{x:.1f}"),
        ("import [kWh]", "import_kwh", lambda x: f"{x:.1f}"),
        ("export [kWh]", "export_kwh", lambda x: f"{x:.1f}"),
        ("curtailed [kWh]", "curtailed_kwh", lambda x: f"{x:.1f}"),
        ("self-consumption [%]", "self_consumption_pct", lambda x: f"{x:.1f}"),
        ("self-sufficiency [%]", "self_sufficiency_pct", lambda x: f"{x:.1f}"),
        ("CO2 [kg]", "co2_kg", lambda x: f"{x:.1f}"),
        ("steps over grid limit", "grid_limit_violations", str),
    ]
    for label, key, fmt in rows:
        table.add_row(
            escape(label),
            *(fmt(k[n][key]) for n in ("optimized", "no_control", "self_consumption")),
        )
    console.print(table)
    opt = k["optimized"]
    for car, kwh in opt["v2g_kwh"].items():
        deps = [d for d in opt["departures"] if d["ev"] == car]
        socs = ", ".join(
            f"{d['soc_pct']:.0f} % (target {d['target_pct']:g} %) at "
            f"{pd.Timestamp(d['departure']).tz_convert(tz):%d-%m %H:%M}"
            for d in deps
        )
        console.print(f"  EV {car}: V2G {kwh:.1f} kWh; departure SoC {socs or '-'}")
    s = summary["savings_eur"]
    console.print(
        f"saves EUR {_money(s['no_control'])} against no control and EUR {_money(s['self_consumption'])} "
        "against the self-consumption rule"
    )
    for line in summary.get("warnings", []):  # soft targets and limits the plan could not meet
        console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False)
    kind = f"MIP with {summary['binaries']} binaries" if summary["mip"] else "LP"
    gap = f", gap {100 * summary['gap']:.2f} %" if summary.get("gap") is not None else ""
    console.print(
        f"build {summary['build_s']:.3f} s, solve {summary['solve_s']:.3f} s ({kind}{gap}, {summary['status']})"
    )


@optimize_app.command("plan")
def plan_cmd(
    scenario: Path = typer.Argument(
        ..., help="Scenario YAML (see optimizer/examples/dorpshuis.yaml)"
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the schedule per step and asset as CSV"
    ),
    kpis: Path | None = typer.Option(None, "--kpis", help="Write the KPIs and savings as JSON"),
    store: bool = typer.Option(False, "--store", help="Also store the schedule in the database"),
    mip_gap: float | None = typer.Option(
        None, help="Relative MIP gap (default: the scenario's, 0.005)"
    ),
    time_limit_s: float | None = typer.Option(None, help="Solver time limit [s]"),
) -> None:
    """Plan one scenario and print its costs against both baselines."""
    from optimizer.model import SolveOptions, plan
    from optimizer.report import compare, write_schedule_csv
    from optimizer.scenario import load_scenario

    sc = load_scenario(scenario)
    opts = SolveOptions(
        mip_gap=sc.mip_gap if mip_gap is None else mip_gap,
        time_limit_s=sc.time_limit_s if time_limit_s is None else time_limit_s,
    )
    result = plan(sc, opts)
    summary = compare(sc, result)
    print_summary(summary)
    battery = sc.battery.name if sc.battery else "battery"
    if out is not None:
        write_schedule_csv(result.flows, out, battery)
        console.print(f"schedule written to {out}")
    if kpis is not None:
        kpis.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        console.print(f"KPIs written to {kpis}")
    if store:
        from energy.db import make_engine, session_factory, transaction
        from energy.settings import get_settings
        from optimizer.store import save_plan

        engine = make_engine(get_settings().sqlalchemy_url)
        with transaction(session_factory(engine)) as session:
            sid = save_plan(session, sc, result, summary)
        console.print(f"schedule stored as id {sid}")


@optimize_app.command("batch")
def batch_cmd(
    directory: Path = typer.Argument(..., help="Directory of scenario YAML files"),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Write one schedule CSV per site here"
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-j", help="Processes (default: all cores)"
    ),
    summary_json: Path | None = typer.Option(None, "--summary", help="Write all results as JSON"),
) -> None:
    """Plan many independent sites in parallel (a process pool over the scenario files)."""
    import time

    from rich.table import Table

    from energy.errors import NoaberError
    from optimizer.batch import run_batch, scenario_files

    files = scenario_files(directory)
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("planning sites", total=len(files))
        items = run_batch(
            files, workers=workers, out_dir=out_dir, on_done=lambda _i: bar.advance(task)
        )
    wall = time.perf_counter() - t0
    table = Table(title=f"{len(items)} sites in {wall:.1f} s")
    for col in (
        "site",
        "status",
        "cost [EUR]",
        "saves vs no control",
        "saves vs self-cons.",
        "build+solve [s]",
    ):
        table.add_column(col)
    for it in items:
        if it.ok and it.summary:
            s = it.summary
            table.add_row(
                it.name,
                s["status"],
                _money(s["kpis"]["optimized"]["cost_eur"]),
                _money(s["savings_eur"]["no_control"]),
                _money(s["savings_eur"]["self_consumption"]),
                f"{s['build_s'] + s['solve_s']:.2f}",
            )
        else:
            table.add_row(it.name, "[red]failed[/red]", "", "", "", "")
    console.print(table)
    for it in items:
        if not it.ok:
            console.print(f"[red]{it.name}[/red]: {it.error}", highlight=False)
    if summary_json is not None:
        rows = [
            {
                "name": i.name,
                "ok": i.ok,
                "error": i.error,
                "summary": i.summary,
                "schedule_csv": i.schedule_csv,
            }
            for i in items
        ]
        summary_json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    failed = [i for i in items if not i.ok]
    if failed:
        raise NoaberError(
            f"{len(failed)} of {len(items)} sites failed; first: {failed[0].name}: {failed[0].error}"
        )


def load_sink(spec: str, site: str) -> Any:
    """The setpoint sink named by ``spec``: ``dry-run`` or ``module:factory``.

    ``factory(site_name)`` must return an object with ``async apply(asset_name, power_w,
    requested_by)`` (:class:`optimizer.mpc.SetpointSink`); the gateway's safe-write path is
    wired this way without the optimizer importing the gateway.
    """
    import importlib

    from optimizer.mpc import LoggingSink

    if spec == "dry-run":
        return LoggingSink()
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"--sink must be 'dry-run' or 'module:factory', got {spec!r}")
    factory = getattr(importlib.import_module(module), attr, None)
    if factory is None:
        raise ValueError(f"--sink: {module!r} has no {attr!r}")
    return factory(site)


@optimize_app.command("run")
def run_cmd(
    site: str = typer.Option(..., "--site", help="Site name in the store"),
    prices: Path | None = typer.Option(None, "--prices", help="Price CSV covering the horizon"),
    price_series: str | None = typer.Option(
        None,
        "--price-series",
        help="Instead of --prices: stored series 'IMPORT,EXPORT' (noaber prices import)",
    ),
    sessions_file: Path | None = typer.Option(
        None, "--sessions", help="EV sessions YAML {ev: [{arrival, ...}]}"
    ),
    horizon_hours: float = typer.Option(24.0, help="Planning horizon [h]"),
    steps: int = typer.Option(1, min=1, max=100_000, help="Control steps to run (15 min apart)"),
    sink: str = typer.Option(
        "dry-run", help="'dry-run' or 'module:factory' giving the gateway's safe-write sink"
    ),
    cloud_factor: float = typer.Option(1.0, min=0.0, max=1.0, help="PV share of clear sky"),
    store: bool = typer.Option(True, help="Store every plan in the database"),
    at: str | None = typer.Option(
        None,
        "--at",
        help="Plan as of this time (ISO 8601, e.g. 2026-06-15T10:00+02:00) from what the store "
        "held then: a replay; the steps follow 15 minutes apart without waiting",
    ),
    soc_max_age_min: float = typer.Option(
        60.0, min=1.0, help="Use a SoC reading no older than this [min]; else fall back, warned"
    ),
) -> None:
    """Model-predictive control: re-plan every 15 minutes from measured SoC and send setpoints.

    Each asset is planned within the limits the gateway's safe writer enforces for its device
    (the tighter of the profile's setpoint range and the site file's devices[].limits): a
    battery or charger setpoint bounds its own power; a grid setpoint (a GX in ESS mode 2)
    bounds the site's import and export. The battery starts from its SoC channel's latest reading, a plugged-in car from its
    charger's SoC reading since it arrived; without one, the site file's soc_initial_pct or
    the session's arrival SoC is used and a warning says so. With the default sink this is a
    dry run; 'noaber control run SITE.yaml' runs the same loop with the site's gateway
    (polling, live SoC, safe writes and safe defaults)."""
    import asyncio

    import pandas as pd
    from rich.markup import escape

    from energy.db import make_engine, session_factory
    from energy.errors import NoaberError
    from energy.settings import get_settings
    from noaber.services.control import report_step, stored_writer_limits
    from noaber.services.siteplans import stored_ev_sessions, with_site_controls
    from optimizer.limits import apply_writer_limits
    from optimizer.mpc import MPCController
    from optimizer.sitestore import (
        ev_sessions_from_yaml,
        measured_state,
        parse_price_series,
        scenario_from_store,
    )

    if (prices is None) == (price_series is None):
        raise NoaberError("give exactly one of --prices CSV or --price-series IMPORT,EXPORT")
    replay_at: list[pd.Timestamp] = []
    if at is not None:
        try:
            t = pd.Timestamp(at)
        except ValueError:
            raise NoaberError(f"--at: not a time: {at!r} (use ISO 8601)") from None
        if t.tzinfo is None:
            raise NoaberError(f"--at: give a time zone offset or Z, got {at!r}")
        replay_at.append(t.tz_convert("UTC"))

    def clock() -> pd.Timestamp:
        return replay_at[0] if replay_at else pd.Timestamp.now(tz="UTC")

    series = parse_price_series(price_series)
    engine = make_engine(get_settings().sqlalchemy_url)
    factory = session_factory(engine)
    ev_sessions = ev_sessions_from_yaml(sessions_file) if sessions_file else None
    with factory() as s:  # plan within what the gateway's safe writer will let through
        writer = stored_writer_limits(s, site)

    def scenario_at(now: pd.Timestamp):
        with factory() as s:
            # without --sessions: the sessions the owners set in the app; always the owners'
            # minimum SoC / V2G choice and the manager's limits (noaber.services.siteplans)
            sessions = ev_sessions
            if sessions is None:
                sessions = stored_ev_sessions(s, site, now, horizon_hours)
            sc = scenario_from_store(
                s,
                site,
                now,
                horizon_hours,
                prices,
                sessions,
                cloud_factor,
                price_series=series,
            )
            return apply_writer_limits(with_site_controls(s, sc, now), writer)

    first = scenario_at(clock())  # fail early on an unknown site or bad prices
    for note in first.meta.get("writer_limits", []):
        console.print(f"limit: {escape(note)}", highlight=False)
    max_age = pd.Timedelta(minutes=soc_max_age_min)

    async def measure():
        with factory() as s:
            return measured_state(s, site, clock(), max_age)

    controller = MPCController(scenario_at, measure, load_sink(sink, site), clock=clock)

    async def loop() -> None:
        for i in range(steps):
            setpoints = await controller.step()
            for warning in controller.status.warnings:
                console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
            report_step(controller, setpoints, i, steps, factory if store else None)
            if i + 1 < steps:
                now = clock()
                wait = 900 - (now.value / 1e9) % 900
                if replay_at:
                    replay_at[0] = now + pd.Timedelta(seconds=wait)
                else:
                    await asyncio.sleep(wait)

    asyncio.run(loop())
    if controller.status.last_ok is False:
        raise NoaberError(f"the last planning step failed: {controller.status.last_error}")


def register(app: typer.Typer) -> None:
    """Add the ``optimize`` command group to the root ``noaber`` app."""
    app.add_typer(optimize_app, name="optimize")
