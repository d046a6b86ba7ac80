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

import binascii
import datetime as dt
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import pq
from sqlalchemy import Row, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from energy.db import is_postgres
from settlement.models import TRANSFERS, ChainHead, MemberDay, Transfer

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
_TEXT_FIELDS = frozenset(
    (
        "ledger",
        "debit_account",
        "credit_account",
        "idempotency_id",
        "community",
        "period",
        "code",
        "member_ref",
        "flags",
        "prev_hash",
    )
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
APPENDED_LEAVES = "settlement_appended_leaves"
"""``session.info`` key: ``(seq, community, period, leaf hash)`` of the transfers appended in
the session's transaction (read by :func:`settlement.proof.seal_run` so that the period's
Merkle tree needs no read-back of what was just written)."""


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


def text_field(value: Any) -> str:
    """One value as :func:`canonical` writes it."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.replace("\\", "\\\\")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(int(value))


def canonical(row: dict[str, Any]) -> bytes:
    """Canonical serialisation of a transfer's hashed fields [UTF-8 bytes].

    The values of :data:`HASHED_FIELDS` in that order, separated by a tab: integers in
    decimal, dates as ISO 8601 (``YYYY-MM-DD``), absent values as ``\\N``, a backslash in a
    text doubled. Text fields never hold control characters (:func:`append` refuses them),
    so this is exactly the line PostgreSQL's ``COPY … TO STDOUT`` (text format, DateStyle
    ISO) prints for those columns, which lets :func:`verify` hash the database's own output.
    """
    return "\t".join(text_field(row.get(f)) for f in HASHED_FIELDS).encode()


def transfer_hash(row: dict[str, Any]) -> str:
    """``sha256`` hex of :func:`canonical` (which includes ``prev_hash``)."""
    return hashlib.sha256(canonical(row)).hexdigest()


def _head(seq: int, r: dict[str, Any]) -> str:
    """:func:`canonical` as text without its last field (``prev_hash``), for transfer ``seq``
    with the usual types and no backslash in a text (:func:`_chain` checks that over the
    whole batch and falls back on the per-field rule): the hot path of posting, one
    f-string."""
    null = "\\N"
    rev, pend, ref = r["reverses_id"], r["pending_id"], r["member_ref"]
    return (
        f"{seq:d}\t{r['ledger']}\t{r['debit_account']}\t{r['credit_account']}"
        f"\t{r['amount']:d}\t{r['idempotency_id']}\t{null if rev is None else f'{rev:d}'}"
        f"\t{null if pend is None else f'{pend:d}'}\t{r['run_id']:d}\t{r['community']}"
        f"\t{r['period']}\t{r['code']}\t{r['day'].isoformat()}\t{null if ref is None else ref}"
        f"\t{r['flags']}\t"
    )


def _head_exact(seq: int, r: dict[str, Any]) -> str:
    """:func:`_head` by the per-field rule of :func:`canonical` (a backslash doubled)."""
    return "\t".join(text_field(seq if f == "seq" else r.get(f)) for f in HASHED_FIELDS[:-1]) + "\t"


_N_TABS = len(HASHED_FIELDS) - 1
_N_FIELDS = len(HASHED_FIELDS)
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
"""A control character other than tab and newline (those are counted instead)."""
_CONTROL_BYTES = bytes((*range(0x09), *range(0x0A, 0x20), 0x7F))
"""Every control character but tab, as UTF-8 bytes (each is one byte there)."""


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
    assigns them, computes the hashes (and the Merkle leaf hashes, kept in
    ``session.info[APPENDED_LEAVES]``), inserts in chunks (PostgreSQL: ``COPY FROM STDIN``
    of the canonical lines themselves; SQLite: ``executemany``) and moves the head. Returns
    the sequence numbers.

    Raises
    ------
    ValueError
        An amount <= 0, or a text field with a control character (which the canonical
        serialisation cannot hold); nothing is written.
    """
    seq0, prev = int(head.last_seq), str(head.last_hash)
    for row in rows:
        if int(row["amount"]) <= 0:
            raise ValueError(f"transfer {row['idempotency_id']}: amount must be > 0")
    lines, leaves = _chain(rows, seq0, prev)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        _copy_in(conn, lines, on_chunk)
    else:
        _insert_many(conn, rows, on_chunk)
    session.info.setdefault(APPENDED_LEAVES, []).extend(leaves)
    if rows:
        head.last_seq = seq0 + len(rows)
        head.last_hash = rows[-1]["hash"]
    session.flush()
    return list(range(seq0 + 1, seq0 + len(rows) + 1))


