"""Signed-in page forms that change something: the cookie plus a per-token CSRF field.

The token cookie alone never authenticates an unsafe request (:mod:`noaber.api.deps`). A page
form that writes (an EV owner's session, a manager's limits) carries a hidden ``csrf_token``:
the HMAC-SHA256 of the cookie token's id under the app's signing key (a synchronizer token,
OWASP CSRF Prevention Cheat Sheet, ``docs/SOURCES.md``). :func:`get_form_user` accepts the
cookie for a POST only with that field, on top of the cross-site check of every unsafe
request (:func:`noaber.api.hardening.same_origin`) and the cookie's SameSite=Lax.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request, status

from energy.errors import NoaberError
from energy.models import User
from energy.security import TokenClaims, decode_access_token
from energy.settings import Settings
from energy.users import token_user
from noaber.api.deps import (
    TOKEN_COOKIE,
    SessionDep,
    SettingsDep,
    get_current_user,
    oauth2_scheme,
)

CSRF_FIELD = "csrf_token"


def csrf_token(settings: Settings, claims: TokenClaims) -> str:
    """The CSRF field of the forms shown to the holder of the token ``claims``."""
    key = settings.signing_key.encode("utf-8")
    return hmac.new(key, b"csrf:" + claims.token_id.encode(), hashlib.sha256).hexdigest()


def get_form_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    csrf_token_field: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "",
) -> User:
    """The user of a page form: a bearer token (a client that is no browser page: no CSRF
    field needed, nothing ambient authenticates it), or the page cookie with a matching CSRF
    field. 401 without a valid token, 403 with a missing or wrong CSRF field."""
    if bearer:
        return get_current_user(request, session, settings, bearer)
    raw = request.cookies.get(TOKEN_COOKIE)
    if not raw:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not authenticated")
    try:
        claims = decode_access_token(raw, settings.signing_key)
    except NoaberError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    user = token_user(session, claims)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or disabled user")
    if not hmac.compare_digest(csrf_token_field, csrf_token(settings, claims)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or wrong")
    return user


FormUser = Annotated[User, Depends(get_form_user)]
