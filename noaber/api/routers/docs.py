"""OpenAPI docs at ``/docs`` with Swagger UI served from the installed package: no CDN.

FastAPI's default docs page loads Swagger UI from a CDN; an operator's browser (or a site
without internet) should not need that. The assets come from ``swagger-ui-bundle-v2``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from noaber.api.deps import not_found

router = APIRouter(include_in_schema=False)

SWAGGER_PREFIX = "/static/swagger"
#: The Swagger UI files a page may fetch, with their media types.
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def swagger_dir() -> Path:
    """Directory of the Swagger UI distribution in the installed package."""
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Interactive API documentation (log in with the Authorize button: OAuth2 password)."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon-32x32.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
    )


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse)
def swagger_ui_redirect() -> HTMLResponse:
    """The OAuth2 redirect page of Swagger UI."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get(SWAGGER_PREFIX + "/{filename}")
def swagger_asset(filename: str) -> FileResponse:
    """One file of the Swagger UI distribution (only those in :data:`SWAGGER_FILES`)."""
    media_type = SWAGGER_FILES.get(filename)
    if media_type is None:
        raise not_found(f"file {filename!r}")
    return FileResponse(
        swagger_dir() / filename,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )
