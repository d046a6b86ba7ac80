"""The double-entry ledger: immutable, hash-chained transfers in Wh and in cents.

Each transfer moves ``amount`` (an integer > 0) from ``debit_account`` to ``credit_account``
in one ledger (``wh`` or ``cents``); an account's balance is its credits minus its debits.
Every transfer carries a client-made idempotency id (unique) and the hash of its predecessor;
its own hash is ``sha256`` over a canonical serialisation of all its fields including
``prev_hash`` (:func:`transfer_hash`). A correction is a reversing transfer (accounts swapped,
``reverses_id`` set) plus a new one, never an UPDATE; the database refuses UPDATE and DELETE
of transfers (triggers installed by the ``settlement`` migration).

Appending is serialised by locking the chain-head row (``SELECT … FOR UPDATE`` on
PostgreSQL; on SQLite an UPDATE of that row as the first statement takes the write lock).

Accounts: ``member:<ref>`` (pseudonymous), ``community:<name>`` (the community's own),
``community:<name>:pool`` (clearing of shared energy) and ``community:<name>:tax``
(energy tax and VAT payable).

References
----------
TigerBeetle, "Transfers" and "Two-phase transfers" (debits/credits, idempotency ids, pending
transfers posted or voided; "always add more transfers").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, aliased

from energy.db import is_postgres
from settlement.models import TRANSFERS, ChainHead, Transfer

GENESIS_HASH = "0" * 64
COUNTING_FLAGS = ("posted", "post_pending")
"""Flags of transfers that count in balances."""
HASHED_FIELDS = (
    "seq",
    "ledger",
    "debit_account",
    "credit_account",
    "amount",
    "idempotency_id",
    "reverses_id",
    "pending_id",
    "run_id",
    "community",
    "period",
    "code",
    "day",
    "member_ref",
    "flags",
    "prev_hash",
)
CHUNK = 5000
_DAY_INDEX = HASHED_FIELDS.index("day")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def member_account(ref: str) -> str:
    """The account of a member (by pseudonymous ref)."""
    return f"member:{ref}"


def community_account(community: str) -> str:
    """The community's own account (fees in, V2G compensation out)."""
    return f"community:{community}"


def pool_account(community: str) -> str:
    """The clearing account of shared energy (balance zero per day)."""
    return f"community:{community}:pool"


def tax_account(community: str) -> str:
    """Energy tax and VAT the community owes."""
    return f"community:{community}:tax"


def canonical(row: dict[str, Any]) -> bytes:
    """Canonical serialisation of a transfer's hashed fields.

    A compact JSON array (UTF-8) of the values of :data:`HASHED_FIELDS` in that order; dates
    as ISO 8601 strings, absent values as ``null``.
    """
    values = [row.get(f) for f in HASHED_FIELDS]
    day = values[_DAY_INDEX]
    if isinstance(day, dt.date):
        values[_DAY_INDEX] = day.isoformat()
    return _ENCODER.encode(values).encode()


def transfer_hash(row: dict[str, Any]) -> str:
    """``sha256`` hex of :func:`canonical` (which includes ``prev_hash``)."""
    return hashlib.sha256(canonical(row)).hexdigest()


def lock_chain(session: Session) -> ChainHead:
    """Lock the chain head for the rest of the transaction and return it.

    Must be the first statement of a posting transaction: on SQLite the UPDATE takes the
    database write lock (waiting up to the busy timeout) before anything is read.
    """
    if is_postgres(session.get_bind()):  # type: ignore[arg-type]
        return session.execute(
            select(ChainHead).where(ChainHead.id == 1).with_for_update()
        ).scalar_one()
    session.execute(update(ChainHead).where(ChainHead.id == 1).values(last_seq=ChainHead.last_seq))
    return session.execute(select(ChainHead).where(ChainHead.id == 1)).scalar_one()


def append(
    session: Session,
    head: ChainHead,
    rows: list[dict[str, Any]],
    on_chunk: Callable[[int, int], None] | None = None,
) -> list[int]:
    """Append transfers to the chain (the head must be locked by :func:`lock_chain`).

    Each row gives every field of :data:`HASHED_FIELDS` but ``seq`` and ``prev_hash``; this
    assigns them, computes the hashes, inserts in chunks and moves the head. Returns the
    sequence numbers.
    """
    seq, prev = int(head.last_seq), str(head.last_hash)
    out = []
    for row in rows:
        if int(row["amount"]) <= 0:
            raise ValueError(f"transfer {row['idempotency_id']}: amount must be > 0")
        seq += 1
        row["seq"] = seq
        row["prev_hash"] = prev
        row["hash"] = prev = transfer_hash(row)
        out.append(seq)
    # straight to the driver (executemany): the rows are plain ints, strings and dates
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    cols = [c.name for c in TRANSFERS.columns]
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {TRANSFERS.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    )
    day_col = cols.index("day")
    for i in range(0, len(rows), CHUNK):
        values = [tuple(r[c] for c in cols) for r in rows[i : i + CHUNK]]
        if sqlite:  # SQLAlchemy stores Date as ISO text on SQLite
            values = [(*v[:day_col], v[day_col].isoformat(), *v[day_col + 1 :]) for v in values]
        conn.exec_driver_sql(sql, values)
        if on_chunk is not None:
            on_chunk(min(i + CHUNK, len(rows)), len(rows))
    head.last_seq = seq
    head.last_hash = prev
    session.flush()
    return out


def effective_transfers(session: Session, community: str, period: str) -> list[Transfer]:
    """Transfers of a community and period that count now: posted, not reversals and not
    reversed."""
    rev = aliased(Transfer)
    q = (
        select(Transfer)
        .where(
            Transfer.community == community,
            Transfer.period == period,
            Transfer.flags.in_(COUNTING_FLAGS),
            Transfer.reverses_id.is_(None),
            ~select(rev.seq).where(rev.reverses_id == Transfer.seq).exists(),
        )
        .order_by(Transfer.seq)
    )
    return list(session.scalars(q))


def balances(
    session: Session,
    ledger: str,
    accounts: Iterable[str] | None = None,
    community: str | None = None,
    period: str | None = None,
    max_seq: int | None = None,
    member_ref: str | None = None,
    codes: Iterable[str] | None = None,
) -> dict[str, int]:
    """Balance (credits - debits) of accounts over counting transfers, optionally limited to
    a community, a period, transfers up to ``max_seq``, the transfers of one member and
    transfers of some codes (settlement codes without the payments of a SEPA run)."""
    conds = [Transfer.ledger == ledger, Transfer.flags.in_(COUNTING_FLAGS)]
    if codes is not None:
        conds.append(Transfer.code.in_(list(codes)))
    if member_ref is not None:
        conds.append(Transfer.member_ref == member_ref)
    if community is not None:
        conds.append(Transfer.community == community)
    if period is not None:
        conds.append(Transfer.period == period)
    if max_seq is not None:
        conds.append(Transfer.seq <= max_seq)
    acc = list(accounts) if accounts is not None else None
    if acc is not None:
        conds.append(or_(Transfer.debit_account.in_(acc), Transfer.credit_account.in_(acc)))
    out: dict[str, int] = defaultdict(int)
    credit = (
        select(Transfer.credit_account, func.sum(Transfer.amount))
        .where(*conds)
        .group_by(Transfer.credit_account)
    )
    debit = (
        select(Transfer.debit_account, func.sum(Transfer.amount))
        .where(*conds)
        .group_by(Transfer.debit_account)
    )
    for a, s in session.execute(credit):
        out[a] += int(s)
    for a, s in session.execute(debit):
        out[a] -= int(s)
    if acc is not None:
        return {a: out.get(a, 0) for a in acc}
    return dict(out)


@dataclass
class VerifyReport:
    """Result of :func:`verify`: ``ok`` or the first broken transfer and why."""

    checked: int = 0
    first_broken_seq: int | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None and not self.problems


def _iter_transfers(session: Session) -> Iterator[Transfer]:
    last = 0
    while True:
        batch = list(
            session.scalars(
                select(Transfer).where(Transfer.seq > last).order_by(Transfer.seq).limit(CHUNK)
            )
        )
        if not batch:
            return
        yield from batch
        last = batch[-1].seq


def verify(session: Session) -> VerifyReport:
    """Recompute the hash chain and check every invariant of every transfer.

    Checks, in sequence order: contiguous sequence numbers from 1; ``prev_hash`` equals the
    previous transfer's hash; the stored hash equals the recomputed one; amount > 0, a known
    ledger and two different accounts; a reversal mirrors the transfer it reverses (same
    ledger and amount, accounts swapped) and comes after it; a post/void of a pending
    transfer matches it. Then: the chain head points at the last transfer, and every pool
    account balances to zero per ledger (debits equal credits of shared energy).
    """
    report = VerifyReport()
    prev_hash = GENESIS_HASH
    expected = 1
    seen: dict[int, tuple[str, str, str, int, str]] = {}

    def broken(seq: int, why: str) -> VerifyReport:
        report.first_broken_seq = seq
        report.reason = why
        return report

    for t in _iter_transfers(session):
        row = {f: getattr(t, f) for f in HASHED_FIELDS}
        if t.seq != expected:
            return broken(t.seq, f"sequence gap: expected transfer {expected}, found {t.seq}")
        if t.prev_hash != prev_hash:
            return broken(t.seq, "prev_hash does not match the previous transfer's hash")
        if transfer_hash(row) != t.hash:
            return broken(t.seq, "hash does not match the transfer's contents (changed row)")
        if t.amount <= 0 or t.ledger not in ("wh", "cents") or t.debit_account == t.credit_account:
            return broken(t.seq, "invalid amount, ledger or accounts")
        if t.reverses_id is not None:
            orig = seen.get(t.reverses_id)
            if orig is None:
                return broken(t.seq, f"reverses unknown or later transfer {t.reverses_id}")
            if orig[:4] != (t.ledger, t.credit_account, t.debit_account, t.amount):
                return broken(t.seq, f"does not mirror the transfer {t.reverses_id} it reverses")
        if t.pending_id is not None:
            orig = seen.get(t.pending_id)
            if orig is None or orig[4] != "pending":
                return broken(
                    t.seq, f"refers to {t.pending_id}, which is not an earlier pending transfer"
                )
            if orig[:4] != (t.ledger, t.debit_account, t.credit_account, t.amount):
                return broken(t.seq, f"does not match the pending transfer {t.pending_id}")
        seen[t.seq] = (t.ledger, t.debit_account, t.credit_account, t.amount, t.flags)
        prev_hash = t.hash
        expected += 1
        report.checked += 1
    head = session.get(ChainHead, 1)
    if head is None or head.last_seq != expected - 1 or head.last_hash != prev_hash:
        return broken(
            expected, "the chain head does not point at the last transfer (transfers removed?)"
        )
    from settlement.models import MemberDay

    bad_day = session.execute(
        select(MemberDay.run_id, MemberDay.day)
        .group_by(MemberDay.run_id, MemberDay.day)
        .having(func.sum(MemberDay.shared_wh) != func.sum(MemberDay.supplied_wh))
        .limit(1)
    ).first()
    if bad_day is not None:
        report.problems.append(
            f"run {bad_day[0]}: allocated and supplied energy differ on {bad_day[1]}"
        )
    bad_member = session.execute(
        select(MemberDay.run_id, MemberDay.member_ref, MemberDay.day)
        .where(
            (MemberDay.shared_wh < 0)
            | (MemberDay.shared_wh > MemberDay.offtake_wh)
            | (MemberDay.supplied_wh < 0)
            | (MemberDay.supplied_wh > MemberDay.injection_wh)
        )
        .limit(1)
    ).first()
    if bad_member is not None:
        report.problems.append(
            f"run {bad_member[0]}: {bad_member[1]} on {bad_member[2]} shares more than metered"
        )
    for ledger in ("wh", "cents"):
        bal = balances(session, ledger)
        if sum(bal.values()) != 0:
            report.problems.append(f"ledger {ledger}: debits and credits differ")
        for account, value in sorted(bal.items()):
            if account.endswith(":pool") and value != 0:
                report.problems.append(f"ledger {ledger}: pool account {account} is off by {value}")
    return report
