"""Password hashing (Argon2id) and signed, expiring access tokens (JWT)."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from sqlalchemy import select

from energy.errors import ValidationError
from energy.models import Member, MemberKind, Role, Site, User
from energy.security import (
    InvalidTokenError,
    create_access_token,
    decode_access_token,
    hash_password,
    needs_rehash,
    verify_password,
)
from energy.users import authenticate, create_user

SECRET = "s" * 48


def test_hash_is_argon2id_salted_and_verifies() -> None:
    h1, h2 = hash_password("hunter2-hunter2"), hash_password("hunter2-hunter2")
    assert h1.startswith("$argon2id$")
    assert h1 != h2  # fresh salt
    assert verify_password(h1, "hunter2-hunter2")
    assert not verify_password(h1, "hunter2-hunter3")
    assert not verify_password("not-a-hash", "x")
    assert not needs_rehash(h1)
    assert needs_rehash("not-a-hash")


def test_token_round_trip_and_expiry() -> None:
    now = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)
    token = create_access_token("anna", "member", SECRET, 3600, now=now)  # long expired
    with pytest.raises(InvalidTokenError, match="expired"):
        decode_access_token(token, SECRET)
    fresh = create_access_token("anna", "member", SECRET, 3600)
    c = decode_access_token(fresh, SECRET)
    assert (c.username, c.role) == ("anna", "member")
    remaining = (c.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 3590 <= remaining <= 3600


def test_tampered_or_foreign_tokens_are_refused() -> None:
    token = create_access_token("anna", "member", SECRET, 600)
    with pytest.raises(InvalidTokenError):
        decode_access_token(token, "t" * 48)
    head, body, sig = token.split(".")
    with pytest.raises(InvalidTokenError):
        decode_access_token(f"{head}.{body}.{sig[::-1]}", SECRET)
    unsigned = jwt.encode({"sub": "anna", "exp": 4_000_000_000}, "", algorithm="none")
    with pytest.raises(InvalidTokenError):
        decode_access_token(unsigned, SECRET)
    other_aud = jwt.encode(
        {"sub": "anna", "exp": 4_000_000_000, "iat": 0, "aud": "x", "iss": "noaber"},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(InvalidTokenError):
        decode_access_token(other_aud, SECRET)
    with pytest.raises(ValueError, match="ttl_s"):
        create_access_token("anna", "member", SECRET, 0)


def _seed(session) -> None:
    session.add(Member(ref="m-1", kind=MemberKind.PERSON))
    session.add(
        Site(
            name="hall",
            display_name="Hall",
            ean="871685900000000103",
            latitude=52.9,
            longitude=6.8,
            grid_import_limit_kw=40,
            grid_export_limit_kw=25,
        )
    )
    session.flush()


def test_create_user_and_authenticate(sessions) -> None:
    with sessions() as session, session.begin():
        _seed(session)
        u = create_user(session, "anna", "long-password", "member", member_ref="m-1")
        assert u.role is Role.MEMBER and u.password_hash.startswith("$argon2id$")
        create_user(session, "boss", "long-password", "site_manager", site_names=["hall"])
    with sessions() as session:
        assert authenticate(session, "anna", "long-password") is not None
        assert authenticate(session, "anna", "wrong-password") is None
        assert authenticate(session, "nobody", "long-password") is None
        boss = session.scalar(select(User).where(User.username == "boss"))
        assert boss is not None and [s.name for s in boss.sites] == ["hall"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"username": "A b", "role": "operator"}, "username"),
        ({"username": "ok-user", "password": "short", "role": "operator"}, "password"),
        ({"username": "ok-user", "role": "admin"}, "role"),
        ({"username": "ok-user", "role": "member"}, "member_ref"),
        ({"username": "ok-user", "role": "member", "member_ref": "m-404"}, "member_ref"),
        ({"username": "ok-user", "role": "operator", "member_ref": "m-1"}, "member_ref"),
        ({"username": "ok-user", "role": "site_manager"}, "site_names"),
        ({"username": "ok-user", "role": "site_manager", "site_names": ["x"]}, "site_names"),
        (
            {"username": "ok-user", "role": "firm", "member_ref": "m-1", "site_names": ["hall"]},
            "site_names",
        ),
        ({"username": "taken", "role": "operator"}, "username"),
    ],
)
def test_create_user_validation_names_the_field(sessions, kwargs, field) -> None:
    with sessions() as session, session.begin():
        _seed(session)
        create_user(session, "taken", "long-password", "operator")
    args = {"password": "long-password", **kwargs}
    with sessions() as session:
        n_before = len(session.scalars(select(User)).all())
        with pytest.raises(ValidationError) as err:
            create_user(session, **args)
        assert err.value.location == field
        session.rollback()
        assert len(session.scalars(select(User)).all()) == n_before


def test_weak_hash_is_upgraded_on_login(sessions) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("long-password")
    with sessions() as session, session.begin():
        session.add(User(username="old-user", password_hash=weak, role=Role.OPERATOR))
    with sessions() as session, session.begin():
        assert authenticate(session, "old-user", "long-password") is not None
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == "old-user"))
        assert user is not None and user.password_hash != weak
        assert not needs_rehash(user.password_hash)
        assert verify_password(user.password_hash, "long-password")