def _chain(
    rows: list[dict[str, Any]], seq: int, prev: str
) -> tuple[list[bytes], list[tuple[int, str, str, bytes]]]:
    """Number and hash-chain ``rows`` after transfer ``seq`` (hash ``prev``): sets ``seq``,
    ``prev_hash`` and ``hash`` of each; returns each row's ``COPY`` line (its canonical line,
    a tab, its hash and a newline; UTF-8) and its Merkle leaf ``(seq, community, period, leaf
    hash)``.

    The hot path of posting, in three passes: every line but its ``prev_hash`` formatted at
    once (one f-string per row, :func:`_head`) and encoded in one call; the one check over the
    whole batch that no text holds a backslash (the backslashes are exactly the NULL markers;
    else the rows are formatted again by the per-field rule) nor what :func:`canonical`
    refuses (a tab, newline or other control character; then checked row by row to name the
    first); then the chain itself, per row a bytes concatenation and two ``sha256``.
    """
    seq0 = seq
    heads = [_head(seq0 + k, row) for k, row in enumerate(rows, 1)]
    backslashes = sum(h.count("\\") for h in heads)
    nulls = sum(
        (r["reverses_id"] is None) + (r["pending_id"] is None) + (r["member_ref"] is None)
        for r in rows
    )
    if backslashes != nulls:
        heads = [_head_exact(seq0 + k, row) for k, row in enumerate(rows, 1)]
    n = len(rows)
    joined = "\n".join(heads).encode()
    encoded = joined.split(b"\n") if rows else []
    if (
        len(encoded) != n
        or joined.count(b"\t") != _N_TABS * n
        or len(joined) - len(joined.translate(None, _CONTROL_BYTES)) != max(n - 1, 0)
    ):  # a tab, newline or other control character in a text (the n - 1 joins aside)
        for row, head in zip(rows, heads):
            if head.count("\t") != _N_TABS or "\n" in head or _BAD_TEXT.search(head):
                raise ValueError(
                    f"transfer {row['idempotency_id']!r}: a text field holds a control character"
                )
        raise ValueError("a transfer's text field holds a control character")
    lines: list[bytes] = []
    leaves: list[tuple[int, str, str, bytes]] = []
    sha, hexlify = hashlib.sha256, binascii.hexlify
    add_line, add_leaf = lines.append, leaves.append
    prev_b = prev.encode()
    for row, head_b in zip(rows, encoded):
        seq += 1
        data = head_b + prev_b
        row["seq"] = seq
        row["prev_hash"] = prev
        prev_b = hexlify(sha(data).digest())
        row["hash"] = prev = prev_b.decode()
        add_leaf((seq, row["community"], row["period"], sha(b"\x00" + data).digest()))
        add_line(data + b"\t" + prev_b + b"\n")
    return lines, leaves


def _copy_in(conn: Any, lines: list[bytes], on_chunk: Callable[[int, int], None] | None) -> None:
    """``COPY settlement_transfers FROM STDIN``: each canonical line plus its hash."""
    cols = ", ".join((*HASHED_FIELDS, "hash"))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {TRANSFERS.name} ({cols}) FROM STDIN") as copy:
        for i in range(0, len(lines), CHUNK):
            copy.write(b"".join(lines[i : i + CHUNK]))
            if on_chunk is not None:
                on_chunk(min(i + CHUNK, len(lines)), len(lines))


