"""Member statements: read from the ledger, rendered as HTML, PDF and CSV.

A statement (numbered gap-free when its run is posted) shows, per local day of the month,
the kWh a member received from the community and delivered to it (EV discharge included),
the green share of what an EV delivered, and the money: shared energy bought and sold,
energy tax, VAT, V2G compensation and the fee. Its figures are read from the ledger as it
stood when the statement was issued (transfers up to ``max_seq``), so it can be reproduced at
any time; the total is checked against the member's ledger balance before rendering. A
correction statement refers to the statement it corrects and shows the differences.

Personal data (the member's name) is joined from ``MemberPersonal`` here, only when
rendering; it never enters the ledger.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from energy.errors import NoaberError, NotFoundError
from energy.models import MemberKind
from energy.timegrid import month_bounds
from settlement import ledger, proof
from settlement.models import MemberDay, PeriodRoot, Statement, Transfer

CSV_COLUMNS = (
    "date",
    "received_wh",
    "delivered_wh",
    "ev_discharge_wh",
    "green_delivered_wh",
    "charged_wh",
    "green_supplied_wh",
    "shared_energy_cents",
    "energy_tax_cents",
    "vat_cents",
    "delivered_energy_cents",
    "v2g_compensation_cents",
    "fee_cents",
    "net_cents",
)


@dataclass
class DayLine:
    """One day of a statement: energy [Wh] and money [cents]."""

    day: dt.date
    received_wh: int = 0
    delivered_wh: int = 0
    ev_discharge_wh: int = 0
    green_delivered_wh: int = 0
    #: All the member's meters took in (an EV: what it charged) [Wh].
    charged_wh: int = 0
    #: Of ``delivered_wh``, what was green (community solar stored and given back) [Wh].
    green_supplied_wh: int = 0
    shared_energy_cents: int = 0
    energy_tax_cents: int = 0
    vat_cents: int = 0
    delivered_energy_cents: int = 0
    v2g_compensation_cents: int = 0
    fee_cents: int = 0

    @property
    def net_cents(self) -> int:
        """What the member is owed (positive) or owes (negative) for the day [cents]."""
        return (
            self.delivered_energy_cents
            + self.v2g_compensation_cents
            - self.shared_energy_cents
            - self.energy_tax_cents
            - self.vat_cents
            - self.fee_cents
        )

    @property
    def received_price_eur_per_kwh(self) -> Decimal | None:
        """Price of the shared energy received on this line [EUR/kWh], excl. tax and VAT."""
        return _per_kwh(self.shared_energy_cents, self.received_wh)

    @property
    def delivered_price_eur_per_kwh(self) -> Decimal | None:
        """Price received for the energy delivered on this line [EUR/kWh]."""
        return _per_kwh(self.delivered_energy_cents, self.delivered_wh)

    @property
    def v2g_rate_eur_per_kwh(self) -> Decimal | None:
        """V2G compensation per kWh the EV discharged on this line [EUR/kWh]."""
        return _per_kwh(self.v2g_compensation_cents, self.ev_discharge_wh)

    @property
    def charged_green_share(self) -> float | None:
        """Share of what was charged that came from community solar [-]."""
        return self.received_wh / self.charged_wh if self.charged_wh > 0 else None

    @property
    def delivered_green_share(self) -> float | None:
        """Share of what was delivered that was green [-]."""
        return self.green_supplied_wh / self.delivered_wh if self.delivered_wh > 0 else None


def _per_kwh(cents: int, energy_wh: int) -> Decimal | None:
    """cents / Wh as EUR/kWh (x 10), 4 decimals, half to even; None without energy."""
    if energy_wh <= 0:
        return None
    return (Decimal(cents * 10) / energy_wh).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)


@dataclass(frozen=True)
class BuildingTotals:
    """What the community's EVs (members who are persons) did in the period [Wh], for the
    building manager's statement: no person is named."""

    evs: int
    charged_from_community_wh: int
    delivered_wh: int
    green_delivered_wh: int


