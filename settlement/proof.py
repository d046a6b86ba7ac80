"""Tamper evidence beyond the transfers: sealed records, period Merkle roots, statement proofs.

Three things here, each checkable without trusting the database:

* **Sealed records.** Every member-day row, statement and period root is sealed when its run
  posts (:func:`seal_run`, called in the posting transaction): a ``Record`` holds the sha256
  of the row's canonical content and is hash-chained like the transfers (``ChainHead`` row
  2). :func:`verify_records` checks every row against its record, the records' chain, and that
  statement numbers are gap-free, and names the first broken record. The signed checkpoints
  of :mod:`settlement.checkpoints` cover this chain too.
* **Period roots.** Per (community, period) an RFC 6962 Merkle tree over its transfers in
  sequence order (leaf data: :func:`settlement.ledger.canonical`); each posting that adds
  transfers to the period stores the root of the grown tree (``PeriodRoot``), which
  statements print, the API serves and :func:`publish_roots` writes to files.
* **Statement proofs.** :func:`statement_proof` exports a statement with every transfer of
  the member it is read from and each transfer's inclusion proof; :func:`verify_statement`
  checks such a file against a root alone (no database): each transfer is in the tree, and
  the statement's figures are what its transfers add up to.

References
----------
RFC 6962 section 2.1; RFC 9162 section 2.1.3.2 (see :mod:`settlement.merkle`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.errors import NoaberError, NotFoundError
from settlement import ledger, merkle
from settlement.models import (
    MEMBER_DAYS,
    ChainHead,
    DocCounter,
    PeriodRoot,
    Record,
    SettlementRun,
    Statement,
)

RECORDS_HEAD = 2
"""``ChainHead`` row of the records' chain."""
FORMAT = "noaber-statement-proof/1"
MEMBER_DAY_FIELDS = (
    "run_id",
    "member_ref",
    "day",
    "offtake_wh",
    "shared_wh",
    "injection_wh",
    "supplied_wh",
    "discharge_wh",
    "green_discharge_wh",
    "green_supplied_wh",
)
STATEMENT_FIELDS = (
    "id",
    "number",
    "member_ref",
    "community",
    "period",
    "run_id",
    "kind",
    "corrects_id",
    "max_seq",
)
ROOT_FIELDS = (
    "id",
    "community",
    "period",
    "run_id",
    "tree_size",
    "max_seq",
    "root_hash",
    "days_root",
    "days_size",
)
_STATEMENT_ID = re.compile(r"\(id (\d+)\)$")


def _digest(values: Any) -> str:
    return hashlib.sha256(_content(values)).hexdigest()


def _content(values: Any) -> bytes:
    return "\t".join(ledger.text_field(v) for v in values).encode()


def member_day_row_bytes(r: tuple[Any, ...]) -> bytes:
    """:func:`member_day_bytes` of a row of :data:`MEMBER_DAY_FIELDS` values (the hot path
    of sealing: one f-string; the per-value rule when a value is absent or a ref holds a
    backslash)."""
    ref = r[1]
    if None in r or "\\" in ref:
        return _content(r)
    return (
        f"{r[0]:d}\t{ref}\t{r[2].isoformat()}\t{r[3]:d}\t{r[4]:d}\t{r[5]:d}\t{r[6]:d}"
        f"\t{r[7]:d}\t{r[8]:d}\t{r[9]:d}"
    ).encode()


def member_day_bytes(fields: dict[str, Any]) -> bytes:
    """Canonical content of a member-day row (:data:`MEMBER_DAY_FIELDS`, tab-separated, as
    :func:`settlement.ledger.canonical` writes values): a leaf of the member-days tree."""
    return _content(fields[f] for f in MEMBER_DAY_FIELDS)


def _member_day_rows(session: Session, run_id: int) -> list[tuple[Any, ...]]:
    cols = [MEMBER_DAYS.c[f] for f in MEMBER_DAY_FIELDS]
    return list(
        session.execute(
            select(*cols)
            .where(MEMBER_DAYS.c.run_id == run_id)
            .order_by(MEMBER_DAYS.c.member_ref, MEMBER_DAYS.c.day)
        ).all()
    )


def record_hash(seq: int, kind: str, key: str, digest: str, prev: str) -> str:
    """``sha256`` of ``seq, kind, key, digest, previous hash`` (tab-separated)."""
    return hashlib.sha256(f"{seq}\t{kind}\t{key}\t{digest}\t{prev}".encode()).hexdigest()


