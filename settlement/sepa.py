"""Money out: a period's SEPA payment run (payouts as pain.001, collections as pain.008).

A payment run settles each member's outstanding balance of the community over all periods
up to and including the run's period (so a correction of a paid month is paid or collected
with the next run): a member the community owes (an EV owner who earned) gets a SEPA credit
transfer, a member who owes is collected by SEPA direct debit under their mandate. The files
are written by ``sepaxml`` (which validates them against the ISO 20022 XSDs it ships) and
the run is recorded in the ledger in the same transaction, as ``cents`` transfers between the
member and the community's bank clearing account ``community:<name>:bank`` (``payout``:
member -> bank, ``collection``: bank -> member), so the member's balance shows it. One
payment run per community and period (a unique constraint and a check); a run for a period
before one already paid is refused too (it would pay the same balance twice).

IBANs, BICs, names and mandates are personal data: they are read from ``member_personal``
(:class:`energy.models.MemberPersonal`) only to write the files; the ledger holds the
pseudonymous account and no ``member_ref`` on payment transfers, so statements and their
checks list only what was settled.

References
----------
EPC, "SEPA Credit Transfer Rulebook" and "SEPA Core Direct Debit Rulebook" (since 2016 a
first collection under a mandate may use sequence type RCUR); ISO 20022 pain.001.001.03 and
pain.008.001.02 (the schemas shipped by ``sepaxml``). See ``docs/SOURCES.md``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from energy.errors import NoaberError, ValidationError
from settlement import ledger
from settlement.community import CommunitySpec, iban_ok
from settlement.models import PaymentRun, SettlementRun, Transfer
from settlement.proof import seal_run

CREDIT_SCHEMA = "pain.001.001.03"
DEBIT_SCHEMA = "pain.008.001.02"
PAYMENT_CODES = ("payout", "collection")
_SEPA_ID = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")


def bank_account(community: str) -> str:
    """The community's bank clearing account (payments in and out)."""
    return f"community:{community}:bank"


@dataclass(frozen=True)
class Payment:
    """One payout or collection [cents > 0] with the personal data its file needs."""

    member_ref: str
    name: str
    iban: str
    bic: str | None
    amount_cents: int
    mandate_id: str | None = None
    mandate_date: dt.date | None = None


@dataclass
class PaymentRunResult:
    """A payment run: its id, what it pays and collects and the two files (None if empty)."""

    run_id: int
    payouts: list[Payment]
    collections: list[Payment]
    credit_xml: bytes | None
    debit_xml: bytes | None


def outstanding_cents(session: Session, community: str, period: str) -> dict[str, int]:
    """Each member's balance with the community over periods up to ``period`` [cents]
    (positive: the community owes the member), payments of earlier runs included."""
    conds = [
        Transfer.ledger == "cents",
        Transfer.flags.in_(ledger.COUNTING_FLAGS),
        Transfer.community == community,
        Transfer.period <= period,
    ]
    out: dict[str, int] = {}
    for col, sign in ((Transfer.credit_account, 1), (Transfer.debit_account, -1)):
        for acc, total in session.execute(
            select(col, func.sum(Transfer.amount)).where(*conds).group_by(col)
        ):
            if acc.startswith("member:"):
                out[acc[7:]] = out.get(acc[7:], 0) + sign * int(total)
    return {ref: v for ref, v in sorted(out.items()) if v}


def _personal(session: Session, refs: list[str]) -> dict[str, Any]:
    from energy.models import Member, MemberPersonal

    rows = session.execute(
        select(Member.ref, MemberPersonal)
        .join(MemberPersonal, MemberPersonal.member_id == Member.id)
        .where(Member.ref.in_(refs))
    ).all()
    return {ref: p for ref, p in rows}


