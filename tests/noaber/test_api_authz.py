"""Authorization walk: EVERY route of the app, with every role and with no token.

Expected: 401 without a token, 403 for a role that may not use the route, 404 for someone
else's resource (existence not revealed), and the route's success status for one's own.
Routes come from the app itself (:func:`noaber.api.routes.iter_routes`), so a route added
later without a case in :data:`CASES` (or in a ``tests/<pkg>/api_authz.py``) fails
:func:`test_every_route_has_an_authorization_case`.
"""

from __future__ import annotations

import importlib
import itertools
import re
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from energy.models import User
from energy.security import create_access_token
from energy.settings import Settings
from noaber.api import create_app
from noaber.api.routes import iter_routes
from tests.noaber.api_world import (
    PASSWORD,
    ROLES,
    USERS,
    Case,
    World,
    build_world,
    params_of,
)

SECRET = "test-secret-" + "x" * 40
_counter = itertools.count()

ALL = set(ROLES)
SITE_READERS = {"operator", "site_manager", "firm"}
OWN_SITE = {
    "operator": {"site_name": "hall-a"},
    "site_manager": {"site_name": "hall-a"},
    "firm": {"site_name": "factory-own"},
    "member": {"site_name": "hall-a"},
}
FOREIGN_SITES = [{"site_name": "hall-b"}, {"site_name": "factory-other"}]


def _asset(key: str):
    return lambda w: {"asset_id": w.assets[key]}


def _channel(key: str):
    return lambda w: {"channel_id": w.channels[key]}


OWN_ASSET = {
    "operator": _asset("hall-b/pv"),
    "site_manager": _asset("hall-a/pv"),
    "firm": _asset("factory-own/line-1"),
    "member": _asset("hall-a/ev-own"),
}
FOREIGN_ASSETS = [_asset("hall-b/ev-other"), _asset("factory-other/line-1")]
OWN_CHANNEL = {
    "operator": _channel("factory-other/line-1/power"),
    "site_manager": _channel("hall-a/grid/power"),
    "firm": _channel("factory-own/line-1/power"),
    "member": _channel("hall-a/ev-own/power"),
}
FOREIGN_CHANNELS = [_channel("hall-b/ev-other/power"), _channel("factory-other/line-1/power")]
# A member sees their own EV at hall-a, not the hall's PV or meter; the hall's manager does
# not see that EV itself without its owner's consent (m-ev has given none).
MEMBER_FOREIGN_ASSETS = {
    "member": [_asset("hall-a/pv"), _asset("hall-a/grid")],
    "site_manager": [_asset("hall-a/ev-own")],
}
MEMBER_FOREIGN_CHANNELS = {
    "member": [_channel("hall-a/pv/power")],
    "site_manager": [_channel("hall-a/ev-own/power")],
}
MEMBER_HOLDERS = {"operator", "member", "firm"}
OWN_MEMBER = {"operator": {"ref": "m-hall-b"}, "member": {"ref": "m-ev"}, "firm": {"ref": "m-firm"}}
FOREIGN_MEMBERS = [{"ref": "m-ev-other"}, {"ref": "m-firm-other"}]
PURPOSE = "ev_detail_site_manager"
OWN_PURPOSE = {r: {**p, "purpose": PURPOSE} for r, p in OWN_MEMBER.items()}
FOREIGN_PURPOSES = [{**p, "purpose": PURPOSE} for p in FOREIGN_MEMBERS]


def _member_case(**kw: Any) -> Case:
    """A route on one member's data: operator any, member/firm their own, others 403."""
    return Case(roles=MEMBER_HOLDERS, own=OWN_MEMBER, foreign=FOREIGN_MEMBERS, **kw)


def _consent_body(_w: World, _role: str | None) -> dict[str, Any]:
    return {"purpose": PURPOSE}


def _login_form(_w: World, _role: str | None) -> dict[str, Any]:
    return {"username": "oper", "password": PASSWORD}