def member_day_key(run_id: int, ref: str, day: Any) -> str:
    """How a member-day record is named: ``member day run 3 m-dh01 2026-10-05``."""
    return f"member day run {run_id} {ref} {ledger.text_field(day)}"


def statement_key(statement_id: int, number: str) -> str:
    """How a statement record is named: ``statement NB-2026-000004 (id 4)``."""
    return f"statement {number} (id {statement_id})"


def root_key(community: str, period: str, tree_size: int) -> str:
    """How a period-root record is named."""
    return f"root {community} {period} size {tree_size}"


# ------------------------------------------------------------------ sealing


def seal_run(session: Session, run_id: int) -> PeriodRoot | None:
    """Store the period's new Merkle root and seal the run's member days, statements and root.

    Called inside the posting transaction after the run's transfers, member days and
    statements are written (the transfers' chain head is locked, which serialises the
    records' chain too). Idempotent: what is sealed already is not sealed again. Returns the
    new period root, or None if the run added no transfers to its period.
    """
    run = session.get(SettlementRun, run_id)
    if run is None:
        raise NotFoundError(f"no settlement run {run_id}")
    md_rows = _member_day_rows(session, run_id)
    contents = [member_day_row_bytes(r) for r in md_rows]
    root = _store_root(session, run, contents)
    done = set(session.scalars(select(Record.key).where(Record.run_id == run_id)))
    items: list[tuple[str, str, str]] = []
    sha = hashlib.sha256
    for r, content in zip(md_rows, contents):
        key = member_day_key(r[0], r[1], r[2])
        if key not in done:
            items.append(("member_day", key, sha(content).hexdigest()))
    for st in session.scalars(
        select(Statement).where(Statement.run_id == run_id).order_by(Statement.id)
    ):
        key = statement_key(st.id, st.number)
        if key not in done:
            items.append(("statement", key, _digest(getattr(st, f) for f in STATEMENT_FIELDS)))
    if root is not None:
        items.append(
            (
                "root",
                root_key(root.community, root.period, root.tree_size),
                _digest(getattr(root, f) for f in ROOT_FIELDS),
            )
        )
    _append_records(session, run_id, items)
    return root


def _append_records(session: Session, run_id: int, items: list[tuple[str, str, str]]) -> None:
    head = session.get(ChainHead, RECORDS_HEAD)
    if head is None:
        raise NoaberError("the records' chain head is missing (run the migrations)")
    seq, prev = int(head.last_seq), str(head.last_hash)
    rows: list[tuple[Any, ...]] = []
    for kind, key, digest in items:
        seq += 1
        prev = record_hash(seq, kind, key, digest, prev)
        rows.append((seq, kind, key, run_id, digest, prev))
    cols = ("seq", "kind", "key", "run_id", "digest", "hash")
    ledger.insert_rows(session, Record.__table__, cols, rows)
    head.last_seq, head.last_hash = seq, prev
    session.flush()


def _store_root(
    session: Session, run: SettlementRun, md_contents: list[bytes]
) -> PeriodRoot | None:
    max_seq = int(session.get(ChainHead, 1).last_seq)  # type: ignore[union-attr]
    leaves = period_leaves(session, run.community, run.period, max_seq)
    last = session.scalars(
        select(PeriodRoot)
        .where(PeriodRoot.community == run.community, PeriodRoot.period == run.period)
        .order_by(PeriodRoot.tree_size.desc())
        .limit(1)
    ).first()
    if not leaves or (last is not None and last.tree_size == len(leaves)):
        return None
    root = PeriodRoot(
        community=run.community,
        period=run.period,
        run_id=run.id,
        tree_size=len(leaves),
        max_seq=max_seq,
        root_hash=merkle.root(leaves).hex(),
        days_root=merkle.root([merkle.leaf_hash(c) for c in md_contents]).hex(),
        days_size=len(md_contents),
    )
    session.add(root)
    session.flush()
    return root


def period_leaves(session: Session, community: str, period: str, max_seq: int) -> list[bytes]:
    """Leaf hashes of a period's transfers up to ``max_seq`` in sequence order.

    Transfers appended in this session's transaction come from what
    :func:`settlement.ledger.append` kept (no read-back); earlier ones are read.
    """
    appended = [
        (seq, leaf)
        for seq, c, p, leaf in session.info.get(ledger.APPENDED_LEAVES, [])
        if c == community and p == period and seq <= max_seq
    ]
    first_new = appended[0][0] if appended else max_seq + 1
    out = [
        hashlib.sha256(b"\x00" + body).digest()
        for body, _ in _period_lines(session, community, period, first_new - 1)
    ]
    out.extend(leaf for _, leaf in appended)
    return out


