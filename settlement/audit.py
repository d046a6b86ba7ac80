"""The audit: the whole ledger verified (against signed checkpoints), and reconciliation of a
period (metered = allocated + not shared, ledger = statements).

:func:`verify` checks the transfers' chain (:func:`settlement.ledger.verify`), the sealed
records, statement numbers and period roots (:func:`settlement.proof.verify_records`) and,
given the checkpoints' :class:`~settlement.checkpoints.Mirror`, that both chains still hold
every hash a checkpoint signed and nothing beyond the newest one; it names the first broken
record. Reconciliation is checked again when a report is built, independent of the checks
made while posting (docs/SOURCES.md, Patterns: TigerBeetle: write the invariants down and
check them twice).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.errors import NoaberError, NotFoundError
from settlement import checkpoints, ledger, proof
from settlement.models import MemberDay, SettlementRun
from settlement.statements import member_totals


@dataclass
class MemberReconciliation:
    """Per member figures of a period [Wh] and [cents]."""

    member_ref: str
    offtake_wh: int
    shared_wh: int
    injection_wh: int
    supplied_wh: int
    not_shared_wh: int
    ledger_wh: int
    ledger_cents: int
    statement_cents: int | None


@dataclass
class ReconcileReport:
    """Result of :func:`reconcile`; ``problems`` is empty when everything reconciles."""

    community: str
    period: str
    run_id: int
    members: list[MemberReconciliation] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def reconcile(session: Session, community: str, period: str) -> ReconcileReport:
    """Reconcile the latest posted run of a community and period with the ledger and the
    statements.

    Checks: per member ``0 <= shared <= offtake`` and ``injection = supplied + not shared``;
    over the community ``sum(shared) == sum(supplied)``; each member's Wh balance in the
    ledger equals ``shared - supplied`` of the run; each member's cents balance equals the
    net total of their latest statement.
    """
    run = session.scalars(
        select(SettlementRun)
        .where(
            SettlementRun.community == community,
            SettlementRun.period == period,
            SettlementRun.status == "posted",
        )
        .order_by(SettlementRun.id.desc())
        .limit(1)
    ).first()
    if run is None:
        raise NotFoundError(f"no posted settlement run for {community} {period}")
    report = ReconcileReport(community, period, run.id)
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for md in session.scalars(select(MemberDay).where(MemberDay.run_id == run.id)):
        s = sums[md.member_ref]
        s[0] += md.offtake_wh
        s[1] += md.shared_wh
        s[2] += md.injection_wh
        s[3] += md.supplied_wh
    # payments (a SEPA run: payout, collection) settle balances, they are not part of them
    settled = ("shared", "supplied", "energy_tax", "vat", "v2g", "fee")
    wh = ledger.balances(session, "wh", community=community, period=period)
    cents = ledger.balances(session, "cents", community=community, period=period, codes=settled)
    statements = member_totals(session, community, period)
    for ref in sorted(sums):
        off, shared, inj, sup = sums[ref]
        acc = ledger.member_account(ref)
        rec = MemberReconciliation(
            ref,
            off,
            shared,
            inj,
            sup,
            inj - sup,
            wh.get(acc, 0),
            cents.get(acc, 0),
            statements.get(ref),
        )
        report.members.append(rec)
        if not 0 <= shared <= off:
            report.problems.append(f"{ref}: shared {shared} Wh outside [0, offtake {off}]")
        if rec.not_shared_wh < 0:
            report.problems.append(f"{ref}: supplied {sup} Wh exceeds injection {inj}")
        if rec.ledger_wh != shared - sup:
            report.problems.append(
                f"{ref}: ledger {rec.ledger_wh} Wh != shared - supplied {shared - sup}"
            )
        if rec.statement_cents is not None and rec.statement_cents != rec.ledger_cents:
            report.problems.append(
                f"{ref}: statement total {rec.statement_cents} cents != ledger balance {rec.ledger_cents}"
            )
        if rec.statement_cents is None and rec.ledger_cents != 0:
            report.problems.append(
                f"{ref}: ledger balance {rec.ledger_cents} cents without a statement"
            )
    total_shared = sum(v[1] for v in sums.values())
    total_supplied = sum(v[3] for v in sums.values())
    if total_shared != total_supplied:
        report.problems.append(f"allocated {total_shared} Wh != supplied {total_supplied} Wh")
    return report


def verify(
    session: Session,
    mirror: checkpoints.Mirror | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ledger.VerifyReport:
    """Verify everything the ledger holds; with ``mirror``, against the signed checkpoints.

    Beyond the chains' own consistency, with checkpoints: a hash that differs from the signed
    one names the first rewritten transfer or record; a chain shorter than the newest
    checkpoint names the first missing one (head moved back); a chain longer names the first
    one no checkpoint covers (forged, or posted without a checkpoint).
    """
    report = ledger.verify(session, None if mirror is None else mirror.transfer, on_progress)
    if report.first_broken is not None:
        return report
    if mirror is not None and mirror.newest is not None:
        _missing(report, "transfer", report.checked, mirror.transfers_seq, mirror.newest["file"])
        if report.first_broken is not None:
            return report
    proof.verify_records(session, report, None if mirror is None else mirror.record)
    if report.first_broken is not None or mirror is None or mirror.newest is None:
        return report
    cp = mirror.newest["file"]
    _missing(report, "record", report.records_checked, mirror.records_seq, cp)
    for what, have, signed in (
        ("transfer", report.checked, mirror.transfers_seq),
        ("record", report.records_checked, mirror.records_seq),
    ):
        if have > signed:
            return report.broken(
                f"{what} {signed + 1}",
                f"not covered by a signed checkpoint (the newest, {cp}, ends at {signed}): "
                "forged, or posted without a checkpoint; check it, then `noaber ledger "
                "checkpoint`",
                signed + 1 if what == "transfer" else None,
            )
    if report.first_broken is not None:
        return report
    report.notes.append(
        f"{mirror.files} signed checkpoint(s) up to transfer {mirror.transfers_seq}, "
        f"record {mirror.records_seq}"
    )
    return report


def _missing(report: ledger.VerifyReport, what: str, have: int, signed: int, cp: str) -> None:
    if have < signed:
        report.broken(
            f"{what} {have + 1}",
            f"missing: the signed checkpoint {cp} covers the {what}s up to {signed} "
            "(removed, and the head moved back)",
            have + 1 if what == "transfer" else None,
        )


def sign_checkpoint(session: Session, directory: Path, data_dir: Path) -> Path | None:
    """Verify the ledger against the existing checkpoints, then sign a new one (None:
    nothing new since the last).

    Raises
    ------
    NoaberError
        If the ledger does not verify: a checkpoint never vouches for a broken ledger.
    """
    key = checkpoints.signing_key(data_dir)
    mirror = checkpoints.load(directory, key.public_key())
    # what lies beyond the newest checkpoint (verified in itself: the coverage check comes
    # last) is what this checkpoint is about to cover
    report = verify(session, mirror)
    beyond = report.reason is not None and report.reason.startswith("not covered")
    if not report.ok and not (beyond and not report.problems):
        raise NoaberError(
            f"refusing to sign a checkpoint: the ledger does not verify at "
            f"{report.first_broken}: {report.reason or '; '.join(report.problems)}"
        )
    return checkpoints.write(session, directory, key, mirror)


def after_posting(session: Session, data_dir: Path) -> tuple[list[Path], Path | None]:
    """What every posting path does after its transaction: publish the new period roots
    (:func:`settlement.proof.publish_roots`) and sign a checkpoint, in the data directory."""
    roots = proof.publish_roots(session, checkpoints.roots_dir(data_dir))
    cp = sign_checkpoint(session, checkpoints.checkpoints_dir(data_dir), data_dir)
    session.commit()
    return roots, cp
