"""Security headers on every response, and the cross-site request check of every form.

:class:`SecurityHeadersMiddleware` adds :data:`SECURITY_HEADERS` to every answer (pages, JSON,
errors, static files) and ``Cache-Control: no-store`` to every answer that does not set its
own (statements, personal data and every authenticated answer; only the versioned static
bundles, plotly.js and Swagger UI, say they may be cached). The Content-Security-Policy allows
scripts from the app itself only: no page has inline script or inline event handlers (charts
are JSON data blocks drawn by the loader in :mod:`energy.plots`, the docs are started by
``noaber/api/static/swagger-init.js``). Inline ``style`` stays allowed: plotly.js injects its
own style sheet.

CSRF: the token cookie of the pages is HttpOnly and SameSite=Lax, and is accepted for GET and
HEAD only (:mod:`noaber.api.deps`), so no cookie authenticates a state-changing request; the
page forms (``POST /login``, ``/logout``) are protected by :func:`same_origin`, which refuses
an unsafe request that a browser marks as coming from another origin (``Origin``, else
``Referer``, and ``Sec-Fetch-Site``). The sources of both are in ``docs/SOURCES.md`` (Web
security).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noaber.api.deps import SAFE_METHODS

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

#: Added to every response.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeadersMiddleware:
    """ASGI middleware: :data:`SECURITY_HEADERS`, and ``Cache-Control: no-store`` by default."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _netloc(url: str) -> str:
    return urlsplit(url).netloc.lower()


def same_origin(request: Request) -> None:
    """Refuse (403) an unsafe request that a browser says comes from another origin.

    Browsers send ``Origin`` with every POST; ``"null"`` (an opaque origin) is refused too.
    Without ``Origin`` the ``Referer`` is compared; ``Sec-Fetch-Site: cross-site`` is refused.
    A request without any of these headers is not from a browser page and passes.
    """
    if request.method in SAFE_METHODS:
        return
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    cross = request.headers.get("sec-fetch-site") == "cross-site"
    if origin is not None:
        cross = cross or origin == "null" or _netloc(origin) != host
    elif referer:
        cross = cross or _netloc(referer) != host
    if cross:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")