def _payments(session: Session, balances: dict[str, int]) -> tuple[list[Payment], list[Payment]]:
    """Payouts and collections with the members' bank data.

    Raises
    ------
    ValidationError
        Naming every member without a valid IBAN, and every member to collect from without a
        mandate (nothing is recorded then).
    """
    personal = _personal(session, list(balances))
    problems: list[str] = []
    payouts, collections = [], []
    for ref, cents in balances.items():
        p = personal.get(ref)
        iban = (p.iban or "").replace(" ", "").upper() if p is not None else ""
        if p is None or not iban_ok(iban):
            problems.append(f"member {ref}: no valid IBAN in member_personal ({iban or 'none'})")
            continue
        pay = Payment(ref, p.name, iban, p.bic, abs(cents), p.sepa_mandate_id, p.sepa_mandate_date)
        if cents > 0:
            payouts.append(pay)
        elif p.sepa_mandate_id is None or p.sepa_mandate_date is None:
            problems.append(f"member {ref}: owes {-cents} cents but has no direct-debit mandate")
        else:
            collections.append(pay)
    if problems:
        raise ValidationError("cannot pay: " + "; ".join(problems), "member_personal")
    return payouts, collections


def _end_to_end(period: str, ref: str) -> str:
    return _SEPA_ID.sub("-", f"NB-{period}-{ref}")[:35]


def credit_transfer_xml(
    community: CommunitySpec, period: str, payouts: list[Payment], execution_date: dt.date
) -> bytes:
    """pain.001 credit transfers from the community's account (validated by ``sepaxml``)."""
    from sepaxml import SepaTransfer

    bank = _bank(community)
    config: dict[str, Any] = {
        "name": bank.name,
        "IBAN": bank.iban,
        "batch": True,
        "currency": "EUR",
    }
    if bank.bic:
        config["BIC"] = bank.bic
    sepa = SepaTransfer(config, schema=CREDIT_SCHEMA, clean=True)
    for p in payouts:
        payment: dict[str, Any] = {
            "name": p.name,
            "IBAN": p.iban,
            "amount": p.amount_cents,
            "execution_date": execution_date,
            "description": f"{community.display_name} {period} {p.member_ref}",
            "endtoend_id": _end_to_end(period, p.member_ref),
        }
        if p.bic:
            payment["BIC"] = p.bic
        sepa.add_payment(payment)
    return bytes(sepa.export(validate=True))


def direct_debit_xml(
    community: CommunitySpec, period: str, collections: list[Payment], collection_date: dt.date
) -> bytes:
    """pain.008 core direct debits to the community's account (validated by ``sepaxml``)."""
    from sepaxml import SepaDD

    bank = _bank(community)
    if not bank.creditor_id:
        raise ValidationError(
            "collections need the community's creditor identifier",
            community.source,
            "payments.creditor_id",
        )
    if not bank.bic:
        raise ValidationError(
            f"collections ({DEBIT_SCHEMA}) need the community's BIC",
            community.source,
            "payments.bic",
        )
    config: dict[str, Any] = {
        "name": bank.name,
        "IBAN": bank.iban,
        "batch": True,
        "creditor_id": bank.creditor_id,
        "currency": "EUR",
    }
    if bank.bic:
        config["BIC"] = bank.bic
    sepa = SepaDD(config, schema=DEBIT_SCHEMA, clean=True)
    for p in collections:
        payment: dict[str, Any] = {
            "name": p.name,
            "IBAN": p.iban,
            "amount": p.amount_cents,
            "type": "RCUR",
            "collection_date": collection_date,
            "mandate_id": p.mandate_id,
            "mandate_date": p.mandate_date,
            "description": f"{community.display_name} {period} {p.member_ref}",
            "endtoend_id": _end_to_end(period, p.member_ref),
        }
        if p.bic:
            payment["BIC"] = p.bic
        sepa.add_payment(payment)
    return bytes(sepa.export(validate=True))


def _bank(community: CommunitySpec) -> Any:
    if community.payments is None:
        raise ValidationError(
            "the community file has no payments: section (name, iban, creditor_id)",
            community.source,
            "payments",
        )
    return community.payments


def _refuse_twice(session: Session, community: str, period: str) -> None:
    done = session.scalars(
        select(PaymentRun)
        .where(PaymentRun.community == community, PaymentRun.period >= period)
        .order_by(PaymentRun.period)
    ).first()
    if done is not None:
        same = "for" if done.period == period else "after"
        raise NoaberError(
            f"a payment run {same} {community} {period} was already made (run {done.id}, "
            f"{done.period}, executed {done.execution_date.isoformat()}); it is not made twice"
        )


