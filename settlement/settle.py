"""Settlement runs: allocate, price and post a community's period to the ledger.

A run is keyed by ``(community, period, data_version)`` (unique): the data version is a hash
of the meter data, the community file and the tariff, so settling the same data twice posts
nothing new. A run is planned outside the database (:func:`plan_energy`) and posted in one
transaction (:func:`post_run`): lock the chain head, price (the energy-tax band depends on
the year so far in the ledger), compare with what already counts for the period, post
reversing transfers for what changed plus the new transfers, store the member-day figures and
issue statements with gap-free numbers. Killed half-way, nothing of the run remains.

Provisional runs (estimated data) post ``pending`` transfers that do not count until
:func:`post_pending` posts them or :func:`void_pending` voids them.

Transfers per member and local day: ``wh/shared`` pool -> member, ``wh/supplied`` member ->
pool, ``cents/shared`` member -> pool, ``cents/supplied`` pool -> member, ``cents/energy_tax``
and ``cents/vat`` member -> tax, ``cents/v2g`` community -> member (EV discharge), and once per
period ``cents/fee`` member -> community.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from energy.errors import NoaberError, ValidationError
from energy.models import MemberKind
from energy.sites import MemberSpec, ensure_community, ensure_member
from energy.timegrid import isp_range, local_date_of, local_period_bounds
from settlement import ledger
from settlement.allocation import Allocation, largest_remainder, ref_rank
from settlement.community import (
    CommunitySpec,
    MeterData,
    allocate_community,
    key_matrix,
    shares_matrix,
)
from settlement.models import MEMBER_DAYS, DocCounter, SettlementRun, Statement, Transfer
from settlement.pricing import (
    NC_PER_CENT,
    Tariff,
    energy_tax_nc,
    fee_cents,
    round_nc,
    shared_price_nc,
    v2g_nc_per_wh,
    vat_cents,
)
from settlement.proof import seal_run
from settlement.provenance import storage_provenance

WH_CODES = ("shared", "supplied")
CENTS_CODES = ("shared", "supplied", "energy_tax", "vat", "v2g", "fee")


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
    #: (D, N) whether a member's meters had any reading on a day; None: all days (CSV data).
    measured_day: np.ndarray | None = None


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
            data.isps, data.members, data.offtake_wh * mask, data.injection_wh * mask, measured
        )
    alloc = allocate_community(community, data)
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
    )


def price_plan(plan: EnergyPlan, prior_year_wh: dict[str, int]) -> dict[str, np.ndarray]:
    """Money per code, local day and member [cents], ``(D, N)`` int64 arrays.

    ``prior_year_wh``: shared energy each member received earlier in the calendar year
    [Wh] (it sets the energy-tax band). Rounding follows :mod:`settlement.pricing`.
    """
    isps = plan.data.isps
    refs = plan.community.refs
    rank = ref_rank(refs)
    alloc = plan.alloc
    d_n = plan.shared_day.shape
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
    tax_c = np.zeros(d_n, dtype=np.int64)
    vat_c = np.zeros(d_n, dtype=np.int64)
    for i, ref in enumerate(refs):
        prior = int(prior_year_wh.get(ref, 0))
        for k, v in enumerate(versions):
            nc = energy_tax_nc(plan.shared_day[k : k + 1, i], prior, v.energy_tax_bands)
            tax_c[k, i] = int(round_nc(nc)[0])
            prior += int(plan.shared_day[k, i])
    for k, v in enumerate(versions):
        vat_c[k] = vat_cents(shared_c[k] + tax_c[k], v.vat_pct)
    fee = np.zeros(d_n, dtype=np.int64)
    for i, m in enumerate(plan.community.members):
        # the monthly fee, pro rata to the days of membership, rounded half to even
        days_active = sum(m.active_on(d) for d in plan.days)
        if days_active:
            whole = Decimal(fee_cents(versions[0])) * days_active / len(plan.days)
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
    """Outcome of posting a run."""

    run_id: int
    created: bool
    status: str
    n_transfers: int
    n_reversals: int
    statements: list[str]
    data_version: str


def _prior_year_wh(
    session: Session, community: str, period: str, refs: tuple[str, ...]
) -> dict[str, int]:
    year = period[:4]
    rows = session.execute(
        select(Transfer.credit_account, func.sum(Transfer.amount))
        .where(
            Transfer.ledger == "wh",
            Transfer.code == "shared",
            Transfer.flags.in_(ledger.COUNTING_FLAGS),
            Transfer.period >= f"{year}-01",
            Transfer.period < period,
        )
        .group_by(Transfer.credit_account)
    ).all()
    reversed_rows = session.execute(
        select(Transfer.debit_account, func.sum(Transfer.amount))
        .where(
            Transfer.ledger == "wh",
            Transfer.code == "shared",
            Transfer.flags.in_(ledger.COUNTING_FLAGS),
            Transfer.reverses_id.is_not(None),
            Transfer.period >= f"{year}-01",
            Transfer.period < period,
        )
        .group_by(Transfer.debit_account)
    ).all()
    out = {ref: 0 for ref in refs}
    for acc, s in rows:
        if acc.startswith("member:"):
            out[acc[7:]] = out.get(acc[7:], 0) + int(s)
    for acc, s in reversed_rows:
        if acc.startswith("member:"):
            out[acc[7:]] = out.get(acc[7:], 0) - int(s)
    return out


def _issue_statements(
    session: Session, community: str, period: str, run_id: int, refs: list[str], max_seq: int
) -> list[str]:
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
    numbers = []
    for ref in sorted(refs):
        prev = session.execute(
            select(Statement)
            .where(
                Statement.member_ref == ref,
                Statement.community == community,
                Statement.period == period,
            )
            .order_by(Statement.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        counter.last_number += 1
        number = f"NB-{period[:4]}-{counter.last_number:06d}"
        session.add(
            Statement(
                number=number,
                member_ref=ref,
                community=community,
                period=period,
                run_id=run_id,
                kind="statement" if prev is None else "correction",
                corrects_id=None if prev is None else prev.id,
                max_seq=max_seq,
            )
        )
        numbers.append(number)
    session.flush()
    return numbers


def _ensure_members(session: Session, community: CommunitySpec) -> None:
    """Create the community and those of its pseudonymous members that are not stored (with
    their name as personal data), check the stored ones, and link them all."""
    members = []
    for k, spec in enumerate(community.members):
        kind = MemberKind(spec.kind) if spec.kind else None
        got = ensure_member(
            session,
            MemberSpec(spec.ref, kind, spec.name),
            update=False,
            source=community.source,
            path=f"members[{k}]",
        )
        members.append(got.row)
    ensure_community(session, community.name, members, community.display_name, update=False)


def _same_run(session: Session, plan: EnergyPlan) -> RunResult | None:
    """The stored run of this community, period and data version, as posting it again returns it."""
    existing = session.execute(
        select(SettlementRun).where(
            SettlementRun.community == plan.community.name,
            SettlementRun.period == plan.period,
            SettlementRun.data_version == plan.data_version,
        )
    ).scalar_one_or_none()
    if existing is None:
        return None
    return RunResult(existing.id, False, existing.status, 0, 0, [], plan.data_version)


def post_run(
    factory: sessionmaker[Session],
    plan: EnergyPlan,
    provisional: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Post a planned run in one transaction; idempotent per ``(community, period, data_version)``.

    Raises
    ------
    NoaberError
        If a provisional run of the period is still pending (post or void it first), or a
        provisional run is asked for a period that already has posted transfers.
    """
    community = plan.community.name
    try:
        with factory() as session, session.begin():
            head = ledger.lock_chain(session)
            existing = _same_run(session, plan)
            if existing is not None:
                return existing
            pending = session.execute(
                select(SettlementRun).where(
                    SettlementRun.community == community,
                    SettlementRun.period == plan.period,
                    SettlementRun.status == "pending",
                )
            ).scalar_one_or_none()
            if pending is not None:
                raise NoaberError(
                    f"provisional run {pending.id} of {community} {plan.period} is pending: "
                    "post or void it first"
                )
            _ensure_members(session, plan.community)
            effective = ledger.effective_transfers(session, community, plan.period)
            if provisional and effective:
                raise NoaberError(
                    f"{community} {plan.period} already has posted transfers; a correction is "
                    "a final run, not a provisional one"
                )
            prior = _prior_year_wh(session, community, plan.period, plan.community.refs)
            money = price_plan(plan, prior)
            desired = desired_transfers(plan, money)
            run = SettlementRun(
                community=community,
                period=plan.period,
                data_version=plan.data_version,
                provisional=provisional,
                status="pending" if provisional else "posted",
                tariff_digest=plan.tariff.digest,
            )
            session.add(run)
            session.flush()
            rows: list[dict[str, Any]] = []
            changed: set[str] = set()
            current = {(t.ledger, t.code, t.day, str(t.member_ref)): t for t in effective}
            signed = {
                key: t.amount
                if t.debit_account == code_accounts(key[1], key[0], community, key[3])[0]
                else -t.amount
                for key, t in current.items()
            }
            for key, t in current.items():
                if desired.get(key) != signed[key]:
                    rows.append(
                        _row(
                            run.id,
                            plan,
                            key,
                            t.amount,
                            (t.credit_account, t.debit_account),
                            "rev|" + t.idempotency_id,
                            "posted",
                            reverses=t.seq,
                        )
                    )
                    changed.add(str(t.member_ref))
            n_rev = len(rows)
            flags = "pending" if provisional else "posted"
            for key, amount in desired.items():
                if signed.get(key) == amount:
                    continue
                accounts = code_accounts(key[1], key[0], community, key[3])
                if amount < 0:
                    accounts, amount = (accounts[1], accounts[0]), -amount
                idem = f"{community}|{plan.period}|{key[0]}|{key[1]}|{key[2].isoformat()}|{key[3]}|{plan.data_version}"
                rows.append(_row(run.id, plan, key, amount, accounts, idem, flags))
                changed.add(key[3])
            ledger.append(session, head, rows, on_chunk)
            run.n_transfers = len(rows)
            _store_member_days(session, run.id, plan)
            numbers: list[str] = []
            if not provisional:
                numbers = _issue_statements(
                    session, community, plan.period, run.id, sorted(changed), head.last_seq
                )
            seal_run(session, run.id)  # s4-proof: Merkle root and sealed records
            return RunResult(run.id, True, run.status, len(rows), n_rev, numbers, plan.data_version)
    except IntegrityError:
        # a concurrent run with the same key won the race (its unique constraint held)
        with factory() as session:
            existing = _same_run(session, plan)
            if existing is None:
                raise
            return existing