def _period_lines(
    session: Session, community: str, period: str, max_seq: int
) -> Iterator[tuple[bytes, list[bytes]]]:
    """(canonical line, its fields) of a period's transfers with ``seq <= max_seq``."""
    for line in ledger.stream_lines(session, community=community, period=period, max_seq=max_seq):
        body = line.rpartition(b"\t")[0]
        yield body, body.split(b"\t")


# ------------------------------------------------------------------ verification


@dataclass(frozen=True)
class _Row:
    name: str
    digest: str


def _current_rows(session: Session) -> dict[str, _Row]:
    """Every member day, statement and period root now stored, by record key."""
    out: dict[str, _Row] = {}
    cols = [MEMBER_DAYS.c[f] for f in MEMBER_DAY_FIELDS]
    sha = hashlib.sha256
    for r in session.execute(select(*cols)):
        key = member_day_key(r[0], r[1], r[2])
        out[key] = _Row(key, sha(member_day_row_bytes(r)).hexdigest())
    for st in session.scalars(select(Statement)):
        out[f"statement id {st.id}"] = _Row(
            statement_key(st.id, st.number), _digest(getattr(st, f) for f in STATEMENT_FIELDS)
        )
    for root in session.scalars(select(PeriodRoot)):
        key = root_key(root.community, root.period, root.tree_size)
        out[key] = _Row(key, _digest(getattr(root, f) for f in ROOT_FIELDS))
    return out


def _lookup_key(rec_key: str) -> str:
    m = _STATEMENT_ID.search(rec_key)
    return f"statement id {m.group(1)}" if rec_key.startswith("statement ") and m else rec_key


def verify_records(
    session: Session,
    report: ledger.VerifyReport,
    expected: Callable[[int], str | None] | None = None,
) -> ledger.VerifyReport:
    """Check the records' chain, every sealed row against its record, statement numbers and
    the period roots against the transfers (``report.leaves`` from
    :func:`settlement.ledger.verify`); name the first broken record in ``report``.

    ``expected``: seq -> the record hash a signed checkpoint holds for it.
    """
    rows = _current_rows(session)
    seen: set[str] = set()
    prev = ledger.GENESIS_HASH
    n = 0
    for rec in session.execute(
        select(Record.seq, Record.kind, Record.key, Record.digest, Record.hash).order_by(Record.seq)
    ):
        n += 1
        seq, kind, key, digest, stored = rec
        if seq != n:
            return report.broken(f"record {n}", f"records' sequence gap: found {seq}")
        if record_hash(seq, kind, key, digest, prev) != stored:
            return report.broken(key, f"record {seq} does not chain (records rewritten)")
        if expected is not None and (signed := expected(seq)) is not None and signed != stored:
            return report.broken(
                key, f"record {seq} differs from a signed checkpoint (records rewritten)"
            )
        lookup = _lookup_key(key)
        row = rows.get(lookup)
        if row is None:
            return report.broken(key, f"sealed as record {seq}, but the row is missing (deleted)")
        if row.digest != digest:
            return report.broken(
                row.name if row.name != key else key,
                f"differs from what record {seq} sealed ({key}): the row was changed",
            )
        seen.add(lookup)
        prev = stored
    report.records_checked = n
    head = session.get(ChainHead, RECORDS_HEAD)
    if head is None or head.last_seq != n or head.last_hash != prev:
        return report.broken(
            f"record {n + 1}", "the records' chain head does not point at the last record"
        )
    unsealed = sorted(rows[k].name for k in rows.keys() - seen)
    if unsealed:
        return report.broken(unsealed[0], "not sealed by any record (added behind the ledger)")
    _check_numbers(session, report)
    _check_roots(session, report)
    return report


