"""``noaber settle …``, ``noaber statement`` and ``noaber ledger …``."""

from __future__ import annotations

from pathlib import Path

import typer

from noaber.console import console

settle_app = typer.Typer(
    help="Settlement: allocate shared kWh and post settlement runs.", no_args_is_help=True
)


@settle_app.command("allocate")
def settle_allocate(
    community_file: Path = typer.Argument(..., help="Community YAML", exists=True, dir_okay=False),
    meters_file: Path = typer.Argument(
        ..., help="Meter data CSV (long or wide form)", exists=True, dir_okay=False
    ),
    out: Path = typer.Option(..., "--out", help="Allocation CSV to write"),
) -> None:
    """Allocate shared energy per ISP (pure computation, no database)."""
    from settlement.community import (
        allocate_community,
        allocation_frame,
        load_community,
        read_meter_csv,
    )

    community = load_community(community_file)
    data = read_meter_csv(meters_file, community)
    alloc = allocate_community(community, data)
    frame = allocation_frame(community, data, alloc)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    console.print(
        f"{len(data.isps)} ISPs, {len(community.members)} members: "
        f"{int(alloc.shared_wh.sum())} Wh shared of {int(alloc.injection_wh.sum())} Wh injected -> {out}"
    )


def _sessions():
    from energy.db import make_engine, session_factory, upgrade
    from energy.settings import get_settings

    engine = make_engine(get_settings().sqlalchemy_url)
    upgrade(engine)
    return session_factory(engine)


def _audit(sessions, action: str, target: str, detail: dict) -> None:
    """Record who ran ``action`` (the acting user: ``noaber --as`` or the OS user)."""
    from energy.audit import record
    from energy.db import transaction
    from noaber.cli.audit import actor

    with transaction(sessions) as session:
        record(session, actor(), action, target, detail)


@settle_app.command("run")
def settle_run(
    community_file: Path = typer.Option(
        ..., "--community", help="Community YAML", exists=True, dir_okay=False
    ),
    period: str = typer.Option(..., "--period", help="Month YYYY-MM (local time)"),
    meters: Path | None = typer.Option(
        None,
        "--meters",
        help="Meter CSV; default: the interval-reading store",
        exists=True,
        dir_okay=False,
    ),
    tariff: Path | None = typer.Option(
        None,
        "--tariff",
        help="Tariff YAML; default: the community's or the shipped 2026 tariff",
        exists=True,
        dir_okay=False,
    ),
    provisional: bool = typer.Option(
        False, "--provisional", help="Estimated data: post as pending"
    ),
    day_ahead: Path | None = typer.Option(
        None,
        "--day-ahead",
        help="Day-ahead prices CSV (timestamp,price_eur_per_kwh) for an indexed tariff",
        exists=True,
        dir_okay=False,
    ),
) -> None:
    """Settle a community's month: allocate, price and post to the ledger (idempotent)."""
    from noaber.console import progress
    from settlement.community import load_community, read_meter_csv, read_meter_store
    from settlement.pricing import load_tariff
    from settlement.settle import period_isps, plan_energy, post_run

    community = load_community(community_file)
    isps = period_isps(period)
    sessions = _sessions()
    if meters is not None:
        data = read_meter_csv(meters, community, isps)
    else:
        with sessions() as session:
            data = read_meter_store(session, community, isps)
    prices = None
    if day_ahead is not None:
        from settlement.pricing import read_day_ahead_csv

        prices = read_day_ahead_csv(day_ahead, isps)
    plan = plan_energy(
        community, period, data, load_tariff(tariff or community.tariff_path), prices
    )
    with progress(transient=True) as p:
        task = p.add_task("posting transfers", total=None)
        result = post_run(
            sessions,
            plan,
            provisional,
            on_chunk=lambda done, total: p.update(task, completed=done, total=total),
        )
    if not result.created:
        console.print(
            f"the ledger already holds what these data say (run {result.run_id}, "
            f"{result.status}); nothing posted"
        )
        return
    _audit(
        sessions,
        "settlement.run",
        f"{community.name}/{period}",
        {
            "run_id": result.run_id,
            "status": result.status,
            "transfers": result.n_transfers,
            "tariff": str(tariff or community.tariff_path or "shipped 2026"),
            "tariff_digest": plan.tariff.digest,
        },
    )
    console.print(
        f"run {result.run_id} {result.status}: {result.n_transfers} transfers "
        f"({result.n_reversals} reversals), statements: {', '.join(result.statements) or 'none'}; "
        f"meter data on {result.coverage_days} of {result.period_days} days"
    )
    if result.repriced:
        console.print(
            "energy tax re-priced (an earlier month moved the band): "
            + ", ".join(f"{p} (run {r})" for p, r in sorted(result.repriced.items()))
        )


@settle_app.command("post")
def settle_post(run_id: int = typer.Argument(..., help="A pending (provisional) run")) -> None:
    """Post a provisional run's pending transfers and issue its statements."""
    from settlement.settle import post_pending

    sessions = _sessions()
    r = post_pending(sessions, run_id)
    _audit(sessions, "settlement.post", str(run_id), {"transfers": r.n_transfers})
    console.print(
        f"run {r.run_id} posted: {r.n_transfers} transfers, statements: {', '.join(r.statements)}"
    )


@settle_app.command("void")
def settle_void(run_id: int = typer.Argument(..., help="A pending (provisional) run")) -> None:
    """Void a provisional run: its pending transfers will never count."""
    from settlement.settle import void_pending

    sessions = _sessions()
    r = void_pending(sessions, run_id)
    _audit(sessions, "settlement.void", str(run_id), {"transfers": r.n_transfers})
    console.print(f"run {r.run_id} voided ({r.n_transfers} pending transfers)")


