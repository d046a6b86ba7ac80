"""Privacy by design (AVG/GDPR): pseudonymous ids, consent, and erasure of the core tables.

Three rules, held where the rows are written:

- **Names stay in personal data.** A person's name, e-mail, address, IBAN, licence plate and
  the human label a file gives them live only in :class:`~energy.models.MemberPersonal`.
  What reaches measurements and the ledger (``members.ref``, asset names, channel keys,
  usernames of member users) must not contain a word of the person's name or e-mail:
  :func:`energy.pseudonyms.check_pseudonymous` refuses it at the one writer (:mod:`energy.sites`) and at user
  creation (:mod:`energy.users`). :func:`new_member_ref` makes an opaque ref (``m-7f3a9c``).
- **Per-car data needs consent.** A site manager sees a building's total EV energy; one car's
  own data only while its owner has an active :class:`~energy.models.Consent` for
  :attr:`~energy.models.ConsentPurpose.EV_DETAIL_SITE_MANAGER` (:func:`has_consent`).
- **Erasure keeps the books.** :func:`erase_core` removes the personal row, clears and
  disables the member's user accounts and withdraws their consents; the pseudonymous ref,
  its measurements, ledger transfers and statements stay, because Dutch law requires
  financial records to be kept for 7 years (AWR art. 52(4), BW 2:10(3); docs/PRIVACY.md).

References
----------
Regulation (EU) 2016/679 (AVG/GDPR): art. 4(5) pseudonymisation, art. 7 conditions for
consent, art. 17(3)(b) erasure does not apply where a legal obligation requires keeping,
art. 20 portability, art. 25 data protection by design, art. 30 records of processing.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from energy.clock import utc_now
from energy.errors import ValidationError
from energy.models import (
    Asset,
    AssetKind,
    Channel,
    Consent,
    ConsentPurpose,
    Member,
    MemberKind,
    MemberPersonal,
    User,
)
from energy.pseudonyms import check_pseudonymous, member_words, name_words, person_words
from energy.security import hash_password
from energy.sites import erase_member_rows

__all__ = ["check_pseudonymous", "member_words", "name_words", "person_words"]
REF_PREFIX = "m-"


def new_member_ref(session: Session) -> str:
    """A fresh opaque member ref ``m-`` + 6 hex digits (unused in ``members``)."""
    while True:
        ref = REF_PREFIX + secrets.token_hex(3)
        if session.scalar(select(Member.id).where(Member.ref == ref)) is None:
            return ref


def find_member(session: Session, ref: str) -> Member:
    """The member ``ref``; a ValidationError (location ``ref``) if there is none."""
    member = session.scalar(select(Member).where(Member.ref == ref))
    if member is None:
        raise ValidationError(f"no member {ref!r}", source="member", location="ref")
    return member


def parse_purpose(purpose: str | ConsentPurpose) -> ConsentPurpose:
    """The :class:`ConsentPurpose` named ``purpose``, or an error listing the valid ones."""
    try:
        return ConsentPurpose(purpose)
    except ValueError:
        valid = ", ".join(p.value for p in ConsentPurpose)
        raise ValidationError(
            f"must be one of {valid}, got {purpose!r}", source="consent", location="purpose"
        ) from None


def active_consent(session: Session, member_id: int, purpose: ConsentPurpose) -> Consent | None:
    """The member's consent for ``purpose`` that is not withdrawn, if any."""
    return session.scalar(
        select(Consent).where(
            Consent.member_id == member_id,
            Consent.purpose == purpose,
            Consent.withdrawn_at.is_(None),
        )
    )


def has_consent(session: Session, member_id: int | None, purpose: ConsentPurpose) -> bool:
    """Whether member ``member_id`` has an active consent for ``purpose``."""
    return member_id is not None and active_consent(session, member_id, purpose) is not None


def consenting_refs(session: Session, refs: set[str], purpose: ConsentPurpose) -> set[str]:
    """The refs among ``refs`` of members with an active consent for ``purpose`` (one query;
    :func:`has_consent` of each)."""
    if not refs:
        return set()
    return set(
        session.scalars(
            select(Member.ref)
            .join(Consent, Consent.member_id == Member.id)
            .where(
                Member.ref.in_(sorted(refs)),
                Consent.purpose == purpose,
                Consent.withdrawn_at.is_(None),
            )
        )
    )


def give_consent(
    session: Session, member: Member, purpose: str | ConsentPurpose, at: dt.datetime | None = None
) -> tuple[Consent, bool]:
    """Record the member's consent; returns it and whether it is new (an active one stays).

    Raises
    ------
    ValidationError
        For an unknown purpose, or a member whose personal data was erased (location ``ref``).
    """
    p = parse_purpose(purpose)
    if member.erased_at is not None:
        raise ValidationError(
            f"member {member.ref!r} was erased; no consent can be recorded",
            source="consent",
            location="ref",
        )
    current = active_consent(session, member.id, p)
    if current is not None:
        return current, False
    consent = Consent(member_id=member.id, purpose=p, given_at=at or utc_now())
    session.add(consent)
    session.flush()
    return consent, True


def withdraw_consent(
    session: Session, member: Member, purpose: str | ConsentPurpose, at: dt.datetime | None = None
) -> Consent | None:
    """Withdraw the member's active consent for ``purpose``; the withdrawn row, or None if
    there was none (withdrawing twice changes nothing)."""
    current = active_consent(session, member.id, parse_purpose(purpose))
    if current is None:
        return None
    current.withdrawn_at = max(at or utc_now(), current.given_at)
    session.flush()
    return current


