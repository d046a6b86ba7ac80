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


def _sessions(settings=None):
    from energy.db import make_engine, session_factory, upgrade
    from energy.settings import get_settings

    engine = make_engine((settings or get_settings()).sqlalchemy_url)
    upgrade(engine)
    return session_factory(engine)


def _read_settings():
    """The settings of a read command (``statement``, ``ledger verify|root|reconcile|checkpoint``):
    the configured ones, or the demo's right after ``make demo`` when nothing else is
    configured (:func:`noaber.services.demo.builder.reading_demo`), said on stderr."""
    from energy.settings import get_settings
    from noaber.console import err_console
    from noaber.services.demo.builder import reading_demo

    settings = get_settings()
    demo = reading_demo(settings)
    if demo is None:
        return settings
    err_console.print(
        f"no database in {settings.data_dir}: reading the demo's in {demo.data_dir} "
        "(NOABER_DATA_DIR or NOABER_DATABASE_URL chooses another)"
    )
    return demo


def _audit(sessions, action: str, target: str, detail: dict) -> None:
    """Record who ran ``action`` (the acting user: ``noaber --as`` or the OS user)."""
    from energy.audit import record
    from energy.db import transaction
    from noaber.cli.audit import actor

    with transaction(sessions) as session:
        record(session, actor(), action, target, detail)


def _publish(sessions) -> None:
    """After a posting: publish the period roots and sign a checkpoint in the data dir."""
    from energy.settings import get_settings
    from settlement.audit import after_posting

    with sessions() as session:
        roots, cp = after_posting(session, get_settings().data_dir)
    for path in roots:
        console.print(f"period root published: {path}")
    if cp is not None:
        console.print(f"ledger checkpoint signed: {cp}")


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
    _publish(sessions)


@settle_app.command("post")
def settle_post(run_id: int = typer.Argument(..., help="A pending (provisional) run")) -> None:
    """Post a provisional run's pending transfers and issue its statements."""
    from settlement.settle import post_pending

    sessions = _sessions()
    r = post_pending(sessions, run_id)
    _audit(sessions, "settlement.post", str(run_id), {"transfers": r.n_transfers})
    _publish(sessions)
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
    _publish(sessions)
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
    _publish(sessions)
    paid = sum(p.amount_cents for p in result.payouts)
    collected = sum(p.amount_cents for p in result.collections)
    console.print(
        f"payment run {result.run_id}: {len(result.payouts)} payouts ({paid} cents), "
        f"{len(result.collections)} collections ({collected} cents) -> "
        f"{', '.join(map(str, paths)) or 'no files (nothing outstanding)'}"
    )


statement_app = typer.Typer(
    help="A member's statement (HTML, PDF, CSV or JSON with proofs), and its offline check.",
    invoke_without_command=True,
)


@statement_app.callback()
def statement_cmd(
    ctx: typer.Context,
    member: str | None = typer.Option(None, "--member", help="Member ref (pseudonymous id)"),
    period: str | None = typer.Option(
        None, "--period", help="Month YYYY-MM (default: the member's latest statement)"
    ),
    pdf: bool = typer.Option(False, "--pdf", help="Write a PDF (headless Chromium)"),
    as_csv: bool = typer.Option(False, "--csv", help="Write CSV"),
    as_json: bool = typer.Option(
        False, "--json", help="Write JSON with the inclusion proof of every line"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output file (default: statement-<number>.<ext>)"
    ),
    locale: str = typer.Option("nl", "--locale", help="nl or en"),
) -> None:
    """Write a member's latest statement for a month (default: the latest month) as HTML
    (default), PDF, CSV or JSON."""
    if ctx.invoked_subcommand is not None:
        return
    if member is None:
        raise typer.BadParameter("--member is required", param_hint="statement")
    from settlement.statements import (
        find_statement,
        render_csv,
        render_html,
        render_json,
        render_pdf,
    )

    with _sessions(_read_settings())() as session:
        st = find_statement(session, member, period)
        ext = "pdf" if pdf else "csv" if as_csv else "json" if as_json else "html"
        target = out or Path(f"statement-{st.number}.{ext}")
        if pdf:
            render_pdf(session, st.id, target, locale)
        elif as_csv:
            target.write_text(render_csv(session, st.id), encoding="utf-8")
        elif as_json:
            target.write_text(render_json(session, st.id), encoding="utf-8")
        else:
            target.write_text(render_html(session, st.id, locale), encoding="utf-8")
    kind = "correction statement" if st.kind == "correction" else "statement"
    console.print(f"{kind} {st.number} -> {target}")