@settle_app.command("sepa")
def settle_sepa(
    community_file: Path = typer.Option(
        ...,
        "--community",
        help="Community YAML (with its payments: bank account)",
        exists=True,
        dir_okay=False,
    ),
    period: str = typer.Option(..., "--period", help="Month YYYY-MM whose balances are paid"),
    execution_date: str = typer.Option(
        ..., "--date", help="Requested execution / collection date YYYY-MM-DD"
    ),
    out: Path = typer.Option(Path("."), "--out", help="Directory for the SEPA XML files"),
    again: bool = typer.Option(
        False, "--again", help="Write the files of the period's payment run again (no new run)"
    ),
) -> None:
    """Pay out and collect a period's balances: SEPA pain.001 and pain.008, in the ledger."""
    import datetime as dt

    from sqlalchemy import select

    from energy.errors import NoaberError, ValidationError
    from settlement.community import load_community
    from settlement.models import PaymentRun
    from settlement.sepa import payment_run, write_files

    community = load_community(community_file)
    try:
        when = dt.date.fromisoformat(execution_date)
    except ValueError:
        raise ValidationError(f"--date must be YYYY-MM-DD, got {execution_date!r}") from None
    stem = f"{community.name}-{period}"
    sessions = _sessions()
    if again:
        with sessions() as session:
            run = session.scalars(
                select(PaymentRun).where(
                    PaymentRun.community == community.name, PaymentRun.period == period
                )
            ).one_or_none()
            if run is None:
                raise NoaberError(f"no payment run for {community.name} {period}")
            paths = write_files(run, out, stem)
        console.print(f"payment run {run.id} written again: {', '.join(map(str, paths))}")
        return
    result = payment_run(sessions, community, period, when)
    paths = write_files(result, out, stem)
    paid = sum(p.amount_cents for p in result.payouts)
    collected = sum(p.amount_cents for p in result.collections)
    console.print(
        f"payment run {result.run_id}: {len(result.payouts)} payouts ({paid} cents), "
        f"{len(result.collections)} collections ({collected} cents) -> "
        f"{', '.join(map(str, paths)) or 'no files (nothing outstanding)'}"
    )


def statement_cmd(
    member: str = typer.Option(..., "--member", help="Member ref (pseudonymous id)"),
    period: str = typer.Option(..., "--period", help="Month YYYY-MM"),
    pdf: bool = typer.Option(False, "--pdf", help="Write a PDF (headless Chromium)"),
    as_csv: bool = typer.Option(False, "--csv", help="Write CSV"),
    out: Path | None = typer.Option(
        None, "--out", help="Output file (default: statement-<number>.<ext>)"
    ),
    locale: str = typer.Option("nl", "--locale", help="nl or en"),
) -> None:
    """Write a member's latest statement for a month as HTML (default), PDF or CSV."""
    from settlement.statements import find_statement, render_csv, render_html, render_pdf

    with _sessions()() as session:
        st = find_statement(session, member, period)
        ext = "pdf" if pdf else "csv" if as_csv else "html"
        target = out or Path(f"statement-{st.number}.{ext}")
        if pdf:
            render_pdf(session, st.id, target, locale)
        elif as_csv:
            target.write_text(render_csv(session, st.id), encoding="utf-8")
        else:
            target.write_text(render_html(session, st.id, locale), encoding="utf-8")
    kind = "correction statement" if st.kind == "correction" else "statement"
    console.print(f"{kind} {st.number} -> {target}")


ledger_app = typer.Typer(help="The settlement ledger: audit.", no_args_is_help=True)


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute the hash chain and every invariant; name the first broken transfer."""
    from energy.errors import NoaberError
    from settlement.ledger import verify

    with _sessions()() as session:
        report = verify(session)
    if report.first_broken_seq is not None:
        raise NoaberError(f"ledger broken at transfer {report.first_broken_seq}: {report.reason}")
    if report.problems:
        raise NoaberError("ledger invariant broken: " + "; ".join(report.problems))
    console.print(f"ledger ok: {report.checked} transfers, hash chain and invariants verified")


@ledger_app.command("reconcile")
def ledger_reconcile(
    community: str = typer.Option(..., "--community", help="Community name"),
    period: str = typer.Option(..., "--period", help="Month YYYY-MM"),
) -> None:
    """Per member: metered = allocated + not shared, ledger balances = statement totals."""
    from rich.table import Table

    from energy.errors import NoaberError
    from settlement.audit import reconcile

    with _sessions()() as session:
        report = reconcile(session, community, period)
    table = Table(title=f"{community} {period} (run {report.run_id})")
    for col in (
        "member",
        "offtake_wh",
        "shared_wh",
        "injection_wh",
        "supplied_wh",
        "not_shared_wh",
        "ledger_wh",
        "ledger_cents",
        "statement_cents",
    ):
        table.add_column(col, justify="left" if col == "member" else "right")
    for m in report.members:
        table.add_row(
            m.member_ref,
            *(
                str(v)
                for v in (
                    m.offtake_wh,
                    m.shared_wh,
                    m.injection_wh,
                    m.supplied_wh,
                    m.not_shared_wh,
                    m.ledger_wh,
                    m.ledger_cents,
                    m.statement_cents,
                )
            ),
        )
    console.print(table)
    if not report.ok:
        raise NoaberError("does not reconcile: " + "; ".join(report.problems))
    console.print("reconciled: metered = allocated + not shared; ledger = statements")


def register(app: typer.Typer) -> None:
    """Add ``settle``, ``statement`` and ``ledger`` to the root ``noaber`` app."""
    app.add_typer(settle_app, name="settle")
    app.command("statement")(statement_cmd)
    app.add_typer(ledger_app, name="ledger")