def _check_numbers(session: Session, report: ledger.VerifyReport) -> None:
    """Statement numbers are gap-free per series and end at the series' counter."""
    numbers: dict[str, list[int]] = {}
    for number in session.scalars(select(Statement.number)):
        prefix, _, digits = number.rpartition("-")
        numbers.setdefault(prefix, []).append(int(digits))
    counters = {c.series: c.last_number for c in session.scalars(select(DocCounter))}
    for prefix, ks in sorted(numbers.items()):
        ks.sort()
        expect = 1
        for k in ks:
            if k != expect:
                report.broken(
                    f"statement {prefix}-{expect:06d}",
                    f"missing: the numbers of {prefix} jump from {expect - 1} to {k}",
                )
                return
            expect += 1
        series = f"statement-{prefix.rpartition('-')[2]}"
        if counters.get(series, ks[-1]) != ks[-1]:
            report.broken(
                f"statement {prefix}-{ks[-1] + 1:06d}",
                f"missing: the counter of {series} is at {counters[series]}, the last "
                f"statement is number {ks[-1]}",
            )
            return


def _check_roots(session: Session, report: ledger.VerifyReport) -> None:
    """Every stored period root equals the root of its period's first ``tree_size``
    transfers, and the newest root of a period covers all its transfers (every posting
    stores one, so a transfer beyond it was added behind the ledger's back)."""
    newest: dict[tuple[str, str], int] = {}
    for root in session.scalars(select(PeriodRoot).order_by(PeriodRoot.id)):
        key = (root.community, root.period)
        leaves = report.leaves.get(key, [])
        name = root_key(root.community, root.period, root.tree_size)
        if root.tree_size > len(leaves):
            report.broken(name, f"covers {root.tree_size} transfers, the period has {len(leaves)}")
            return
        if merkle.root(leaves[: root.tree_size]).hex() != root.root_hash:
            report.broken(name, "does not match the period's transfers")
            return
        days = _member_day_rows(session, root.run_id)
        if (
            merkle.root([merkle.leaf_hash(member_day_row_bytes(r)) for r in days]).hex()
            != root.days_root
        ):
            report.broken(name, f"does not match the member days of run {root.run_id}")
            return
        newest[key] = max(newest.get(key, 0), root.tree_size)
    beyond = [
        report.leaf_seqs[key][newest.get(key, 0)]
        for key, leaves in report.leaves.items()
        if len(leaves) > newest.get(key, 0)
    ]
    if beyond:
        seq = min(beyond)
        report.broken(
            f"transfer {seq}", "not under any period root (added behind the ledger's back)", seq
        )


# ------------------------------------------------------------------ publishing


def root_for(session: Session, community: str, period: str, max_seq: int) -> PeriodRoot | None:
    """The period's root as it stood at ``max_seq`` (a statement's ``max_seq``)."""
    return session.scalars(
        select(PeriodRoot)
        .where(
            PeriodRoot.community == community,
            PeriodRoot.period == period,
            PeriodRoot.max_seq <= max_seq,
        )
        .order_by(PeriodRoot.tree_size.desc())
        .limit(1)
    ).first()


def root_document(root: PeriodRoot) -> dict[str, Any]:
    """What a published root file (and the API) says about a period root."""
    return {
        "community": root.community,
        "period": root.period,
        "tree_size": root.tree_size,
        "max_seq": root.max_seq,
        "run_id": root.run_id,
        "root": root.root_hash,
        "days_root": root.days_root,
        "days_size": root.days_size,
        "algorithm": "RFC 6962 SHA-256 Merkle trees: the period's transfers in seq order "
        "(root), the run's member days by member and day (days_root)",
    }


def publish_roots(session: Session, directory: Path) -> list[Path]:
    """Write every period root not yet published to ``<dir>/<community>/<period>/root-<size>.json``.

    A file is written once and never replaced.

    Raises
    ------
    NoaberError
        If a published file says something else than the database (the database or the
        file was changed).
    """
    written = []
    for root in session.scalars(select(PeriodRoot).order_by(PeriodRoot.id)):
        doc = root_document(root)
        path = directory / root.community / root.period / f"root-{root.tree_size:09d}.json"
        if path.exists():
            if json.loads(path.read_text(encoding="utf-8"))["root"] != root.root_hash:
                raise NoaberError(
                    f"{path} publishes root {json.loads(path.read_text())['root']}, the "
                    f"database holds {root.root_hash}: one of them was changed"
                )
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


# ------------------------------------------------------------------ statement proofs


def _value(field: str, raw: bytes) -> Any:
    if raw == b"\\N":
        return None
    if field in ("seq", "amount", "reverses_id", "pending_id", "run_id"):
        return int(raw)
    return raw.decode().replace("\\\\", "\\")