def _row(
    run_id: int,
    plan: EnergyPlan,
    key: tuple[str, str, dt.date, str],
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
        "community": plan.community.name,
        "period": plan.period,
        "flags": flags,
    }


def _store_member_days(session: Session, run_id: int, plan: EnergyPlan) -> None:
    """Member-day figures of a run; a day without any reading of the member's meters (a month
    in progress, a gap) is not stored, so statements list only days with meter data (its
    figures are all 0 Wh, so totals and reconciliation are the same either way)."""
    rows = []
    for k, day in enumerate(plan.days):
        for i, ref in enumerate(plan.community.refs):
            if plan.measured_day is not None and not plan.measured_day[k, i]:
                continue
            rows.append(
                {
                    "run_id": run_id,
                    "member_ref": ref,
                    "day": day,
                    "offtake_wh": int(plan.offtake_day[k, i]),
                    "shared_wh": int(plan.shared_day[k, i]),
                    "injection_wh": int(plan.injection_day[k, i]),
                    "supplied_wh": int(plan.supplied_day[k, i]),
                    "discharge_wh": int(plan.discharge_day[k, i]),
                    "green_discharge_wh": int(plan.green_discharge_day[k, i]),
                    "green_supplied_wh": int(plan.green_supplied_day[k, i]),
                }
            )
    for i in range(0, len(rows), ledger.CHUNK):
        session.execute(insert(MEMBER_DAYS), rows[i : i + ledger.CHUNK])