@dataclass
class StatementData:
    """Everything a rendered statement shows."""

    statement: Statement
    member_name: str | None
    days: list[DayLine]
    total: DayLine
    ledger_balance_cents: int
    corrects: Statement | None = None
    previous_total: DayLine | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: Local days of the period with a reading of the member's meters, and all its days.
    days_with_data: int = 0
    period_days: int = 0
    #: The period's RFC 6962 Merkle root at this statement (hex) and its tree size.
    merkle_root: str | None = None
    merkle_tree_size: int = 0
    #: The root of the member days of the statement's run (EV discharge, green, charged).
    days_root: str | None = None
    #: A building's (organisation's) statement: the community's EV totals of the period.
    building: BuildingTotals | None = None

    @property
    def coverage(self) -> float:
        """Days with meter data / days in the period [-]."""
        return self.days_with_data / self.period_days if self.period_days else 0.0

    @property
    def partial(self) -> bool:
        """True if some days of the period had no meter data (a month in progress, a gap)."""
        return self.days_with_data < self.period_days

    @property
    def green_share(self) -> float | None:
        """Green share of the EV's discharge [-], None without discharge."""
        if self.total.ev_discharge_wh <= 0:
            return None
        return self.total.green_delivered_wh / self.total.ev_discharge_wh

    @property
    def received_price_eur_per_kwh(self) -> Decimal | None:
        """Average price paid for shared energy received [EUR/kWh], excl. tax and VAT."""
        if self.total.received_wh <= 0:
            return None
        return Decimal(self.total.shared_energy_cents * 10) / self.total.received_wh

    @property
    def delivered_price_eur_per_kwh(self) -> Decimal | None:
        """Average price received for energy delivered to the community [EUR/kWh]."""
        if self.total.delivered_wh <= 0:
            return None
        return Decimal(self.total.delivered_energy_cents * 10) / self.total.delivered_wh

    @property
    def difference(self) -> DayLine | None:
        """This statement's totals minus those of the statement it corrects."""
        if self.previous_total is None:
            return None
        out = DayLine(self.total.day)
        for f in CSV_COLUMNS[1:-1]:
            setattr(out, f, getattr(self.total, f) - getattr(self.previous_total, f))
        return out


_MONEY_FIELD = {
    "shared": "shared_energy_cents",
    "energy_tax": "energy_tax_cents",
    "vat": "vat_cents",
    "supplied": "delivered_energy_cents",
    "v2g": "v2g_compensation_cents",
    "fee": "fee_cents",
}
_WH_FIELD = {"shared": "received_wh", "supplied": "delivered_wh"}


_MD_COLUMNS = (
    MemberDay.day,
    MemberDay.discharge_wh,
    MemberDay.green_discharge_wh,
    MemberDay.offtake_wh,
    MemberDay.green_supplied_wh,
)


def _transfer_rows(session: Session, st: Statement) -> list[tuple[Any, ...]]:
    """(seq, ledger, code, day, amount, debit, credit) of a statement's counting transfers."""
    return list(
        session.execute(
            select(
                Transfer.seq,
                Transfer.ledger,
                Transfer.code,
                Transfer.day,
                Transfer.amount,
                Transfer.debit_account,
                Transfer.credit_account,
            ).where(
                Transfer.member_ref == st.member_ref,
                Transfer.community == st.community,
                Transfer.period == st.period,
                Transfer.flags.in_(ledger.COUNTING_FLAGS),
                Transfer.seq <= st.max_seq,
            )
        ).all()
    )


def _member_day_rows(session: Session, run_id: int, ref: str) -> list[tuple[Any, ...]]:
    return list(
        session.execute(
            select(*_MD_COLUMNS).where(MemberDay.run_id == run_id, MemberDay.member_ref == ref)
        ).all()
    )


def _lines(session: Session, st: Statement) -> tuple[list[DayLine], DayLine]:
    """Day lines of a statement from the ledger (transfers up to ``max_seq``)."""
    return _lines_of(
        st, _transfer_rows(session, st), _member_day_rows(session, st.run_id, st.member_ref)
    )


