"""Users: creation with validation, authentication, and what each user may see.

Roles (:class:`energy.models.Role`) and ownership:

- ``operator`` sees everything;
- ``site_manager`` sees the sites linked to them (``user.sites``);
- ``firm`` sees the sites whose owner member is ``user.member_id``;
- ``member`` sees the assets they own (``asset.owner_member_id == user.member_id``) and the
  sites where they own an asset;
- a ``site_manager`` sees a person's car (``ev``/``ev_charger`` asset) on their site only while
  its owner consents (:func:`energy.privacy.ev_detail_visible`); the site's profile sums all
  EVs into one group, which they always see.

Tokens (:mod:`energy.security`) are revoked one at a time on logout (:func:`revoke_token`, a
row in ``token_denylist`` until the token expires) and all at once when the password is
changed (:func:`change_password`) or reset by an operator (:func:`reset_password`), which bump
``User.token_version``. :func:`token_user` is the one check of a presented token's claims.

An operator may add a TOTP second factor (RFC 6238, ``pyotp``): :func:`enrol_totp` gives the
``otpauth://`` URI for an authenticator app, :func:`confirm_totp` switches it on with a first
code, and from then on :func:`check_totp` must accept a code at every login. A code is accepted
once (its time step is remembered), within one step (30 s) of the server's clock.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload

from energy.clock import utc_now
from energy.errors import ValidationError
from energy.models import Asset, Member, RevokedToken, Role, Site, User
from energy.privacy import ev_detail_visible
from energy.pseudonyms import check_pseudonymous, member_words
from energy.security import (
    DUMMY_HASH,
    TokenClaims,
    hash_password,
    needs_rehash,
    verify_password,
)

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,99}$")
PASSWORD_MIN_LEN = 8
PASSWORD_MAX_LEN = 1024


def validate_username(username: str) -> str:
    """``username`` if it is 3-100 characters of ``a-z 0-9 . _ @ -`` starting alphanumeric."""
    if not USERNAME_RE.match(username):
        raise ValidationError(
            "must be 3-100 characters of a-z, 0-9, '.', '_', '@', '-' and start with a "
            f"letter or digit, got {username!r}",
            source="user",
            location="username",
        )
    return username


def validate_password(password: str) -> str:
    """``password`` if its length is within [8, 1024] characters."""
    if not PASSWORD_MIN_LEN <= len(password) <= PASSWORD_MAX_LEN:
        raise ValidationError(
            f"must be {PASSWORD_MIN_LEN}-{PASSWORD_MAX_LEN} characters, got {len(password)}",
            source="user",
            location="password",
        )
    return password


def parse_role(role: str | Role) -> Role:
    """The :class:`Role` named ``role``, or a ValidationError listing the valid ones."""
    try:
        return Role(role)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise ValidationError(
            f"must be one of {valid}, got {role!r}", source="user", location="role"
        ) from None


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str | Role,
    member_ref: str | None = None,
    site_names: Iterable[str] = (),
) -> User:
    """Create a user with a hashed password; validated, nothing written if anything is wrong.

    Parameters
    ----------
    session : Session
        The caller commits.
    username : str
        Unique login name (see :func:`validate_username`).
    password : str
        Clear-text password, 8-1024 characters; stored as an Argon2id hash only.
    role : str or Role
        ``operator``, ``site_manager``, ``firm`` or ``member``.
    member_ref : str, optional
        The member a ``firm`` or ``member`` user acts for (required for those roles, refused
        for the others).
    site_names : iterable of str
        Sites a ``site_manager`` manages (at least one; refused for the other roles).

    Raises
    ------
    energy.errors.ValidationError
        Naming the field (``username``, ``password``, ``role``, ``member_ref``, ``site_names``).
    """
    validate_username(username)
    validate_password(password)
    r = parse_role(role)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValidationError(
            f"a user {username!r} already exists", source="user", location="username"
        )
    member, sites = _role_links(session, r, member_ref, site_names)
    if r is Role.MEMBER:
        check_pseudonymous(username, member_words(member), "username", "user", "username")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=r,
        member_id=member.id if member else None,
        sites=sites,
    )
    session.add(user)
    session.flush()
    return user


def _role_links(
    session: Session, r: Role, member_ref: str | None, site_names: Iterable[str]
) -> tuple[Member | None, list[Site]]:
    """The member and sites a user of role ``r`` is linked to, validated for the role."""
    names = list(dict.fromkeys(site_names))
    member: Member | None = None
    if r in (Role.FIRM, Role.MEMBER):
        if not member_ref:
            raise ValidationError(
                f"role {r.value} needs the member the user acts for",
                source="user",
                location="member_ref",
            )
        member = session.scalar(select(Member).where(Member.ref == member_ref))
        if member is None:
            raise ValidationError(f"no member {member_ref!r}", source="user", location="member_ref")
    elif member_ref:
        raise ValidationError(
            f"role {r.value} does not act for a member, got {member_ref!r}",
            source="user",
            location="member_ref",
        )
    sites: list[Site] = []
    if r is Role.SITE_MANAGER:
        if not names:
            raise ValidationError(
                "role site_manager needs at least one site", source="user", location="site_names"
            )
        found = {s.name: s for s in session.scalars(select(Site).where(Site.name.in_(names)))}
        missing = [n for n in names if n not in found]
        if missing:
            raise ValidationError(
                f"no site(s) {', '.join(repr(m) for m in missing)}",
                source="user",
                location="site_names",
            )
        sites = [found[n] for n in names]
    elif names:
        raise ValidationError(
            f"only a site_manager is linked to sites, role is {r.value}",
            source="user",
            location="site_names",
        )
    return member, sites


def change_role(
    session: Session,
    user: User,
    role: str | Role,
    member_ref: str | None = None,
    site_names: Iterable[str] = (),
) -> None:
    """Give ``user`` another role (with the member or sites it needs) and revoke their
    tokens, which carry the old role (the caller commits).

    Raises
    ------
    energy.errors.ValidationError
        As :func:`create_user` for ``role``, ``member_ref`` and ``site_names``.
    """
    r = parse_role(role)
    member, sites = _role_links(session, r, member_ref, site_names)
    if r is Role.MEMBER:
        check_pseudonymous(user.username, member_words(member), "username", "user", "username")
    user.role = r
    user.member_id = member.id if member else None
    user.sites = sites
    if r is not Role.OPERATOR:
        user.totp_secret, user.totp_enabled, user.totp_last_step = None, False, None
    user.token_version += 1
    session.flush()


def set_disabled(session: Session, user: User, disabled: bool = True) -> None:
    """Disable (or enable again) ``user``; a disabled user's tokens are refused at once."""
    user.disabled = disabled
    session.flush()


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The enabled user with this name and password, else None (same work either way).

    A hash made with weaker Argon2 parameters than the current ones is replaced; the caller
    commits the session.
    """
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password) or user.disabled:
        return None
    if needs_rehash(user.password_hash):  # stronger parameters since: upgrade (caller commits)
        user.password_hash = hash_password(password)
    return user


def find_user(session: Session, username: str) -> User:
    """The user named ``username``; a ValidationError (location ``username``) if none."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ValidationError(f"no user {username!r}", source="user", location="username")
    return user