def statement_proof(session: Session, statement_id: int, figures: dict[str, Any]) -> dict[str, Any]:
    """A statement as a self-contained JSON document with the inclusion proof of every
    transfer it is read from (``figures``: its days and totals, from
    :func:`settlement.statements.statement_figures`)."""
    st = session.get(Statement, statement_id)
    if st is None:
        raise NotFoundError(f"no statement {statement_id}")
    root = root_for(session, st.community, st.period, st.max_seq)
    if root is None:
        raise NoaberError(f"statement {st.number}: its period has no Merkle root (run seal)")
    leaves: list[bytes] = []
    mine: list[tuple[int, list[bytes]]] = []
    ref = st.member_ref.encode()
    for body, f in _period_lines(session, st.community, st.period, root.max_seq):
        if f[13] == ref:
            mine.append((len(leaves), f))
        leaves.append(hashlib.sha256(b"\x00" + body).digest())
    if len(leaves) != root.tree_size or merkle.root(leaves).hex() != root.root_hash:
        raise NoaberError(
            f"statement {st.number}: the period's transfers do not give its stored root "
            "(run `noaber ledger verify`)"
        )
    tree = merkle.levels(leaves)
    transfers = []
    for index, f in mine:
        fields = {name: _value(name, raw) for name, raw in zip(ledger.HASHED_FIELDS, f)}
        if fields["seq"] > st.max_seq:
            continue
        transfers.append(
            {
                "index": index,
                "fields": fields,
                "proof": [p.hex() for p in merkle.inclusion_proof(tree, index)],
            }
        )
    md_rows = _member_day_rows(session, root.run_id)
    day_tree = merkle.levels([merkle.leaf_hash(member_day_row_bytes(r)) for r in md_rows])
    member_days = (
        [
            {
                "index": i,
                "fields": {
                    f: ledger.text_field(v) if f == "day" else v
                    for f, v in zip(MEMBER_DAY_FIELDS, r)
                },
                "proof": [p.hex() for p in merkle.inclusion_proof(day_tree, i)],
            }
            for i, r in enumerate(md_rows)
            if r[1] == st.member_ref and r[0] == st.run_id
        ]
        if st.run_id == root.run_id
        else []
    )
    return {
        "format": FORMAT,
        "statement": {
            "number": st.number,
            "member_ref": st.member_ref,
            "community": st.community,
            "period": st.period,
            "kind": st.kind,
            "max_seq": st.max_seq,
        },
        "merkle": {
            "tree_size": root.tree_size,
            "root": root.root_hash,
            "days_size": root.days_size,
            "days_root": root.days_root,
        },
        **figures,
        "transfers": transfers,
        "member_days": member_days,
    }