def _insert_many(
    conn: Any, rows: list[dict[str, Any]], on_chunk: Callable[[int, int], None] | None
) -> None:
    """``executemany`` straight to the driver: the rows are plain ints, strings and dates."""
    cols = [*HASHED_FIELDS, "hash"]
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {TRANSFERS.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    )
    day_col = cols.index("day")
    sqlite = conn.dialect.name == "sqlite"
    for i in range(0, len(rows), CHUNK):
        values = [tuple(r[c] for c in cols) for r in rows[i : i + CHUNK]]
        if sqlite:  # SQLAlchemy stores Date as ISO text on SQLite
            values = [(*v[:day_col], v[day_col].isoformat(), *v[day_col + 1 :]) for v in values]
        conn.exec_driver_sql(sql, values)
        if on_chunk is not None:
            on_chunk(min(i + CHUNK, len(rows)), len(rows))


def copy_text(value: Any) -> str:
    """One value as PostgreSQL's ``COPY`` text format reads it: ``\\N`` for NULL, integers in
    decimal, dates ISO 8601, a text with backslash, tab, newline and CR escaped."""
    kind = type(value)
    if kind is int:  # the common case first
        return str(value)
    if value is None:
        return "\\N"
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return (
                value.replace("\\", "\\\\")
                .replace("\t", "\\t")
                .replace("\n", "\\n")
                .replace("\r", "\\r")
            )
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(int(value))