def _lines_of(
    st: Statement, rows: list[tuple[Any, ...]], member_days: list[tuple[Any, ...]]
) -> tuple[list[DayLine], DayLine]:
    """Day lines from a statement's transfer rows (:func:`_transfer_rows`, any with
    ``seq <= max_seq`` count) and its run's member-day rows."""
    from settlement.settle import code_accounts

    debit_of = {
        (led, code): code_accounts(code, led, st.community, st.member_ref)[0]
        for led, codes in (("wh", _WH_FIELD), ("cents", _MONEY_FIELD))
        for code in codes
    }
    names = {("wh", c): f for c, f in _WH_FIELD.items()}
    names.update({("cents", c): f for c, f in _MONEY_FIELD.items()})
    max_seq = st.max_seq
    sums: dict[dt.date, dict[str, int]] = {}
    for seq, led, code, day, amount, debit, _ in rows:
        if seq > max_seq:
            continue
        key = (led, code)
        name = names[key]
        line = sums.get(day)
        if line is None:
            line = sums[day] = {}
        # a reversal, or an amount that flowed against the code's direction, counts negative
        line[name] = line.get(name, 0) + (amount if debit == debit_of[key] else -amount)
    for day, discharge, green, offtake, green_supplied in member_days:
        line = sums.setdefault(day, {})
        line["ev_discharge_wh"] = discharge
        line["green_delivered_wh"] = green
        line["charged_wh"] = offtake
        line["green_supplied_wh"] = green_supplied
    days = [DayLine(d, **sums[d]) for d in sorted(sums)]
    total = DayLine(
        days[0].day if days else dt.date.min,
        **{f: sum(v.get(f, 0) for v in sums.values()) for f in CSV_COLUMNS[1:-1]},
    )
    return days, total


def _balance_of(st: Statement, rows: list[tuple[Any, ...]]) -> int:
    """The member's cents balance over the rows (credits - debits): the second method the
    statement's total is checked against."""
    account = ledger.member_account(st.member_ref)
    out = 0
    for seq, led, _, _, amount, debit, credit in rows:
        if led != "cents" or seq > st.max_seq:
            continue
        out += amount if credit == account else -amount if debit == account else 0
    return out


def statement_data(session: Session, statement_id: int) -> StatementData:
    """Load a statement and its figures; checks its total against the ledger balance.

    Raises
    ------
    NotFoundError
        No such statement.
    NoaberError
        If the statement's net total differs from the member's ledger balance (a broken
        invariant: run ``noaber ledger verify``).
    """
    st = session.get(Statement, statement_id)
    if st is None:
        raise NotFoundError(f"no statement {statement_id}")
    return _assemble(session, st, _Preload.of(session, [st]))


def period_statements(session: Session, community: str, period: str) -> list[StatementData]:
    """Every statement of a community's period, read with a few queries in all (the
    statements of 1,000 members in seconds); the same figures as :func:`statement_data`."""
    sts = list(
        session.scalars(
            select(Statement)
            .where(Statement.community == community, Statement.period == period)
            .order_by(Statement.id)
        )
    )
    pre = _Preload.of(session, sts)
    return [_assemble(session, st, pre) for st in sts]


@dataclass
class _Preload:
    """What statements of one period need, read once."""

    rows: dict[str, list[tuple[Any, ...]]]
    member_days: dict[tuple[int, str], list[tuple[Any, ...]]]
    names: dict[str, str]
    kinds: dict[str, MemberKind]
    statements: dict[int, Statement]
    buildings: dict[int, BuildingTotals] = field(default_factory=dict)
    roots: dict[tuple[str, str], list[PeriodRoot]] = field(default_factory=dict)

    def root(self, session: Session, st: Statement) -> PeriodRoot | None:
        """The period's root at the statement (:func:`settlement.proof.root_for`), the
        period's roots read once."""
        key = (st.community, st.period)
        if key not in self.roots:
            self.roots[key] = list(
                session.scalars(
                    select(PeriodRoot)
                    .where(PeriodRoot.community == st.community, PeriodRoot.period == st.period)
                    .order_by(PeriodRoot.tree_size)
                )
            )
        before = [r for r in self.roots[key] if r.max_seq <= st.max_seq]
        return before[-1] if before else None

    @classmethod
    def of(cls, session: Session, sts: list[Statement]) -> _Preload:
        from energy.models import Member, MemberPersonal

        if not sts:
            return cls({}, {}, {}, {}, {})
        refs = sorted({st.member_ref for st in sts})
        corrected = [st.corrects_id for st in sts if st.corrects_id]
        by_id = {st.id: st for st in sts}
        for st in session.scalars(select(Statement).where(Statement.id.in_(corrected))):
            by_id[st.id] = st
        rows: dict[str, list[tuple[Any, ...]]] = {ref: [] for ref in refs}
        many = len(refs) > 1
        communities = {st.community for st in sts}
        periods = {st.period for st in sts}
        q = select(
            Transfer.member_ref,
            Transfer.seq,
            Transfer.ledger,
            Transfer.code,
            Transfer.day,
            Transfer.amount,
            Transfer.debit_account,
            Transfer.credit_account,
        ).where(
            Transfer.community.in_(communities),
            Transfer.period.in_(periods),
            Transfer.flags.in_(ledger.COUNTING_FLAGS),
            Transfer.seq <= max(st.max_seq for st in by_id.values()),
        )
        q = q.where(Transfer.member_ref.is_not(None) if many else Transfer.member_ref == refs[0])
        for ref, *rest in session.execute(q):
            if ref in rows:
                rows[ref].append(tuple(rest))
        runs = {st.run_id for st in by_id.values()}
        mds: dict[tuple[int, str], list[tuple[Any, ...]]] = {}
        md_q = select(MemberDay.run_id, MemberDay.member_ref, *_MD_COLUMNS).where(
            MemberDay.run_id.in_(runs)
        )
        if not many:
            md_q = md_q.where(MemberDay.member_ref == refs[0])
        for run_id, ref, *rest in session.execute(md_q):
            mds.setdefault((run_id, ref), []).append(tuple(rest))
        names = dict(
            session.execute(
                select(Member.ref, MemberPersonal.name)
                .join(MemberPersonal, Member.id == MemberPersonal.member_id)
                .where(Member.ref.in_(refs))
            ).all()
        )
        kinds = dict(
            session.execute(select(Member.ref, Member.kind).where(Member.ref.in_(refs))).all()
        )
        return cls(rows, mds, names, kinds, by_id)


