"""``noaber meetkoffer``: create, import, analyze, savings, report.

Registered on the root app by :func:`register`. The commands work on the database and
sample store of the current settings (``NOABER_DATA_DIR`` / ``NOABER_DATABASE_URL``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from energy.errors import ValidationError
from noaber.console import console, progress

app = typer.Typer(
    help="The Meetkoffer: measurement campaigns at firms, findings and verified savings.",
    no_args_is_help=True,
)


def _context() -> tuple[Any, Any]:
    from energy.db import make_engine, session_factory, upgrade
    from energy.samples import SampleStore
    from energy.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    return session_factory(engine), SampleStore(settings.samples_dir)


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="Campaign description (YAML)", exists=True)],
) -> None:
    """Create a campaign (firm, site, equipment channels) from a YAML description."""
    from meetkoffer.campaign import create_campaign_from_file

    sessions, _ = _context()
    with sessions.begin() as s:
        c = create_campaign_from_file(s, file)
        console.print(f"campaign {c.name}: {len(c.equipment)} equipment channels")


IMPORT_KINDS = ("samples", "production", "temperature", "billing")


@app.command("import")
def import_(
    campaign: Annotated[str, typer.Argument(help="Campaign name")],
    file: Annotated[Path, typer.Argument(help="CSV file", exists=True, dir_okay=False)],
    kind: Annotated[
        str,
        typer.Option(
            help="samples (timestamp,channel,value,unit or timestamp,<channel> [unit],...: "
            "power, counter readings or interval energy as the channel is declared), "
            "production, temperature or billing (start,end,value,unit in kWh)"
        ),
    ] = "samples",
    equipment: Annotated[
        str | None, typer.Option(help="billing: the equipment billed (default the incomer)")
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace stored values the file changes (kept in the audit trail); without "
            "it such an import is refused and says what it would change",
        ),
    ] = False,
) -> None:
    """Import a Meetkoffer CSV export, production, outdoor temperature or bills; a bad file
    changes nothing."""
    from meetkoffer import campaign as cp

    if kind not in IMPORT_KINDS:
        raise ValidationError(f"--kind must be one of {', '.join(IMPORT_KINDS)}, got {kind!r}")
    if equipment is not None and kind != "billing":
        raise ValidationError("--equipment is for --kind billing")
    sessions, store = _context()
    with sessions.begin() as s:
        c = cp.get_campaign(s, campaign)
        if kind == "samples":
            notes: list[str] = []
            with progress(transient=True) as p:  # a month at 1 Hz takes a while
                p.add_task(f"importing {file.name} (parse, check, store)", total=None)
                written = cp.import_samples(s, store, c, file, replace=replace, notes=notes)
            for note in notes:
                console.print(f"[cyan]note:[/cyan] {note}")
            for name, n in written.items():
                console.print(f"{name}: {n} new samples")
        elif kind == "production":
            console.print(f"{cp.import_production(s, c, file, replace=replace)} production records")
        elif kind == "temperature":
            n = cp.import_temperature(s, c, file, replace=replace)
            console.print(f"{n} temperature readings")
        else:
            n = cp.import_billing(s, c, file, equipment=equipment, replace=replace)
            console.print(f"{n} billing periods new or changed")


def _period_option(frm: str | None, to: str | None) -> tuple[Any, Any] | None:
    """``--from``/``--to`` as a UTC period (ISO dates are local midnights); both or neither."""
    from meetkoffer import campaign as cp

    if frm is None and to is None:
        return None
    if frm is None or to is None:
        raise ValidationError("give both --from and --to (or neither for the whole campaign)")
    return cp.parse_period(f"{frm}..{to}", "--from/--to")


@app.command("analyze")
def analyze(
    campaign: Annotated[str, typer.Argument(help="Campaign name")],
    emission_factors: Annotated[
        Path | None, typer.Option(help="Emission factors YAML (default: the shipped file)")
    ] = None,
    frm: Annotated[
        str | None,
        typer.Option("--from", help="Analyse from this local date (or time with offset) on"),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="... up to (excluding) this one")] = None,
) -> None:
    """Aggregate raw samples to 15-minute readings, run the analyses and rank the findings.

    The aggregation is stored first (its own transaction); an analysis that cannot run is
    named with its reason, and the others are stored.
    """
    from rich.table import Table

    from meetkoffer import campaign as cp
    from meetkoffer.emissions import load_emission_factors

    factors = load_emission_factors(emission_factors)
    period = _period_option(frm, to)
    sessions, store = _context()
    with progress(transient=True) as p:
        task = p.add_task("aggregating samples", total=2)
        with sessions.begin() as s:
            cp.aggregate(s, store, cp.get_campaign(s, campaign))
        p.update(task, advance=1, description="findings")
        with sessions.begin() as s:
            c = cp.get_campaign(s, campaign)
            _, found = cp.analyze(s, c, factors, period=period)
            skipped = cp.skipped_analyses(c)
            totals = dict((c.analysis or {}).get("totals", {}))
        p.update(task, advance=1)
    table = Table(title=f"findings of {campaign}")
    for col in ("#", "opportunity", "kWh/yr", "EUR/yr", "t CO2/yr"):
        table.add_column(col, justify="right" if col != "opportunity" else "left")
    for f in found:
        table.add_row(
            str(f.rank),
            f.title if f.counted else f"[dim]{f.title} (key figure, not in the total)[/dim]",
            f"{f.energy_kwh_per_year:,.0f}",
            f"{f.cost_eur_per_year:,.0f}",
            f"{f.co2_t_per_year:,.2f}",
        )
    if totals:
        table.add_row(
            "",
            "total (each kWh counted once)",
            f"{totals['energy_kwh_per_year']:,.0f}",
            f"{totals['cost_eur_per_year']:,.0f}",
            f"{totals['co2_t_per_year']:,.2f}",
        )
    console.print(table)
    for k in skipped:
        of = f" of {k.equipment}" if k.equipment else ""
        console.print(f"[yellow]not analysed:[/yellow] {k.analysis}{of}: {k.reason}")


@app.command("savings")
def savings(
    campaign: Annotated[str, typer.Argument(help="Campaign name")],
    baseline: Annotated[str, typer.Option(help="Baseline period FROM..TO (dates are local)")],
    reporting: Annotated[str, typer.Option(help="Reporting period FROM..TO")],
    option: Annotated[
        str, typer.Option(help="IPMVP option: C (facility) or B (one machine)")
    ] = "C",
    equipment: Annotated[str | None, typer.Option(help="The machine for Option B")] = None,
    model: Annotated[
        str,
        typer.Option(
            help="daily (regression on local days: production, day of week, degree days; "
            "also 'regression'), hourly (hour-of-week terms, plus degree hours with "
            "--heating-bp-c/--cooling-bp-c; ASHRAE 14 hourly limits), caltrack (CalTRACK "
            "2.0 daily change-point model) or caltrack-billing (CalTRACK billing model on "
            "monthly bills, --bills)"
        ),
    ] = "daily",
    adjust: Annotated[
        list[str] | None,
        typer.Option(help="Non-routine adjustment KWH:REASON (repeatable)"),
    ] = None,
    emission_factors: Annotated[Path | None, typer.Option(help="Emission factors YAML")] = None,
    no_production: Annotated[
        bool, typer.Option("--no-production", help="Leave production out of the regression")
    ] = False,
    no_time_of_week: Annotated[
        bool,
        typer.Option(
            "--no-time-of-week",
            help="Leave the day-of-week (daily) or hour-of-week (hourly) terms out",
        ),
    ] = False,
    heating_bp_c: Annotated[
        float | None, typer.Option(help="Add an HDD term with this balance point [degC]")
    ] = None,
    cooling_bp_c: Annotated[
        float | None, typer.Option(help="Add a CDD term with this balance point [degC]")
    ] = None,
    bills: Annotated[
        Path | None,
        typer.Option(
            help="Monthly bills of the incomer, CSV start,end,kwh (caltrack-billing; default: the imported bills)",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Verify the savings of a measure (avoided energy, EUR, t CO2, ASHRAE 14, FSU).

    The result is stored frozen as version 1 of a new verification (see `verifications`)."""
    from meetkoffer import campaign as cp
    from meetkoffer import mv
    from meetkoffer.emissions import load_emission_factors

    kinds = {
        "daily": ("regression", "daily"),
        "regression": ("regression", "daily"),
        "hourly": ("regression", "hourly"),
        "caltrack": ("caltrack", "daily"),
        "caltrack-billing": ("caltrack_billing", "monthly"),
    }
    if model not in kinds:
        raise ValidationError(
            f"--model must be daily, hourly, caltrack or caltrack-billing, got {model!r}"
        )
    if bills is not None and model != "caltrack-billing":
        raise ValidationError("--bills goes with --model caltrack-billing (and only with it)")
    model_kind, interval = kinds[model]
    adjustments = []
    for a in adjust or []:
        kwh, _, reason = a.partition(":")
        try:
            adjustments.append(mv.NonRoutineAdjustment(float(kwh), reason.strip()))
        except ValueError as exc:
            raise ValidationError(f"--adjust {a!r}: {exc} (use KWH:REASON)") from None
    factors = load_emission_factors(emission_factors)
    sessions, _ = _context()
    with sessions.begin() as s:
        c = cp.get_campaign(s, campaign)
        periods = (
            cp.parse_period(baseline, "--baseline"),
            cp.parse_period(reporting, "--reporting"),
        )
        if model == "caltrack-billing":
            # the bills of --bills, else those imported with `meetkoffer import --kind billing`
            table = _read_bills(bills) if bills is not None else cp.billing_periods(s, c)
            if table.empty:
                raise ValidationError(
                    f"campaign {c.name!r} has no bills: import them with `noaber meetkoffer "
                    "import --kind billing` or give --bills"
                )
            res, rec = cp.verify_billing(
                s, c, table, *periods, adjustments=adjustments, factors=factors
            )
        else:
            res, rec = cp.verify(
                s,
                c,
                *periods,
                option=option.upper(),
                equipment=equipment,
                model=model_kind,
                interval=interval,
                adjustments=adjustments,
                factors=factors,
                production=False if no_production else None,
                time_of_week=not no_time_of_week,
                heating_bp_c=heating_bp_c,
                cooling_bp_c=cooling_bp_c,
            )
        m = res.metrics
        console.print(
            f"verification {rec.verification_id} version {rec.version} (savings #{rec.id}, "
            f"data {rec.data_digest[:12] if rec.data_digest else '-'})"
        )
        console.print(
            f"savings #{rec.id} (Option {res.option}, {res.interval} {res.model}): avoided {res.avoided_kwh:,.0f} kWh "
            f"± {res.uncertainty_kwh_90:,.0f} kWh (90 %), EUR {res.avoided_eur:,.0f}, "
            f"{res.avoided_co2_t:,.2f} t CO2"
        )
        console.print(
            f"ASHRAE 14 ({m.interval}, n={m.n}): CV(RMSE) {m.cv_rmse:.1%} (max "
            f"{m.cv_rmse_max:.0%}), NMBE {m.nmbe:.2%} (max {m.nmbe_max:.0%}), R² {m.r2:.3f} -> "
            f"{'pass' if m.passes else 'FAIL'}; FSU {res.fsu_68:.0%} (68 %), {res.fsu_90:.0%} (90 %)"
        )
        for w in res.warnings:
            console.print(f"[yellow]warning:[/yellow] {w}")


