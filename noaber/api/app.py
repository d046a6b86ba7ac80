"""The FastAPI application factory.

``create_app`` wires settings, the database engine, the security headers and cross-site
check (:mod:`noaber.api.hardening`), the error handlers (:mod:`noaber.api.problems`) and the
routers. Domain packages add their router with ONE line each in the marked block below.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from sqlalchemy import Engine

from energy import __version__
from energy.db import make_engine, session_factory
from energy.settings import Settings, get_settings
from noaber.api.hardening import SecurityHeadersMiddleware, same_origin
from noaber.api.language import PageChromeMiddleware
from noaber.api.pagecache import PageCache
from noaber.api.problems import document_errors, install_error_handlers


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The Noaber API and pages.

    Parameters
    ----------
    settings : Settings, optional
        Default: :func:`energy.settings.get_settings`.
    engine : Engine, optional
        Default: an engine on ``settings.sqlalchemy_url``. The schema must be migrated
        (``noaber db upgrade``; ``noaber serve`` and ``noaber demo`` do it).
    """
    settings = settings or get_settings()
    engine = engine or make_engine(settings.sqlalchemy_url)
    app = FastAPI(
        title="Noaber",
        version=__version__,
        description="Energy monitoring, scheduling and V2G settlement for Drenthe.",
        docs_url=None,  # served by routers/docs.py with local assets (no CDN)
        redoc_url=None,
        dependencies=[Depends(same_origin)],
    )
    app.add_middleware(PageChromeMiddleware)  # page header and language cookie
    app.add_middleware(SecurityHeadersMiddleware)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.page_cache = PageCache()  # parts of pages, kept until their data change
    install_error_handlers(app)

    from noaber.api.routers import (
        assets,
        audit,
        auth,
        channels,
        docs,
        members,
        pages,
        readings,
        sites,
        users,
    )

    for core in (auth, sites, assets, channels, readings, users, members, audit, pages, docs):
        app.include_router(core.router)

    # --- domain routers ---
    # (one line each: app.include_router(<module>.router), imported inside this block;
    # describe every new route in tests/<pkg>/api_authz.py, see tests/noaber/api_world.py)
    from noaber.api.routers import statements

    app.include_router(statements.router)
    from noaber.api.routers import campaigns

    app.include_router(campaigns.router)
    from noaber.api.routers import schedules

    app.include_router(schedules.router)
    from noaber.api.routers import alarms

    app.include_router(alarms.router)
    from noaber.api.routers import gateways

    app.include_router(gateways.router)
    from noaber.api.routers import jobs, ops

    app.include_router(jobs.router)
    app.include_router(ops.router)
    from noaber.api.routers import manage, my

    app.include_router(my.router)
    app.include_router(manage.router)
    from noaber.api.routers import tariffs

    app.include_router(tariffs.router)
    # --- end domain routers ---
    document_errors(app)
    return app
