"""Reconciliation of a period: metered = allocated + not shared, ledger = statements.

Checked again when a report is built, independent of the checks made while posting
(docs/SOURCES.md, Patterns: TigerBeetle: write the invariants down and check them twice).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.errors import NotFoundError
from settlement import ledger
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
