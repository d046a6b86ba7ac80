"""Errors of the API as RFC 9457 problem details, and of the pages as HTML.

Every error answer of the JSON API is ``application/problem+json`` with ``type``
(``about:blank``: the status says it all), ``title`` (the status phrase), ``status`` and
``detail`` (one line); a 422 adds ``errors``, the list of ``{loc, msg, type}`` naming each bad
field. A browser asking for a page (``GET`` with ``Accept: text/html``) gets the login form for a
401 and an HTML error page in the reader's language for any other error
(:func:`noaber.api.routers.pages.error_page`).

A path that fails validation (an id that is not a number, or outside 1..2**31 - 1, see
:data:`noaber.api.deps.IdPath`) names no resource: it is 404, the same answer as an unknown id.

The rules are those of RFC 9457 (``docs/SOURCES.md``, Web security).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from energy.errors import NoaberError, NotFoundError, ValidationError

PROBLEM_JSON = "application/problem+json"

#: The OpenAPI schema of a problem details body (components/schemas/Problem).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string", "default": "about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status", "detail"],
}


def problem(
    status_code: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """An ``application/problem+json`` response (RFC 9457) for ``status_code``."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = jsonable_encoder(errors)
    return JSONResponse(body, status_code=status_code, headers=headers, media_type=PROBLEM_JSON)


def wants_html(request: Request) -> bool:
    """True for a browser asking for a page: ``GET``, or a page form's ``POST``
    (``application/x-www-form-urlencoded``), accepting ``text/html``."""
    if "text/html" not in request.headers.get("accept", ""):
        return False
    if request.method == "GET":
        return True
    form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    return request.method == "POST" and form


def _error(
    request: Request,
    status_code: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    if wants_html(request):
        from noaber.api.routers.pages import error_page

        return error_page(request, status_code)
    return problem(status_code, detail, headers=headers, errors=errors)


def _summary(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem details (API) or an HTML page (pages)."""

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [dict(e) for e in exc.errors()]
        if errors and all(e.get("loc", ("",))[0] == "path" for e in errors):
            return _error(request, status.HTTP_404_NOT_FOUND, "not found")
        return _error(
            request, status.HTTP_422_UNPROCESSABLE_CONTENT, _summary(errors), errors=errors
        )

    @app.exception_handler(ValidationError)
    async def _validation(request: Request, exc: ValidationError) -> Response:
        loc = [p for p in (exc.source, exc.location) if p]
        errors = [{"loc": loc, "msg": exc.message, "type": "value_error"}]
        return _error(
            request, status.HTTP_422_UNPROCESSABLE_CONTENT, _summary(errors), errors=errors
        )

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return _error(request, status.HTTP_404_NOT_FOUND, str(exc))

    @app.exception_handler(NoaberError)
    async def _noaber(request: Request, exc: NoaberError) -> Response:
        return _error(request, status.HTTP_400_BAD_REQUEST, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser asking for a page without a valid cookie gets the login form (still 401).
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_html(request):
            from noaber.api.language import reader_locale
            from noaber.api.routers.pages import login_page

            locale = reader_locale(request)
            return login_page(request, locale, None, status.HTTP_401_UNAUTHORIZED)
        return _error(
            request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)
        )


def document_errors(app: FastAPI) -> None:
    """Add the 401, 403 and 404 problem answers to the OpenAPI of the routes that give them.

    A route that needs a token (it has ``security``) may answer 401 and 403; one with a path
    parameter 404.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        ref = {"$ref": "#/components/schemas/Problem"}
        for path, operations in schema.get("paths", {}).items():
            for op in operations.values():
                codes = []
                if "security" in op:
                    codes += [401, 403]
                if "{" in path:
                    codes.append(404)
                responses = op.setdefault("responses", {})
                for code in codes:
                    responses.setdefault(
                        str(code),
                        {
                            "description": HTTPStatus(code).phrase,
                            "content": {PROBLEM_JSON: {"schema": ref}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
