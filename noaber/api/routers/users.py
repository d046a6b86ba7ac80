"""Users: everyone reads ``/users/me``; the operator lists, reads and creates users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from energy.models import Role, User
from energy.users import create_user
from noaber.api.deps import CurrentUser, SessionDep, not_found, require_roles
from noaber.api.schemas import UserIn, UserOut

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


@router.get("", response_model=list[UserOut])
def list_users(_: Operator, session: SessionDep) -> list[UserOut]:
    """All users (operator only)."""
    q = select(User).order_by(User.username).options(selectinload(User.sites))
    return [user_out(u) for u in session.scalars(q)]


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def add_user(body: UserIn, _: Operator, session: SessionDep) -> UserOut:
    """Create a user (operator only); 422 naming the field for invalid input."""
    user = create_user(
        session, body.username, body.password, body.role, body.member_ref, body.site_names
    )
    session.commit()
    return user_out(user)


@router.get("/{username}", response_model=UserOut)
def get_user(username: str, _: Operator, session: SessionDep) -> UserOut:
    """One user (operator only)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise not_found(f"user {username!r}")
    return user_out(user)