def verify_statement(
    doc: dict[str, Any],
    expected_root: str,
    sign_of: Callable[[dict[str, Any]], tuple[str, int] | None],
    days_root: str | None = None,
) -> list[str]:
    """Check an exported statement against a root, offline; returns the problems (empty: ok).

    Each transfer must be the statement's member's, lead to ``expected_root`` by its
    inclusion proof (RFC 9162 2.1.3.2), and the statement's day and total figures must be the
    sums of its transfers. ``sign_of(fields)`` gives a counting transfer's (figure name, +1
    or -1) on the statement (None: it does not count, e.g. a pending transfer).
    """
    problems: list[str] = []
    if doc.get("format") != FORMAT:
        return [f"not a statement proof (format {doc.get('format')!r}, expected {FORMAT!r})"]
    st = doc["statement"]
    tree = doc["merkle"]
    if tree["root"] != expected_root.lower():
        problems.append(f"the statement names root {tree['root']}, not {expected_root}")
    root = bytes.fromhex(expected_root)
    size = int(tree["tree_size"])
    sums: dict[str, dict[str, int]] = {}
    for t in doc["transfers"]:
        fields = t["fields"]
        name = f"transfer {fields.get('seq')} ({fields.get('day')}, {fields.get('ledger')}/{fields.get('code')})"
        for k in ("member_ref", "community", "period"):
            if fields.get(k) != st[k]:
                problems.append(f"{name}: {k} is {fields.get(k)!r}, not the statement's")
        if fields["seq"] > st["max_seq"]:
            problems.append(f"{name}: after the statement was issued")
        leaf = merkle.leaf_hash(ledger.canonical(fields))
        proof = [bytes.fromhex(p) for p in t["proof"]]
        if not merkle.verify_inclusion(int(t["index"]), size, leaf, proof, root):
            problems.append(f"{name}: not in the tree with root {expected_root}")
        counted = sign_of(fields)
        if counted is not None:
            figure, sign = counted
            day = sums.setdefault(str(fields["day"]), {})
            day[figure] = day.get(figure, 0) + sign * int(fields["amount"])
    total: dict[str, int] = {}
    for line in doc["days"]:
        got = sums.get(line["date"], {})
        for figure, amount in got.items():
            total[figure] = total.get(figure, 0) + amount
        for figure in {*got, *(k for k in line if k in _TRANSFER_FIGURES)}:
            if int(line.get(figure, 0)) != got.get(figure, 0):
                problems.append(
                    f"day {line['date']}: {figure} is {line.get(figure)} on the statement, its "
                    f"transfers give {got.get(figure, 0)}"
                )
        line_net = sum(
            got.get(f, 0) * (1 if f in _CREDIT_FIGURES else -1) for f in _TRANSFER_FIGURES[2:]
        )
        if int(line.get("net_cents", 0)) != line_net:
            problems.append(
                f"day {line['date']}: net_cents is {line.get('net_cents')} on the statement, "
                f"its transfers give {line_net}"
            )
    problems.extend(_verify_member_days(doc, days_root))
    listed = {line["date"] for line in doc["days"]}
    for extra in sorted(sums.keys() - listed):
        problems.append(f"day {extra}: has transfers but is not on the statement")
    for figure in _TRANSFER_FIGURES:
        if int(doc["total"].get(figure, 0)) != total.get(figure, 0):
            problems.append(
                f"total: {figure} is {doc['total'].get(figure)} on the statement, its "
                f"transfers give {total.get(figure, 0)}"
            )
    net = sum(total.get(f, 0) * (1 if f in _CREDIT_FIGURES else -1) for f in _TRANSFER_FIGURES[2:])
    if int(doc["total"].get("net_cents", 0)) != net:
        problems.append(
            f"total: net_cents is {doc['total'].get('net_cents')} on the statement, its "
            f"transfers give {net}"
        )
    return problems


_DAY_FIGURES = {
    "ev_discharge_wh": "discharge_wh",
    "green_delivered_wh": "green_discharge_wh",
    "charged_wh": "offtake_wh",
    "green_supplied_wh": "green_supplied_wh",
}


def _verify_member_days(doc: dict[str, Any], days_root: str | None) -> list[str]:
    """The lines' member-day figures (EV discharge, green, charged) against the member
    days in the document, and those against ``days_root`` (the published one; without it,
    the document's own, which proves nothing about them)."""
    problems = []
    st, tree = doc["statement"], doc["merkle"]
    root_hex = days_root or tree["days_root"]
    if days_root is not None and tree.get("days_root") != days_root.lower():
        problems.append(f"the statement names days root {tree.get('days_root')}, not {days_root}")
    root = bytes.fromhex(root_hex)
    by_day = {}
    for md in doc.get("member_days", []):
        fields = md["fields"]
        name = f"member day {fields.get('day')}"
        if fields.get("member_ref") != st["member_ref"]:
            problems.append(
                f"{name}: member_ref is {fields.get('member_ref')!r}, not the statement's"
            )
        leaf = merkle.leaf_hash(member_day_bytes(fields))
        proof_ = [bytes.fromhex(p) for p in md["proof"]]
        if not merkle.verify_inclusion(
            int(md["index"]), int(tree["days_size"]), leaf, proof_, root
        ):
            problems.append(f"{name}: not in the member-days tree with root {root_hex}")
        by_day[str(fields["day"])] = fields
    for line in doc["days"]:
        fields = by_day.get(line["date"], {})
        for figure, column in _DAY_FIGURES.items():
            if int(line.get(figure, 0)) != int(fields.get(column, 0)):
                problems.append(
                    f"day {line['date']}: {figure} is {line.get(figure)} on the statement, its "
                    f"member day gives {fields.get(column, 0)}"
                )
    return problems


_TRANSFER_FIGURES = (
    "received_wh",
    "delivered_wh",
    "shared_energy_cents",
    "energy_tax_cents",
    "vat_cents",
    "delivered_energy_cents",
    "v2g_compensation_cents",
    "fee_cents",
)
_CREDIT_FIGURES = frozenset(("delivered_energy_cents", "v2g_compensation_cents"))
