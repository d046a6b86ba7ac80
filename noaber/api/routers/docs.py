"""OpenAPI docs at ``/docs`` with Swagger UI served from the installed package: no CDN.

FastAPI's default docs page loads Swagger UI from a CDN and starts it with inline script; an
operator's browser (or a site without internet) should not need the CDN, and the pages'
Content-Security-Policy allows no inline script (:mod:`noaber.api.hardening`). The assets come
from ``swagger-ui-bundle-v2``; Swagger UI is started by ``noaber/api/static/swagger-init.js``.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from noaber.api.deps import not_found

router = APIRouter(include_in_schema=False)

SWAGGER_PREFIX = "/static/swagger"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
#: Our own file next to Swagger UI's: the script that starts it.
SWAGGER_INIT = "swagger-init.js"
#: The Swagger UI files a page may fetch, with their media types.
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "oauth2-redirect.js": "application/javascript",
    SWAGGER_INIT: "application/javascript",
}


def swagger_dir() -> Path:
    """Directory of the Swagger UI distribution in the installed package."""
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Interactive API documentation (log in with the Authorize button: OAuth2 password)."""
    title = escape(f"{request.app.title} API")
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{SWAGGER_PREFIX}/swagger-ui.css">
<link rel="icon" href="{SWAGGER_PREFIX}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(request.app.openapi_url)}"
     data-oauth2-redirect-url="{OAUTH2_REDIRECT_PATH}"></div>
<script src="{SWAGGER_PREFIX}/swagger-ui-bundle.js"></script>
<script src="{SWAGGER_PREFIX}/{SWAGGER_INIT}"></script>
</body>
</html>
"""
    )


@router.get(OAUTH2_REDIRECT_PATH, response_class=HTMLResponse)
def swagger_ui_redirect() -> HTMLResponse:
    """The OAuth2 redirect page of Swagger UI (its script is a file of the distribution)."""
    return HTMLResponse(
        '<!doctype html><html lang="en"><body>'
        f'<script src="{SWAGGER_PREFIX}/oauth2-redirect.js"></script></body></html>'
    )


@router.get(SWAGGER_PREFIX + "/{filename}")
def swagger_asset(filename: str) -> FileResponse:
    """One file of the Swagger UI distribution (only those in :data:`SWAGGER_FILES`)."""
    media_type = SWAGGER_FILES.get(filename)
    if media_type is None:
        raise not_found(f"file {filename!r}")
    directory = Path(__file__).parents[1] / "static" if filename == SWAGGER_INIT else swagger_dir()
    return FileResponse(
        directory / filename,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )
