"""Settlement runs: allocate, price and post a community's period to the ledger.

A run is planned outside the database (:func:`plan_energy`) and posted in one transaction
(:func:`post_run`): lock the chain head, price (the energy-tax band of a connection depends on
the energy taxed there earlier in the calendar year), compare what the data now say with what
the ledger holds for each ``(period, member, code, day)``, post reversing transfers for what
differs plus the new amounts, store the member-day figures and issue statements with gap-free
numbers. So data A, then B, then A again leaves A in the ledger; settling what the ledger
already holds posts nothing. Killed half-way, nothing of the run remains.

The data version of a run hashes every input that sets an amount: meter data, community file
(key, members, connections), tariff, day-ahead prices and the taxed energy per connection
earlier in the year (the tax band). When a run changes the taxed energy of a month, the later
months of the same year that are already settled are re-priced in the same transaction
(energy tax and VAT, from their stored member days and their own stored tariff; a ``reprice``
run with correction statements), rather than left for someone to notice: nothing else about
them changed, and the ledger must never hold amounts its own inputs contradict.

Coverage: a local day is covered when the meter data have a reading on it. A period without
any covered day is refused; otherwise the energy of the covered days is settled and the fee
is charged pro rata to the covered days of membership; the run stores ``coverage_days`` and
``period_days``.

Provisional runs (estimated data) post ``pending`` transfers that do not count until
:func:`post_pending` posts them or :func:`void_pending` voids them.

Transfers per member and local day: ``wh/shared`` pool -> member, ``wh/supplied`` member ->
pool, ``cents/shared`` member -> pool, ``cents/supplied`` pool -> member, ``cents/energy_tax``
and ``cents/vat`` member -> tax, ``cents/v2g`` community -> member (EV discharge), and once per
period ``cents/fee`` member -> community. Energy tax is charged on the shared energy that
crossed the public grid into the receiver's connection (:func:`taxed_energy`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from energy.clock import utc_now
from energy.errors import NoaberError, ValidationError
from energy.models import MemberKind
from energy.sites import MemberSpec, ensure_community, ensure_members
from energy.timegrid import isp_range, local_date_of, local_period_bounds
from settlement import ledger
from settlement.allocation import Allocation, largest_remainder, ref_rank
from settlement.community import (
    CommunitySpec,
    MeterData,
    allocate_community,
    key_matrix,
    member_connections,
    shares_matrix,
)
from settlement.models import (
    MEMBER_DAYS,
    ChainHead,
    DocCounter,
    MemberDay,
    SettlementRun,
    Statement,
    TariffDocument,
    Transfer,
)
from settlement.pricing import (
    NC_PER_CENT,
    Tariff,
    TariffVersion,
    energy_tax_nc,
    energy_tax_nc_columns,
    fee_cents,
    round_nc,
    shared_price_nc,
    tariff_from_document,
    v2g_nc_per_wh,
    vat_cents,
)
from settlement.proof import MEMBER_DAY_FIELDS, seal_run
from settlement.provenance import storage_provenance

WH_CODES = ("shared", "supplied")
CENTS_CODES = ("shared", "supplied", "energy_tax", "vat", "v2g", "fee")
SETTLED_CODES = frozenset(WH_CODES + CENTS_CODES)
"""Codes a settlement run posts (payment runs post others, which runs never compare)."""


def period_isps(period: str) -> pd.DatetimeIndex:
    """ISP starts (UTC) of a local month ``YYYY-MM``."""
    if len(period) != 7:
        raise ValidationError(f"period must be a month YYYY-MM, got {period!r}")
    b = local_period_bounds(period)
    return isp_range(b.start, b.end)


@dataclass
class EnergyPlan:
    """Everything of a run that does not depend on the database."""

    community: CommunitySpec
    period: str
    tariff: Tariff
    data: MeterData
    alloc: Allocation
    days: list[dt.date]
    day_starts: np.ndarray
    shared_day: np.ndarray  # (D, N) [Wh]
    supplied_day: np.ndarray
    offtake_day: np.ndarray
    injection_day: np.ndarray
    discharge_day: np.ndarray
    green_discharge_day: np.ndarray
    green_supplied_day: np.ndarray
    data_version: str
    day_ahead_eur_per_kwh: np.ndarray | None = None
    #: (D, N) whether a member's meters had any reading on a day; None: all days.
    measured_day: np.ndarray | None = None
    #: Per member, its grid connection (EAN or ``member:<ref>``).
    connections: tuple[str, ...] = ()
    #: (D, N) shared energy received across the public grid (the energy-tax base) [Wh].
    taxed_day: np.ndarray | None = None

    @property
    def covered_day(self) -> np.ndarray:
        """(D,) whether the meter data have any reading on a local day."""
        if self.measured_day is None:
            return np.ones(len(self.days), dtype=bool)
        return np.asarray(self.measured_day.any(axis=1))

    @property
    def coverage_days(self) -> int:
        """Local days of the period with meter data."""
        return int(self.covered_day.sum())

    @property
    def period_days(self) -> int:
        """Local days of the period."""
        return len(self.days)


def _groups(connections: Sequence[str]) -> list[tuple[str, list[int]]]:
    """The member columns of each connection, connections sorted."""
    cols: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(connections):
        cols[c].append(i)
    return sorted(cols.items())


def taxed_energy(
    shared_wh: np.ndarray,
    supplied_wh: np.ndarray,
    connections: Sequence[str],
    tiebreak: np.ndarray,
) -> np.ndarray:
    """Shared energy that crossed the public grid into each receiver's connection [Wh].

    Per ISP and connection ``C``: its members received ``S_C`` and gave ``U_C`` of shared
    energy. Behind one meter, what the connection's own members give and take in the same
    quarter-hour nets out and never crosses the grid (a dorpshuis's own PV into its own EV
    charger), so ``min(S_C, U_C)`` is untaxed and ``S_C - min(S_C, U_C)`` is delivered through
    the connection and taxed there, at the receiver (Wet belastingen op milieugrondslag,
    art. 50: the tax is on electricity supplied through a connection; docs/SOURCES.md). The
    taxed part is split over the connection's receivers pro rata to what each received, by
    largest remainder (``tiebreak``: the members' ref ranks).

    Parameters
    ----------
    shared_wh, supplied_wh : numpy.ndarray
        Allocation results ``(T, N)`` [Wh].
    connections : sequence of str
        The connection of each member (column).
    tiebreak : numpy.ndarray
        Integer rank per member for ties in rounding.

    Returns
    -------
    numpy.ndarray
        ``int64`` ``(T, N)``, ``0 <= taxed <= shared`` [Wh].
    """
    out = np.zeros_like(shared_wh, dtype=np.int64)
    for _, cols in _groups(connections):
        s = shared_wh[:, cols].astype(np.int64)
        total = s.sum(axis=1)
        taxed = total - np.minimum(total, supplied_wh[:, cols].sum(axis=1))
        if len(cols) == 1:
            out[:, cols[0]] = taxed
            continue
        # multiply before dividing: exact halves stay exact halves for the tie-break
        part = (s * taxed[:, None]) / np.maximum(total, 1)[:, None]
        out[:, cols] = largest_remainder(part, taxed, tiebreak[cols])
    return out


def plan_energy(
    community: CommunitySpec,
    period: str,
    data: MeterData,
    tariff: Tariff,
    day_ahead_eur_per_kwh: np.ndarray | None = None,
) -> EnergyPlan:
    """Allocate and aggregate per member and local day; compute the data version."""
    isps = period_isps(period)
    if len(data.isps) != len(isps) or not (data.isps.as_unit("ns") == isps).all():
        raise ValidationError(f"meter data must cover exactly the ISPs of {period}")
    if data.measured is not None:
        if data.measured.shape != data.offtake_wh.shape:
            raise ValidationError(
                f"measured has shape {data.measured.shape}, expected {data.offtake_wh.shape}"
            )
        unmeasured = ~data.measured & ((data.offtake_wh != 0) | (data.injection_wh != 0))
        if unmeasured.any():
            t, i = (int(v[0]) for v in np.nonzero(unmeasured))
            raise ValidationError(
                f"meter data of {data.members[i]} at {isps[t].isoformat()} has energy but is "
                "marked as not measured"
            )
    dates = local_date_of(isps)
    if any(m.joined or m.left for m in community.members):
        # a member's meter data outside their membership is not community business
        active = np.array([[m.active_on(d) for m in community.members] for d in sorted(set(dates))])
        day_index = {d: k for k, d in enumerate(sorted(set(dates)))}
        mask = active[[day_index[d] for d in dates]]
        measured = None if data.measured is None else data.measured & mask
        data = MeterData(
            data.isps,
            data.members,
            data.offtake_wh * mask,
            data.injection_wh * mask,
            measured,
            data.connections,
        )
    if data.measured is not None and not data.measured.any():
        raise ValidationError(
            f"the meter data of {community.name} have no reading in {period}: nothing to settle"
        )
    connections = member_connections(community, data)
    alloc = allocate_community(community, data)
    taxed = taxed_energy(alloc.shared_wh, alloc.supplied_wh, connections, ref_rank(community.refs))
    starts = np.flatnonzero(np.r_[True, dates[1:] != dates[:-1]])
    days = [dates[s] for s in starts]

    def per_day(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(a, starts, axis=0)

    n = len(community.members)
    discharge = np.zeros_like(alloc.injection_wh)
    green = np.zeros_like(alloc.injection_wh)
    green_supplied = np.zeros_like(alloc.injection_wh)
    for i, m in enumerate(community.members):
        if not m.has_storage:
            continue
        prov = storage_provenance(
            alloc.offtake_wh[:, i],
            alloc.shared_wh[:, i],
            alloc.injection_wh[:, i],
            m.storage_efficiency,
        )
        discharge[:, i] = alloc.injection_wh[:, i]
        green[:, i] = prov.green_discharge_wh
        inj = alloc.injection_wh[:, i]
        with np.errstate(divide="ignore", invalid="ignore"):
            green_supplied[:, i] = np.where(
                inj > 0, alloc.supplied_wh[:, i] * prov.green_discharge_wh // np.maximum(inj, 1), 0
            )
    h = hashlib.sha256()
    h.update(data.digest().encode())
    h.update(tariff.digest.encode())
    h.update(community.key.type.encode())
    h.update("\x00".join(community.refs).encode())
    h.update(",".join(community.key.order).encode())
    h.update(",".join(f"{m.joined}:{m.left}" for m in community.members).encode())
    h.update("\x00".join(connections).encode())
    h.update(
        ",".join(str(m.storage_efficiency) + ":".join(m.assets) for m in community.members).encode()
    )
    if community.key.type in ("fixed", "relative", "optimal"):
        h.update(np.ascontiguousarray(shares_matrix(community, data.isps)).tobytes())
    if community.key.type == "matrix":
        h.update(np.ascontiguousarray(key_matrix(community)).tobytes())
    if day_ahead_eur_per_kwh is not None:
        h.update(np.asarray(day_ahead_eur_per_kwh, dtype=np.float64).tobytes())
    assert discharge.shape[1] == n
    return EnergyPlan(
        community,
        period,
        tariff,
        data,
        alloc,
        days,
        starts,
        per_day(alloc.shared_wh),
        per_day(alloc.supplied_wh),
        per_day(alloc.offtake_wh),
        per_day(alloc.injection_wh),
        per_day(discharge),
        per_day(green),
        per_day(green_supplied),
        h.hexdigest()[:32],
        day_ahead_eur_per_kwh,
        None if data.measured is None else data.measured_days()[1],
        connections,
        per_day(taxed),
    )


def tax_cents(
    taxed_day: np.ndarray,
    connections: Sequence[str],
    prior_wh: dict[str, int],
    versions: Sequence[TariffVersion],
    tiebreak: np.ndarray,
) -> np.ndarray:
    """Energy tax per local day and member [cents], ``(D, N)`` ``int64``.

    The band is per connection (the annual staffel applies to a connection's deliveries):
    per connection the day's taxed energy of its members is taxed on top of what was taxed
    there earlier in the year (``prior_wh`` [Wh], by connection, then day by day), rounded
    once per day half to even and split over its members by largest remainder pro rata to
    their taxed energy. With one member per connection this is the member's own tax.
    All connections at once per stretch of days with the same bands
    (:func:`settlement.pricing.energy_tax_nc_columns`).
    """
    out = np.zeros(taxed_day.shape, dtype=np.int64)
    groups = _groups(connections)
    totals = np.zeros((taxed_day.shape[0], len(groups)), dtype=np.int64)
    for g, (_, cols) in enumerate(groups):
        totals[:, g] = taxed_day[:, cols].sum(axis=1)
    cum = np.array([int(prior_wh.get(conn, 0)) for conn, _ in groups], dtype=np.int64)
    whole = np.zeros(totals.shape, dtype=np.int64)
    k = 0
    while k < len(versions):
        bands = versions[k].energy_tax_bands
        e = k + 1
        while e < len(versions) and versions[e].energy_tax_bands == bands:
            e += 1
        try:
            nc = energy_tax_nc_columns(totals[k:e], cum, bands)
        except ValidationError:  # beyond 64 bits: connection by connection, exactly
            nc = np.stack(
                [energy_tax_nc(totals[k:e, g], int(cum[g]), bands) for g in range(len(groups))],
                axis=1,
            )
        whole[k:e] = round_nc(nc)
        cum += totals[k:e].sum(axis=0)
        k = e
    for g, (_, cols) in enumerate(groups):
        if len(cols) == 1:
            out[:, cols[0]] = whole[:, g]
            continue
        part = (taxed_day[:, cols] * whole[:, g : g + 1]) / np.maximum(totals[:, g], 1)[:, None]
        out[:, cols] = largest_remainder(part, whole[:, g], tiebreak[cols])
    return out


def vat_per_day(net_cents: np.ndarray, versions: Sequence[TariffVersion]) -> np.ndarray:
    """VAT per local day and member on shared energy plus energy tax [cents]."""
    out = np.zeros(net_cents.shape, dtype=np.int64)
    for k, v in enumerate(versions):
        out[k] = vat_cents(net_cents[k], v.vat_pct)
    return out


def price_plan(plan: EnergyPlan, prior_wh: dict[str, int]) -> dict[str, np.ndarray]:
    """Money per code, local day and member [cents], ``(D, N)`` int64 arrays.

    ``prior_wh``: energy taxed at each connection earlier in the calendar year [Wh] (it
    sets the energy-tax band). The fee is pro rata to the covered days of membership over
    the days of the period. Rounding follows :mod:`settlement.pricing`.
    """
    isps = plan.data.isps
    refs = plan.community.refs
    rank = ref_rank(refs)
    alloc = plan.alloc
    price = np.empty(len(isps), dtype=np.int64)
    v2g = np.empty(len(isps), dtype=np.int64)
    versions = []
    bounds = [*list(plan.day_starts), len(isps)]
    for k, day in enumerate(plan.days):
        v = plan.tariff.version_for_day(day)
        versions.append(v)
        sl = slice(bounds[k], bounds[k + 1])
        da = None if plan.day_ahead_eur_per_kwh is None else plan.day_ahead_eur_per_kwh[sl]
        price[sl] = shared_price_nc(v, isps[sl], da)
        v2g[sl] = v2g_nc_per_wh(v)
    if int(alloc.shared_wh.max(initial=0)) * int(price.max(initial=0)) * 100 > 2**62:
        raise ValidationError("energy or price too large for exact integer pricing")
    shared_nc = np.add.reduceat(alloc.shared_wh * price[:, None], plan.day_starts, axis=0)
    supplied_nc = np.add.reduceat(alloc.supplied_wh * price[:, None], plan.day_starts, axis=0)
    total_cents = round_nc(shared_nc.sum(axis=1))
    shared_c = largest_remainder(shared_nc / NC_PER_CENT, total_cents, rank)
    supplied_c = largest_remainder(supplied_nc / NC_PER_CENT, total_cents, rank)
    storage = np.array([m.has_storage and "ev" in m.assets for m in plan.community.members])
    v2g_nc = np.add.reduceat(plan.alloc.injection_wh * v2g[:, None], plan.day_starts, axis=0)
    v2g_c = np.where(storage[None, :], round_nc(v2g_nc), 0)
    taxed = plan.taxed_day if plan.taxed_day is not None else plan.shared_day
    conns = plan.connections or tuple(f"member:{r}" for r in refs)
    tax_c = tax_cents(taxed, conns, prior_wh, versions, rank)
    vat_c = vat_per_day(shared_c + tax_c, versions)
    fee = np.zeros(plan.shared_day.shape, dtype=np.int64)
    covered = plan.covered_day
    for i, m in enumerate(plan.community.members):
        # the monthly fee, pro rata to the covered days of membership, rounded half to even
        days_billed = sum(bool(c) and m.active_on(d) for d, c in zip(plan.days, covered))
        if days_billed:
            whole = Decimal(fee_cents(versions[0])) * days_billed / len(plan.days)
            fee[0, i] = int(whole.quantize(Decimal(1), ROUND_HALF_EVEN))
    return {
        "shared": shared_c,
        "supplied": supplied_c,
        "energy_tax": tax_c,
        "vat": vat_c,
        "v2g": v2g_c,
        "fee": fee,
    }


def code_accounts(code: str, ledger_name: str, community: str, ref: str) -> tuple[str, str]:
    """(debit, credit) of a transfer of ``code`` in its positive direction."""
    m, pool = ledger.member_account(ref), ledger.pool_account(community)
    if code == "shared":
        return (pool, m) if ledger_name == "wh" else (m, pool)
    if code == "supplied":
        return (m, pool) if ledger_name == "wh" else (pool, m)
    if code in ("energy_tax", "vat"):
        return m, ledger.tax_account(community)
    if code == "v2g":
        return ledger.community_account(community), m
    if code == "fee":
        return m, ledger.community_account(community)
    raise ValueError(code)


def desired_transfers(
    plan: EnergyPlan, money: dict[str, np.ndarray]
) -> dict[tuple[str, str, dt.date, str], int]:
    """What should count for the period: ``(ledger, code, day, member_ref) -> signed amount``.

    A positive amount flows in the code's direction (see the module docstring), a negative
    one the other way (e.g. shared energy at a negative day-ahead price).
    """
    out: dict[tuple[str, str, dt.date, str], int] = {}
    refs = plan.community.refs
    arrays: list[tuple[str, str, np.ndarray]] = [
        ("wh", "shared", plan.shared_day),
        ("wh", "supplied", plan.supplied_day),
    ] + [("cents", code, money[code]) for code in CENTS_CODES]
    for ledger_name, code, arr in arrays:
        ks, js = np.nonzero(arr)
        for k, j in zip(ks.tolist(), js.tolist()):
            if ledger_name == "wh" and arr[k, j] < 0:
                raise NoaberError(f"negative energy {code} for {refs[j]} on {plan.days[k]}")
            out[(ledger_name, code, plan.days[k], refs[j])] = int(arr[k, j])
    return out


@dataclass
class RunResult:
    """Outcome of posting a run (``repriced``: later periods re-priced in the same
    transaction, as ``period: run id``)."""

    run_id: int
    created: bool
    status: str
    n_transfers: int
    n_reversals: int
    statements: list[str]
    data_version: str
    coverage_days: int | None = None
    period_days: int | None = None
    repriced: dict[str, int] = field(default_factory=dict)


def latest_runs(
    session: Session, community: str, year: str, status: str = "posted"
) -> dict[str, SettlementRun]:
    """The latest run of each period of ``year`` with ``status``: for posted runs, the one
    whose member days are what the ledger holds."""
    out: dict[str, SettlementRun] = {}
    for run in session.scalars(
        select(SettlementRun)
        .where(
            SettlementRun.community == community,
            SettlementRun.status == status,
            SettlementRun.period >= f"{year}-01",
            SettlementRun.period <= f"{year}-12",
        )
        .order_by(SettlementRun.id)
    ):
        out[run.period] = run
    return out


def prior_year_wh(session: Session, community: str, period: str) -> dict[str, int]:
    """Energy taxed at each connection in the community's earlier months of the calendar
    year [Wh], from the member days of each month's latest posted run (runs from before
    connections were stored count each member's shared energy at ``member:<ref>``)."""
    runs = [r.id for p, r in latest_runs(session, community, period[:4]).items() if p < period]
    out: dict[str, int] = defaultdict(int)
    if not runs:
        return {}
    for conn, ref, taxed, shared in session.execute(
        select(
            MemberDay.connection,
            MemberDay.member_ref,
            func.sum(MemberDay.taxed_wh),
            func.sum(MemberDay.shared_wh),
        )
        .where(MemberDay.run_id.in_(runs))
        .group_by(MemberDay.connection, MemberDay.member_ref)
    ):
        if conn is None:
            out[f"member:{ref}"] += int(shared)
        else:
            out[conn] += int(taxed)
    return dict(out)


def price_version(energy_version: str, prior: dict[str, int]) -> str:
    """The data version of a run: the energy version (meter data, community, tariff,
    day-ahead prices) and the taxed energy per connection earlier in the year."""
    h = hashlib.sha256(energy_version.encode())
    h.update(json.dumps(sorted(prior.items())).encode())
    return h.hexdigest()[:32]


def _store_tariff(session: Session, tariff: Tariff) -> None:
    if tariff.document and session.get(TariffDocument, tariff.digest) is None:
        session.add(TariffDocument(digest=tariff.digest, document=tariff.document))
        session.flush()


Key = tuple[str, str, dt.date, str]


def _signed(t: Any, community: str) -> int:
    """A transfer's amount, negative if it flows against its code's direction."""
    debit = code_accounts(t.code, t.ledger, community, str(t.member_ref))[0]
    return t.amount if t.debit_account == debit else -t.amount


def _difference(
    run_id: int,
    community: str,
    period: str,
    current: Sequence[Any],
    desired: dict[Key, int],
    flags: str,
) -> tuple[list[dict[str, Any]], int, set[str]]:
    """Transfers that turn what the ledger holds (``current``: transfer rows) into
    ``desired``: a reversal of every counting transfer whose amount is not desired, and the
    desired amounts the ledger does not hold. Returns the rows, the number of reversals and
    the members touched."""
    rows: list[dict[str, Any]] = []
    changed: set[str] = set()
    held: dict[Key, int] = {}
    for t in current:
        key = (t.ledger, t.code, t.day, str(t.member_ref))
        held[key] = _signed(t, community)
        if desired.get(key) != held[key]:
            rows.append(
                _row(
                    run_id,
                    community,
                    period,
                    key,
                    t.amount,
                    (t.credit_account, t.debit_account),
                    "rev|" + t.idempotency_id,
                    "posted",
                    reverses=t.seq,
                )
            )
            changed.add(key[3])
    n_rev = len(rows)
    # the hot path of a first posting (one row per member, day and code): accounts, days
    # and the idempotency prefix computed once each
    accounts_of: dict[tuple[str, str, str], tuple[str, str]] = {}
    iso: dict[dt.date, str] = {}
    prefix = f"{community}|{period}|"
    suffix = f"|r{run_id}"
    for key, amount in desired.items():
        if held.get(key) == amount:
            continue
        led, code, day, ref = key
        accounts = accounts_of.get((led, code, ref))
        if accounts is None:
            accounts = accounts_of[(led, code, ref)] = code_accounts(code, led, community, ref)
        debit, credit = accounts
        if amount < 0:
            debit, credit, amount = credit, debit, -amount
        day_text = iso.get(day)
        if day_text is None:
            day_text = iso[day] = day.isoformat()
        rows.append(
            {
                "ledger": led,
                "code": code,
                "day": day,
                "member_ref": ref,
                "debit_account": debit,
                "credit_account": credit,
                "amount": int(amount),
                "idempotency_id": f"{prefix}{led}|{code}|{day_text}|{ref}{suffix}",
                "reverses_id": None,
                "pending_id": None,
                "run_id": run_id,
                "community": community,
                "period": period,
                "flags": flags,
            }
        )
        changed.add(ref)
    return rows, n_rev, changed


def _issue_statements(
    session: Session, community: str, period: str, run_id: int, refs: list[str], max_seq: int
) -> list[str]:
    """Number and store one statement per member in ``refs`` (gap-free numbers of the
    year's series, the counter row locked); a member who already has a statement of the
    period gets a correction of their latest one. One query and one insert in all."""
    if not refs:
        return []
    series = f"statement-{period[:4]}"
    counter = session.execute(
        select(DocCounter).where(DocCounter.series == series).with_for_update()
    ).scalar_one_or_none()
    if counter is None:
        counter = DocCounter(series=series, last_number=0)
        session.add(counter)
        session.flush()
    latest: dict[str, int] = {}
    for ref, sid in session.execute(
        select(Statement.member_ref, Statement.id)
        .where(Statement.community == community, Statement.period == period)
        .order_by(Statement.id)
    ):
        latest[ref] = sid
    first = int(counter.last_number) + 1
    numbers = [f"NB-{period[:4]}-{first + k:06d}" for k in range(len(refs))]
    now = utc_now()
    rows = [
        {
            "number": number,
            "member_ref": ref,
            "community": community,
            "period": period,
            "run_id": run_id,
            "kind": "statement" if ref not in latest else "correction",
            "corrects_id": latest.get(ref),
            "max_seq": max_seq,
            "created_at": now,
        }
        for ref, number in zip(sorted(refs), numbers)
    ]
    counter.last_number = first + len(refs) - 1
    for i in range(0, len(rows), ledger.CHUNK):
        session.execute(insert(Statement), rows[i : i + ledger.CHUNK])
    session.flush()
    return numbers


def _ensure_members(session: Session, community: CommunitySpec) -> None:
    """Create the community and those of its pseudonymous members that are not stored (with
    their name as personal data), check the stored ones, and link them all (a few
    statements in all: :func:`energy.sites.ensure_members`)."""
    specs = [
        MemberSpec(spec.ref, MemberKind(spec.kind) if spec.kind else None, spec.name)
        for spec in community.members
    ]
    got = ensure_members(
        session,
        specs,
        update=False,
        source=community.source,
        paths=[f"members[{k}]" for k in range(len(specs))],
    )
    ensure_community(
        session, community.name, [g.row for g in got], community.display_name, update=False
    )


def _pending_run(session: Session, community: str, period: str) -> SettlementRun | None:
    return session.execute(
        select(SettlementRun).where(
            SettlementRun.community == community,
            SettlementRun.period == period,
            SettlementRun.status == "pending",
        )
    ).scalar_one_or_none()


def _settled(session: Session, community: str, period: str, codes: frozenset[str]) -> list[Any]:
    """The counting transfers of a period with one of ``codes`` (rows, see
    :func:`settlement.ledger.effective_transfers`)."""
    return [t for t in ledger.effective_transfers(session, community, period) if t.code in codes]


def post_run(
    factory: sessionmaker[Session],
    plan: EnergyPlan,
    provisional: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Post a planned run in one transaction: the difference between what the plan says and
    what the ledger holds for the period; later months of the year whose tax band it moves
    are re-priced in the same transaction.

    Posting what the ledger already holds (same data version as the latest posted run, no
    difference) creates nothing and returns that run with ``created=False``.

    Raises
    ------
    NoaberError
        If a provisional run of the period is still pending (post or void it first), or a
        provisional run is asked for a period that already has posted transfers, or a later
        month must be re-priced but its tariff is not stored.
    """
    community = plan.community.name
    with factory() as session, session.begin():
        head = ledger.lock_chain(session)
        prior_all = prior_year_wh(session, community, plan.period)
        prior = {c: prior_all.get(c, 0) for c in sorted(set(plan.connections))}
        version = price_version(plan.data_version, prior)
        pending = _pending_run(session, community, plan.period)
        if pending is not None:
            if provisional and pending.data_version == version:
                return _result(pending, False)
            raise NoaberError(
                f"provisional run {pending.id} of {community} {plan.period} is pending: "
                "post or void it first"
            )
        _ensure_members(session, plan.community)
        current = _settled(session, community, plan.period, SETTLED_CODES)
        if provisional and current:
            raise NoaberError(
                f"{community} {plan.period} already has posted transfers; a correction is "
                "a final run, not a provisional one"
            )
        desired = desired_transfers(plan, price_plan(plan, prior))
        latest = latest_runs(session, community, plan.period[:4]).get(plan.period)
        held = {
            (t.ledger, t.code, t.day, str(t.member_ref)): _signed(t, community) for t in current
        }
        if (
            not provisional
            and latest is not None
            and latest.data_version == version
            and held == desired
        ):
            return _result(latest, False)
        run = SettlementRun(
            community=community,
            period=plan.period,
            data_version=version,
            energy_version=plan.data_version,
            provisional=provisional,
            status="pending" if provisional else "posted",
            tariff_digest=plan.tariff.digest,
            kind="settle",
            coverage_days=plan.coverage_days,
            period_days=plan.period_days,
            prior_wh=prior,
        )
        session.add(run)
        session.flush()
        flags = "pending" if provisional else "posted"
        rows, n_rev, changed = _difference(run.id, community, plan.period, current, desired, flags)
        _store_tariff(session, plan.tariff)
        ledger.append(session, head, rows, on_chunk)
        run.n_transfers = len(rows)
        _store_member_days(session, run.id, plan)
        numbers: list[str] = []
        repriced: dict[str, int] = {}
        if not provisional:
            numbers = _issue_statements(
                session, community, plan.period, run.id, sorted(changed), head.last_seq
            )
        seal_run(session, run.id)  # the period's Merkle root and the sealed records
        if not provisional:
            repriced = _reprice_later(session, head, community, plan.period, plan.tariff)
        out = _result(run, True, len(rows), n_rev, numbers)
        out.repriced = repriced
        return out


def _result(
    run: SettlementRun,
    created: bool,
    n_transfers: int = 0,
    n_reversals: int = 0,
    statements: list[str] | None = None,
) -> RunResult:
    return RunResult(
        run.id,
        created,
        run.status,
        n_transfers,
        n_reversals,
        statements or [],
        run.data_version,
        run.coverage_days,
        run.period_days,
    )


def _stored_tariff(session: Session, run: SettlementRun, hint: Tariff) -> Tariff:
    if run.tariff_digest == hint.digest:
        return hint
    doc = session.get(TariffDocument, run.tariff_digest)
    if doc is None:
        raise NoaberError(
            f"{run.community} {run.period} must be re-priced (an earlier month changed its "
            f"energy-tax band) but its tariff {run.tariff_digest[:12]} is not stored: "
            f"re-run {run.period} with its tariff"
        )
    tariff = tariff_from_document(doc.document, f"tariff {run.tariff_digest[:12]}")
    if tariff.digest != run.tariff_digest:
        raise NoaberError(f"stored tariff {run.tariff_digest[:12]} does not match its digest")
    return tariff


def _reprice_later(
    session: Session, head: ChainHead, community: str, period: str, hint: Tariff
) -> dict[str, int]:
    """Re-price the energy tax and VAT of every later settled month of the year whose
    taxed energy before it changed; returns ``period -> new run id``."""
    out: dict[str, int] = {}
    for q, q_run in sorted(latest_runs(session, community, period[:4]).items()):
        if q <= period:
            continue
        prior_all = prior_year_wh(session, community, q)
        days = list(session.scalars(select(MemberDay).where(MemberDay.run_id == q_run.id)))
        conns = (
            set(q_run.prior_wh)
            if q_run.prior_wh is not None
            else {d.connection or f"member:{d.member_ref}" for d in days}
        )
        prior = {c: prior_all.get(c, 0) for c in sorted(conns)}
        if q_run.prior_wh is not None and prior == q_run.prior_wh:
            continue
        out[q] = _reprice(session, head, q_run, days, prior, _stored_tariff(session, q_run, hint))
    return out


def _reprice(
    session: Session,
    head: ChainHead,
    q_run: SettlementRun,
    days: list[MemberDay],
    prior: dict[str, int],
    tariff: Tariff,
) -> int:
    """A ``reprice`` run of ``q_run``'s period: same member days, energy tax and VAT at the
    new band, the differences posted with correction statements."""
    community, q = q_run.community, q_run.period
    refs = sorted({d.member_ref for d in days})
    dates = sorted({d.day for d in days})
    ri = {r: i for i, r in enumerate(refs)}
    di = {d: k for k, d in enumerate(dates)}
    taxed = np.zeros((len(dates), len(refs)), dtype=np.int64)
    conns = [f"member:{r}" for r in refs]
    for d in days:
        k, i = di[d.day], ri[d.member_ref]
        taxed[k, i] = d.taxed_wh if d.connection is not None else d.shared_wh
        conns[i] = d.connection or conns[i]
    versions = [tariff.version_for_day(d) for d in dates]
    current = _settled(session, community, q, frozenset({"shared", "energy_tax", "vat"}))
    shared_c = np.zeros_like(taxed)
    for t in current:
        if t.ledger == "cents" and t.code == "shared" and t.day in di and t.member_ref in ri:
            shared_c[di[t.day], ri[str(t.member_ref)]] += _signed(t, community)
    rank = ref_rank(refs)
    tax_c = tax_cents(taxed, conns, prior, versions, rank)
    vat_c = vat_per_day(shared_c + tax_c, versions)
    desired: dict[Key, int] = {}
    for code, arr in (("energy_tax", tax_c), ("vat", vat_c)):
        for k, i in zip(*np.nonzero(arr)):
            desired[("cents", code, dates[int(k)], refs[int(i)])] = int(arr[k, i])
    run = SettlementRun(
        community=community,
        period=q,
        data_version=price_version(q_run.energy_version or q_run.data_version, prior),
        energy_version=q_run.energy_version,
        provisional=False,
        status="posted",
        tariff_digest=q_run.tariff_digest,
        kind="reprice",
        coverage_days=q_run.coverage_days,
        period_days=q_run.period_days,
        prior_wh=prior,
    )
    session.add(run)
    session.flush()
    taxes = [t for t in current if t.code in ("energy_tax", "vat")]
    rows, _, changed = _difference(run.id, community, q, taxes, desired, "posted")
    ledger.append(session, head, rows)
    run.n_transfers = len(rows)
    copies = [(run.id, *(getattr(d, c) for c in _MEMBER_DAY_COLUMNS[1:])) for d in days]
    ledger.insert_rows(session, MEMBER_DAYS, _MEMBER_DAY_COLUMNS, copies)
    _issue_statements(session, community, q, run.id, sorted(changed), head.last_seq)
    seal_run(session, run.id)
    return run.id


def _row(
    run_id: int,
    community: str,
    period: str,
    key: Key,
    amount: int,
    accounts: tuple[str, str],
    idem: str,
    flags: str,
    reverses: int | None = None,
    pending: int | None = None,
) -> dict[str, Any]:
    return {
        "ledger": key[0],
        "code": key[1],
        "day": key[2],
        "member_ref": key[3],
        "debit_account": accounts[0],
        "credit_account": accounts[1],
        "amount": int(amount),
        "idempotency_id": idem,
        "reverses_id": reverses,
        "pending_id": pending,
        "run_id": run_id,
        "community": community,
        "period": period,
        "flags": flags,
    }


_MEMBER_DAY_COLUMNS = (*MEMBER_DAY_FIELDS, "taxed_wh", "connection")
"""The columns a run writes per member day: the sealed fields and the tax base."""


def _store_member_days(session: Session, run_id: int, plan: EnergyPlan) -> None:
    """Member-day figures of a run; a day without any reading of the member's meters (a month
    in progress, a gap) is not stored, so statements list only days with meter data (its
    figures are all 0 Wh, so totals and reconciliation are the same either way). One bulk
    insert (``COPY`` on PostgreSQL) of plain values read from the plan's arrays at once."""
    taxed = plan.taxed_day if plan.taxed_day is not None else plan.shared_day
    shape = plan.shared_day.shape
    keep = np.ones(shape, dtype=bool) if plan.measured_day is None else plan.measured_day
    ks, js = np.nonzero(keep)  # day-major, members in order within a day
    refs, days = plan.community.refs, plan.days
    conns = plan.connections or (None,) * len(refs)
    columns = [
        a[keep].astype(np.int64).tolist()
        for a in (
            plan.offtake_day,
            plan.shared_day,
            plan.injection_day,
            plan.supplied_day,
            plan.discharge_day,
            plan.green_discharge_day,
            plan.green_supplied_day,
            taxed,
        )
    ]
    rows = list(
        zip(
            [run_id] * len(ks),
            [refs[j] for j in js.tolist()],
            [days[k] for k in ks.tolist()],
            *columns,
            [conns[j] for j in js.tolist()],
        )
    )
    ledger.insert_rows(session, MEMBER_DAYS, _MEMBER_DAY_COLUMNS, rows)


def _resolve_pending(factory: sessionmaker[Session], run_id: int, action: str) -> RunResult:
    with factory() as session, session.begin():
        head = ledger.lock_chain(session)
        run = session.get(SettlementRun, run_id)
        if run is None:
            raise NoaberError(f"no settlement run {run_id}")
        if run.status != "pending":
            raise NoaberError(f"run {run_id} is {run.status}, not pending")
        if action == "post" and run.prior_wh is not None:
            now = prior_year_wh(session, run.community, run.period)
            if {c: now.get(c, 0) for c in run.prior_wh} != run.prior_wh:
                raise NoaberError(
                    f"run {run_id} was priced before an earlier month of {run.period[:4]} "
                    "changed its energy-tax band: void it and run the period again"
                )
        pend = list(
            session.scalars(
                select(Transfer)
                # the flag as a literal, so that SQLite uses the partial index on it
                .where(Transfer.run_id == run_id, Transfer.flags == literal_column("'pending'"))
                .order_by(Transfer.seq)
            )
        )
        rows = [
            {
                "ledger": t.ledger,
                "code": t.code,
                "day": t.day,
                "member_ref": t.member_ref,
                "debit_account": t.debit_account,
                "credit_account": t.credit_account,
                "amount": t.amount,
                "idempotency_id": f"{action}|{t.idempotency_id}",
                "reverses_id": None,
                "pending_id": t.seq,
                "run_id": run_id,
                "community": t.community,
                "period": t.period,
                "flags": "post_pending" if action == "post" else "void_pending",
            }
            for t in pend
        ]
        ledger.append(session, head, rows)
        run.status = "posted" if action == "post" else "voided"
        session.flush()
        numbers: list[str] = []
        repriced: dict[str, int] = {}
        if action == "post":
            refs = sorted({str(t.member_ref) for t in pend if t.member_ref})
            numbers = _issue_statements(
                session, run.community, run.period, run_id, refs, head.last_seq
            )
        seal_run(session, run_id)
        if action == "post":
            doc = session.get(TariffDocument, run.tariff_digest)
            if doc is not None:
                hint = tariff_from_document(doc.document)
                repriced = _reprice_later(session, head, run.community, run.period, hint)
        out = _result(run, True, len(rows), 0, numbers)
        out.repriced = repriced
        return out


def post_pending(factory: sessionmaker[Session], run_id: int) -> RunResult:
    """Post a provisional run: its pending transfers start to count; statements are issued;
    later months whose tax band it moves are re-priced."""
    return _resolve_pending(factory, run_id, "post")


def void_pending(factory: sessionmaker[Session], run_id: int) -> RunResult:
    """Void a provisional run: its pending transfers will never count (its data can be run
    again)."""
    return _resolve_pending(factory, run_id, "void")


#: Cents codes a member is paid (+) or pays (-), as a statement's net (``DayLine.net_cents``).
_OWED = {"supplied": 1, "v2g": 1, "shared": -1, "energy_tax": -1, "vat": -1, "fee": -1}


@dataclass(frozen=True)
class MemberPreview:
    """What one run moves for one member: energy [Wh] and money [cents] per code (signed in
    the code's direction, a correction's reversals included), and the net the member is owed
    (negative: owes), as on the member's statement."""

    member_ref: str
    wh: dict[str, int]
    cents: dict[str, int]

    @property
    def net_cents(self) -> int:
        return sum(_OWED[c] * v for c, v in self.cents.items() if c in _OWED)


@dataclass(frozen=True)
class RunPreview:
    """A run and what it moves per member: for a pending run, what posting it would count."""

    run: SettlementRun
    members: tuple[MemberPreview, ...]

    @property
    def net_cents(self) -> int:
        return sum(m.net_cents for m in self.members)


def run_preview(session: Session, run_id: int) -> RunPreview:
    """What run ``run_id`` moves per member (its own transfers: pending ones for a
    provisional run, posted ones otherwise; not the transfers that posted or voided it).

    Raises
    ------
    energy.errors.NotFoundError
        If there is no such run.
    """
    from energy.errors import NotFoundError

    run = session.get(SettlementRun, run_id)
    if run is None:
        raise NotFoundError(f"no settlement run {run_id}")
    rows = session.execute(
        select(
            Transfer.member_ref,
            Transfer.ledger,
            Transfer.code,
            Transfer.debit_account,
            Transfer.amount,
        ).where(Transfer.run_id == run_id, Transfer.flags.in_(("pending", "posted")))
    ).all()
    wh: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    cents: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if not r.member_ref or r.code not in SETTLED_CODES:
            continue
        signed = _signed(r, run.community)
        (wh if r.ledger == "wh" else cents)[r.member_ref][r.code] += signed
    refs = sorted(set(wh) | set(cents))
    return RunPreview(
        run,
        tuple(MemberPreview(ref, dict(wh[ref]), dict(cents[ref])) for ref in refs),
    )
