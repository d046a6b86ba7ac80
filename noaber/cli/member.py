"""``noaber member``: members, their consents, and their export and erasure (AVG/GDPR).

Every command here is recorded in the audit log (:mod:`energy.audit`) with the acting user
(``noaber --as USER`` or the OS user).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from noaber.cli.audit import actor
from noaber.console import console

member_app = typer.Typer(
    help="Members: add, consents, export and erasure of personal data.", no_args_is_help=True
)
consent_app = typer.Typer(help="What a member agreed to (purpose, given, withdrawn).")


def _transaction():
    from energy.db import make_engine, session_factory, transaction, upgrade
    from energy.settings import load_settings

    engine = make_engine(load_settings().sqlalchemy_url)
    upgrade(engine)
    return transaction(session_factory(engine))


def member_add(
    name: Annotated[str, typer.Option(help="Full name (personal data)")],
    kind: Annotated[str, typer.Option(help="person or organisation")] = "person",
    email: Annotated[str | None, typer.Option(help="E-mail (personal data)")] = None,
    address: Annotated[str | None, typer.Option(help="Address (personal data)")] = None,
    iban: Annotated[str | None, typer.Option(help="Payout IBAN (personal data)")] = None,
    plate: Annotated[str | None, typer.Option(help="Licence plate (personal data)")] = None,
    label: Annotated[str | None, typer.Option(help="Human label, e.g. ev-anna")] = None,
    ref: Annotated[
        str | None, typer.Option(help="Pseudonymous ref; default: a new opaque m-xxxxxx")
    ] = None,
) -> None:
    """Add a member with an opaque ref; the name and contact go to personal data only."""
    from energy.audit import record
    from energy.models import MemberKind
    from energy.privacy import new_member_ref
    from energy.siteconfig import normalise_iban
    from energy.sites import Change, MemberSpec, ensure_member

    try:
        mkind = MemberKind(kind)
    except ValueError:
        raise ValueError(f"--kind must be person or organisation, got {kind!r}") from None
    with _transaction() as session:
        new_ref = ref or new_member_ref(session)
        spec = MemberSpec(
            new_ref,
            mkind,
            name,
            email,
            address,
            normalise_iban(iban) if iban else None,
            plate.upper() if plate else None,
            label,
        )
        got = ensure_member(session, spec, source="member add", path="member")
        if got.change is not Change.UNCHANGED:
            action = "member.add" if got.change is Change.CREATED else "member.update"
            record(session, actor(), action, new_ref, {"kind": mkind.value})
    console.print(f"member {new_ref} {got.change.value}")


def member_set_iban(
    ref: Annotated[str, typer.Argument(help="The member's ref")],
    iban: Annotated[str, typer.Argument(help="Payout account, ISO 13616 (spaces allowed)")],
    bic: Annotated[str | None, typer.Option(help="The bank's BIC (ISO 9362)")] = None,
    mandate_id: Annotated[
        str | None, typer.Option(help="SEPA direct-debit mandate reference (MndtId)")
    ] = None,
    mandate_date: Annotated[
        str | None, typer.Option(help="Date the mandate was signed, YYYY-MM-DD")
    ] = None,
) -> None:
    """Set a member's IBAN (and BIC, direct-debit mandate) for SEPA payment runs.

    Personal data: stored in member_personal only; the audit log records which fields
    changed, never their values.
    """
    import datetime as dt

    from energy.errors import ValidationError
    from noaber.services.members import set_bank

    signed = None
    if mandate_date is not None:
        try:
            signed = dt.date.fromisoformat(mandate_date)
        except ValueError:
            raise ValidationError(
                f"not a date YYYY-MM-DD: {mandate_date!r}", f"member {ref}", "mandate_date"
            ) from None
    with _transaction() as session:
        changed = set_bank(session, ref, actor(), iban, bic, mandate_id, signed)
    console.print(
        f"member {ref}: {', '.join(changed)} set" if changed else f"member {ref}: unchanged"
    )


def member_export(
    ref: Annotated[str, typer.Argument(help="The member's ref")],
    out: Annotated[Path, typer.Option(help="Directory for <ref>.json and <ref>.csv")] = Path("."),
) -> None:
    """Write everything held about a member as JSON and CSV (AVG art. 15 and 20)."""
    from noaber.services.members import export_and_audit, export_csv, export_json

    with _transaction() as session:
        data = export_and_audit(session, ref, actor())
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / f"{ref}.json", out / f"{ref}.csv"
    json_path.write_text(export_json(data), encoding="utf-8")
    csv_path.write_text(export_csv(data), encoding="utf-8")
    rows = sum(len(v) for v in data["tables"].values())
    console.print(
        f"exported {rows} rows of {len(data['tables'])} tables to {json_path} and {csv_path}"
    )


def member_erase(
    ref: Annotated[str, typer.Argument(help="The member's ref")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Erase a member's personal data (AVG art. 17); financial records stay, pseudonymised.

    The name, e-mail, address, IBAN, plate and label are deleted; the member's users are
    disabled and cleared; consents are withdrawn. Ledger transfers, statements and plans stay
    under the ref for the 7 years Dutch law requires (AWR art. 52(4), BW 2:10(3)).
    """
    from noaber.services.members import erase_member

    if not yes:
        typer.confirm(f"Erase the personal data of {ref}? This cannot be undone", abort=True)
    with _transaction() as session:
        report = erase_member(session, ref, actor())
    console.print(
        f"member {ref} erased: personal data {'deleted' if report.personal_deleted else 'none'}, "
        f"{len(report.users_disabled)} user(s) disabled, {report.consents_withdrawn} consent(s) "
        "withdrawn; ledger and statements kept pseudonymised (7-year bewaarplicht)"
    )