def ev_detail_visible(session: Session, asset: Asset) -> bool:
    """Whether a site manager may see this asset's own data (not only the building total).

    Cars (``ev``, ``ev_charger``) of a person are per-person data: visible only with the
    owner's active consent. Everything else of the site is the building's.
    """
    if asset.kind not in (AssetKind.EV, AssetKind.EV_CHARGER) or asset.owner is None:
        return True
    if asset.owner.kind is not MemberKind.PERSON:
        return True
    return has_consent(session, asset.owner_member_id, ConsentPurpose.EV_DETAIL_SITE_MANAGER)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def core_export(session: Session, member: Member) -> dict[str, list[dict[str, Any]]]:
    """Everything the core tables hold about ``member``, one list of rows per table.

    Password hashes and TOTP secrets of the member's users are left out (credentials, not
    data about the person); interval readings of their channels are exported separately.
    """
    p = member.personal
    out: dict[str, list[dict[str, Any]]] = {
        "members": [
            {
                "ref": member.ref,
                "kind": member.kind.value,
                "created_at": _iso(member.created_at),
                "erased_at": _iso(member.erased_at),
            }
        ],
        "member_personal": []
        if p is None
        else [
            {
                "name": p.name,
                "email": p.email,
                "address": p.address,
                "iban": p.iban,
                "bic": p.bic,
                "sepa_mandate_id": p.sepa_mandate_id,
                "sepa_mandate_date": _iso(p.sepa_mandate_date),
                "licence_plate": p.licence_plate,
                "label": p.label,
                "extra": p.extra,
            }
        ],
        "member_consents": [
            {
                "purpose": c.purpose.value,
                "given_at": _iso(c.given_at),
                "withdrawn_at": _iso(c.withdrawn_at),
            }
            for c in member.consents
        ],
    }
    assets = list(session.scalars(select(Asset).where(Asset.owner_member_id == member.id)))
    out["assets"] = [
        {"id": a.id, "site": a.site.name, "name": a.name, "kind": a.kind.value, "params": a.params}
        for a in assets
    ]
    out["channels"] = [
        {"id": c.id, "key": c.key, "quantity": c.quantity.value, "unit": c.unit}
        for a in assets
        for c in a.channels
    ]
    users = session.scalars(select(User).where(User.member_id == member.id).order_by(User.id))
    out["users"] = [
        {
            "username": u.username,
            "role": u.role.value,
            "disabled": u.disabled,
            "created_at": _iso(u.created_at),
            "totp_enabled": u.totp_enabled,
        }
        for u in users
    ]
    return out


def member_channel_ids(session: Session, member: Member) -> list[int]:
    """Ids of the channels of the assets ``member`` owns."""
    q = select(Channel.id).join(Asset).where(Asset.owner_member_id == member.id)
    return list(session.scalars(q.order_by(Channel.id)))


@dataclass
class ErasureReport:
    """What :func:`erase_core` did, for the audit log and the operator (no personal data)."""

    ref: str
    personal_deleted: bool = False
    users_disabled: list[int] = field(default_factory=list)
    consents_withdrawn: int = 0
    ev_sessions_deleted: int = 0
    assets_renamed: list[int] = field(default_factory=list)
    channels_renamed: list[int] = field(default_factory=list)


def erase_core(session: Session, member: Member, at: dt.datetime | None = None) -> ErasureReport:
    """Erase ``member``'s personal data from the core tables (the caller commits).

    - the ``member_personal`` row is deleted (:func:`energy.sites.erase_member_rows`);
    - every user acting for the member is disabled, renamed ``erased-<id>``, given an
      unusable password hash, no second factor, and all tokens revoked;
    - the member's announced EV stays (``ev_sessions``: when the car comes and goes, and who
      set it) are deleted; plans already made keep only the asset's pseudonymous steps;
    - active consents are withdrawn (the rows, which hold no personal data, stay as the
      record of what was agreed);
    - an asset name or channel key that still holds a word of the name (written before the
      pseudonymity check) becomes ``<kind>-<id>`` / ``<site>/<kind>-<id>/<quantity>-<channel
      id>``, and ``members.erased_at`` is set (both through the one writer,
      :func:`energy.sites.erase_member_rows`); the ref, measurements and ledger stay
      (pseudonymised).
    """
    when = at or utc_now()
    report = ErasureReport(member.ref)
    erased = erase_member_rows(session, member, when)
    report.personal_deleted = erased.personal_deleted
    report.assets_renamed = erased.assets_renamed
    report.channels_renamed = erased.channels_renamed
    for user in session.scalars(select(User).where(User.member_id == member.id)):
        user.disabled = True
        user.username = f"erased-{user.id}"
        user.password_hash = hash_password(secrets.token_urlsafe(32))
        user.totp_secret = None
        user.totp_enabled = False
        user.totp_last_step = None
        user.token_version += 1
        report.users_disabled.append(user.id)
    from energy.sitecontrols import EvSession

    gone = session.execute(delete(EvSession).where(EvSession.member_id == member.id))
    report.ev_sessions_deleted = int(getattr(gone, "rowcount", 0) or 0)
    for consent in list(member.consents):
        if consent.withdrawn_at is None:
            consent.withdrawn_at = max(when, consent.given_at)
            report.consents_withdrawn += 1
    session.flush()
    return report


def personal_values(p: MemberPersonal | None) -> dict[str, str]:
    """The personal fields of a row that are set (for scans in tests and reports)."""
    if p is None:
        return {}
    fields = (
        "name",
        "email",
        "address",
        "iban",
        "bic",
        "sepa_mandate_id",
        "licence_plate",
        "label",
    )
    return {f: getattr(p, f) for f in fields if getattr(p, f)}