def _resolve_pending(factory: sessionmaker[Session], run_id: int, action: str) -> RunResult:
    with factory() as session, session.begin():
        head = ledger.lock_chain(session)
        run = session.get(SettlementRun, run_id)
        if run is None:
            raise NoaberError(f"no settlement run {run_id}")
        if run.status != "pending":
            raise NoaberError(f"run {run_id} is {run.status}, not pending")
        pend = list(
            session.scalars(
                select(Transfer)
                .where(Transfer.run_id == run_id, Transfer.flags == "pending")
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
        numbers: list[str] = []
        if action == "post":
            refs = sorted({str(t.member_ref) for t in pend if t.member_ref})
            numbers = _issue_statements(
                session, run.community, run.period, run_id, refs, head.last_seq
            )
        seal_run(session, run_id)  # s4-proof: Merkle root and sealed records
        return RunResult(run_id, True, run.status, len(rows), 0, numbers, run.data_version)


def post_pending(factory: sessionmaker[Session], run_id: int) -> RunResult:
    """Post a provisional run: its pending transfers start to count; statements are issued."""
    return _resolve_pending(factory, run_id, "post")


def void_pending(factory: sessionmaker[Session], run_id: int) -> RunResult:
    """Void a provisional run: its pending transfers will never count."""
    return _resolve_pending(factory, run_id, "void")