def _password_change(_w: World, _role: str | None) -> dict[str, Any]:
    return {"current_password": PASSWORD, "new_password": f"changed-{next(_counter)}-password"}


def _password_reset(_w: World, _role: str | None) -> dict[str, Any]:
    return {"new_password": f"reset-{next(_counter)}-password"}


def _totp_code(w: World, role: str | None) -> dict[str, Any]:
    """The current code of the user's enrolled secret (``POST /users/me/totp`` ran before)."""
    secret = None
    if role is not None:
        with w.extra["sessions"]() as session:
            secret = session.scalar(select(User.totp_secret).where(User.username == USERS[role]))
    return {"code": pyotp.TOTP(secret).now() if secret else "000000"}


def _new_user(_w: World, _role: str | None) -> dict[str, Any]:
    return {
        "username": f"new-user-{next(_counter)}",
        "password": "a-long-enough-password",
        "role": "member",
        "member_ref": "m-ev-other",
    }


MANAGERS = {"operator", "site_manager"}


def _session_times() -> tuple[str, str]:
    import datetime as dt

    arrival = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(hours=1)
    return arrival.isoformat(), (arrival + dt.timedelta(hours=6)).isoformat()


def _session_json(w: World, _role: str | None) -> dict[str, Any]:
    arrival, departure = _session_times()
    return {
        "asset_id": w.assets["hall-a/ev-own"],
        "arrival": arrival,
        "departure": departure,
        "soc_target_pct": 80,
        "soc_min_pct": 30,
    }


def _session_form(w: World, _role: str | None) -> dict[str, Any]:
    arrival, departure = _session_times()
    return {
        "asset": str(w.assets["hall-a/ev-own"]),
        "arrival": arrival[:16],
        "departure": departure[:16],
        "soc_target_pct": "80",
        "soc_min_pct": "30",
    }


def _limits_form(_w: World, _role: str | None) -> dict[str, Any]:
    return {"grid_import_limit_kw": "1"}


def _limits_json(_w: World, _role: str | None) -> dict[str, Any]:
    return {"grid_import_limit_kw": 1}


