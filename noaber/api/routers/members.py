"""Members: the operator lists, adds and edits them (``GET``/``POST /members``, ``PATCH
/members/{ref}``: personal data only in ``member_personal``, the ref stays opaque); members'
own data: consents, the download of everything held (AVG art. 15/20), erasure.

Who may call: the operator for every member; a ``member`` or ``firm`` user for the member
they act for (``user.member``); another member's ref answers 404, as an unknown one does.
Erasure is the operator's alone. Every change and every export is recorded in the audit log
with the token's user (:mod:`energy.audit`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from energy.audit import Actor, record
from energy.errors import ValidationError
from energy.models import ConsentPurpose, Member, MemberKind, Role, User
from energy.privacy import find_member, give_consent, parse_purpose, withdraw_consent
from noaber.api.deps import SessionDep, not_found, require_roles
from noaber.services.members import (
    PERSONAL_FIELDS,
    add_member,
    erase_member,
    export_and_audit,
    export_csv,
    personal_values_of,
    update_member,
)

router = APIRouter(prefix="/members", tags=["members"])

Holder = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.MEMBER, Role.FIRM))]
Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]
RefPath = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Pseudonymous member ref")
]
PurposePath = Annotated[ConsentPurpose, Path(description="What the consent is for")]


class ConsentOut(BaseModel):
    """One consent: active while ``withdrawn_at`` is null."""

    purpose: str
    given_at: dt.datetime
    withdrawn_at: dt.datetime | None


class ConsentIn(BaseModel):
    """The purpose a member consents to."""

    purpose: ConsentPurpose = Field(description="ev_detail_site_manager")


class ErasureOut(BaseModel):
    """What an erasure did (ids only)."""

    ref: str
    personal_deleted: bool
    users_disabled: list[int]
    consents_withdrawn: int
    ev_sessions_deleted: int
    assets_renamed: list[int]
    channels_renamed: list[int]


class MemberIn(BaseModel):
    """A new member: its kind and personal data (stored apart from the ledger)."""

    kind: MemberKind = Field(MemberKind.PERSON, description="person or organisation")
    name: str = Field(max_length=PERSONAL_FIELDS["name"])
    email: str | None = Field(None, max_length=PERSONAL_FIELDS["email"])
    address: str | None = Field(None, max_length=PERSONAL_FIELDS["address"])
    iban: str | None = Field(None, max_length=40, description="ISO 13616; spaces allowed")
    licence_plate: str | None = Field(None, max_length=PERSONAL_FIELDS["licence_plate"])
    label: str | None = Field(None, max_length=PERSONAL_FIELDS["label"])


class MemberPatch(BaseModel):
    """Personal fields to change; a field left out stays, ``null`` clears it (not the name)."""

    name: str | None = Field(None, max_length=PERSONAL_FIELDS["name"])
    email: str | None = Field(None, max_length=PERSONAL_FIELDS["email"])
    address: str | None = Field(None, max_length=PERSONAL_FIELDS["address"])
    iban: str | None = Field(None, max_length=40)
    licence_plate: str | None = Field(None, max_length=PERSONAL_FIELDS["licence_plate"])
    label: str | None = Field(None, max_length=PERSONAL_FIELDS["label"])


class MemberOut(BaseModel):
    """A member: the pseudonymous ref and kind, and its personal data (none once erased)."""

    ref: str
    kind: str
    created_at: dt.datetime
    erased_at: dt.datetime | None
    name: str | None
    email: str | None
    address: str | None
    iban: str | None
    licence_plate: str | None
    label: str | None


def member_out(member: Member) -> MemberOut:
    """The API view of a member."""
    return MemberOut(
        ref=member.ref,
        kind=member.kind.value,
        created_at=member.created_at,
        erased_at=member.erased_at,
        **personal_values_of(member.personal),
    )


def _actor(user: User) -> Actor:
    return Actor(user.username, "api")


def member_for(session: Session, user: User, ref: str) -> Member:
    """Member ``ref`` if ``user`` may act on it (operator: any; others: their own); else 404."""
    try:
        member = find_member(session, ref)
    except ValidationError:
        raise not_found(f"member {ref!r}") from None
    if user.role is not Role.OPERATOR and user.member_id != member.id:
        raise not_found(f"member {ref!r}")
    return member


def _consents(member: Member) -> list[ConsentOut]:
    return [
        ConsentOut(purpose=c.purpose.value, given_at=c.given_at, withdrawn_at=c.withdrawn_at)
        for c in member.consents
    ]


@router.get("/{ref}/consents", response_model=list[ConsentOut])
def list_consents(ref: RefPath, user: Holder, session: SessionDep) -> list[ConsentOut]:
    """The member's consents, active and withdrawn, oldest first."""
    return _consents(member_for(session, user, ref))


