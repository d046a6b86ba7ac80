"""Users: everyone reads ``/users/me`` and changes their own password; the operator lists,
reads and creates users, changes a user's role (``PUT /users/{username}/role``) and resets a
user's password. A password change or reset revokes
every token of the user (:func:`energy.users.reset_password`). An operator may set up a TOTP
second factor for themselves (``/users/me/totp``, then ``/users/me/totp/confirm``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from energy.audit import Actor, record
from energy.errors import ValidationError
from energy.models import Role, User
from energy.users import (
    PASSWORD_MAX_LEN,
    change_password,
    change_role,
    confirm_totp,
    create_user,
    enrol_totp,
    reset_password,
)
from noaber.api.deps import CurrentUser, SessionDep, not_found, require_roles
from noaber.api.schemas import UserIn, UserOut
from noaber.api.throttle import LoginThrottled, app_throttle, client_address, too_many_requests

router = APIRouter(prefix="/users", tags=["users"])

Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]


def user_out(user: User) -> UserOut:
    """The API view of a user (never the password hash)."""
    return UserOut(
        username=user.username,
        role=user.role.value,
        member_ref=user.member.ref if user.member else None,
        site_names=sorted(s.name for s in user.sites),
        disabled=user.disabled,
    )


@router.get("/me", response_model=UserOut)
def read_me(user: CurrentUser) -> UserOut:
    """The current user."""
    return user_out(user)


class PasswordChangeIn(BaseModel):
    """The current password and the new one (8-1024 characters)."""

    current_password: str = Field(max_length=PASSWORD_MAX_LEN)
    new_password: str = Field(max_length=PASSWORD_MAX_LEN)


class PasswordResetIn(BaseModel):
    """The new password an operator sets (8-1024 characters)."""

    new_password: str = Field(max_length=PASSWORD_MAX_LEN)


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
def change_my_password(
    body: PasswordChangeIn, user: CurrentUser, session: SessionDep, request: Request
) -> Response:
    """Change one's own password; every token of the user, this one too, is revoked (log in
    again). 422 naming ``current_password`` if it does not match (counted as a failed login:
    429 after too many)."""
    throttle, address = app_throttle(request), client_address(request)
    try:
        throttle.check(user.username, address)
        change_password(session, user, body.current_password, body.new_password)
    except LoginThrottled as exc:
        raise too_many_requests(exc) from None
    except ValidationError as exc:
        if exc.location == "current_password":
            throttle.failed(user.username, address)
        raise
    record(session, Actor(user.username, "api"), "user.password_change", user.username)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class TotpEnrolOut(BaseModel):
    """The ``otpauth://`` URI to scan into an authenticator app (it contains the secret)."""

    otpauth_uri: str


class TotpConfirmIn(BaseModel):
    """A code the authenticator app shows now."""

    code: str = Field(max_length=16)


@router.post("/me/totp", response_model=TotpEnrolOut)
def enrol_my_totp(user: Operator, session: SessionDep, response: Response) -> TotpEnrolOut:
    """Start a second factor (operator only): returns the otpauth URI (never cached); logins
    need a code once :func:`confirm_my_totp` accepted one. 422 if one is already set up."""
    uri = enrol_totp(session, user)
    session.commit()
    response.headers["Cache-Control"] = "no-store"
    return TotpEnrolOut(otpauth_uri=uri)


@router.post("/me/totp/confirm", status_code=status.HTTP_204_NO_CONTENT)
def confirm_my_totp(body: TotpConfirmIn, user: Operator, session: SessionDep) -> Response:
    """Switch the enrolled second factor on with a current code (422 naming ``code`` if wrong)."""
    confirm_totp(session, user, body.code)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("", response_model=list[UserOut])
def list_users(_: Operator, session: SessionDep) -> list[UserOut]:
    """All users (operator only)."""
    q = select(User).order_by(User.username).options(selectinload(User.sites))
    return [user_out(u) for u in session.scalars(q)]


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def add_user(body: UserIn, operator: Operator, session: SessionDep) -> UserOut:
    """Create a user (operator only); 422 naming the field for invalid input."""
    user = create_user(
        session, body.username, body.password, body.role, body.member_ref, body.site_names
    )
    detail = {"role": user.role.value, "member": body.member_ref, "sites": list(body.site_names)}
    record(session, Actor(operator.username, "api"), "user.add", user.username, detail)
    session.commit()
    return user_out(user)


@router.get("/{username}", response_model=UserOut)
def get_user(username: str, _: Operator, session: SessionDep) -> UserOut:
    """One user (operator only)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise not_found(f"user {username!r}")
    return user_out(user)


@router.post("/{username}/password", status_code=status.HTTP_204_NO_CONTENT)
def reset_user_password(
    username: str, body: PasswordResetIn, operator: Operator, session: SessionDep, request: Request
) -> Response:
    """Set a user's password (operator only): revokes the user's tokens and clears their
    failed logins."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise not_found(f"user {username!r}")
    reset_password(session, user, body.new_password)
    record(session, Actor(operator.username, "api"), "user.password_reset", username)
    session.commit()
    app_throttle(request).forget_user(username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class RoleIn(BaseModel):
    """A user's new role, with the member (firm, member) or the sites (site_manager) it needs."""

    role: str = Field(max_length=20, description="operator, site_manager, firm or member")
    member_ref: str | None = Field(None, max_length=64)
    site_names: list[str] = Field(default_factory=list, max_length=100)


def role_detail(user: User) -> dict[str, object]:
    """The audit detail of a user's role (what the ``user.role`` entry records)."""
    return {
        "role": user.role.value,
        "member": user.member.ref if user.member else None,
        "sites": sorted(s.name for s in user.sites),
    }


def set_user_role(
    session: Session, operator: User, username: str, body: RoleIn, via: str = "api"
) -> User:
    """Give ``username`` the role of ``body`` (audited; their tokens are revoked). An operator
    cannot change their own role (no lock-out): 422 naming ``username``."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise not_found(f"user {username!r}")
    if user.id == operator.id:
        raise ValidationError(
            "an operator cannot change their own role; ask another operator", "user", "username"
        )
    before = user.role.value
    change_role(session, user, body.role, body.member_ref, body.site_names)
    session.refresh(user)
    record(
        session,
        Actor(operator.username, via),
        "user.role",
        username,
        {"from": before, **role_detail(user)},
    )
    return user


@router.put("/{username}/role", response_model=UserOut)
def put_user_role(username: str, body: RoleIn, operator: Operator, session: SessionDep) -> UserOut:
    """Change a user's role (operator only); their tokens, which carry the old role, are
    revoked. 422 names the field (an unknown role, a missing member or site)."""
    user = set_user_role(session, operator, username, body)
    session.commit()
    return user_out(user)
