"""Everything held about a member, exported (AVG art. 15/20) or erased (art. 17).

The application is the one place that sees every package's tables, so the export and the
erasure are composed here: the core tables through :mod:`energy.privacy`, the interval
readings of the member's channels, the settlement ledger (transfers, member-days,
statements) and the optimizer's plans of their car, read by the member's pseudonymous ref.

Erasure removes personal data only (:func:`energy.privacy.erase_core`). The ledger, the
statements and the plans refer to the ref, never to a name, so they stay as they are: Dutch
law requires financial records to be kept for 7 years (Algemene wet inzake rijksbelastingen
art. 52(4); Burgerlijk Wetboek 2:10(3)); after erasure they are pseudonymised data that no
longer lead to a person. No settlement table holds personal data, so the ledger needs no
erase hook (:data:`ERASE_HOOKS` is where a package that ever does would add its call).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.audit import Actor, record
from energy.clock import utc_now
from energy.errors import ValidationError
from energy.models import IntervalReading, Member, MemberKind, MemberPersonal
from energy.privacy import (
    ErasureReport,
    core_export,
    erase_core,
    find_member,
    member_channel_ids,
    new_member_ref,
)
from energy.pseudonyms import check_pseudonymous, person_words
from energy.siteconfig import normalise_iban
from energy.sitecontrols import EvSession
from energy.sites import MemberSpec, ensure_member
from optimizer.store import Schedule, ScheduleStep
from settlement.community import bic_ok
from settlement.ledger import member_account
from settlement.models import MemberDay, Statement, Transfer

#: What the export says about keeping and erasing, in its header (docs/PRIVACY.md).
RETENTION_NOTE = (
    "Financial records (ledger transfers, member-days, statements) are kept for 7 years "
    "as Dutch law requires (AWR art. 52(4), BW 2:10(3)); on erasure they stay under the "
    "pseudonymous ref and no longer lead to you. Personal data (name, e-mail, address, "
    "IBAN, licence plate, label) and user accounts are erased."
)

#: Calls a package adds when it keeps personal data of members (none does today).
ERASE_HOOKS: list[Callable[[Session, Member], None]] = []


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _rows(session: Session, stmt: Any, columns: list[str]) -> list[dict[str, Any]]:
    return [
        {c: _jsonable(v) for c, v in zip(columns, row, strict=True)}
        for row in session.execute(stmt)
    ]


def _readings(session: Session, member: Member) -> list[dict[str, Any]]:
    ids = member_channel_ids(session, member)
    if not ids:
        return []
    cols = ["channel_id", "isp_start", "energy_wh", "power_mean_w", "sample_count", "coverage"]
    stmt = (
        select(*(getattr(IntervalReading, c) for c in cols))
        .where(IntervalReading.channel_id.in_(ids))
        .order_by(IntervalReading.channel_id, IntervalReading.isp_start)
    )
    return _rows(session, stmt, cols)


def _settlement(session: Session, ref: str) -> dict[str, list[dict[str, Any]]]:
    account = member_account(ref)
    t_cols = ["seq", "ledger", "debit_account", "credit_account", "amount", "code", "day"]
    t_cols += ["community", "period", "flags", "reverses_id", "hash"]
    transfers = (
        select(*(getattr(Transfer, c) for c in t_cols))
        .where((Transfer.debit_account == account) | (Transfer.credit_account == account))
        .order_by(Transfer.seq)
    )
    d_cols = ["run_id", "day", "offtake_wh", "shared_wh", "injection_wh", "supplied_wh"]
    d_cols += ["discharge_wh", "green_discharge_wh", "green_supplied_wh"]
    days = (
        select(*(getattr(MemberDay, c) for c in d_cols))
        .where(MemberDay.member_ref == ref)
        .order_by(MemberDay.run_id, MemberDay.day)
    )
    s_cols = ["id", "number", "community", "period", "kind", "run_id", "max_seq", "created_at"]
    statements = (
        select(*(getattr(Statement, c) for c in s_cols))
        .where(Statement.member_ref == ref)
        .order_by(Statement.id)
    )
    return {
        "settlement_transfers": _rows(session, transfers, t_cols),
        "settlement_member_days": _rows(session, days, d_cols),
        "settlement_statements": _rows(session, statements, s_cols),
    }


def _plans(session: Session, ref: str) -> list[dict[str, Any]]:
    cols = ["schedule_id", "ts", "asset", "kind", "power_kw", "soc_pct"]
    stmt = (
        select(*(getattr(ScheduleStep, c) for c in cols))
        .join(Schedule, Schedule.id == ScheduleStep.schedule_id)
        .where(ScheduleStep.owner_ref == ref)
        .order_by(ScheduleStep.schedule_id, ScheduleStep.ts)
    )
    return _rows(session, stmt, cols)


def _ev_sessions(session: Session, member_id: int) -> list[dict[str, Any]]:
    """The charging sessions the member announced (:mod:`energy.sitecontrols`)."""
    cols = [
        "id",
        "asset_id",
        "arrival_at",
        "departure_at",
        "soc_target_pct",
        "soc_min_pct",
        "soc_arrival_pct",
        "v2g_allowed",
        "created_at",
        "created_by",
        "cancelled_at",
    ]
    stmt = (
        select(*(getattr(EvSession, c) for c in cols))
        .where(EvSession.member_id == member_id)
        .order_by(EvSession.id)
    )
    return _rows(session, stmt, cols)


def export_member(session: Session, ref: str) -> dict[str, Any]:
    """Everything held about member ``ref``: ``{"member", "exported_at", "retention",
    "tables": {table: [row, ...]}}`` (JSON-ready; credentials are not exported)."""
    member = find_member(session, ref)
    tables = core_export(session, member)
    tables["interval_readings"] = _readings(session, member)
    tables.update(_settlement(session, ref))
    tables["optimizer_schedule_steps"] = _plans(session, ref)
    tables["ev_sessions"] = _ev_sessions(session, member.id)
    return {
        "member": ref,
        "exported_at": utc_now().isoformat(),
        "retention": RETENTION_NOTE,
        "tables": tables,
    }


def export_json(data: dict[str, Any]) -> str:
    """The export as indented UTF-8 JSON."""
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def export_csv(data: dict[str, Any]) -> str:
    """The export as one long CSV: ``table,row,field,value`` (a spreadsheet opens it; every
    table and field of the JSON is there, nested values as JSON)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "row", "field", "value"])
    w.writerow(["export", 0, "member", data["member"]])
    w.writerow(["export", 0, "exported_at", data["exported_at"]])
    w.writerow(["export", 0, "retention", data["retention"]])
    for table, rows in data["tables"].items():
        for i, row in enumerate(rows):
            for field, value in row.items():
                text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
                w.writerow([table, i, field, "" if text is None else text])
    return buf.getvalue()