@router.post("/{ref}/consents", response_model=ConsentOut, status_code=status.HTTP_201_CREATED)
def give(
    ref: RefPath, body: ConsentIn, user: Holder, session: SessionDep, response: Response
) -> ConsentOut:
    """Record the member's consent (201; 200 with the standing one if already given)."""
    member = member_for(session, user, ref)
    consent, new = give_consent(session, member, body.purpose)
    if new:
        record(session, _actor(user), "consent.give", ref, {"purpose": consent.purpose.value})
    else:
        response.status_code = status.HTTP_200_OK
    session.commit()
    return ConsentOut(purpose=consent.purpose.value, given_at=consent.given_at, withdrawn_at=None)


@router.post("/{ref}/consents/{purpose}/withdraw", response_model=list[ConsentOut])
def withdraw(
    ref: RefPath, purpose: PurposePath, user: Holder, session: SessionDep
) -> list[ConsentOut]:
    """Withdraw the member's consent for ``purpose`` (no change if none is active); the
    consents after it."""
    member = member_for(session, user, ref)
    p = parse_purpose(purpose)
    if withdraw_consent(session, member, p) is not None:
        record(session, _actor(user), "consent.withdraw", ref, {"purpose": p.value})
    session.commit()
    session.refresh(member)
    return _consents(member)


@router.get("/{ref}/export")
def export(ref: RefPath, user: Holder, session: SessionDep) -> dict[str, Any]:
    """Everything held about the member as JSON (a download; never cached)."""
    member_for(session, user, ref)
    data = export_and_audit(session, ref, _actor(user))
    session.commit()
    return data


@router.get("/{ref}/export/csv")
def export_as_csv(ref: RefPath, user: Holder, session: SessionDep) -> Response:
    """Everything held about the member as one CSV (``table,row,field,value``)."""
    member_for(session, user, ref)
    data = export_and_audit(session, ref, _actor(user))
    session.commit()
    return Response(
        export_csv(data),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{ref}.csv"'},
    )


@router.post("/{ref}/erase", response_model=ErasureOut)
def erase(ref: RefPath, user: Operator, session: SessionDep) -> ErasureOut:
    """Erase the member's personal data (operator only); financial records stay under the
    pseudonymous ref for the 7 years Dutch law requires (docs/PRIVACY.md)."""
    member_for(session, user, ref)
    report = erase_member(session, ref, _actor(user))
    session.commit()
    return ErasureOut(**vars(report))


@router.get("", response_model=list[MemberOut])
def list_members(_: Operator, session: SessionDep) -> list[MemberOut]:
    """All members by ref, with their personal data (operator only)."""
    q = select(Member).order_by(Member.ref).options(selectinload(Member.personal))
    return [member_out(m) for m in session.scalars(q)]


@router.post("", response_model=MemberOut, status_code=status.HTTP_201_CREATED)
def create_member(body: MemberIn, user: Operator, session: SessionDep) -> MemberOut:
    """Add a member with a new opaque ref (operator only; audited: the kind and which fields
    were given, never their values). 422 names the field for invalid input."""
    member = add_member(session, _actor(user), body.kind, body.model_dump(exclude={"kind"}))
    session.commit()
    return member_out(member)


@router.get("/{ref}", response_model=MemberOut)
def read_member(ref: RefPath, user: Holder, session: SessionDep) -> MemberOut:
    """One member: the operator any, a member or firm user their own."""
    return member_out(member_for(session, user, ref))


@router.patch("/{ref}", response_model=MemberOut)
def edit_member(ref: RefPath, body: MemberPatch, user: Operator, session: SessionDep) -> MemberOut:
    """Change a member's personal data (operator only): the fields sent; audited with the
    names of the fields that changed. 422 names the field; nothing changes then."""
    member = member_for(session, user, ref)
    update_member(session, ref, _actor(user), body.model_dump(exclude_unset=True))
    session.commit()
    session.refresh(member)
    return member_out(member)