def _read_bills(path: Path) -> Any:
    """Bills ``start,end,kwh`` from a CSV (until the billing importer supplies them)."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read bills: {exc}", str(path)) from None


@app.command("verifications")
def verifications(
    campaign: Annotated[str, typer.Argument(help="Campaign name")],
    verification: Annotated[
        int | None, typer.Option("--id", help="Show the versions of this verification")
    ] = None,
) -> None:
    """List the campaign's savings verifications, or the frozen versions of one (what
    changed from version to version, and a withdrawal)."""
    from rich.table import Table
    from sqlalchemy import select

    from meetkoffer import campaign as cp
    from meetkoffer import verifications as vf
    from meetkoffer.models import Verification

    sessions, _ = _context()
    with sessions() as s:
        c = cp.get_campaign(s, campaign)
        if verification is None:
            table = Table(title=f"savings verifications of {campaign}")
            for col in ("id", "versions", "model", "avoided kWh", "withdrawn"):
                table.add_column(col)
            vs = s.scalars(
                select(Verification)
                .where(Verification.campaign_id == c.id)
                .order_by(Verification.id)
            ).all()
            for v in vs:
                last = vf.latest(v)
                table.add_row(
                    str(v.id),
                    str(len(v.versions)),
                    last.model,
                    f"{last.avoided_kwh:,.0f}",
                    f"{v.withdrawn_at:%Y-%m-%d} {v.withdrawn_by}: {v.withdrawn_reason}"
                    if v.withdrawn_at
                    else "",
                )
            console.print(table)
            return
        v = cp.verification_of(s, c, verification)
        table = Table(title=f"verification {v.id} of {campaign}")
        for col in ("version", "savings #", "frozen (UTC)", "avoided kWh", "change kWh", "changed"):
            table.add_column(col)
        for row in vf.version_rows(v):
            delta = row["avoided_kwh_delta"]
            table.add_row(
                str(row["version"]),
                str(row["id"]),
                f"{row['created_at']:%Y-%m-%d %H:%M}",
                f"{row['avoided_kwh']:,.1f}",
                "" if delta is None else f"{delta:+,.1f}",
                ", ".join(row["changed"]),
            )
        console.print(table)
        if v.withdrawn_at:
            console.print(
                f"[yellow]withdrawn[/yellow] {v.withdrawn_at:%Y-%m-%d %H:%M} UTC by "
                f"{v.withdrawn_by}: {v.withdrawn_reason}"
            )


@app.command("recompute")
def recompute(
    campaign: Annotated[str, typer.Argument(help="Campaign name")],
    savings_id: Annotated[
        int, typer.Argument(help="A savings record (version) of the verification")
    ],
    emission_factors: Annotated[Path | None, typer.Option(help="Emission factors YAML")] = None,
    bills: Annotated[
        Path | None,
        typer.Option(help="The bills again (billing verifications)", exists=True, dir_okay=False),
    ] = None,
) -> None:
    """Recompute a verification on the current data: a new frozen version if the data or
    parameters changed (saying what changed), nothing otherwise."""
    from meetkoffer import campaign as cp
    from meetkoffer.emissions import load_emission_factors
    from meetkoffer.models import SavingsRecord

    factors = load_emission_factors(emission_factors)
    sessions, _ = _context()
    with sessions.begin() as s:
        c = cp.get_campaign(s, campaign)
        rec = s.get(SavingsRecord, savings_id)
        if rec is None or rec.campaign_id != c.id:
            raise ValidationError(f"campaign {campaign!r} has no savings record {savings_id}")
        out = cp.recompute(s, c, rec, factors, _read_bills(bills) if bills else None)
        r = out.record
        if not out.created:
            console.print(
                f"verification {r.verification_id}: data and parameters unchanged; version "
                f"{r.version} (savings #{r.id}) stands"
            )
            return
        ch = out.changes
        console.print(
            f"verification {r.verification_id}: version {r.version} (savings #{r.id}) from "
            f"version {ch['from_version']}"
        )
        if "data" in ch:
            for part in ("baseline", "reporting"):
                if part in ch["data"]:
                    a, b = ch["data"][part]["energy_kwh"]
                    console.print(f"  {part} data changed: {a:,.1f} -> {b:,.1f} kWh")
        for k, (a, b) in (ch.get("parameters") or {}).items():
            console.print(f"  parameter {k}: {a} -> {b}")
        d = ch["result"]["avoided_kwh"]
        console.print(f"  avoided {d['old']:,.1f} -> {d['new']:,.1f} kWh ({d['delta']:+,.1f})")


@app.command("withdraw")
def withdraw(
    campaign: Annotated[str, typer.Argument(help="Campaign name")],
    verification: Annotated[int, typer.Argument(help="Verification id")],
    reason: Annotated[str, typer.Option(help="Why it is withdrawn")],
    by: Annotated[str, typer.Option(help="Who withdraws it")],
) -> None:
    """Withdraw a verification (kept and shown as withdrawn; never rewritten or deleted)."""
    from meetkoffer import campaign as cp
    from noaber.cli.audit import actor

    sessions, _ = _context()
    with sessions.begin() as s:
        c = cp.get_campaign(s, campaign)
        v = cp.withdraw_verification(s, c, verification, reason, by, actor())
        console.print(f"verification {v.id} withdrawn by {v.withdrawn_by}: {v.withdrawn_reason}")


@app.command("report")
def report(
    campaign: Annotated[str, typer.Argument(help="Campaign name")],
    out: Annotated[Path | None, typer.Option(help="Output directory")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print a PDF with Chromium")] = False,
    locale: Annotated[str, typer.Option(help="nl or en")] = "nl",
    emission_factors: Annotated[Path | None, typer.Option(help="Emission factors YAML")] = None,
    frm: Annotated[
        str | None, typer.Option("--from", help="Analyse from this local date on (with --to)")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="... up to (excluding) this one")] = None,
) -> None:
    """Write the campaign report and one per stored savings verification (HTML, CSV, PDF)."""
    from meetkoffer import campaign as cp
    from meetkoffer.emissions import load_emission_factors

    factors = load_emission_factors(emission_factors)
    sessions, _ = _context()
    out = out or Path("reports") / campaign
    with sessions.begin() as s, progress(transient=True) as p:
        c = cp.get_campaign(s, campaign)
        task = p.add_task("campaign report", total=1 + len(c.savings))
        rep = cp.render_campaign_report(
            s, c, factors, locale, reanalyze=True, period=_period_option(frm, to)
        )
        paths = rep.write(out, pdf=pdf, stem="campaign")
        p.update(task, advance=1)
        for rec in c.savings:
            srep = cp.render_savings_report(s, c, rec, factors, locale)
            paths |= {
                f"savings-{rec.id}:{k}": v
                for k, v in srep.write(out, pdf=pdf, stem=f"savings-{rec.id}").items()
            }
            p.update(task, advance=1)
    for k, v in paths.items():
        if ":csv:" not in k and not k.startswith("csv:"):
            console.print(f"{k}: {v}")
    console.print(
        f"and {sum(':csv:' in k or k.startswith('csv:') for k in paths)} CSV tables in {out}"
    )


def register(root: typer.Typer) -> None:
    """Add the ``meetkoffer`` group to the root ``noaber`` app."""
    root.add_typer(app, name="meetkoffer")
