"""Passwords and access tokens.

Passwords are hashed with Argon2id (argon2-cffi, the parameters of RFC 9106's second
recommended option as chosen by ``argon2.PasswordHasher`` defaults). Access tokens are JWTs
(PyJWT, HS256) signed with ``Settings.signing_key`` and expiring after ``Settings.token_ttl_s``.

Revocation: every token carries a random id (``jti``) and the user's ``token_version`` at issue
time (``ver``). Logging out puts the one token's id on a denylist until it expires; changing or
resetting a password bumps ``User.token_version``, which revokes all of the user's tokens at
once. Both are checked by :func:`energy.users.token_user` on every request.

References
----------
RFC 9106, "Argon2 Memory-Hard Function for Password Hashing and Proof-of-Work Applications".
RFC 7519, "JSON Web Token (JWT)".
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from energy.clock import utc_now
from energy.errors import NoaberError

JWT_ALGORITHM = "HS256"
TOKEN_AUDIENCE = "noaber-api"
TOKEN_ISSUER = "noaber"

_hasher = PasswordHasher()


class InvalidTokenError(NoaberError):
    """A token that is malformed, badly signed, expired or for another audience."""


def hash_password(password: str) -> str:
    """The Argon2id hash (PHC string) of ``password``; a fresh random salt every call."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches ``password_hash``; False for a mismatch or a bad hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True if the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


#: A valid Argon2 hash of a random string, verified against for unknown users so a login
#: takes the same time whether or not the user exists.
DUMMY_HASH = _hasher.hash("noaber-no-such-user")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says: who (``username``), in which role, until when (UTC), its
    id (``token_id``, the ``jti`` claim) and the user's token version at issue time."""

    username: str
    role: str
    expires_at: dt.datetime
    token_id: str
    token_version: int


def create_access_token(
    username: str,
    role: str,
    secret_key: str,
    ttl_s: int,
    now: dt.datetime | None = None,
    token_version: int = 0,
) -> str:
    """A signed JWT for ``username`` valid for ``ttl_s`` seconds from ``now`` (UTC).

    Parameters
    ----------
    username : str
        The subject (``sub`` claim).
    role : str
        The user's role at issue time (informational; the API re-reads the user).
    secret_key : str
        The HMAC key (``Settings.signing_key``).
    ttl_s : int
        Lifetime [s], > 0.
    now : datetime, optional
        Issue time (timezone-aware); injected by tests.
    token_version : int
        The user's ``User.token_version``; a token with an older version is refused.
    """
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
    issued = (now or utc_now()).astimezone(dt.UTC)
    payload = {
        "sub": username,
        "role": role,
        "iat": int(issued.timestamp()),
        "exp": int((issued + dt.timedelta(seconds=ttl_s)).timestamp()),
        "aud": TOKEN_AUDIENCE,
        "iss": TOKEN_ISSUER,
        "jti": secrets.token_urlsafe(16),
        "ver": token_version,
    }
    return jwt.encode(payload, secret_key, algorithm=JWT_ALGORITHM)


def decode_access_token(token: str, secret_key: str) -> TokenClaims:
    """Verify signature, expiry, audience and issuer of ``token`` and return its claims.

    Raises
    ------
    InvalidTokenError
        If anything about the token is wrong (the message says what).
    """
    try:
        payload = jwt.decode(
            token,
            secret_key,
            algorithms=[JWT_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            issuer=TOKEN_ISSUER,
            options={"require": ["sub", "exp", "iat", "aud", "iss", "jti", "ver"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidTokenError("token has expired") from None
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"invalid token: {exc}") from None
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidTokenError("invalid token: no subject")
    jti, ver = payload["jti"], payload["ver"]
    if not isinstance(jti, str) or not jti or not isinstance(ver, int) or isinstance(ver, bool):
        raise InvalidTokenError("invalid token: bad token id or version")
    return TokenClaims(
        username=sub,
        role=str(payload.get("role", "")),
        expires_at=dt.datetime.fromtimestamp(payload["exp"], dt.UTC),
        token_id=jti,
        token_version=ver,
    )
