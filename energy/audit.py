"""The audit log of people's actions: who did what, on what, when (UTC), from where.

Every action a person takes that changes money, access, limits or devices is one
:class:`~energy.models.AuditEntry`: a settlement run, post or void; a tariff or price import;
a user added, disabled, given a password reset or a role; a site (and its limits) imported; a
member or consent changed; a member exported or erased; a device setpoint written by a
command. ``actor`` is the user: on the command line the OS user or ``--as USER``, in the API
the token's user. ``via`` says which (``cli`` or ``api``).

The log is append-only twice over: the database refuses UPDATE and DELETE (triggers of
migration ``0006_privacy``), and each entry carries the hash of its predecessor, so an edit
made around the triggers (a restored dump, a dropped trigger) is found by :func:`verify`.
``prev_hash`` is unique: two writers that read the same head cannot both append (the second
gets an integrity error and its whole transaction, the action included, rolls back).

What goes in ``target`` and ``detail`` are pseudonymous refs, names of sites and tariffs,
numbers and usernames, never names, e-mail, addresses, IBANs or plates: the chain cannot be
edited, so it could not be erased (docs/PRIVACY.md).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.clock import utc_now
from energy.models import AuditEntry

GENESIS_HASH = "0" * 64
VIA = ("cli", "api")
#: The actions recorded, with what their target is.
ACTIONS: dict[str, str] = {
    "settlement.run": "community/period (run id in detail)",
    "settlement.post": "run id",
    "settlement.void": "run id",
    "tariff.import": "price series",
    "tariff.fetch": "price series (zone, day and ENTSO-E document in detail)",
    "tariff.correct": "price series (the replaced ISPs, old and new prices in detail)",
    "tariff.version": "community (a settlement tariff version from a date: the fields set and the digests in detail)",
    "site.import": "site (limits in detail)",
    "user.add": "username",
    "user.disable": "username",
    "user.password_reset": "username",
    "user.password_change": "username",
    "user.totp_reset": "username",
    "user.role": "username",
    "member.add": "member ref",
    "member.update": "member ref",
    "member.export": "member ref",
    "member.erase": "member ref",
    "consent.give": "member ref (purpose in detail)",
    "consent.withdraw": "member ref (purpose in detail)",
    "device.setpoint": "site/asset (written W in detail)",
    "device.write": "site/device (register, asked, written and read-back value in detail)",
    "gateway.add": "gateway name (sites in detail)",
    "ocpp.boot_rejected": "site/charge point id (bound to another site; why in detail)",
    "quarantine.accept": "channel key (ts and values in detail)",
    "quarantine.reject": "channel key (ts and values in detail)",
    "verification.withdraw": "campaign/verification id (versions in detail)",
    "ev_session.set": "site/asset of the car (the session in detail)",
    "site.limits": "site (the manager's grid limit and battery reserve in detail)",
}


@dataclass(frozen=True)
class Actor:
    """Who acts: a username and the way in (``cli`` or ``api``)."""

    name: str
    via: str = "cli"

    def __post_init__(self) -> None:
        if self.via not in VIA:
            raise ValueError(f"via must be one of {VIA}, got {self.via!r}")
        if not self.name:
            raise ValueError("an audit actor needs a name")


def cli_actor(as_user: str | None = None) -> Actor:
    """The actor of a command: ``--as USER`` if given, else the OS user running it."""
    return Actor(as_user or getpass.getuser(), "cli")


def _canonical(fields: Mapping[str, Any]) -> bytes:
    at = fields["at"]
    values = [
        fields["seq"],
        at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        fields["actor"],
        fields["via"],
        fields["action"],
        fields["target"],
        fields["detail"],
        fields["prev_hash"],
    ]
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(fields: Mapping[str, Any]) -> str:
    """``sha256`` hex of the canonical JSON of an entry's fields (including ``prev_hash``)."""
    return hashlib.sha256(_canonical(fields)).hexdigest()


def _head(session: Session) -> tuple[int, str]:
    last = session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
    return (0, GENESIS_HASH) if last is None else (last.seq, last.hash)


def record(
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    *,
    at: dt.datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (committed with the action it records).

    Raises
    ------
    ValueError
        For an action not in :data:`ACTIONS` (a typo would make the log unsearchable).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; known: {', '.join(ACTIONS)}")
    clean = json.loads(json.dumps(dict(detail or {}), default=str))
    seq, prev = _head(session)
    fields = {
        "seq": seq + 1,
        "at": (at or utc_now()).astimezone(dt.UTC),
        "actor": actor.name[:100],
        "via": actor.via,
        "action": action,
        "target": target[:200],
        "detail": clean,
        "prev_hash": prev,
    }
    entry = AuditEntry(**fields, hash=entry_hash(fields))
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class AuditProblem:
    """An entry whose hash or link does not hold."""

    seq: int
    reason: str


def verify(session: Session) -> tuple[int, list[AuditProblem]]:
    """Recompute the chain: the number of entries and every broken link or hash."""
    problems: list[AuditProblem] = []
    prev, expected_seq, n = GENESIS_HASH, 1, 0
    for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
        n += 1
        fields = {c: getattr(e, c) for c in ("seq", "at", "actor", "via", "action", "target")}
        fields.update(detail=e.detail, prev_hash=e.prev_hash)
        if e.seq != expected_seq:
            problems.append(AuditProblem(e.seq, f"sequence gap: expected {expected_seq}"))
        if e.prev_hash != prev:
            problems.append(AuditProblem(e.seq, "prev_hash is not the previous entry's hash"))
        if entry_hash(fields) != e.hash:
            problems.append(AuditProblem(e.seq, "hash does not match the entry (edited)"))
        prev, expected_seq = e.hash, e.seq + 1
    return n, problems


def entries(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 200,
) -> Sequence[AuditEntry]:
    """Entries newest first, filtered: ``action`` may end in ``.`` or ``*`` for a prefix
    (``settlement.``); ``since``/``until`` are a half-open ``[since, until)`` UTC window."""
    q = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if action:
        prefix = action.rstrip("*")
        q = q.where(
            AuditEntry.action.startswith(prefix, autoescape=True)
            if prefix.endswith(".") or action.endswith("*")
            else AuditEntry.action == action
        )
    if target:
        q = q.where(AuditEntry.target == target)
    if since:
        q = q.where(AuditEntry.at >= since)
    if until:
        q = q.where(AuditEntry.at < until)
    return list(session.scalars(q))
