"""``noaber control``: the closed loop (:mod:`noaber.services.control`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from noaber.console import console

control_app = typer.Typer(
    help="Closed loop: the optimizer's MPC drives the site's devices through the gateway.",
    no_args_is_help=True,
)


def control_run(
    site_file: Annotated[Path, typer.Argument(help="Site YAML (devices and assets), imported")],
    prices: Annotated[Path | None, typer.Option(help="Price CSV covering every horizon")] = None,
    price_series: Annotated[
        str | None,
        typer.Option(
            help="Instead of --prices: stored series 'IMPORT,EXPORT' (noaber prices import)"
        ),
    ] = None,
    sessions: Annotated[
        Path | None, typer.Option(help="EV sessions YAML {ev: [{arrival, ...}]}, re-read per step")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, max=1_000_000, help="Control steps, then stop")] = 96,
    step_seconds: Annotated[
        float, typer.Option(min=0.5, max=86_400, help="Seconds between re-plans")
    ] = 900.0,
    horizon_hours: Annotated[float, typer.Option(min=1, max=168, help="Horizon [h]")] = 24.0,
    cloud_factor: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="PV share of clear sky")
    ] = 1.0,
    store: Annotated[bool, typer.Option(help="Store every plan in the database")] = True,
    spool: Annotated[Path | None, typer.Option(help="Gateway spool file (SQLite)")] = None,
    forecast: Annotated[
        Path | None,
        typer.Option(
            help="CSV timestamp,load_kw,pv_kw covering every horizon, instead of the store's "
            "load profile and clear-sky PV (an external forecast)"
        ),
    ] = None,
) -> None:
    """Poll SITE's devices and re-plan every step; battery and charger setpoints go through
    the gateway's safe writes. A failed plan hands the devices back to their safe default;
    Ctrl-C/SIGTERM and the end restore every safe default."""
    from energy.errors import NoaberError
    from noaber.cli.audit import actor
    from noaber.services.control import run_site, summary_line
    from optimizer.sitestore import parse_price_series

    if (prices is None) == (price_series is None):
        raise NoaberError("give exactly one of --prices CSV or --price-series IMPORT,EXPORT")
    run = run_site(
        site_file,
        prices,
        sessions,
        steps,
        step_seconds,
        horizon_hours,
        cloud_factor,
        store,
        spool,
        price_series=parse_price_series(price_series),
        forecast_csv=forecast,
        actor=actor(),
    )
    _audit_setpoints(site_file, run.setpoints)
    console.print(summary_line(run))
    if run.status.last_ok is False:
        raise NoaberError(f"the last planning step failed: {run.status.last_error}")


def _audit_setpoints(site_file: Path, setpoints: list) -> None:
    """Record every setpoint this command wrote (asset, asked and written W) as the acting
    user's action, in one transaction after the loop (the gateway's JSONL write log has the
    register-level detail with its own timestamps)."""
    from energy.audit import record
    from energy.db import make_engine, session_factory, transaction
    from energy.settings import get_settings
    from noaber.cli.audit import actor

    if not setpoints:
        return
    who = actor()
    with transaction(session_factory(make_engine(get_settings().sqlalchemy_url))) as session:
        for sp in setpoints:
            if sp.via == "ocpp":  # audited by the central system as each profile went out
                continue
            detail = {
                "site_file": site_file.name,
                "control": sp.control,
                "requested_w": round(float(sp.requested_w), 1),
                "written_w": round(float(sp.written_w), 1),
                "read_back": bool(sp.read_back),
                "by": sp.requested_by,
            }
            record(session, who, "device.setpoint", sp.asset, detail)


def register(app: typer.Typer) -> None:
    """Add ``control run`` to the root app."""
    control_app.command("run")(control_run)
    app.add_typer(control_app, name="control")
