"""Security headers on every route (pages, JSON, errors), the cross-site check of the forms,
and the pages under their Content-Security-Policy in headless Chromium without a violation.

The routes come from the app (:func:`noaber.api.routes.iter_routes`) with the calls of the
authorization walk (``tests/noaber/test_api_authz.py``), so a route added later is covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from energy.models import User
from energy.security import create_access_token
from noaber.api import create_app
from noaber.api.routes import iter_routes
from noaber.services.demo import DEMO_SITE, DemoContext
from tests.browser import live_server, login, loopback_page
from tests.noaber.api_world import USERS, params_of
from tests.noaber.test_api_authz import SECRET, all_cases

#: What every response must carry (checked against the standards' values, not our constant).
REQUIRED = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
#: The CSP directives that must hold (W3C CSP 3): scripts from the app only, no framing.
CSP_DIRECTIVES = {"script-src": "'self'", "frame-ancestors": "'none'", "object-src": "'none'"}


def _csp(value: str) -> dict[str, str]:
    return {
        d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else ""
        for d in (p.strip() for p in value.split(";"))
        if d
    }


def _check(resp: Any, what: str, failures: list[str], *, authenticated: bool) -> None:
    headers = resp.headers
    for name, value in REQUIRED.items():
        if headers.get(name) != value:
            failures.append(f"{what}: {name} = {headers.get(name)!r}")
    csp = _csp(headers.get("content-security-policy", ""))
    for directive, value in CSP_DIRECTIVES.items():
        if csp.get(directive) != value:
            failures.append(f"{what}: CSP {directive} = {csp.get(directive)!r}")
    if "'unsafe-inline'" in csp.get("script-src", "") or "'unsafe-eval'" in csp.get(
        "script-src", ""
    ):
        failures.append(f"{what}: script-src allows inline or eval")
    cache = headers.get("cache-control", "")
    if authenticated and "no-store" not in cache:
        failures.append(f"{what}: Cache-Control {cache!r} on an authenticated answer")


@pytest.mark.slow
def test_every_route_carries_the_security_headers(world_app, sessions) -> None:
    app, world = world_app
    cases = all_cases()
    failures: list[str] = []
    with TestClient(app) as client:
        for method, path in iter_routes(app):
            case = cases[(method, path)]
            kwargs: dict[str, Any] = {"follow_redirects": False}
            if case.body is not None:
                kwargs["data" if case.form else "json"] = case.body(world, "operator")
            if case.public:
                url = path.format(**case.public_params)
                resp = client.request(method, url, **kwargs)
                _check(resp, f"{method} {url}", failures, authenticated=False)
                continue
            role = "operator" if "operator" in case.roles else sorted(case.roles)[0]
            url = path.format(**params_of(case.own[role], world))
            anonymous = client.request(method, url, **kwargs)
            _check(anonymous, f"{method} {url} (401)", failures, authenticated=False)
            with sessions() as session:  # a password change earlier in the walk bumps it
                version = session.scalar(
                    select(User.token_version).where(User.username == USERS[role])
                )
            token = create_access_token(USERS[role], role, SECRET, 600, token_version=version or 0)
            resp = client.request(
                method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
            # a page form answers its redirect (303) after storing, like POST /login
            assert resp.status_code < 300 or resp.status_code == case.ok, (
                method,
                url,
                resp.status_code,
                resp.text[:300],
            )
            _check(resp, f"{method} {url} as {role}", failures, authenticated=True)
            # An HTML page asked for by a browser, and an error answer, too.
            page = client.request(method, url + "x" * 3, headers={"Accept": "text/html"})
            _check(page, f"{method} {url}xxx (error page)", failures, authenticated=False)
    assert not failures, "\n".join(failures)


def test_versioned_static_bundles_may_be_cached(world_app) -> None:
    app, _world = world_app
    with TestClient(app) as client:
        r = client.get("/static/plotly.min.js")
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_cross_site_form_posts_are_refused(world_app) -> None:
    app, _world = world_app
    form = {"username": "oper", "password": "correct-horse-battery"}
    with TestClient(app, base_url="http://noaber.test") as client:
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Referer": "http://evil.example/page"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "http://noaber.test.evil.example"},
        ):
            for url in ("/login", "/logout", "/auth/token"):
                r = client.post(url, data=form, headers=headers, follow_redirects=False)
                assert r.status_code == 403, (url, headers, r.status_code)
                assert r.json()["detail"] == "cross-site request refused"
                assert "set-cookie" not in r.headers
        same = client.post(
            "/login",
            data=form,
            headers={"Origin": "http://noaber.test", "Sec-Fetch-Site": "same-origin"},
            follow_redirects=False,
        )
        assert same.status_code == 303 and "noaber_token=" in same.headers["set-cookie"]
        # No browser headers at all: not a browser page, so no CSRF (curl, the API clients).
        plain = client.post("/login", data=form, follow_redirects=False)
        assert plain.status_code == 303


@pytest.fixture(scope="module")
def demo_server(demo: DemoContext) -> Iterator[str]:
    with live_server(create_app(demo.settings, demo.engine)) as base:
        yield base


#: Records every CSP violation the page reports (an init script is not subject to the CSP).
LISTEN_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber));
"""


@pytest.mark.browser
def test_pages_run_under_the_csp_without_violations(demo_server: str) -> None:
    with loopback_page() as (page, outside):
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.add_init_script(LISTEN_CSP)
        violations: list[str] = []

        def visit(url: str, ready: str) -> None:
            resp = page.goto(f"{demo_server}{url}")
            assert resp is not None and resp.status == 200, (url, resp and resp.status)
            assert "script-src 'self'" in resp.headers["content-security-policy"]
            page.wait_for_function(ready)
            violations.extend(f"{url}: {v}" for v in page.evaluate("window.__csp"))

        login(page, demo_server, "beheer-noaberhof", "noaber-dorpshuis")
        charts = "() => document.querySelectorAll('.plotly-graph-div .main-svg').length > 0"
        visit(f"/sites/{DEMO_SITE}/dashboard", charts)
        visit(f"/schedules/sites/{DEMO_SITE}", charts)
        visit("/docs", "() => !!document.querySelector('.swagger-ui .opblock-tag')")
        visit("/", "() => !!document.querySelector('header.noaber')")
    assert not violations, violations
    csp_console = [m for m in console if "Content Security Policy" in m]
    assert not csp_console, csp_console
    assert not outside, outside
