"""``POST /auth/token``: the OAuth2 password flow (form fields ``username``, ``password``,
and ``totp_code`` for an operator with a second factor); ``POST /auth/logout``: revoke the
presented token.

Failed logins are throttled per username and per address (:mod:`noaber.api.throttle`): over
the limit the answer is 429 with ``Retry-After``, without checking the password.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from energy.security import create_access_token
from energy.users import authenticate, check_totp, revoke_token
from noaber.api.deps import (
    CurrentUser,
    SessionDep,
    SettingsDep,
    TokenClaimsDep,
    demo_login_refused,
)
from noaber.api.schemas import TokenOut
from noaber.api.throttle import (
    LoginThrottle,
    LoginThrottled,
    app_throttle,
    client_address,
    too_many_requests,
)

router = APIRouter(prefix="/auth", tags=["auth"])

ThrottleDep = Annotated[LoginThrottle, Depends(app_throttle)]


@router.post(
    "/token",
    response_model=TokenOut,
    responses={429: {"description": "Too many failed logins: wait `Retry-After` seconds"}},
)
def login_for_token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    totp_code: Annotated[
        str | None, Form(max_length=16, description="One-time code, if a second factor is set up")
    ] = None,
) -> TokenOut:
    """Exchange a username and password (and a one-time code if the user set up a second
    factor) for a bearer token: 401 if they do not match, 429 after too many failures."""
    if demo_login_refused(settings, form.username, form.password):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "demo users sign in only in local mode")
    address = client_address(request)
    try:
        throttle.check(form.username, address)
    except LoginThrottled as exc:
        raise too_many_requests(exc) from None
    user = authenticate(session, form.username, form.password)
    if user is None:
        throttle.failed(form.username, address)
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not check_totp(user, totp_code):
        throttle.failed(form.username, address)
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="a valid one-time code (form field totp_code) is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    throttle.forget_user(form.username)
    session.commit()  # a re-hashed password, the used one-time code
    token = create_access_token(
        user.username,
        user.role.value,
        settings.signing_key,
        settings.token_ttl_s,
        token_version=user.token_version,
    )
    return TokenOut(access_token=token, expires_in_s=settings.token_ttl_s)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(user: CurrentUser, claims: TokenClaimsDep, session: SessionDep) -> Response:
    """Revoke the token of this request (every later use of it is 401)."""
    revoke_token(session, user, claims)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