def _assemble(session: Session, st: Statement, pre: _Preload) -> StatementData:
    rows = pre.rows.get(st.member_ref, [])
    days, total = _lines_of(st, rows, pre.member_days.get((st.run_id, st.member_ref), []))
    balance = _balance_of(st, rows)
    if balance != total.net_cents:
        raise NoaberError(
            f"statement {st.number}: total {total.net_cents} cents differs from the ledger balance {balance}"
        )
    corrects = pre.statements.get(st.corrects_id) if st.corrects_id else None
    previous_total = None
    if corrects is not None:
        previous_total = _lines_of(
            corrects, rows, pre.member_days.get((corrects.run_id, corrects.member_ref), [])
        )[1]
    root = pre.root(session, st)
    building = None
    if pre.kinds.get(st.member_ref) is MemberKind.ORGANISATION:
        building = pre.buildings.get(st.run_id)
        if building is None:
            building = pre.buildings[st.run_id] = _building_totals(session, st)
    return StatementData(
        st,
        pre.names.get(st.member_ref),
        days,
        total,
        balance,
        corrects,
        previous_total,
        days_with_data=len(pre.member_days.get((st.run_id, st.member_ref), [])),
        period_days=_days_in(st.period),
        merkle_root=root.root_hash if root is not None else None,
        merkle_tree_size=root.tree_size if root is not None else 0,
        days_root=root.days_root if root is not None else None,
        building=building,
    )


def _building_totals(session: Session, st: Statement) -> BuildingTotals:
    """The EV totals (members who are persons) of a statement's run."""
    from energy.models import Member

    persons = select(Member.ref).where(Member.kind == MemberKind.PERSON)
    row = session.execute(
        select(
            func.count(func.distinct(MemberDay.member_ref)),
            func.coalesce(func.sum(MemberDay.shared_wh), 0),
            func.coalesce(func.sum(MemberDay.supplied_wh), 0),
            func.coalesce(func.sum(MemberDay.green_supplied_wh), 0),
        ).where(
            MemberDay.run_id == st.run_id,
            MemberDay.member_ref.in_(persons),
            MemberDay.discharge_wh + MemberDay.offtake_wh > 0,
        )
    ).one()
    return BuildingTotals(*(int(v) for v in row))


def _days_in(period: str) -> int:
    """Local calendar days of a month ``YYYY-MM``."""
    first, nxt = month_bounds(period)
    return (nxt - first).days


def find_statement(
    session: Session, member_ref: str, period: str | None, community: str | None = None
) -> Statement:
    """The latest statement of a member for a period (a correction if there is one); with
    ``period=None``, of the member's latest settled period."""
    q = select(Statement).where(Statement.member_ref == member_ref)
    if period is not None:
        q = q.where(Statement.period == period)
    if community is not None:
        q = q.where(Statement.community == community)
    st = session.scalars(q.order_by(Statement.period.desc(), Statement.id.desc()).limit(1)).first()
    if st is None:
        where = f"in {period}" if period is not None else "in any period"
        raise NotFoundError(f"no statement for member {member_ref!r} {where}")
    return st


