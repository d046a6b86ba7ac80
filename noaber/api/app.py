"""The FastAPI application factory.

``create_app`` wires settings, the database engine, error handlers and the routers. Domain
packages add their router with ONE line each in the marked block below.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from energy import __version__
from energy.db import make_engine, session_factory
from energy.errors import NoaberError, NotFoundError, ValidationError
from energy.settings import Settings, get_settings


def _wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ValidationError)
    async def _validation(request: Request, exc: ValidationError) -> Response:
        loc = [p for p in (exc.source, exc.location) if p]
        detail = [{"loc": loc, "msg": exc.message, "type": "value_error"}]
        return JSONResponse(
            jsonable_encoder({"detail": detail}),
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(NoaberError)
    async def _noaber(request: Request, exc: NoaberError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser asking for a page without a valid cookie gets the login form (still 401).
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and _wants_html(request):
            from noaber.api.routers.pages import login_page, page_locale

            settings: Settings = request.app.state.settings
            locale = page_locale(request.query_params.get("lang"), settings.locale)
            return login_page(request, locale, None, status.HTTP_401_UNAUTHORIZED)
        return JSONResponse(
            {"detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


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
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    _install_error_handlers(app)

    from noaber.api.routers import assets, auth, channels, docs, pages, readings, sites, users

    for core in (auth, sites, assets, channels, readings, users, pages, docs):
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
    # --- end domain routers ---
    return app
