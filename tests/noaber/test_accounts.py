"""Accounts: login throttling, token revocation, password change and operator reset.

The throttle is the ``limits`` library's moving window (in memory by default, Redis when
configured); revocation is checked against the real database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from energy.models import RevokedToken, Role, User
from energy.security import TokenClaims, create_access_token, decode_access_token
from energy.settings import Settings, get_settings
from energy.users import check_totp, enrol_totp, revoke_token, token_user
from noaber.api import create_app
from noaber.api.throttle import LoginThrottle, LoginThrottled
from tests.noaber.api_world import PASSWORD, build_world

SECRET = "accounts-test-secret-" + "q" * 40
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def api(engine, sessions):
    with sessions() as session, session.begin():
        build_world(session)
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    with TestClient(app) as client:
        yield client


def _login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _me(client: TestClient, headers: dict[str, str]) -> int:
    return client.get("/users/me", headers=headers).status_code


# --- throttling -----------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_eleventh_wrong_password_within_a_minute_is_throttled(api) -> None:
    wrong = {"username": "mgr", "password": "not-the-password"}
    for i in range(10):
        r = api.post("/auth/token", data=wrong)
        assert r.status_code == 401, (i, r.text)
    r = api.post("/auth/token", data=wrong)
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "too many failed logins" in r.json()["detail"]
    assert "429" in api.get("/openapi.json").json()["paths"]["/auth/token"]["post"]["responses"]
    # Refused without looking at the password: the right one is refused too, for this user.
    r = api.post("/auth/token", data={"username": "mgr", "password": PASSWORD})
    assert r.status_code == 429
    # Another user from the same address is not locked out (the address allows 30).
    _login(api, "oper")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_throttle_per_address_and_success_clears_the_user(engine) -> None:
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    with app.state.sessions() as session, session.begin():
        build_world(session)
    with TestClient(app, client=("192.0.2.7", 5000)) as attacker:
        for i in range(30):  # 30 different usernames: each user's count stays at 1
            r = attacker.post("/auth/token", data={"username": f"guess-{i}", "password": "x" * 8})
            assert r.status_code == 401, (i, r.text)
        r = attacker.post("/auth/token", data={"username": "oper", "password": PASSWORD})
        assert r.status_code == 429, r.text
    with TestClient(app, client=("192.0.2.8", 5000)) as other:
        for _ in range(9):
            assert other.post("/auth/token", data={"username": "mgr", "password": "no"}).is_error
        _login(other, "mgr")  # the 10th attempt succeeds and forgets mgr's nine failures
        for i in range(10):
            r = other.post("/auth/token", data={"username": "mgr", "password": "no"})
            assert r.status_code == 401, i
        assert other.post(
            "/auth/token", data={"username": "mgr", "password": "no"}
        ).status_code == (429)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_login_page_throttle_message_in_the_readers_language(api) -> None:
    form = {"username": "firm", "password": "wrong-password"}
    for _ in range(10):
        assert api.post("/login", data=form, follow_redirects=False).status_code == 401
    r = api.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 429
    assert "Te veel mislukte aanmeldpogingen" in r.text  # Dutch by default
    assert int(r.headers["retry-after"]) >= 1
    r = api.post("/login?lang=en", data=form, follow_redirects=False)
    assert r.status_code == 429 and "Too many failed sign-ins" in r.text
    # The page and the API share the count.
    assert api.post("/auth/token", data=form).status_code == 429


def test_ladder_delays_then_locks() -> None:
    throttle = LoginThrottle("memory://", user_limits=("2/second", "3/hour"))
    throttle.check("anna", "a1")
    throttle.failed("anna", "a1")
    throttle.failed("anna", "a1")
    with pytest.raises(LoginThrottled) as exc:
        throttle.check("anna", "a2")  # per user: another address does not help
    assert exc.value.retry_after_s == 1 and not exc.value.locked
    time.sleep(1.05)
    throttle.check("anna", "a1")  # the second has passed
    throttle.failed("anna", "a1")  # the third failure within the hour: locked
    with pytest.raises(LoginThrottled, match="locked") as exc:
        throttle.check("anna", "a1")
    assert exc.value.locked and 3500 < exc.value.retry_after_s <= 3600
    throttle.check("bert", "a1")  # others are not affected
    throttle.forget_user("anna")  # what a password reset does
    throttle.check("anna", "a1")


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def test_throttle_counts_in_redis_shared_by_two_processes() -> None:
    pytest.importorskip(
        "redis", reason="the redis client package is not installed (limits needs it for redis://)"
    )
    if not _redis_up():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    user = f"redis-test-{uuid.uuid4().hex}"
    a, b = LoginThrottle(REDIS_URL), LoginThrottle(REDIS_URL)  # two API processes
    try:
        for _ in range(5):
            a.failed(user, "198.51.100.1")
            b.failed(user, "198.51.100.2")
        with pytest.raises(LoginThrottled):
            a.check(user, "198.51.100.3")
    finally:
        a.forget_user(user)
    b.check(user, "198.51.100.3")


def test_rate_limit_storage_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(mode="local").rate_limit_storage == "memory://"
    monkeypatch.setenv("NOABER_RATE_LIMIT_STORAGE", REDIS_URL)
    assert Settings(mode="local").rate_limit_storage == REDIS_URL


# --- revocation -----------------------------------------------------------------------------


def test_logout_revokes_that_token_only(api, sessions) -> None:
    first, second = _login(api, "evowner"), _login(api, "evowner")
    assert _me(api, first) == _me(api, second) == 200
    assert api.post("/auth/logout", headers=first).status_code == 204
    r = api.get("/users/me", headers=first)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert api.post("/auth/logout", headers=first).status_code == 401
    assert _me(api, second) == 200
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RevokedToken)) == 1


def test_page_logout_revokes_the_cookie_token(api) -> None:
    r = api.post("/login", data={"username": "oper", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303
    token = api.cookies["noaber_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert _me(api, bearer) == 200
    assert api.post("/logout", follow_redirects=False).status_code == 303
    assert _me(api, bearer) == 401


def test_revocation_in_the_database(sessions) -> None:
    now = dt.datetime.now(dt.UTC)
    with sessions() as session, session.begin():
        build_world(session)
    with sessions() as session, session.begin():
        user = session.scalar(select(User).where(User.username == "mgr"))
        assert user is not None and user.token_version == 0
        old = TokenClaims("mgr", "x", now - dt.timedelta(hours=1), "expired-jti", 0)
        revoke_token(session, user, old)  # a token that has expired meanwhile
        live = decode_access_token(create_access_token("mgr", "x", SECRET, 600), SECRET)
        assert token_user(session, live) is user
        revoke_token(session, user, live)  # the expired row is purged on the way
        revoke_token(session, user, live)  # twice is fine
        assert token_user(session, live) is None
        assert list(session.scalars(select(RevokedToken.jti))) == [live.token_id]


# --- password change and reset --------------------------------------------------------------


def test_password_change_revokes_every_token_of_the_user(api) -> None:
    a, b = _login(api, "firm"), _login(api, "firm")
    other = _login(api, "mgr")
    r = api.post(
        "/users/me/password",
        headers=a,
        json={"current_password": "wrong-one", "new_password": "a-brand-new-password"},
    )
    assert r.status_code == 422 and "current_password" in r.text
    r = api.post(
        "/users/me/password",
        headers=a,
        json={"current_password": PASSWORD, "new_password": "short"},
    )
    assert r.status_code == 422 and "password" in r.text
    assert _me(api, a) == 200  # refused changes revoke nothing
    r = api.post(
        "/users/me/password",
        headers=a,
        json={"current_password": PASSWORD, "new_password": "a-brand-new-password"},
    )
    assert r.status_code == 204, r.text
    assert _me(api, a) == _me(api, b) == 401
    assert _me(api, other) == 200
    assert api.post("/auth/token", data={"username": "firm", "password": PASSWORD}).is_error
    assert _me(api, _login(api, "firm", "a-brand-new-password")) == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_guessing_the_current_password_is_throttled(api) -> None:
    token = _login(api, "mgr")
    guess = {"current_password": "a-guess-at-it", "new_password": "whatever-new-pw"}
    for i in range(10):
        r = api.post("/users/me/password", headers=token, json=guess)
        assert r.status_code == 422, (i, r.text)
    r = api.post("/users/me/password", headers=token, json=guess)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    right = {"current_password": PASSWORD, "new_password": "whatever-new-pw"}
    assert api.post("/users/me/password", headers=token, json=right).status_code == 429
    assert api.post("/auth/token", data={"username": "mgr", "password": PASSWORD}).status_code == (
        429
    )


def test_operator_reset_revokes_and_unlocks(api) -> None:
    victim = _login(api, "evowner")
    for _ in range(11):
        api.post("/auth/token", data={"username": "evowner", "password": "guessing"})
    assert api.post(
        "/auth/token", data={"username": "evowner", "password": PASSWORD}
    ).status_code == (429)
    oper = _login(api, "oper")
    r = api.post(
        "/users/evowner/password", headers=oper, json={"new_password": "from-the-operator"}
    )
    assert r.status_code == 204, r.text
    assert _me(api, victim) == 401
    assert _me(api, _login(api, "evowner", "from-the-operator")) == 200  # and unlocked
    r = api.post("/users/nobody/password", headers=oper, json={"new_password": "x" * 12})
    assert r.status_code == 404
    r = api.post("/users/mgr/password", headers=oper, json={"new_password": "x"})
    assert r.status_code == 422


def test_cli_reset_and_change_password(engine, sessions, monkeypatch, request) -> None:
    from noaber.cli import app

    with sessions() as session, session.begin():
        build_world(session)
    monkeypatch.setenv("NOABER_MODE", "local")
    monkeypatch.setenv("NOABER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()  # the CLI reads the settings through the process-wide cache
    request.addfinalizer(get_settings.cache_clear)
    token = create_access_token("mgr", "site_manager", SECRET, 600)
    with sessions() as session:
        assert token_user(session, decode_access_token(token, SECRET)) is not None
    runner = CliRunner()
    res = runner.invoke(
        app, ["user", "reset-password", "mgr"], env={"NOABER_NEW_USER_PASSWORD": "cli-reset-pw"}
    )
    assert res.exit_code == 0, res.output
    assert "revoked" in res.output
    with sessions() as session:
        assert token_user(session, decode_access_token(token, SECRET)) is None
        user = session.scalar(select(User).where(User.username == "mgr"))
        assert user is not None and user.token_version == 1
    res = runner.invoke(
        app,
        ["user", "change-password", "mgr"],
        env={"NOABER_CURRENT_PASSWORD": "cli-reset-pw", "NOABER_NEW_USER_PASSWORD": "cli-own-pw"},
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["user", "change-password", "mgr"],
        env={"NOABER_CURRENT_PASSWORD": "cli-reset-pw", "NOABER_NEW_USER_PASSWORD": "other-pw-1"},
    )
    assert res.exit_code != 0 and "current password" in str(res.exception)
    res = runner.invoke(
        app, ["user", "reset-password", "ghost"], env={"NOABER_NEW_USER_PASSWORD": "whatever-1"}
    )
    assert res.exit_code != 0 and "no user 'ghost'" in str(res.exception)
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == "mgr"))
        assert user is not None and user.token_version == 2


# --- TOTP second factor ---------------------------------------------------------------------

#: RFC 6238 appendix B: the SHA-1 secret "12345678901234567890" (base32) and two of its
#: 8-digit codes, of which a 6-digit authenticator shows the last six.
RFC6238_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
RFC6238_CODES = {59: "94287082", 1111111109: "07081804"}


def test_totp_codes_of_rfc_6238_are_accepted_once() -> None:
    user = User(username="oper", role=Role.OPERATOR, totp_secret=RFC6238_SECRET)
    user.totp_enabled = True
    for t, code in RFC6238_CODES.items():
        now = dt.datetime.fromtimestamp(t, dt.UTC)
        assert not check_totp(user, None, now)
        assert not check_totp(user, "000000", now)
        assert check_totp(user, code[-6:], now)
        assert not check_totp(user, code[-6:], now)  # a replay within the step
    plain = User(username="mgr", role=Role.SITE_MANAGER)
    assert check_totp(plain, None)  # no second factor set up: nothing asked


def test_operator_totp_enrol_confirm_and_login(api, sessions) -> None:
    oper = _login(api, "oper")
    r = api.post("/users/me/totp", headers=oper)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"  # the URI holds the secret
    totp = pyotp.parse_uri(r.json()["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP) and totp.issuer == "Noaber" and totp.name == "oper"
    _login(api, "oper")  # not confirmed yet: no code asked
    wrong = "000000" if totp.now() != "000000" else "111111"
    r = api.post("/users/me/totp/confirm", headers=oper, json={"code": wrong})
    assert r.status_code == 422 and "code" in r.text
    r = api.post("/users/me/totp/confirm", headers=oper, json={"code": totp.now()})
    assert r.status_code == 204, r.text
    assert api.post("/users/me/totp", headers=oper).status_code == 422  # already set up
    form = {"username": "oper", "password": PASSWORD}
    r = api.post("/auth/token", data=form)
    assert r.status_code == 401 and "totp_code" in r.json()["detail"]
    code = totp.at(time.time() + 30)  # the next step's code (the current one was used)
    r = api.post("/auth/token", data={**form, "totp_code": code})
    assert r.status_code == 200, r.text
    assert api.post("/auth/token", data={**form, "totp_code": code}).status_code == 401  # replay
    # The page form asks for it too, in the reader's language.
    r = api.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 401 and "eenmalige code" in r.text
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == "oper"))
        assert user is not None and user.totp_enabled and user.totp_last_step is not None


def test_cli_reset_totp(engine, sessions, monkeypatch, request) -> None:
    from noaber.cli import app

    with sessions() as session, session.begin():
        build_world(session)
        user = session.scalar(select(User).where(User.username == "oper"))
        assert user is not None
        enrol_totp(session, user)
        user.totp_enabled = True
    monkeypatch.setenv("NOABER_MODE", "local")
    monkeypatch.setenv("NOABER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    res = CliRunner().invoke(app, ["user", "reset-totp", "oper"])
    assert res.exit_code == 0, res.output
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == "oper"))
        assert user is not None and not user.totp_enabled and user.totp_secret is None
        assert check_totp(user, None)


def test_a_non_ascii_totp_code_is_wrong_not_an_error() -> None:
    """Found by the schemathesis run: ``secrets.compare_digest`` raises on non-ASCII text."""
    from types import SimpleNamespace

    import pyotp

    from energy.users import check_totp

    user = SimpleNamespace(
        totp_enabled=True, totp_secret=pyotp.random_base32(), totp_last_step=None
    )
    assert check_totp(user, "\u0080") is False  # type: ignore[arg-type]
    assert check_totp(user, " 12a456 ") is False  # type: ignore[arg-type]
    assert check_totp(user, pyotp.TOTP(user.totp_secret).now()) is True  # type: ignore[arg-type]