def export_and_audit(session: Session, ref: str, actor: Actor) -> dict[str, Any]:
    """:func:`export_member`, recorded in the audit log (the caller commits)."""
    data = export_member(session, ref)
    counts = {t: len(rows) for t, rows in data["tables"].items()}
    record(session, actor, "member.export", ref, {"rows": counts})
    return data


_MANDATE_ID = re.compile(r"[A-Za-z0-9+?/:().,' -]{1,35}")
"""A SEPA mandate reference (``MndtId``): 1-35 characters of the SEPA Latin set."""


def set_bank(
    session: Session,
    ref: str,
    actor: Actor,
    iban: str,
    bic: str | None = None,
    mandate_id: str | None = None,
    mandate_date: dt.date | None = None,
) -> list[str]:
    """Set a member's payout account (IBAN, optional BIC) and SEPA direct-debit mandate in
    their personal data, and record which fields changed in the audit log (never the
    values: the log cannot be erased). Returns the names of the fields that changed (the
    caller commits; one transaction).

    The IBAN is checked by ISO 13616 (:func:`energy.siteconfig.normalise_iban`: country,
    check digits, mod 97) and stored without spaces, upper case; a mandate needs both its
    reference and its date of signature (not in the future).

    Raises
    ------
    energy.errors.ValidationError
        Naming the member and the field: no member ``ref``, no personal data (erased, or
        never given a name), a bad IBAN, BIC or mandate; nothing is changed then.
    """
    member = find_member(session, ref)
    where = f"member {ref}"
    try:
        account = normalise_iban(iban)
    except ValueError as exc:
        raise ValidationError(str(exc), where, "iban") from None
    code = None if bic is None else re.sub(r"\s+", "", bic).upper()
    if code is not None and not bic_ok(code):
        raise ValidationError(f"not a BIC (ISO 9362): {bic!r}", where, "bic")
    if (mandate_id is None) != (mandate_date is None):
        raise ValidationError(
            "a direct-debit mandate needs both its reference and its date of signature",
            where,
            "mandate_id" if mandate_id is None else "mandate_date",
        )
    if mandate_id is not None and not _MANDATE_ID.fullmatch(mandate_id):
        raise ValidationError(
            f"a mandate reference is 1-35 letters, digits or +?/-:().,' and space, got "
            f"{mandate_id!r}",
            where,
            "mandate_id",
        )
    if mandate_date is not None and mandate_date > utc_now().date():
        raise ValidationError(
            f"the mandate's date of signature {mandate_date.isoformat()} is in the future",
            where,
            "mandate_date",
        )
    personal = member.personal
    if personal is None:
        state = "was erased" if member.erased_at is not None else "has no personal data"
        raise ValidationError(
            f"{ref} {state}: define the member with its name first (member add, or its site file)",
            where,
            "ref",
        )
    values: dict[str, Any] = {"iban": account}
    if bic is not None:
        values["bic"] = code
    if mandate_id is not None:
        values["sepa_mandate_id"] = mandate_id
        values["sepa_mandate_date"] = mandate_date
    changed = [k for k, v in values.items() if getattr(personal, k) != v]
    for k in changed:
        setattr(personal, k, values[k])
    if changed:
        session.flush()
        record(session, actor, "member.update", ref, {"fields": changed})
    return changed


