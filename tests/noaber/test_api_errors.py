"""API errors: bounded ids (404, never 500), RFC 9457 problem details, HTML error pages.

PostgreSQL's ``INTEGER`` id columns hold at most 2**31 - 1; comparing with 2**31 raised
``NumericValueOutOfRange`` (a 500) before the ids were bounded. The routes come from the app
itself, so an id route added later is checked too. API errors are RFC 9457 problem details.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest
from fastapi.testclient import TestClient

from energy.security import create_access_token
from noaber.api.routes import iter_routes
from tests.noaber.api_world import USERS, params_of
from tests.noaber.test_api_authz import SECRET, all_cases

#: Ids no row has: beyond PostgreSQL's INTEGER and BIGINT, zero, negative, not a number.
BAD_IDS = [2**31, 2**63, 2**64, 0, -1, "x"]


@pytest.fixture
def operator_client(world_app):
    app, world = world_app
    token = create_access_token(USERS["operator"], "operator", SECRET, 600)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        yield app, client, world


def test_statement_beyond_int32_is_404_problem(operator_client) -> None:
    _app, client, _world = operator_client
    r = client.get("/statements/2147483648")
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert body["status"] == 404
    assert isinstance(body["detail"], str)


def test_every_id_route_answers_404_for_an_impossible_id(operator_client) -> None:
    app, client, world = operator_client
    cases = all_cases()
    id_routes = [(m, p) for m, p in iter_routes(app) if m == "GET" and re.search(r"\{\w+_id\}", p)]
    assert len(id_routes) >= 10, id_routes
    failures = []
    for method, path in id_routes:
        params = params_of(cases[(method, path)].own["operator"], world)
        for name in re.findall(r"\{(\w+_id)\}", path):
            for bad in BAD_IDS:
                url = path.format(**{**params, name: bad})
                r = client.request(method, url)
                if r.status_code != 404:
                    failures.append(f"{url}: {r.status_code}")
    assert not failures, failures


def test_highest_possible_id_is_a_plain_404(operator_client) -> None:
    _app, client, _world = operator_client
    r = client.get(f"/statements/{2**31 - 1}")
    assert r.status_code == 404
    assert r.json()["detail"] == "statement not found"


def test_validation_error_is_a_problem_naming_the_field(operator_client) -> None:
    _app, client, world = operator_client
    ch = world.channels["hall-a/building/power"]
    r = client.get(f"/channels/{ch}/readings", params={"start": "yesterday"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == HTTPStatus(422).phrase and body["status"] == 422
    assert "start" in body["detail"]
    assert any(e["loc"][-1] == "start" for e in body["errors"])


def test_page_error_is_html_in_the_readers_language(operator_client) -> None:
    _app, client, _world = operator_client
    html = {"Accept": "text/html"}
    # Dutch by default, whatever language the browser itself is set to
    nl = client.get("/sites/no-such-site/dashboard", headers={**html, "Accept-Language": "en"})
    assert nl.status_code == 404
    assert nl.headers["content-type"].startswith("text/html")
    assert "Pagina niet gevonden." in nl.text and 'lang="nl"' in nl.text
    en = client.get("/sites/no-such-site/dashboard?lang=en", headers=html)
    assert "Page not found." in en.text and 'lang="en"' in en.text
    # the choice is kept in the cookie: the next error page is English too
    r = client.get("/statements/2147483648", headers=html)
    assert r.status_code == 404 and "Page not found." in r.text
    r = client.get("/statements/2147483648?lang=nl", headers=html)
    assert r.status_code == 404 and "Pagina niet gevonden." in r.text


def test_openapi_documents_401_403_404_as_problems(operator_client) -> None:
    _app, client, _world = operator_client
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "detail",
    }
    op = schema["paths"]["/statements/{statement_id}"]["get"]
    for code in ("401", "403", "404"):
        assert "application/problem+json" in op["responses"][code]["content"], code
    assert "404" not in schema["paths"]["/statements"]["get"]["responses"]
    assert "401" in schema["paths"]["/statements"]["get"]["responses"]