def insert_rows(
    session: Session, table: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert plain rows (integers, texts, dates, None; in ``columns`` order) in bulk, in the
    session's transaction: PostgreSQL ``COPY … FROM STDIN`` (text format), else the
    driver's ``executemany`` (dates as ISO text, as SQLAlchemy stores them on SQLite).

    The table's constraints and triggers apply as to any INSERT.
    """
    if not rows:
        return
    conn = session.connection()
    name = table.name
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        t = copy_text
        with raw.cursor() as cur, cur.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as cp:
            for i in range(0, len(rows), CHUNK):
                cp.write("".join("\t".join(map(t, r)) + "\n" for r in rows[i : i + CHUNK]).encode())
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    iso = conn.dialect.name == "sqlite"
    for i in range(0, len(rows), CHUNK):
        block = rows[i : i + CHUNK]
        if iso:
            block = [
                tuple(v.isoformat() if isinstance(v, dt.date) else v for v in r) for r in block
            ]
        conn.exec_driver_sql(sql, list(block))


def effective_transfers(session: Session, community: str, period: str) -> list[Row[Any]]:
    """Transfers of a community and period that count now: posted, not reversals and not
    reversed; as rows with every column of the table as an attribute (``t.amount``), read
    without ORM objects."""
    rev = aliased(Transfer)
    q = (
        select(*TRANSFERS.c)
        .where(
            Transfer.community == community,
            Transfer.period == period,
            Transfer.flags.in_(COUNTING_FLAGS),
            Transfer.reverses_id.is_(None),
            ~select(rev.seq).where(rev.reverses_id == Transfer.seq).exists(),
        )
        .order_by(Transfer.seq)
    )
    return list(session.execute(q))


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
    """Result of :func:`verify`: ``ok``, or the first broken record and why.

    ``first_broken_seq`` is the sequence number of the first broken transfer;
    ``first_broken`` names the first broken record of any kind (``transfer 7``,
    ``member day run 1 m-dh01 2026-10-05``, ``statement NB-2026-000004``).
    """

    checked: int = 0
    first_broken_seq: int | None = None
    first_broken: str | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)
    #: Merkle leaf hashes per (community, period), in sequence order (see :func:`verify`).
    leaves: dict[tuple[str, str], list[bytes]] = field(default_factory=dict, repr=False)
    #: The sequence number of each of those leaves.
    leaf_seqs: dict[tuple[str, str], list[int]] = field(default_factory=dict, repr=False)
    records_checked: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_broken is None and not self.problems

    def broken(self, name: str, why: str, seq: int | None = None) -> VerifyReport:
        """Record the first broken record (a later call does not replace it)."""
        if self.first_broken is None:
            self.first_broken, self.reason, self.first_broken_seq = name, why, seq
        return self


_CHAIN_COLUMNS = ", ".join((*HASHED_FIELDS, "hash"))
VERIFY_BLOCK = 20_000
_INT_FIELDS = frozenset(("seq", "amount", "reverses_id", "pending_id", "run_id"))


def _line_sql() -> str:
    """SQLite SQL for a transfer's :func:`canonical` line plus a tab and its stored hash,
    built by the database from the stored values (integers in decimal, the ISO date text
    SQLAlchemy stores, NULL as ``\\N``, a backslash in a text doubled): one text value per
    transfer instead of one Python object per field."""
    parts = []
    for f in (*HASHED_FIELDS, "hash"):
        if f in _INT_FIELDS:
            value = f"CAST({f} AS TEXT)"
        elif f == "day":
            value = "day"
        else:
            value = f"replace({f}, '\\', '\\\\')"
        parts.append(f"coalesce({value}, '\\N')")
    return " || char(9) || ".join(parts)


def stream_lines(
    session: Session,
    community: str | None = None,
    period: str | None = None,
    max_seq: int | None = None,
) -> Iterator[bytes]:
    """Transfers as their canonical line plus a tab and the stored hash, in seq order (all,
    or those of a community and period up to ``max_seq``).

    PostgreSQL: the database's own ``COPY (SELECT …) TO STDOUT`` text (DateStyle ISO),
    streamed; SQLite: one text value per transfer, the line formatted by the database
    (:func:`_line_sql`) from the stored values, by :func:`canonical`'s rule.
    """
    conds: list[str] = []
    params: list[Any] = []
    for col, value in (("community", community), ("period", period)):
        if value is not None:
            conds.append(f"{col} = %s")
            params.append(value)
    if max_seq is not None:
        conds.append("seq <= %s")
        params.append(int(max_seq))
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        query = f"SELECT {_CHAIN_COLUMNS} FROM {TRANSFERS.name}{where} ORDER BY seq"
        yield from _copy_lines(conn, query, params, in_key_order=not conds)
        return
    query = f"SELECT {_line_sql()} FROM {TRANSFERS.name}{where} ORDER BY seq"
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    result = conn.execution_options(stream_results=True).exec_driver_sql(
        query.replace("%s", mark), tuple(params)
    )
    while batch := result.fetchmany(VERIFY_BLOCK):
        for (text,) in batch:
            yield text.encode()


_PG_STREAM_SETTINGS = (("enable_sort", "off"), ("max_parallel_workers_per_gather", "0"))
"""Planner settings while the chain is streamed: the primary key's index gives the rows in
``seq`` order as they are read (first row at once, no sort of the whole table first, no
parallel workers taking the cores the hashing needs); restored afterwards."""


def _copy_lines(
    conn: Any, query: str, params: list[Any], in_key_order: bool = False
) -> Iterator[bytes]:
    """The rows of ``query`` as PostgreSQL's ``COPY … TO STDOUT`` text, one line each
    (without its newline), streamed in the order of the query; ``in_key_order``: the whole
    table in primary-key order, read along its index (:data:`_PG_STREAM_SETTINGS`).

    libpq hands over one data row per message; a message that is not exactly one line is
    split (and a partial one joined with the next), so the lines are right either way.
    """
    conn.exec_driver_sql("SET LOCAL datestyle = 'ISO, YMD'")
    settings = _PG_STREAM_SETTINGS if in_key_order else ()
    names = [name for name, _ in settings]
    before = (
        conn.exec_driver_sql("SELECT " + ", ".join(f"current_setting('{n}')" for n in names)).one()
        if names
        else ()
    )
    for name, value in settings:
        conn.exec_driver_sql(f"SELECT set_config('{name}', '{value}', true)")
    raw: Any = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT", params or None) as copy:
            pending = b""
            nl = 10  # b"\n"
            for block in copy:
                data = bytes(block)
                if pending:
                    data, pending = pending + data, b""
                if data[-1] == nl and data.find(b"\n", 0, -1) < 0:  # the usual case
                    yield data[:-1]
                    continue
                parts = data.split(b"\n")
                pending = parts.pop()
                yield from parts
            if pending:
                yield pending
    finally:
        if raw.info.transaction_status == pq.TransactionStatus.INTRANS:  # still usable
            for name, value in zip(names, before):
                conn.exec_driver_sql(f"SELECT set_config('{name}', '{value}', true)")


def verify(
    session: Session,
    expected: Callable[[int], bytes | None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Recompute the hash chain and check every invariant of every transfer.

    Checks, in sequence order: contiguous sequence numbers from 1; ``prev_hash`` equals the
    previous transfer's hash; the stored hash equals the recomputed one; amount > 0, a known
    ledger and two different accounts; with ``expected`` (seq -> the hash a signed
    checkpoint holds for it, see :mod:`settlement.checkpoints`), the hash equals it. Then: a
    reversal mirrors the transfer it reverses (same ledger and amount, accounts swapped) and
    comes after it; a post/void of a pending transfer matches it; the chain head points at the
    last transfer; every pool account balances to zero per ledger over the counting
    transfers (summed from the same stream, no second pass over the table; the sum over all
    accounts is zero by construction, each transfer debiting and crediting one amount, so it
    is not recomputed). The first broken transfer is named; the Merkle leaf hashes of each
    period are kept for :mod:`settlement.proof`.
    """
    report = VerifyReport()
    prev_hash = GENESIS_HASH.encode()
    seq = 0
    raw_leaves: dict[tuple[bytes, bytes], tuple[list[bytes], list[int]]] = {}
    sha = hashlib.sha256
    ledgers = frozenset((b"wh", b"cents"))
    not_positive = frozenset(b"-0")  # how COPY prints an integer <= 0 starts
    last_c = last_p = None
    leaves: list[bytes] = []
    seqs: list[int] = []
    counting = frozenset(f.encode() for f in COUNTING_FLAGS)
    pool: dict[tuple[bytes, bytes], int] = defaultdict(int)
    for line in stream_lines(session):
        f = line.split(b"\t")
        if len(f) != _N_FIELDS + 1:  # a tab or newline in a text: no transfer appended that
            return report.broken(
                f"transfer {seq + 1}", "a text field holds a tab or newline (changed row)", seq + 1
            )
        seq += 1
        if int(f[0]) != seq:
            return report.broken(
                f"transfer {seq}", f"sequence gap: expected transfer {seq}, found {int(f[0])}", seq
            )
        if f[15] != prev_hash:
            return report.broken(
                f"transfer {seq}", "prev_hash does not match the previous transfer's hash", seq
            )
        stored = f[16]
        body = line[: -1 - len(stored)]
        if sha(body).hexdigest().encode() != stored:
            return report.broken(
                f"transfer {seq}", "hash does not match the transfer's contents (changed row)", seq
            )
        if not f[4] or f[4][0] in not_positive or f[1] not in ledgers or f[2] == f[3]:
            return report.broken(f"transfer {seq}", "invalid amount, ledger or accounts", seq)
        if expected is not None:
            signed = expected(seq)
            if signed is not None and signed != stored:
                return report.broken(
                    f"transfer {seq}",
                    "hash differs from the one in a signed checkpoint (the chain was rewritten "
                    "from here on)",
                    seq,
                )
        if f[9] != last_c or f[10] != last_p:  # runs of one period follow each other
            last_c, last_p = f[9], f[10]
            leaves, seqs = raw_leaves.setdefault((last_c, last_p), ([], []))
        leaves.append(sha(b"\x00" + body).digest())  # decoded once per period at the end
        seqs.append(seq)
        prev_hash = stored
        if f[14] in counting and (f[2].endswith(b":pool") or f[3].endswith(b":pool")):
            amount = int(f[4])
            pool[(f[1], f[3])] += amount
            pool[(f[1], f[2])] -= amount
        if on_progress is not None and seq % VERIFY_BLOCK == 0:
            on_progress(seq)
    report.checked = seq
    expected_seq = seq + 1
    report.leaves = {(_unescape(c), _unescape(p)): v[0] for (c, p), v in raw_leaves.items()}
    report.leaf_seqs = {(_unescape(c), _unescape(p)): v[1] for (c, p), v in raw_leaves.items()}
    if (bad := _bad_links(session)) is not None:
        return report.broken(f"transfer {bad[0]}", bad[1], bad[0])
    head = session.get(ChainHead, 1)
    if head is None or head.last_seq != report.checked or head.last_hash.encode() != prev_hash:
        return report.broken(
            f"transfer {expected_seq}",
            "the chain head does not point at the last transfer (transfers removed?)",
            expected_seq,
        )
    _member_day_invariants(session, report)
    off = {(_unescape(led), _unescape(a)): v for (led, a), v in pool.items() if v != 0}
    for ledger_name in ("wh", "cents"):
        for (led, account), value in sorted(off.items()):
            if led == ledger_name and account.endswith(":pool"):
                report.problems.append(
                    f"ledger {ledger_name}: pool account {account} is off by {value}"
                )
    return report


def _unescape(raw: bytes) -> str:
    """A text field of a canonical line as the value it stands for."""
    return raw.decode().replace("\\\\", "\\")


def _bad_links(session: Session) -> tuple[int, str] | None:
    """The first reversal or pending post/void that does not match what it refers to."""
    orig = aliased(Transfer)
    rev = session.execute(
        select(Transfer.seq, Transfer.reverses_id, orig.seq)
        .outerjoin(orig, orig.seq == Transfer.reverses_id)
        .where(
            Transfer.reverses_id.is_not(None),
            (orig.seq.is_(None))
            | (orig.seq >= Transfer.seq)
            | (orig.ledger != Transfer.ledger)
            | (orig.amount != Transfer.amount)
            | (orig.credit_account != Transfer.debit_account)
            | (orig.debit_account != Transfer.credit_account),
        )
        .order_by(Transfer.seq)
        .limit(1)
    ).first()
    pend = session.execute(
        select(Transfer.seq, Transfer.pending_id, orig.seq)
        .outerjoin(orig, orig.seq == Transfer.pending_id)
        .where(
            Transfer.pending_id.is_not(None),
            (orig.seq.is_(None))
            | (orig.seq >= Transfer.seq)
            | (orig.flags != "pending")
            | (orig.ledger != Transfer.ledger)
            | (orig.amount != Transfer.amount)
            | (orig.credit_account != Transfer.credit_account)
            | (orig.debit_account != Transfer.debit_account),
        )
        .order_by(Transfer.seq)
        .limit(1)
    ).first()
    found = []
    if rev is not None:
        why = (
            f"reverses unknown or later transfer {rev[1]}"
            if rev[2] is None or rev[2] >= rev[0]
            else f"does not mirror the transfer {rev[1]} it reverses"
        )
        found.append((int(rev[0]), why))
    if pend is not None:
        found.append(
            (
                int(pend[0]),
                f"refers to {pend[1]}, which is not an earlier pending transfer it matches",
            )
        )
    return min(found) if found else None


def _member_day_invariants(session: Session, report: VerifyReport) -> None:
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