#: One case per (method, path) of the core app. Domain packages add theirs in
#: ``tests/<pkg>/api_authz.py`` (see tests/noaber/api_world.py).
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/"): Case(public=True),
    ("GET", "/health"): Case(public=True),
    ("GET", "/docs"): Case(public=True),
    ("GET", "/docs/oauth2-redirect"): Case(public=True),
    ("GET", "/static/swagger/{filename}"): Case(
        public=True, public_params={"filename": "swagger-ui.css"}
    ),
    ("GET", "/openapi.json"): Case(public=True),
    ("GET", "/static/plotly.min.js"): Case(public=True),
    ("GET", "/static/noaber.js"): Case(public=True),
    ("POST", "/auth/token"): Case(public=True, body=_login_form, form=True),
    ("POST", "/auth/logout"): Case(own={r: {} for r in ROLES}, ok=204),
    ("POST", "/login"): Case(public=True, body=_login_form, form=True, ok=303),
    ("POST", "/logout"): Case(public=True, ok=303),
    ("GET", "/sites"): Case(own={r: {} for r in ROLES}),
    ("GET", "/sites/{site_name}"): Case(own=OWN_SITE, foreign=FOREIGN_SITES),
    ("GET", "/sites/{site_name}/assets"): Case(own=OWN_SITE, foreign=FOREIGN_SITES),
    ("GET", "/sites/{site_name}/readings"): Case(
        roles=SITE_READERS, own=OWN_SITE, foreign=FOREIGN_SITES
    ),
    ("GET", "/sites/{site_name}/dashboard"): Case(
        roles=SITE_READERS, own=OWN_SITE, foreign=FOREIGN_SITES
    ),
    ("GET", "/assets/{asset_id}"): Case(
        own=OWN_ASSET, foreign=FOREIGN_ASSETS, also_foreign=MEMBER_FOREIGN_ASSETS
    ),
    ("GET", "/assets/{asset_id}/channels"): Case(
        own=OWN_ASSET, foreign=FOREIGN_ASSETS, also_foreign=MEMBER_FOREIGN_ASSETS
    ),
    ("GET", "/channels/{channel_id}"): Case(
        own=OWN_CHANNEL, foreign=FOREIGN_CHANNELS, also_foreign=MEMBER_FOREIGN_CHANNELS
    ),
    ("GET", "/channels/{channel_id}/readings"): Case(
        own=OWN_CHANNEL, foreign=FOREIGN_CHANNELS, also_foreign=MEMBER_FOREIGN_CHANNELS
    ),
    ("GET", "/users/me"): Case(own={r: {} for r in ROLES}),
    ("GET", "/users"): Case(roles={"operator"}, own={"operator": {}}),
    ("POST", "/users"): Case(roles={"operator"}, own={"operator": {}}, body=_new_user, ok=201),
    ("GET", "/users/{username}"): Case(roles={"operator"}, own={"operator": {"username": "mgr"}}),
    ("POST", "/users/me/password"): Case(own={r: {} for r in ROLES}, body=_password_change, ok=204),
    ("POST", "/users/me/totp"): Case(roles={"operator"}, own={"operator": {}}),
    ("POST", "/users/me/totp/confirm"): Case(
        roles={"operator"}, own={"operator": {}}, body=_totp_code, ok=204
    ),
    ("POST", "/users/{username}/password"): Case(
        roles={"operator"}, own={"operator": {"username": "mgr"}}, body=_password_reset, ok=204
    ),
    ("GET", "/members/{ref}/consents"): _member_case(),
    # each (role, member) is called once, so every call records a new consent: 201
    ("POST", "/members/{ref}/consents"): _member_case(body=_consent_body, ok=201),
    ("POST", "/members/{ref}/consents/{purpose}/withdraw"): Case(
        roles=MEMBER_HOLDERS, own=OWN_PURPOSE, foreign=FOREIGN_PURPOSES
    ),
    ("GET", "/members/{ref}/export"): _member_case(),
    ("GET", "/members/{ref}/export/csv"): _member_case(),
    ("POST", "/members/{ref}/erase"): Case(
        roles={"operator"}, own={"operator": {"ref": "m-leaver"}}
    ),
    ("GET", "/audit"): Case(roles={"operator"}, own={"operator": {}}),
    # the start pages' tasks (noaber/api/routers/my.py, manage.py)
    ("GET", "/my/devices"): Case(roles={"member"}, own={"member": {}}),
    ("GET", "/my/session"): Case(roles={"member"}, own={"member": {}}),
    ("POST", "/my/session"): Case(
        roles={"member"}, own={"member": {}}, body=_session_form, form=True, ok=303
    ),
    ("GET", "/my/statements"): Case(roles={"member"}, own={"member": {}}),
    ("GET", "/ev-sessions"): Case(roles={"member"}, own={"member": {}}),
    ("POST", "/ev-sessions"): Case(
        roles={"member"}, own={"member": {}}, body=_session_json, ok=201
    ),
    ("GET", "/sites/{site_name}/live"): Case(roles=MANAGERS, own=OWN_SITE, foreign=FOREIGN_SITES),
    ("GET", "/sites/{site_name}/limits"): Case(roles=MANAGERS, own=OWN_SITE, foreign=FOREIGN_SITES),
    ("POST", "/sites/{site_name}/limits"): Case(
        roles=MANAGERS, own=OWN_SITE, foreign=FOREIGN_SITES, body=_limits_form, form=True, ok=303
    ),
    ("PUT", "/sites/{site_name}/limits"): Case(
        roles=MANAGERS, own=OWN_SITE, foreign=FOREIGN_SITES, body=_limits_json
    ),
    # the building's statement: hall-a's member has one in the world, hall-b's none
    ("GET", "/sites/{site_name}/statement"): Case(
        roles=MANAGERS, own=OWN_SITE, also_foreign={"site_manager": [{"site_name": "hall-b"}]}
    ),
    # the centre's refused samples (noaber/api/routers/gateways.py; rows seeded in api_authz)
    ("GET", "/gateways/dead-letters"): Case(roles={"operator"}, own={"operator": {}}),
    ("GET", "/gateways/quarantine"): Case(roles={"operator"}, own={"operator": {}}),
    ("POST", "/gateways/quarantine/{quarantine_id}/accept"): Case(
        roles={"operator"},
        own={"operator": lambda w: {"quarantine_id": w.extra["quarantine-accept"]}},
    ),
    ("POST", "/gateways/quarantine/{quarantine_id}/reject"): Case(
        roles={"operator"},
        own={"operator": lambda w: {"quarantine_id": w.extra["quarantine-reject"]}},
    ),
    ("GET", "/operator/province"): Case(roles={"operator"}, own={"operator": {}}),
    ("GET", "/operator/province/csv"): Case(roles={"operator"}, own={"operator": {}}),
}


