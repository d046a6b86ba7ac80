"""``noaber homeassistant``: a site's values, plan and savings in Home Assistant (MQTT discovery)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from noaber.console import console

homeassistant_app = typer.Typer(
    help="Home Assistant: MQTT discovery of a site's live values, plan and savings.",
    no_args_is_help=True,
)


@homeassistant_app.command("publish")
def publish(
    site: Annotated[str, typer.Option("--site", help="Site name")],
    once: Annotated[bool, typer.Option("--once", help="Publish once and exit")] = False,
    every: Annotated[
        float, typer.Option("--every", min=1.0, help="Publish every this many seconds")
    ] = 60.0,
    mqtt: Annotated[
        str | None,
        typer.Option(
            metavar="URL|HOST[:PORT]",
            help="Broker: mqtt://USER:PASSWORD@HOST:PORT or HOST[:PORT] (default: NOABER_MQTT_URL)",
        ),
    ] = None,
    prefix: Annotated[
        str, typer.Option(help="Home Assistant's discovery prefix")
    ] = "homeassistant",
) -> None:
    """Publish retained discovery configs and states for SITE (until SIGTERM, or --once).

    The sensors appear in Home Assistant without configuration; the energy sensors
    (kWh, total_increasing) can be chosen in its energy dashboard. The broker's last will
    marks them unavailable when this process dies.
    """
    from energy.clock import utc_now
    from energy.db import make_engine, session_factory, upgrade
    from energy.settings import load_settings
    from noaber.cli.gateway import _broker
    from noaber.services.homeassistant import HomeAssistantPublisher, run
    from optimizer.sitestore import get_site

    settings = load_settings()
    broker = _broker(mqtt, settings.mqtt_url, "noaber homeassistant publish")
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        get_site(session, site)  # a one-line error for an unknown site, before connecting
    publisher = HomeAssistantPublisher(broker, site, prefix)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    publisher.connect()
    console.print(f"{site}: publishing to {broker} (discovery prefix {prefix})", highlight=False)
    try:
        cycles = run(
            publisher,
            sessions,
            None if once else every,
            utc_now,
            stop,
            lambda n: console.print(f"{site}: {n} sensors published", highlight=False),
            lambda exc: console.print(f"{site}: {exc}; trying again", highlight=False),
        )
    finally:
        publisher.close()
        engine.dispose()
    console.print(f"{site}: {cycles} cycle(s), offline", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``homeassistant`` to the root app."""
    app.add_typer(homeassistant_app, name="homeassistant")