def token_user(session: Session, claims: TokenClaims) -> User | None:
    """The enabled user a verified token is for, or None if the token was revoked.

    Revoked means: issued before the user's last password change or reset (an older
    ``token_version``), or logged out (its id is in ``token_denylist``).
    """
    # one query: the user, their sites and whether the token is on the denylist
    revoked = select(RevokedToken.jti).where(RevokedToken.jti == claims.token_id).exists()
    row = (
        session.execute(
            select(User, revoked)
            .where(User.username == claims.username)
            .options(joinedload(User.sites))
        )
        .unique()
        .first()
    )
    if row is None:
        return None
    user, is_revoked = row
    if user.disabled or user.token_version != claims.token_version or is_revoked:
        return None
    return user


def revoke_token(session: Session, user: User, claims: TokenClaims) -> None:
    """Put the token of ``claims`` on the denylist until it expires (the caller commits).

    Rows of tokens that have expired anyway are deleted on the way.
    """
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= utc_now()))
    if session.get(RevokedToken, claims.token_id) is None:
        session.add(
            RevokedToken(jti=claims.token_id, user_id=user.id, expires_at=claims.expires_at)
        )
    session.flush()


def reset_password(session: Session, user: User, new_password: str) -> None:
    """Set ``user``'s password to ``new_password`` and revoke all their tokens (caller commits).

    Raises
    ------
    energy.errors.ValidationError
        If the new password is too short or too long (location ``password``).
    """
    validate_password(new_password)
    user.password_hash = hash_password(new_password)
    user.token_version += 1
    session.flush()


def change_password(session: Session, user: User, current_password: str, new_password: str) -> None:
    """The user's own change: check ``current_password``, then as :func:`reset_password`.

    Raises
    ------
    energy.errors.ValidationError
        ``current_password`` if it does not match, ``password`` if the new one is invalid
        or the same as the current one.
    """
    if not verify_password(user.password_hash, current_password):
        raise ValidationError(
            "does not match the current password", source="user", location="current_password"
        )
    if new_password == current_password:
        raise ValidationError(
            "must differ from the current password", source="user", location="password"
        )
    reset_password(session, user, new_password)


