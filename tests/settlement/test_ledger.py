"""The ledger: immutability enforced by the database, tamper detection by `verify`."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from energy.db import is_postgres
from settlement import ledger
from settlement.settle import post_run
from tests.settlement.conftest import make_plan


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE settlement_transfers SET amount = amount + 1 WHERE seq = 3",
        "DELETE FROM settlement_transfers WHERE seq = 3",
    ],
)
def test_database_refuses_update_and_delete(engine, sessions, statement):
    post_run(sessions, make_plan())
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as conn:
        conn.execute(text(statement))
    with sessions() as s:
        assert ledger.verify(s).ok


def _tamper(engine, *statements: str) -> None:
    """What an attacker with database rights can do: bypass the triggers and change rows."""
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            triggers = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            for name in list(triggers):
                conn.execute(text(f"DROP TRIGGER {name}"))
        for statement in statements:
            conn.execute(text(statement))


def test_verify_names_a_changed_transfer(engine, sessions):
    post_run(sessions, make_plan())
    with sessions() as s:
        report = ledger.verify(s)
        assert report.ok and report.checked > 10
    _tamper(engine, "UPDATE settlement_transfers SET amount = amount + 100 WHERE seq = 7")
    with sessions() as s:
        report = ledger.verify(s)
    assert report.first_broken_seq == 7
    assert "hash" in (report.reason or "")


def test_verify_names_a_rehashed_transfer_by_its_successor(engine, sessions):
    post_run(sessions, make_plan())
    with sessions() as s:
        t = s.get(ledger.Transfer, 5)
        row = {f: getattr(t, f) for f in ledger.HASHED_FIELDS}
    row["amount"] += 1
    new_hash = ledger.transfer_hash(row)
    _tamper(
        engine,
        f"UPDATE settlement_transfers SET amount = amount + 1, hash = '{new_hash}' WHERE seq = 5",
    )
    with sessions() as s:
        report = ledger.verify(s)
    assert report.first_broken_seq == 6
    assert "prev_hash" in (report.reason or "")


def test_verify_finds_a_deleted_transfer(engine, sessions):
    post_run(sessions, make_plan())
    with sessions() as s:
        last = s.get(ledger.ChainHead, 1).last_seq
    _tamper(engine, f"DELETE FROM settlement_transfers WHERE seq = {last}")
    with sessions() as s:
        report = ledger.verify(s)
    assert report.first_broken_seq == last
    assert "chain head" in (report.reason or "")


def test_canonical_serialisation_is_stable():
    row = {f: None for f in ledger.HASHED_FIELDS}
    row.update(seq=1, ledger="wh", amount=5, community="a\\b", prev_hash=ledger.GENESIS_HASH)
    assert ledger.canonical(row).startswith(b"1\twh\t\\N\t\\N\t5\t")
    assert b"\ta\\\\b\t" in ledger.canonical(row)  # a backslash doubled, as COPY prints it
    assert ledger.canonical(row).endswith(b"\t" + ledger.GENESIS_HASH.encode())
    assert ledger.transfer_hash(row) == ledger.transfer_hash(dict(reversed(list(row.items()))))


@pytest.mark.parametrize("bad", ["a\tb", "a\nb", "a\rb", "a\x01b", "a\x7fb"])
def test_append_refuses_a_control_character(sessions, bad):
    """Checked over the whole batch at once; the first offending transfer is named and
    nothing is written."""
    plan = make_plan()
    with sessions() as s, s.begin():
        head = ledger.lock_chain(s)
        before = (head.last_seq, head.last_hash)
        rows = []
        for k in range(5):
            row = {f: None for f in ledger.HASHED_FIELDS if f not in ("seq", "prev_hash")}
            row.update(
                ledger="wh",
                debit_account=bad if k == 3 else "a",
                credit_account="c",
                amount=1,
                run_id=1,
                idempotency_id=f"x{k}",
                community="c",
                period="2026-10",
                code="shared",
                day=plan.days[0],
                flags="posted",
            )
            rows.append(row)
        with pytest.raises(ValueError, match="'x3': a text field holds a control character"):
            ledger.append(s, head, rows)
        assert (head.last_seq, head.last_hash) == before
        assert s.execute(text("SELECT count(*) FROM settlement_transfers")).scalar_one() == 0


def test_verify_checks_the_member_day_invariants(engine, sessions):
    post_run(sessions, make_plan())
    _tamper(
        engine,
        "UPDATE settlement_member_days SET shared_wh = offtake_wh + 1 WHERE member_ref = 'm-dh01' AND day = '2026-10-05'",
    )
    with sessions() as s:
        report = ledger.verify(s)
    assert not report.ok
    assert any("m-dh01" in p for p in report.problems)
    assert any("allocated and supplied energy differ" in p for p in report.problems)


def test_streamed_lines_are_the_canonical_rows(sessions):
    """What :func:`ledger.stream_lines` gives (the COPY text on PostgreSQL, lines the database
    formats on SQLite) against :func:`ledger.canonical` of the rows read through the ORM,
    with NULLs, a backslash in a text and a text that reads like NULL (``\\N``)."""
    from sqlalchemy import select

    from settlement.models import Transfer

    plan = make_plan()
    post_run(sessions, plan)
    with sessions() as s, s.begin():
        head = ledger.lock_chain(s)
        odd = {f: None for f in ledger.HASHED_FIELDS if f not in ("seq", "prev_hash")}
        odd.update(
            ledger="cents",
            debit_account="member:a\\b",
            credit_account="member:\\N",
            amount=12,
            run_id=1,
            idempotency_id="odd|\\\\|x",
            community="dorp-test",
            period="2026-10",
            code="fee",
            day=plan.days[3],
            member_ref="\\N",
            flags="posted",
        )
        ledger.append(s, head, [odd])
    with sessions() as s:
        lines = list(ledger.stream_lines(s))
        rows = s.scalars(select(Transfer).order_by(Transfer.seq)).all()
        expected = [
            ledger.canonical({f: getattr(t, f) for f in ledger.HASHED_FIELDS})
            + b"\t"
            + t.hash.encode()
            for t in rows
        ]
        assert lines == expected and len(lines) > 100
        assert b"\tmember:a\\\\b\tmember:\\\\N\t" in lines[-1]
        assert lines[-1].split(b"\t")[13] == b"\\\\N"  # the text \N, not NULL
        assert ledger.verify(s).ok


def test_verify_names_a_row_with_a_tab_in_a_text(engine, sessions):
    post_run(sessions, make_plan())
    _tamper(
        engine,
        "UPDATE settlement_transfers SET code = 'fee' || char(9) || 'x' WHERE seq = 4"
        if not is_postgres(engine)
        else "UPDATE settlement_transfers SET code = E'fee\\tx' WHERE seq = 4",
    )
    with sessions() as s:
        report = ledger.verify(s)
    assert report.first_broken == "transfer 4" and report.first_broken_seq == 4


def test_insert_rows_keeps_every_character(sessions):
    """The bulk insert (COPY text on PostgreSQL) against the values read back: tabs,
    newlines, carriage returns, backslashes and a text that reads like NULL."""
    from sqlalchemy import select

    from settlement.models import DocCounter, TariffDocument

    docs = [
        ("d1", "a\tb\nc\r\nd"),
        ("d2", "back\\slash \\N \\t"),
        ("d3", "\\N"),
        ("d4", "gewoon: € 1.234,56"),
    ]
    with sessions() as s, s.begin():
        ledger.insert_rows(s, TariffDocument.__table__, ("digest", "document"), docs)
        ledger.insert_rows(
            s, DocCounter.__table__, ("series", "last_number"), [("x", 0), ("y", 2**31 - 1)]
        )
    with sessions() as s:
        got = s.execute(select(TariffDocument.digest, TariffDocument.document)).all()
        assert sorted(tuple(r) for r in got) == docs
        counters = s.execute(select(DocCounter.series, DocCounter.last_number)).all()
        assert sorted(tuple(r) for r in counters) == [("x", 0), ("y", 2**31 - 1)]


def _one_more(session, **change) -> None:
    """Append one transfer like transfer 1 (new idempotency id), with ``change`` applied."""
    t = session.get(ledger.Transfer, 1)
    row = {f: getattr(t, f) for f in ledger.HASHED_FIELDS if f not in ("seq", "prev_hash")}
    row["idempotency_id"] = "ref-test|" + row["idempotency_id"]
    row.update(change)
    ledger.append(session, ledger.lock_chain(session), [row])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"run_id": 9999}, "run"),
        ({"reverses_id": 999_999}, "reverses"),
        ({"pending_id": 999_999}, "posts or voids"),
    ],
)
def test_database_refuses_a_transfer_that_refers_to_nothing(engine, sessions, change, named):
    """The references are checked once per INSERT statement (a trigger, not a per-row
    foreign key) with the same guarantee: a run or transfer that does not exist is refused
    and nothing is stored."""
    post_run(sessions, make_plan())
    with sessions() as s:
        n = s.execute(text("SELECT count(*) FROM settlement_transfers")).scalar_one()
        # PostgreSQL: the driver's own error (append COPYs through the raw connection)
        with pytest.raises((DBAPIError, psycopg.Error), match=named):
            _one_more(s, **change)
        s.rollback()
        assert s.execute(text("SELECT count(*) FROM settlement_transfers")).scalar_one() == n
        _one_more(s, run_id=s.get(ledger.Transfer, 1).run_id)  # the same, referring right
        s.commit()
        assert s.execute(text("SELECT count(*) FROM settlement_transfers")).scalar_one() == n + 1
        report = ledger.verify(s)  # the chain holds; the extra pool transfer is seen
        assert report.first_broken is None and "pool account" in report.problems[0]


def test_database_refuses_deleting_a_run_with_transfers(engine, sessions):
    post_run(sessions, make_plan())
    with pytest.raises(DBAPIError, match="has transfers"), engine.begin() as conn:
        conn.execute(text("DELETE FROM settlement_runs"))
    with pytest.raises(DBAPIError, match="has transfers"), engine.begin() as conn:
        conn.execute(text("UPDATE settlement_runs SET id = id + 100"))
    with engine.begin() as conn:  # other updates of a run stay possible (status of a run)
        conn.execute(text("UPDATE settlement_runs SET n_transfers = n_transfers"))


def test_verify_sums_the_pool_over_counting_transfers_only(engine, sessions):
    """The pool balances are summed from the streamed chain: a pending transfer into the pool
    does not count (its run is not posted), a posted one does, with the pool named and the
    amount it is off by; both ledgers, both directions."""
    post_run(sessions, make_plan())
    with sessions() as s:
        t = s.get(ledger.Transfer, 1)
        pool = t.debit_account if t.debit_account.endswith(":pool") else t.credit_account
        assert pool.endswith(":pool")
        _one_more(s, flags="pending", amount=7)
        s.commit()
        assert ledger.verify(s).ok
        _one_more(s, idempotency_id="second", amount=5, ledger="cents")
        s.commit()
        report = ledger.verify(s)
    sign = 5 if t.credit_account == pool else -5
    assert report.first_broken is None
    assert report.problems == [f"ledger cents: pool account {pool} is off by {sign}"]


def test_verify_restores_the_planner_settings(engine, sessions):
    """On PostgreSQL the chain is read along the primary key (no sort, no parallel workers);
    the settings are back as they were for the rest of the transaction."""
    if not is_postgres(engine):
        pytest.skip("planner settings are PostgreSQL's")
    post_run(sessions, make_plan())
    query = text(
        "SELECT current_setting('enable_sort'), current_setting('max_parallel_workers_per_gather')"
    )
    with sessions() as s:
        before = tuple(s.execute(query).one())
        assert ledger.verify(s).ok
        assert tuple(s.execute(query).one()) == before


@pytest.mark.parametrize("odd", [None, "a\\b", "\\N", "gewoon € ü"])
def test_chain_lines_are_the_canonical_rows(odd):
    """The posting hot path (:func:`ledger._chain`: lines formatted at once, backslashes
    checked over the whole batch) against the reference :func:`ledger.canonical` and
    :func:`ledger.transfer_hash` row by row, with NULLs, a backslash in a text, a text that
    reads like NULL and non-ASCII text; the chain links each row to the one before."""
    import datetime as dt

    rows = []
    for k in range(6):
        rows.append(
            {
                "ledger": "wh" if k % 2 else "cents",
                "debit_account": f"member:m{k}" if k != 4 or odd is None else f"member:{odd}",
                "credit_account": "community:c:pool",
                "amount": 10 + k,
                "idempotency_id": f"c|2026-10|{k}",
                "reverses_id": 3 if k == 2 else None,
                "pending_id": 1 if k == 5 else None,
                "run_id": 1,
                "community": "c",
                "period": "2026-10",
                "code": "shared",
                "day": dt.date(2026, 10, 1 + k),
                "member_ref": None if k == 1 else (odd if k == 3 and odd else f"m{k}"),
                "flags": "posted",
            }
        )
    prev0 = "ab" * 32
    lines, leaves = ledger._chain(rows, 41, prev0)
    prev = prev0
    for k, (row, line, leaf) in enumerate(zip(rows, lines, leaves)):
        ref = {**row, "seq": 42 + k, "prev_hash": prev}
        assert line == ledger.canonical(ref) + b"\t" + ledger.transfer_hash(ref).encode() + b"\n"
        assert row["seq"] == 42 + k and row["prev_hash"] == prev
        assert row["hash"] == ledger.transfer_hash(ref)
        assert (
            leaf[0] == 42 + k
            and leaf[3] == hashlib.sha256(b"\x00" + ledger.canonical(ref)).digest()
        )
        prev = row["hash"]
