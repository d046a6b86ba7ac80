"""One language mechanism and errors for people: ``?lang=`` everywhere, kept in a cookie,
the header with the user's name, the switch and sign-out on every page; page errors as HTML
in the reader's language while the API keeps its problem JSON."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from energy.security import create_access_token
from noaber.api.deps import TOKEN_COOKIE
from noaber.api.language import LANG_COOKIE, resolve_locale, switch_href
from tests.noaber.api_world import USERS
from tests.noaber.test_api_authz import SECRET

HTML = {"Accept": "text/html"}


def _cookie_client(app, role: str) -> TestClient:
    token = create_access_token(USERS[role], role, SECRET, 600)
    client = TestClient(app)
    client.cookies.set(TOKEN_COOKIE, token)
    return client


def test_resolution_order() -> None:
    assert resolve_locale("en", "nl", "nl") == "en"  # ?lang= first
    assert resolve_locale(None, "en", "nl") == "en"  # then the cookie
    assert resolve_locale(None, None, "en") == "en"  # then the configured one
    assert resolve_locale("fr", "xx", "nl") == "nl"  # nothing supported: Dutch
    # the switch keeps the page's other parameters and replaces an earlier lang
    assert switch_href("/x", "start=1&lang=nl", "en") == "/x?start=1&lang=en"


def test_switch_persists_in_a_cookie(world_app) -> None:
    app, _world = world_app
    with _cookie_client(app, "operator") as client:
        first = client.get("/", headers=HTML)
        assert 'lang="nl"' in first.text  # Dutch by default
        assert LANG_COOKIE not in first.headers.get("set-cookie", "")
        en = client.get("/?lang=en", headers=HTML)
        assert 'lang="en"' in en.text
        assert f"{LANG_COOKIE}=en" in en.headers["set-cookie"]
        assert "SameSite=Lax" in en.headers["set-cookie"]
        # the next page without ?lang= is English: the cookie carries the choice
        again = client.get("/", headers=HTML)
        assert 'lang="en"' in again.text
        client.get("/?lang=nl", headers=HTML)
        assert 'lang="nl"' in client.get("/", headers=HTML).text


def test_every_page_has_the_header(world_app) -> None:
    app, _world = world_app
    with _cookie_client(app, "site_manager") as client:
        for path in ("/", "/sites/hall-a/dashboard"):
            page = client.get(path, headers=HTML)
            assert page.status_code == 200, (path, page.text[:300])
            assert 'id="user-name"' in page.text and USERS["site_manager"] in page.text
            assert 'id="sign-out"' in page.text and "Uitloggen" in page.text
            assert 'id="lang-en"' in page.text and f'href="{path}?lang=en"' in page.text


@pytest.mark.parametrize(
    ("lang", "text"), [("nl", "U mag deze pagina niet openen."), ("en", "You may not open")]
)
def test_refusal_is_an_html_page_in_the_readers_language(world_app, lang, text) -> None:
    app, _world = world_app
    with _cookie_client(app, "member") as client:
        r = client.get(f"/sites/hall-a/dashboard?lang={lang}", headers=HTML)
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("text/html")
        assert text in r.text and f'lang="{lang}"' in r.text
        assert 'id="sign-out"' in r.text  # the header is there: the way back is too


def test_unknown_page_is_html_and_api_keeps_json(world_app) -> None:
    app, _world = world_app
    with _cookie_client(app, "operator") as client:
        page = client.get("/no/such/page", headers=HTML)
        assert page.status_code == 404 and "Pagina niet gevonden." in page.text
        api = client.get("/no/such/page", headers={"Accept": "application/json"})
        assert api.status_code == 404
        assert api.headers["content-type"] == "application/problem+json"
        assert api.json()["status"] == 404


def test_old_locale_parameter_is_gone(world_app) -> None:
    """One name: every page takes ``lang``; a bad value is refused, naming the parameter."""
    app, _world = world_app
    with _cookie_client(app, "operator") as client:
        r = client.get("/sites/hall-a/dashboard?lang=fr", headers={"Accept": "application/json"})
        assert r.status_code == 422 and "lang" in r.json()["detail"]
        schema = client.get("/openapi.json").json()
    langs = 0
    for path, ops in schema["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            assert "locale" not in names, f"{path} still takes ?locale="
            langs += "lang" in names
    assert langs >= 8, langs  # the pages, reports and statements all take ?lang=