def erase_member(session: Session, ref: str, actor: Actor) -> ErasureReport:
    """Erase member ``ref``'s personal data, keep the pseudonymised records the law requires,
    and record it in the audit log (the caller commits; one transaction).

    Raises
    ------
    energy.errors.ValidationError
        If there is no member ``ref``.
    """
    member = find_member(session, ref)
    already = member.erased_at is not None and member.personal is None
    report = erase_core(session, member)
    for hook in ERASE_HOOKS:
        hook(session, member)
    detail = {k: v for k, v in asdict(report).items() if k != "ref"}
    detail["again"] = already
    record(session, actor, "member.erase", ref, detail)
    return report


#: The personal fields an operator sets on a member (``member_personal``), with their most
#: characters (the column widths of :class:`energy.models.MemberPersonal`).
PERSONAL_FIELDS: dict[str, int] = {
    "name": 200,
    "email": 320,
    "address": 500,
    "iban": 34,
    "licence_plate": 20,
    "label": 100,
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_PLATE = re.compile(r"[A-Z0-9]+(-[A-Z0-9]+)*")


def clean_personal(values: dict[str, str | None], where: str) -> dict[str, str | None]:
    """The personal fields of ``values`` checked and normalised (spaces collapsed; empty is
    None; an IBAN by ISO 13616 without spaces; a licence plate upper case), only those given.

    Raises
    ------
    energy.errors.ValidationError
        Naming ``where`` and the field: an unknown field, an empty name, a value longer than
        its column, an e-mail without ``@`` and domain, a bad IBAN or licence plate.
    """
    out: dict[str, str | None] = {}
    for field, raw in values.items():
        if field not in PERSONAL_FIELDS:
            raise ValidationError(f"unknown personal field {field!r}", where, field)
        value = None if raw is None else " ".join(str(raw).split()) or None
        if value is not None and len(value) > PERSONAL_FIELDS[field]:
            raise ValidationError(
                f"{field} is at most {PERSONAL_FIELDS[field]} characters, got {len(value)}",
                where,
                field,
            )
        if field == "name" and value is None:
            raise ValidationError("a member needs a name", where, "name")
        if field == "email" and value is not None and not _EMAIL.fullmatch(value):
            raise ValidationError(f"not an e-mail address: {value!r}", where, "email")
        if field == "iban" and value is not None:
            try:
                value = normalise_iban(value)
            except ValueError as exc:
                raise ValidationError(str(exc), where, "iban") from None
        if field == "licence_plate" and value is not None:
            value = value.upper().replace(" ", "-")
            if not _PLATE.fullmatch(value):
                raise ValidationError(
                    f"a licence plate is letters and digits with dashes between, got {raw!r}",
                    where,
                    "licence_plate",
                )
        out[field] = value
    return out


def personal_values_of(personal: MemberPersonal | None) -> dict[str, str | None]:
    """The :data:`PERSONAL_FIELDS` of a member's personal row (all None without one)."""
    return {k: None if personal is None else getattr(personal, k) for k in PERSONAL_FIELDS}


def add_member(
    session: Session, actor: Actor, kind: MemberKind | str, personal: dict[str, str | None]
) -> Member:
    """A new member with a fresh opaque ref; ``personal`` (its name at least) goes to
    ``member_personal`` only, and the audit log records the kind and which fields were given,
    never their values (the log cannot be erased). The caller commits.

    Raises
    ------
    energy.errors.ValidationError
        A kind that is not ``person`` or ``organisation``, or a personal field
        :func:`clean_personal` refuses; nothing is stored then.
    """
    try:
        mkind = MemberKind(kind)
    except ValueError:
        raise ValidationError(
            f"kind must be person or organisation, got {kind!r}", "member", "kind"
        ) from None
    fields = clean_personal({"name": personal.get("name"), **personal}, "member")
    ref = new_member_ref(session)
    spec = MemberSpec(
        ref,
        mkind,
        fields.get("name"),
        fields.get("email"),
        fields.get("address"),
        fields.get("iban"),
        fields.get("licence_plate"),
        fields.get("label"),
    )
    got = ensure_member(session, spec, source="member", path="member")
    given = sorted(k for k, v in fields.items() if v is not None)
    record(session, actor, "member.add", ref, {"kind": mkind.value, "fields": given})
    return got.row


def update_member(
    session: Session, ref: str, actor: Actor, personal: dict[str, str | None]
) -> list[str]:
    """Change the given personal fields of member ``ref`` (a field given as None or empty is
    cleared; the name cannot be); the audit log records which fields changed, never their
    values. Returns the changed fields' names (the caller commits).

    Raises
    ------
    energy.errors.ValidationError
        No member ``ref``; an erased member (its data do not come back through an edit); a
        member without personal data and no name given; a field :func:`clean_personal`
        refuses; a person's ref that would contain a word of the new name. Nothing is
        changed then.
    """
    member = find_member(session, ref)
    where = f"member {ref}"
    fields = clean_personal(personal, where)
    if member.erased_at is not None and member.personal is None:
        raise ValidationError(f"{ref} was erased: its personal data are gone", where, "ref")
    if member.personal is None and not fields.get("name"):
        raise ValidationError(f"{ref} has no personal data yet: give a name", where, "name")
    current = personal_values_of(member.personal)
    after = {**current, **fields}
    changed = [k for k in PERSONAL_FIELDS if k in fields and current[k] != fields[k]]
    if member.kind is MemberKind.PERSON and changed:
        words = person_words(after["name"], after["email"], after["label"])
        check_pseudonymous(ref, words, "member ref", where, "ref")
    if not changed:
        return []
    # through the core's one writer of members (energy.sites), which sets every field of
    # ``after``: the unchanged ones keep their value, the given ones change or clear
    ensure_member(
        session,
        MemberSpec(
            member.ref,
            member.kind,
            after["name"],
            after["email"],
            after["address"],
            after["iban"],
            after["licence_plate"],
            after["label"],
        ),
        source=where,
        path="member",
    )
    record(session, actor, "member.update", ref, {"fields": changed})
    return changed