_SWAP_NL = str.maketrans({",": ".", ".": ","})


def _grouped(value: Decimal, decimals: int, locale: str) -> str:
    text = f"{value:,.{decimals}f}"
    return text.translate(_SWAP_NL) if locale == "nl" else text


def _grouped_int(units: int, decimals: int, locale: str) -> str:
    """``units / 10**decimals`` (``units`` >= 0, an integer) with thousands grouped, as
    :func:`_grouped` writes it, by integer arithmetic."""
    if decimals:
        whole, frac = divmod(units, 10**decimals)
        text = f"{whole:,}.{frac:0{decimals}d}"
    else:
        text = f"{units:,}"
    return text.translate(_SWAP_NL) if locale == "nl" else text


def fast_money(cents: int, locale: str = "nl") -> str:
    """:func:`energy.i18n.format_money_cents` for ``nl``/``en`` without Babel's per-call cost
    (a statement formats a few hundred amounts), by integer arithmetic; equal output is
    checked in the tests."""
    cents = int(cents)
    digits = _grouped_int(-cents if cents < 0 else cents, 2, locale)
    if locale == "nl":
        return "\u20ac\xa0" + ("-" if cents < 0 else "") + digits
    return ("-" if cents < 0 else "") + "\u20ac" + digits


def fast_kwh(energy_wh: int | None, decimals: int = 1, locale: str = "nl") -> str:
    """:func:`energy.i18n.format_kwh` for integer Wh, without Babel's per-call cost: Wh to
    kWh rounded half to even by integer arithmetic (up to 3 decimals, exact; more by
    ``Decimal``); a negative amount keeps its sign even where it rounds to zero, as Babel."""
    if energy_wh is None:
        return "\u2013"
    wh = int(energy_wh)
    if decimals > 3:
        value = Decimal(wh).scaleb(-3).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_EVEN)
        sign = "-" if value.is_signed() else ""
        return f"{sign}{_grouped(abs(value), decimals, locale)} kWh"
    step = 10 ** (3 - decimals)
    units, rest = divmod(-wh if wh < 0 else wh, step)
    if 2 * rest > step or (2 * rest == step and units % 2):
        units += 1
    return f"{'-' if wh < 0 else ''}{_grouped_int(units, decimals, locale)} kWh"


def fast_number(value: Decimal | int | None, decimals: int = 0, locale: str = "nl") -> str:
    """:func:`energy.i18n.format_number` for a Decimal or an integer (the per-line prices of
    a statement), without Babel's per-call cost; rounded half to even."""
    if value is None:
        return "\u2013"
    q = Decimal(value).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_EVEN)
    sign = "-" if q.is_signed() else ""
    return f"{sign}{_grouped(abs(q), decimals, locale)}"


def fast_pct(share: float | None, decimals: int = 1, locale: str = "nl") -> str:
    """:func:`energy.i18n.format_pct` for a share (0..1), without Babel's per-call cost."""
    if share is None:
        return "\u2013"
    q = (Decimal(str(share)) * 100).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_EVEN)
    sign = "-" if q.is_signed() else ""
    return f"{sign}{_grouped(abs(q), decimals, locale)}%"


@lru_cache(maxsize=4)
def _template(locale: str) -> Any:
    from energy.i18n import template_env

    env = template_env("settlement", locale)
    env.filters["money"] = lambda c: fast_money(c, locale)
    env.filters["kwh"] = lambda v, d=1: fast_kwh(v, d, locale)
    env.filters["number"] = lambda v, d=0: fast_number(v, d, locale)
    env.filters["pct"] = lambda v, d=1: fast_pct(v, d, locale)
    return env.get_template("statement.html")


def render_html(session: Session, statement_id: int, locale: str = "nl") -> str:
    """The statement as an HTML page (Dutch by default, English with ``locale='en'``)."""
    return render_data_html(statement_data(session, statement_id), locale)


def render_data_html(data: StatementData, locale: str = "nl") -> str:
    """A statement's figures (:func:`statement_data`) as an HTML page in ``locale``."""
    return str(_template(locale).render(s=data))


def detached(data: StatementData) -> StatementData:
    """``data`` with its statement rows replaced by plain copies bound to no session, so it
    can be kept past the session that read it (a page cache) and rendered again."""

    def copy(st: Statement | None) -> Statement | None:
        if st is None:
            return None
        return Statement(**{c.key: getattr(st, c.key) for c in Statement.__table__.columns})

    statement = copy(data.statement)
    assert statement is not None
    return replace(data, statement=statement, corrects=copy(data.corrects))