def _settled_run(session: Session, community: str, period: str) -> SettlementRun:
    runs = list(
        session.scalars(
            select(SettlementRun)
            .where(SettlementRun.community == community, SettlementRun.period == period)
            .order_by(SettlementRun.id)
        )
    )
    if any(r.status == "pending" for r in runs):
        raise NoaberError(f"{community} {period} has a pending provisional run: post or void it")
    posted = [r for r in runs if r.status == "posted"]
    if not posted:
        raise NoaberError(f"{community} {period} is not settled: nothing to pay")
    return posted[-1]


def payment_run(
    factory: sessionmaker[Session],
    community: CommunitySpec,
    period: str,
    execution_date: dt.date,
) -> PaymentRunResult:
    """Make the period's payment run: files and ledger transfers in one transaction.

    Raises
    ------
    NoaberError
        If a payment run for this or a later period exists, the period is not settled or
        has a pending run.
    ValidationError
        If the community has no bank account, or members lack an IBAN or a mandate.
    """
    name = community.name
    _bank(community)
    with factory() as session, session.begin():
        head = ledger.lock_chain(session)
        _refuse_twice(session, name, period)
        settled = _settled_run(session, name, period)
        payouts, collections = _payments(session, outstanding_cents(session, name, period))
        credit = (
            credit_transfer_xml(community, period, payouts, execution_date) if payouts else None
        )
        debit = (
            direct_debit_xml(community, period, collections, execution_date)
            if collections
            else None
        )
        rows = [
            _transfer(settled, p, code, execution_date)
            for code, group in (("payout", payouts), ("collection", collections))
            for p in group
        ]
        ledger.append(session, head, rows)
        # the payment transfers belong to the settled period: a new period root covers them
        seal_run(session, settled.id)
        run = PaymentRun(
            community=name,
            period=period,
            execution_date=execution_date,
            n_payouts=len(payouts),
            payout_cents=sum(p.amount_cents for p in payouts),
            n_collections=len(collections),
            collection_cents=sum(p.amount_cents for p in collections),
            payout_digest=_digest(credit),
            collection_digest=_digest(debit),
            payout_xml=None if credit is None else credit.decode(),
            collection_xml=None if debit is None else debit.decode(),
            max_seq=head.last_seq,
        )
        session.add(run)
        session.flush()
        return PaymentRunResult(run.id, payouts, collections, credit, debit)


def _digest(xml: bytes | None) -> str | None:
    return None if xml is None else hashlib.sha256(xml).hexdigest()


def _transfer(run: SettlementRun, p: Payment, code: str, day: dt.date) -> dict[str, Any]:
    member, bank = ledger.member_account(p.member_ref), bank_account(run.community)
    debit, credit = (member, bank) if code == "payout" else (bank, member)
    return {
        "ledger": "cents",
        "code": code,
        "day": day,
        "member_ref": None,
        "debit_account": debit,
        "credit_account": credit,
        "amount": p.amount_cents,
        "idempotency_id": f"{run.community}|{run.period}|{code}|{p.member_ref}",
        "reverses_id": None,
        "pending_id": None,
        "run_id": run.id,
        "community": run.community,
        "period": run.period,
        "flags": "posted",
    }


def write_files(
    result_or_run: PaymentRunResult | PaymentRun, out_dir: Path, stem: str
) -> list[Path]:
    """Write the run's pain.001 and pain.008 files (those it has) into ``out_dir``."""
    if isinstance(result_or_run, PaymentRun):
        credit = None if result_or_run.payout_xml is None else result_or_run.payout_xml.encode()
        debit = (
            None if result_or_run.collection_xml is None else result_or_run.collection_xml.encode()
        )
    else:
        credit, debit = result_or_run.credit_xml, result_or_run.debit_xml
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for xml, schema in ((credit, CREDIT_SCHEMA), (debit, DEBIT_SCHEMA)):
        if xml is not None:
            path = out_dir / f"{stem}-{schema}.xml"
            path.write_bytes(xml)
            written.append(path)
    return written