@statement_app.command("verify")
def statement_verify(
    statement_file: Path = typer.Argument(
        ..., help="A statement's JSON export (`noaber statement --json`)", dir_okay=False
    ),
    root: str = typer.Option(
        ..., "--root", help="The period's Merkle root as published (64 hex digits)"
    ),
    days_root: str | None = typer.Option(
        None,
        "--days-root",
        help="The published root of the run's member days (EV discharge, green, charged kWh)",
    ),
) -> None:
    """Check a statement offline, with no database: every line is in the period's Merkle tree
    with this root, and the figures are the sums of the lines."""
    import re

    from energy.errors import NoaberError
    from settlement.statements import verify_json

    for hint, value in (("--root", root), ("--days-root", days_root)):
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise typer.BadParameter(f"must be 64 hex digits, got {value!r}", param_hint=hint)
    if not statement_file.is_file():
        raise NoaberError(f"{statement_file}: no such file")
    doc, problems = verify_json(statement_file.read_text(encoding="utf-8"), root, days_root)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NoaberError(f"{statement_file}: does not verify: {problems[0]}{more}")
    st = doc["statement"]
    console.print(
        f"statement {st['number']} verified: {len(doc['transfers'])} transfers in the tree of "
        f"{doc['merkle']['tree_size']} with root {root.lower()}; every kWh and money figure "
        "is their sum; "
        + (
            f"EV discharge, green and charged kWh are the {len(doc['member_days'])} member "
            f"days in the tree with root {days_root.lower()}"
            if days_root
            else "EV discharge, green and charged kWh: give --days-root to check them"
        )
    )


ledger_app = typer.Typer(help="The settlement ledger: audit.", no_args_is_help=True)


@ledger_app.command("verify")
def ledger_verify(
    checkpoints: Path | None = typer.Option(
        None,
        "--checkpoints",
        help="Directory of signed checkpoints (default: none; `ledger checkpoint` writes "
        "<data_dir>/ledger/checkpoints)",
        file_okay=False,
    ),
) -> None:
    """Recompute the hash chains and every invariant; with --checkpoints, check them against
    the signed checkpoints too. Names the first broken record."""
    from energy.errors import NoaberError
    from noaber.console import progress
    from settlement import checkpoints as cps
    from settlement.audit import verify

    settings = _read_settings()
    mirror = None
    if checkpoints is not None:
        if not checkpoints.is_dir():
            raise NoaberError(f"--checkpoints {checkpoints}: no such directory")
        key = cps.signing_key(settings.data_dir)
        mirror = cps.load(checkpoints, key.public_key())
    with _sessions(settings)() as session, progress(transient=True) as p:
        task = p.add_task("verifying transfers", total=None)
        report = verify(session, mirror, on_progress=lambda n: p.update(task, completed=n))
    if report.first_broken is not None:
        raise NoaberError(f"ledger broken at {report.first_broken}: {report.reason}")
    if report.problems:
        raise NoaberError("ledger invariant broken: " + "; ".join(report.problems))
    console.print(
        f"ledger ok: {report.checked} transfers, {report.records_checked} sealed records, "
        "hash chains and invariants verified" + (f"; {report.notes[0]}" if report.notes else "")
    )


@ledger_app.command("checkpoint")
def ledger_checkpoint(
    directory: Path | None = typer.Option(
        None, "--dir", help="Checkpoint directory (default <data_dir>/ledger/checkpoints)"
    ),
) -> None:
    """Verify the ledger, then sign its chains' heads into a checkpoint outside the database."""
    from settlement import checkpoints as cps
    from settlement.audit import sign_checkpoint

    settings = _read_settings()
    data_dir = settings.data_dir
    target = directory or cps.checkpoints_dir(data_dir)
    with _sessions(settings)() as session:
        path = sign_checkpoint(session, target, data_dir)
        session.commit()
    console.print(f"checkpoint signed: {path}" if path else "nothing new since the last checkpoint")


@ledger_app.command("root")
def ledger_root(
    community: str = typer.Option(..., "--community", help="Community name"),
    period: str = typer.Option(..., "--period", help="Month YYYY-MM"),
) -> None:
    """Print the period's Merkle roots (every posting that grew the period adds one)."""
    from sqlalchemy import select

    from energy.errors import NotFoundError
    from settlement.models import PeriodRoot

    with _sessions(_read_settings())() as session:
        roots = list(
            session.scalars(
                select(PeriodRoot)
                .where(PeriodRoot.community == community, PeriodRoot.period == period)
                .order_by(PeriodRoot.tree_size)
            )
        )
    if not roots:
        raise NotFoundError(f"no Merkle root for {community} {period}")
    for r in roots:
        console.print(
            f"{r.root_hash}  {r.tree_size} transfers (run {r.run_id}, up to seq {r.max_seq})"
        )


@ledger_app.command("reconcile")
def ledger_reconcile(
    community: str = typer.Option(..., "--community", help="Community name"),
    period: str = typer.Option(..., "--period", help="Month YYYY-MM"),
) -> None:
    """Per member: metered = allocated + not shared, ledger balances = statement totals."""
    from rich.table import Table

    from energy.errors import NoaberError
    from settlement.audit import reconcile

    with _sessions(_read_settings())() as session:
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
    app.add_typer(statement_app, name="statement")
    app.add_typer(ledger_app, name="ledger")
