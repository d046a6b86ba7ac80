"""Settlement in the demo: the demo week of Energiegemeenschap Exloo, settled and audited.

:func:`demo_step` (run by ``noaber demo`` after the core, gateway and optimizer steps) reads the
demo community (``noaber/services/demo/data/demo_community.yaml``: the dorpshuis, the cooperative's PV
roof and the three V2G EV owners of ``noaber/services/demo/data/demo_site.yaml``), settles every local
calendar month the demo week touches from the interval-reading store, posts each run to the
ledger and issues the members' statements, then verifies the ledger's hash chain and
reconciles each month. ISPs of a month outside the demo week have no readings; they count
as 0 Wh and do not appear on the statements (see :func:`settlement.community.read_meter_store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from energy.errors import NoaberError, ValidationError
from energy.timegrid import LOCAL_TZ, months_touched
from settlement.audit import after_posting, reconcile, verify
from settlement.community import CommunitySpec, load_community, read_meter_store
from settlement.models import Statement
from settlement.pricing import load_tariff
from settlement.settle import RunResult, period_isps, plan_energy, post_run

if TYPE_CHECKING:
    from noaber.services.demo import DemoContext

DEMO_COMMUNITY_FILE = Path(__file__).parent / "data" / "demo_community.yaml"
"""The demo community (meters are channel keys of the demo site)."""
STATEMENTS_PATH = "/statements"
"""Where the API serves statements (``/statements/<id>``: HTML; ``/csv``, ``/pdf``)."""


def demo_community() -> CommunitySpec:
    """The shipped demo community, parsed by :func:`settlement.community.load_community`."""
    return load_community(DEMO_COMMUNITY_FILE)


@dataclass(frozen=True)
class DemoSettlement:
    """What the demo step settled: one run per month, and the statements per member ref."""

    community: str
    runs: dict[str, RunResult]
    statements: dict[str, list[int]]
    skipped: dict[str, str]


def settle_demo(ctx: DemoContext, community: CommunitySpec | None = None) -> DemoSettlement:
    """Settle, post and audit every month of the demo week (see the module docstring).

    Raises
    ------
    NoaberError
        If the ledger does not verify or a month does not reconcile after posting (a broken
        invariant: the demo does not hide it).
    """
    community = community or demo_community()
    tariff = load_tariff(community.tariff_path)
    runs: dict[str, RunResult] = {}
    skipped: dict[str, str] = {}
    for period in months_touched(ctx.start, ctx.end):
        isps = period_isps(period)
        try:  # a demo run in a year the shipped tariff does not cover yet
            for day in (isps[0], isps[-1]):
                tariff.version_for_day(day.tz_convert(LOCAL_TZ).date())
        except ValidationError as exc:
            skipped[period] = str(exc)
            continue
        with ctx.sessions() as session:
            data = read_meter_store(session, community, isps)
        plan = plan_energy(community, period, data, tariff)
        runs[period] = post_run(ctx.sessions, plan)
    with ctx.sessions() as session:
        after_posting(session, ctx.data_dir)  # period roots published, a checkpoint signed
        report = verify(session)
        if not report.ok:
            raise NoaberError(
                f"demo ledger does not verify: {report.reason or '; '.join(report.problems)}"
            )
        for period in runs:
            rec = reconcile(session, community.name, period)
            if not rec.ok:
                raise NoaberError(
                    f"demo {community.name} {period} does not reconcile: {'; '.join(rec.problems)}"
                )
        statements: dict[str, list[int]] = {}
        for st in session.scalars(
            select(Statement)
            .where(Statement.community == community.name, Statement.period.in_(list(runs)))
            .order_by(Statement.period, Statement.id)
        ):
            statements.setdefault(st.member_ref, []).append(st.id)
    return DemoSettlement(community.name, runs, statements, skipped)


def demo_step(ctx: DemoContext) -> None:
    """Settle the demo week and note the runs and where each EV owner finds a statement."""
    result = settle_demo(ctx)
    for period, why in result.skipped.items():
        ctx.notes.append(f"settlement: {result.community} {period} not settled: {why}")
    for period, run in result.runs.items():
        ctx.notes.append(
            f"settlement: {result.community} {period} {run.status} (run {run.run_id}), "
            f"{run.n_transfers} transfers, statements {_number_span(run.statements)}"
        )
    owners = [lg for lg in ctx.logins if lg.member_ref in result.statements]
    if owners:
        where = ", ".join(
            f"{lg.username} {STATEMENTS_PATH}/{result.statements[lg.member_ref][-1]}"
            for lg in owners
            if lg.member_ref is not None
        )
        ctx.notes.append(
            f"settlement: statements for {'/'.join(lg.username for lg in owners)} at {where} "
            "(sign in; each member sees only their own, linked from the start page)"
        )


def _number_span(numbers: list[str]) -> str:
    if not numbers:
        return "none"
    return numbers[0] if len(numbers) == 1 else f"{numbers[0]}..{numbers[-1]}"
