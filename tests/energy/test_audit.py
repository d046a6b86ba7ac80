"""The audit log: appended in the action's transaction, append-only in the database, and a
hash chain that finds an edit made around the triggers."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from energy.audit import Actor, cli_actor, entries, entry_hash, record, verify
from energy.db import is_postgres

T0 = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)


def _fill(session) -> None:
    oper = Actor("oper", "api")
    record(session, oper, "settlement.run", "exloo/2026-11", {"run_id": 3}, at=T0)
    record(session, cli_actor("beheer"), "user.add", "lid-1", {"role": "member"}, at=T0)
    record(session, oper, "settlement.void", "3", at=T0 + dt.timedelta(hours=1))
    record(
        session, oper, "consent.give", "m-4c1e7a", {"purpose": "x"}, at=T0 + dt.timedelta(days=1)
    )


def test_entries_chain_and_filter(sessions) -> None:
    with sessions() as s, s.begin():
        _fill(s)
    with sessions() as s:
        n, problems = verify(s)
        assert (n, problems) == (4, [])
        rows = entries(s)
        assert [e.seq for e in rows] == [4, 3, 2, 1]  # newest first
        assert rows[-1].prev_hash == "0" * 64 and rows[-2].prev_hash == rows[-1].hash
        assert [e.action for e in entries(s, action="settlement.")] == [
            "settlement.void",
            "settlement.run",
        ]
        assert [e.target for e in entries(s, actor="beheer")] == ["lid-1"]
        assert [
            e.seq
            for e in entries(s, since=T0 + dt.timedelta(minutes=1), until=T0 + dt.timedelta(days=1))
        ] == [3]
        assert rows[-1].at == T0 and rows[-1].via == "api" and rows[-2].via == "cli"


def test_hash_is_the_documented_canonical_form() -> None:
    """A second computation by hand: sha256 over the JSON array of the fields in order."""
    import hashlib
    import json

    fields = {
        "seq": 1,
        "at": T0,
        "actor": "oper",
        "via": "api",
        "action": "user.add",
        "target": "lid-1",
        "detail": {"role": "member"},
        "prev_hash": "0" * 64,
    }
    by_hand = json.dumps(
        [
            1,
            "2026-12-01T09:30:00.000000+00:00",
            "oper",
            "api",
            "user.add",
            "lid-1",
            {"role": "member"},
            "0" * 64,
        ],
        separators=(",", ":"),
    )
    assert entry_hash(fields) == hashlib.sha256(by_hand.encode()).hexdigest()


def test_unknown_action_is_refused(sessions) -> None:
    with sessions() as s, pytest.raises(ValueError, match=r"unknown audit action 'user\.ad'"):
        record(s, Actor("oper"), "user.ad", "x")
    with pytest.raises(ValueError, match="via must be one of"):
        Actor("oper", "web")


def test_database_refuses_update_and_delete(sessions) -> None:
    with sessions() as s, s.begin():
        _fill(s)
    for sql in ("UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log"):
        with sessions() as s, pytest.raises(DBAPIError, match="append-only"):
            s.execute(text(sql))
    with sessions() as s:
        assert verify(s) == (4, [])


def test_an_edit_around_the_triggers_is_found(sessions, engine) -> None:
    with sessions() as s, s.begin():
        _fill(s)
    with engine.begin() as conn:  # someone with the database's owner rights drops the guard
        if is_postgres(engine):
            conn.execute(text("DROP TRIGGER audit_log_no_update_delete ON audit_log"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        conn.execute(text("UPDATE audit_log SET target = '4' WHERE seq = 3"))
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    with sessions() as s:
        n, problems = verify(s)
    assert n == 3
    assert [(p.seq, p.reason.split(":")[0]) for p in problems] == [
        (3, "sequence gap"),
        (3, "prev_hash is not the previous entry's hash"),
        (3, "hash does not match the entry (edited)"),
    ]
