"""``POST /auth/token``: the OAuth2 password flow (form fields ``username``, ``password``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm

from energy.security import create_access_token
from energy.users import authenticate
from noaber.api.deps import SessionDep, SettingsDep, demo_login_refused
from noaber.api.schemas import TokenOut

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut)
def login_for_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> TokenOut:
    """Exchange a username and password for a bearer token (401 if they do not match)."""
    if demo_login_refused(settings, form.username, form.password):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "demo users sign in only in local mode")
    user = authenticate(session, form.username, form.password)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    session.commit()  # a re-hashed password
    token = create_access_token(
        user.username, user.role.value, settings.signing_key, settings.token_ttl_s
    )
    return TokenOut(access_token=token, expires_in_s=settings.token_ttl_s)