def _plugin_modules() -> list[Any]:
    """``tests/<pkg>/api_authz.py`` of the domain packages that add routes."""
    tests_dir = Path(__file__).resolve().parents[1]
    mods = []
    for path in sorted(tests_dir.glob("*/api_authz.py")):
        mods.append(importlib.import_module(f"tests.{path.parent.name}.api_authz"))
    return mods


def all_cases() -> dict[tuple[str, str], Case]:
    cases = dict(CASES)
    for mod in _plugin_modules():
        for key, case in getattr(mod, "CASES", {}).items():
            assert key not in cases, f"{mod.__name__} redefines the case of {key}"
            cases[key] = case
    return cases


def _route_list() -> list[tuple[str, str]]:
    app = create_app(Settings(mode="test", secret_key=SECRET), create_engine("sqlite://"))
    return list(iter_routes(app))


def test_every_route_has_an_authorization_case() -> None:
    cases = all_cases()
    missing = [f"{m} {p}" for m, p in _route_list() if (m, p) not in cases]
    assert not missing, (
        "API route(s) without an authorization case: "
        + ", ".join(missing)
        + ". Add a Case for each to CASES in tests/noaber/test_api_authz.py (core routes) or "
        "in tests/<your package>/api_authz.py (domain routes; see tests/noaber/api_world.py)."
    )
    stale = sorted(set(cases) - set(_route_list()))
    assert not stale, f"authorization cases for routes that no longer exist: {stale}"


def test_every_case_covers_its_roles() -> None:
    for key, case in all_cases().items():
        if case.public:
            continue
        lacking = sorted(case.roles - set(case.own))
        assert not lacking, f"{key}: no own resource for role(s) {lacking}"
        assert case.roles <= set(ROLES), f"{key}: unknown role(s) {case.roles - set(ROLES)}"


def _call(
    client: TestClient,
    method: str,
    path: str,
    params: dict[str, Any],
    case: Case,
    world: World,
    role: str | None,
    token: str | None,
) -> int:
    url = path.format(**params)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if case.body is not None:
        body = case.body(world, role)
        kwargs["data" if case.form else "json"] = body
    resp = client.request(method, url, follow_redirects=False, **kwargs)
    return resp.status_code


