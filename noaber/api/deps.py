"""FastAPI dependencies: settings, a database session, the current user and role checks.

``CurrentUser`` reads a bearer token (``Authorization: Bearer …``, from ``POST /auth/token``);
for safe methods (GET/HEAD) the browser pages may instead carry the same token in the
HttpOnly cookie :data:`TOKEN_COOKIE` set by the login form. No, a bad or a revoked token
(logged out, or issued before a password change: :func:`energy.users.token_user`) gives 401;
:func:`require_roles` gives 403 for a role that may not use a route at all. Ownership (someone
else's resource) is checked in the routers and answers 404, so existence is not revealed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from energy.errors import NoaberError
from energy.models import Role, User
from energy.security import TokenClaims, decode_access_token
from energy.settings import Settings
from energy.users import token_user
from noaber.services.demo import is_demo_login

TOKEN_COOKIE = "noaber_token"
SAFE_METHODS = frozenset({"GET", "HEAD"})

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session for one request; routes that write call ``session.commit()`` themselves."""
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

#: The largest row id: id columns are 32-bit ``INTEGER`` on PostgreSQL (SQLite allows more).
DB_ID_MAX = 2**31 - 1
#: An id path parameter. Out of range (or not a number) is 404 like an unknown id (the error
#: handlers of :mod:`noaber.api.problems` answer a path that fails validation with 404), so
#: a value PostgreSQL cannot compare with an ``INTEGER`` column never reaches the database.
IdPath = Annotated[int, Path(ge=1, le=DB_ID_MAX, description="Row id, 1 to 2**31 - 1")]
SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def get_token_claims(
    request: Request,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
) -> TokenClaims:
    """The claims of a validly signed, unexpired token (header, or cookie for GET/HEAD); 401
    otherwise. Whether it was revoked is :func:`get_current_user`'s check."""
    token = bearer
    if token is None and request.method in SAFE_METHODS:
        token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise _unauthorized("not authenticated")
    try:
        return decode_access_token(token, settings.signing_key)
    except NoaberError as exc:
        raise _unauthorized(str(exc)) from None


def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    """The user of a valid, unrevoked token (header, or cookie for GET/HEAD); 401 otherwise."""
    claims = get_token_claims(request, settings, bearer)
    user = token_user(session, claims)
    if user is None:
        raise _unauthorized("unknown or disabled user, or a revoked token")
    # the page header of this request shows this user for the same token, not looked up again
    request.state.current_user = (claims.token_id, user)
    return user


TokenClaimsDep = Annotated[TokenClaims, Depends(get_token_claims)]
CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role | str) -> Callable[[User], User]:
    """A dependency that passes the current user through if their role is one of ``roles``.

    Use as ``user: Annotated[User, Depends(require_roles(Role.OPERATOR))]`` or in a route's
    ``dependencies=[...]``. A user with another role gets 403.
    """
    allowed = frozenset(Role(r) for r in roles)
    if not allowed:
        raise ValueError("require_roles needs at least one role")

    def _check(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"role {user.role.value} may not use this route",
            )
        return user

    _check.__name__ = "require_" + "_".join(sorted(r.value for r in allowed))
    return _check


def demo_login_refused(settings: Settings, username: str, password: str) -> bool:
    """True outside local mode for a login with the demo's printed credentials.

    Both logins (``POST /auth/token`` and the page form) refuse these before checking the
    database: the demo users and their passwords exist only in local mode.
    """
    return settings.mode != "local" and is_demo_login(username, password)


def not_found(what: str) -> HTTPException:
    """404 for a resource that does not exist or that the user may not see (same answer)."""
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"{what} not found")