def consent_give(
    ref: Annotated[str, typer.Argument(help="The member's ref")],
    purpose: Annotated[str, typer.Argument(help="ev_detail_site_manager")],
) -> None:
    """Record a member's consent for a purpose (they told the operator, e.g. on a form)."""
    from energy.audit import record
    from energy.privacy import find_member, give_consent

    with _transaction() as session:
        consent, new = give_consent(session, find_member(session, ref), purpose)
        if new:
            record(session, actor(), "consent.give", ref, {"purpose": consent.purpose.value})
    state = "recorded" if new else "already given"
    console.print(
        f"consent {consent.purpose.value} of {ref} {state} ({consent.given_at:%Y-%m-%d %H:%M} UTC)"
    )


def consent_withdraw(
    ref: Annotated[str, typer.Argument(help="The member's ref")],
    purpose: Annotated[str, typer.Argument(help="ev_detail_site_manager")],
) -> None:
    """Withdraw a member's consent; the site manager's per-car views stop at once."""
    from energy.audit import record
    from energy.privacy import find_member, parse_purpose, withdraw_consent

    p = parse_purpose(purpose)
    with _transaction() as session:
        done = withdraw_consent(session, find_member(session, ref), p)
        if done is not None:
            record(session, actor(), "consent.withdraw", ref, {"purpose": p.value})
    console.print(f"consent {p.value} of {ref} {'withdrawn' if done else 'was not given'}")


def consent_list(ref: Annotated[str, typer.Argument(help="The member's ref")]) -> None:
    """A member's consents, active and withdrawn."""
    from energy.privacy import find_member

    with _transaction() as session:
        member = find_member(session, ref)
        lines = [
            f"{c.purpose.value}: given {c.given_at:%Y-%m-%d %H:%M} UTC, "
            + (f"withdrawn {c.withdrawn_at:%Y-%m-%d %H:%M} UTC" if c.withdrawn_at else "active")
            for c in member.consents
        ]
    console.print("\n".join(lines) or f"{ref} has given no consent")


def register(app: typer.Typer) -> None:
    """Add ``member add|set-iban|export|erase`` and ``member consent give|withdraw|list``."""
    member_app.command("add")(member_add)
    member_app.command("set-iban")(member_set_iban)
    member_app.command("export")(member_export)
    member_app.command("erase")(member_erase)
    consent_app.command("give")(consent_give)
    consent_app.command("withdraw")(consent_withdraw)
    consent_app.command("list")(consent_list)
    member_app.add_typer(consent_app, name="consent")
    app.add_typer(member_app, name="member")