@pytest.mark.slow
def test_authorization_walk(engine, sessions, tmp_path) -> None:
    settings = Settings(mode="test", secret_key=SECRET, data_dir=tmp_path)
    with sessions() as session, session.begin():
        world = build_world(session)
        world.extra["sessions"] = sessions
        for mod in _plugin_modules():
            if hasattr(mod, "seed"):
                mod.seed(session, world)
    app = create_app(settings, engine)

    def token_for(role: str) -> str:
        """A fresh token per call: logging out and password changes revoke tokens."""
        with sessions() as session:
            version = session.scalar(select(User.token_version).where(User.username == USERS[role]))
        return create_access_token(USERS[role], role, SECRET, 600, token_version=version or 0)

    cases = all_cases()
    failures: list[str] = []
    calls = 0

    def expect(
        method: str, path: str, params: dict[str, Any], case: Case, role: str | None, want: int
    ) -> None:
        nonlocal calls
        calls += 1
        got = _call(
            client, method, path, params, case, world, role, token_for(role) if role else None
        )
        if got != want:
            failures.append(
                f"{method} {path.format(**params)} as {role or 'anonymous'}: "
                f"expected {want}, got {got}"
            )

    with TestClient(app) as client:
        for (method, path), case in sorted(cases.items(), key=lambda kv: kv[0][::-1]):
            if (method, path) not in set(iter_routes(app)):
                continue  # reported by test_every_route_has_an_authorization_case
            if case.public:
                for role in (None, *ROLES):
                    expect(method, path, case.public_params, case, role, case.ok)
                continue
            any_params = params_of(next(iter(case.own.values())), world) if case.own else {}
            expect(method, path, any_params, case, None, 401)
            for role in ROLES:
                if role not in case.roles:
                    expect(method, path, any_params, case, role, 403)
                    continue
                expect(method, path, params_of(case.own[role], world), case, role, case.ok)
                for foreign in case.foreign:
                    want = case.ok if role == "operator" else 404
                    expect(method, path, params_of(foreign, world), case, role, want)
                for foreign in case.also_foreign.get(role, []):
                    expect(method, path, params_of(foreign, world), case, role, 404)
    assert not failures, f"{len(failures)} of {calls} calls wrong:\n" + "\n".join(failures)
    assert calls > 5 * len(cases)


def test_bad_tokens_are_401(engine, sessions) -> None:
    with sessions() as session, session.begin():
        build_world(session)
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    expired = create_access_token(
        "oper",
        "operator",
        SECRET,
        1,
        now=__import__("datetime").datetime(2020, 1, 1, tzinfo=__import__("datetime").UTC),
    )
    forged = create_access_token("oper", "operator", "another-secret-" + "y" * 40, 600)
    ghost = create_access_token("nobody", "operator", SECRET, 600)
    with TestClient(app) as client:
        for token in (expired, forged, ghost, "not-a-jwt"):
            r = client.get("/sites", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (token, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
        assert (
            client.get("/sites", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        )
        ok = create_access_token("oper", "operator", SECRET, 600)
        assert client.get("/sites", headers={"Authorization": f"Bearer {ok}"}).status_code == 200


@pytest.mark.parametrize("path", ["/sites", "/users/me"])
def test_cookie_token_only_for_safe_methods(engine, sessions, path: str) -> None:
    with sessions() as session, session.begin():
        build_world(session)
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    with TestClient(app) as client:
        r = client.post(
            "/login", data={"username": "oper", "password": PASSWORD}, follow_redirects=False
        )
        assert r.status_code == 303
        assert "noaber_token" in client.cookies
        assert client.get(path).status_code == 200
        # The same cookie must not authorise a state-changing request (CSRF).
        r = client.post(
            "/users", json={"username": "csrf-user", "password": "x" * 12, "role": "operator"}
        )
        assert r.status_code == 401


#: Every method a client may send; a path answers those it does not route with 405.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_every_path_refuses_the_methods_it_does_not_route(engine, sessions) -> None:
    """The matrix covers every (path, method): the routed ones have a Case above, and every
    other method on a routed path is 405 (never a 5xx, never routed by accident), even for
    the operator."""
    with sessions() as session, session.begin():
        build_world(session)
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    routed: dict[str, set[str]] = {}
    for method, path in iter_routes(app):
        routed.setdefault(path, set()).add(method)
    token = create_access_token("oper", "operator", SECRET, 600)
    wrong = []
    with TestClient(app) as client:
        for path, methods in sorted(routed.items()):
            if "MOUNT" in methods:
                continue
            # routing matches the path before any parameter is read, so any value will do
            url = re.sub(r"\{[^}]+\}", "1", path)
            for method in METHODS:
                if method in methods:
                    continue
                r = client.request(method, url, headers={"Authorization": f"Bearer {token}"})
                if r.status_code != 405:
                    wrong.append(f"{method} {url}: {r.status_code}")
    assert not wrong, wrong