def member_name(session: Session, member_ref: str) -> str | None:
    """The member's name as stored now (None: no personal data, e.g. erased)."""
    from energy.models import Member, MemberPersonal

    return session.scalar(
        select(MemberPersonal.name)
        .join(Member, Member.id == MemberPersonal.member_id)
        .where(Member.ref == member_ref)
    )


def render_period_html(
    session: Session, community: str, period: str, locale: str = "nl"
) -> list[tuple[Statement, str]]:
    """Every statement of a period as HTML (:func:`period_statements`, one template)."""
    template = _template(locale)
    return [
        (d.statement, str(template.render(s=d)))
        for d in period_statements(session, community, period)
    ]


def render_csv(session: Session, statement_id: int) -> str:
    """The statement as CSV: one row per day and a ``total`` row (Wh and cents, integers)."""
    data = statement_data(session, statement_id)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for line in [*data.days, data.total]:
        label = "total" if line is data.total else line.day.isoformat()
        w.writerow([label, *(getattr(line, f) for f in CSV_COLUMNS[1:-1]), line.net_cents])
    return buf.getvalue()


def render_pdf(session: Session, statement_id: int, out: Path, locale: str = "nl") -> Path:
    """The statement as PDF (printed by headless Chromium, see :mod:`energy.pdf`)."""
    from energy.pdf import html_to_pdf

    return html_to_pdf(render_html(session, statement_id, locale), out, wait_for_plots=False)


def member_totals(session: Session, community: str, period: str) -> dict[str, int]:
    """Net cents per member over the latest statement of each member of a period."""
    latest: dict[str, Statement] = {}
    for st in session.scalars(
        select(Statement)
        .where(Statement.community == community, Statement.period == period)
        .order_by(Statement.id)
    ):
        latest[st.member_ref] = st
    pre = _Preload.of(session, list(latest.values()))
    out: dict[str, int] = defaultdict(int)
    for ref, st in latest.items():
        rows = pre.rows.get(ref, [])
        out[ref] = _lines_of(st, rows, pre.member_days.get((st.run_id, ref), []))[1].net_cents
    return dict(out)


def statement_figures(data: StatementData) -> dict[str, Any]:
    """A statement's days and totals as plain integers (the JSON export's figures)."""

    def line(d: DayLine, label: str) -> dict[str, Any]:
        return {
            "date": label,
            **{f: int(getattr(d, f)) for f in CSV_COLUMNS[1:-1]},
            "net_cents": d.net_cents,
        }

    return {
        "days": [line(d, d.day.isoformat()) for d in data.days],
        "total": line(data.total, "total"),
        "coverage": {"days_with_data": data.days_with_data, "period_days": data.period_days},
    }


def render_json(session: Session, statement_id: int) -> str:
    """The statement as JSON with the inclusion proof of every transfer it is read from,
    checkable offline by ``noaber statement verify`` (:func:`verify_json`)."""
    data = statement_data(session, statement_id)
    doc = proof.statement_proof(session, statement_id, statement_figures(data))
    return json.dumps(doc, indent=1, default=str) + "\n"


def transfer_figure(fields: dict[str, Any]) -> tuple[str, int] | None:
    """The statement figure a transfer counts in and its sign (None: it does not count),
    by the rule :func:`_lines` reads the ledger with."""
    from settlement.settle import code_accounts

    if fields.get("flags") not in ledger.COUNTING_FLAGS:
        return None
    names = _WH_FIELD if fields["ledger"] == "wh" else _MONEY_FIELD
    name = names.get(fields["code"])
    if name is None:
        return None
    debit = code_accounts(
        fields["code"], fields["ledger"], fields["community"], fields["member_ref"]
    )[0]
    return name, 1 if fields["debit_account"] == debit else -1


def verify_json(
    text: str, root: str, days_root: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Check an exported statement (:func:`render_json`) against a published root, without a
    database; returns the document and the problems (empty: it holds)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return {}, [f"not JSON: {exc}"]
    if not isinstance(doc, dict):
        return {}, ["not a statement proof"]
    try:
        return doc, proof.verify_statement(doc, root, transfer_figure, days_root)
    except (KeyError, TypeError, ValueError) as exc:
        return doc, [f"malformed statement proof: {exc!r}"]