#: The issuer shown by authenticator apps.
TOTP_ISSUER = "Noaber"


def enrol_totp(session: Session, user: User) -> str:
    """Give an operator a new TOTP secret (not yet required) and return its otpauth URI.

    Raises
    ------
    energy.errors.ValidationError
        Location ``totp``: the user is not an operator, or already has a confirmed factor.
    """
    if user.role is not Role.OPERATOR:
        raise ValidationError(
            f"a second factor is for operators, role is {user.role.value}",
            source="user",
            location="totp",
        )
    if user.totp_enabled:
        raise ValidationError(
            "a second factor is already set up (an operator can remove it with "
            "`noaber user reset-totp`)",
            source="user",
            location="totp",
        )
    user.totp_secret = pyotp.random_base32()
    user.totp_last_step = None
    session.flush()
    return pyotp.TOTP(user.totp_secret).provisioning_uri(
        name=user.username, issuer_name=TOTP_ISSUER
    )


def _accept_totp(user: User, code: str, now: dt.datetime | None) -> bool:
    """Whether ``code`` is valid now (± one step) and newer than the last accepted one."""
    code = code.strip()
    if user.totp_secret is None or not (code.isascii() and code.isdigit()):
        return False  # compare_digest refuses non-ASCII text: such a code is simply wrong
    totp = pyotp.TOTP(user.totp_secret)
    at = now or utc_now()
    for offset in (0, -1, 1):
        step = totp.timecode(at) + offset
        if user.totp_last_step is not None and step <= user.totp_last_step:
            continue
        if secrets.compare_digest(totp.generate_otp(step), code):
            user.totp_last_step = step
            return True
    return False


def confirm_totp(session: Session, user: User, code: str, now: dt.datetime | None = None) -> None:
    """Switch on the enrolled second factor with a first valid ``code`` (caller commits).

    Raises
    ------
    energy.errors.ValidationError
        Location ``code`` if there is no enrolment or the code is wrong.
    """
    if user.totp_secret is None or not _accept_totp(user, code, now):
        raise ValidationError(
            "not a valid code of the enrolled authenticator", source="user", location="code"
        )
    user.totp_enabled = True
    session.flush()


def check_totp(user: User, code: str | None, now: dt.datetime | None = None) -> bool:
    """True if ``user`` needs no second factor, or ``code`` is a fresh valid one (then the
    caller commits, so it is not accepted twice)."""
    if not user.totp_enabled:
        return True
    return code is not None and _accept_totp(user, code, now)


def reset_totp(session: Session, user: User) -> None:
    """Remove the user's second factor (a lost phone; the caller commits)."""
    user.totp_secret = None
    user.totp_enabled = False
    user.totp_last_step = None
    session.flush()


def user_may_see_site(user: User, site: Site) -> bool:
    """Whether ``user`` may read ``site`` (see the module docstring for the rules)."""
    if user.role is Role.OPERATOR:
        return True
    if user.role is Role.SITE_MANAGER:
        return any(s.id == site.id for s in user.sites)
    if user.role is Role.FIRM:
        return user.member_id is not None and site.owner_member_id == user.member_id
    if user.role is Role.MEMBER:
        return user.member_id is not None and any(
            a.owner_member_id == user.member_id for a in site.assets
        )
    return False


def user_may_see_asset(session: Session, user: User, asset: Asset) -> bool:
    """Whether ``user`` may read ``asset``: a member only their own, others by site; a
    site manager a person's car only with that person's recorded consent
    (:func:`energy.privacy.ev_detail_visible`)."""
    if user.role is Role.MEMBER:
        return user.member_id is not None and asset.owner_member_id == user.member_id
    if not user_may_see_site(user, asset.site):
        return False
    return user.role is not Role.SITE_MANAGER or ev_detail_visible(session, asset)


def visible_sites(session: Session, user: User) -> list[Site]:
    """The sites ``user`` may read, ordered by name."""
    q = select(Site).order_by(Site.name)
    if user.role is Role.SITE_MANAGER:
        ids = [s.id for s in user.sites]
        q = q.where(Site.id.in_(ids))
    elif user.role in (Role.FIRM, Role.MEMBER) and user.member_id is None:
        return []
    elif user.role is Role.FIRM:
        q = q.where(Site.owner_member_id == user.member_id)
    elif user.role is Role.MEMBER:
        owned = select(Asset.site_id).where(Asset.owner_member_id == user.member_id)
        q = q.where(Site.id.in_(owned))
    elif user.role is not Role.OPERATOR:
        return []
    return list(session.scalars(q))
