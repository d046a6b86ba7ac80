"""Tamper evidence that does not trust the database: signed checkpoints, sealed records,
period roots. Each attack is what someone with full database rights can do (triggers
bypassed); each is caught, and `verify` names exactly the first broken record."""

from __future__ import annotations

import json
import stat

import pytest
from sqlalchemy import select, text

from energy.errors import NoaberError
from settlement import audit, checkpoints, ledger, merkle, proof
from settlement.models import ChainHead, PeriodRoot, Statement, Transfer
from settlement.settle import post_run
from tests.settlement.conftest import make_plan, meter_data
from tests.settlement.test_ledger import _tamper


def _plan():
    """A month with three days of meter data: every kind of transfer, few of them."""
    return make_plan(data=meter_data(days=3))


@pytest.fixture
def posted(engine, sessions, tmp_path):
    """A posted month, its roots published and a signed checkpoint in ``tmp_path``."""
    post_run(sessions, _plan())
    with sessions() as s:
        roots, cp = audit.after_posting(s, tmp_path)
    assert cp is not None and len(roots) == 1
    return tmp_path


def _verify(sessions, data_dir) -> ledger.VerifyReport:
    key = checkpoints.signing_key(data_dir)
    with sessions() as s:
        return audit.verify(
            s, checkpoints.load(checkpoints.checkpoints_dir(data_dir), key.public_key())
        )


def _rehash_from(engine, sessions, seq: int, change: str) -> None:
    """Edit transfer ``seq`` and re-hash it and every later transfer, then move the head."""
    _tamper(engine, f"UPDATE settlement_transfers SET {change} WHERE seq = {seq}")
    with sessions() as s:
        rows = [
            {f: getattr(t, f) for f in (*ledger.HASHED_FIELDS, "hash")}
            for t in s.scalars(
                select(Transfer).where(Transfer.seq >= seq - 1).order_by(Transfer.seq)
            )
        ]
    prev = rows[0]["hash"]
    updates = []
    for r in rows[1:]:
        r["prev_hash"] = prev
        prev = ledger.transfer_hash(r)
        updates.append(
            f"UPDATE settlement_transfers SET prev_hash = '{r['prev_hash']}', hash = '{prev}' WHERE seq = {r['seq']}"
        )
    updates.append(f"UPDATE settlement_chain_head SET last_hash = '{prev}' WHERE id = 1")
    _tamper(engine, *updates)


def test_a_clean_ledger_verifies_with_its_checkpoint(sessions, posted):
    report = _verify(sessions, posted)
    assert report.ok, (report.first_broken, report.reason, report.problems)
    assert report.records_checked > 100 and "1 signed checkpoint" in report.notes[0]
    key = posted / checkpoints.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # nothing new: no second checkpoint
    with sessions() as s:
        assert audit.sign_checkpoint(s, checkpoints.checkpoints_dir(posted), posted) is None


def test_edit_and_rehash_is_caught_by_the_checkpoint(engine, sessions, posted):
    with sessions() as s:  # the case: a fee raised, the chain re-hashed after it
        fee = s.scalars(select(Transfer.seq).where(Transfer.code == "fee").limit(1)).one()
    _rehash_from(engine, sessions, fee, "amount = amount + 100")
    with sessions() as s:
        assert ledger.verify(s).ok  # consistent in itself: only the checkpoint can tell
    report = _verify(sessions, posted)
    assert report.first_broken == f"transfer {fee}" and report.first_broken_seq == fee
    assert "signed checkpoint" in (report.reason or "")


def test_delete_tail_and_move_head_is_caught(engine, sessions, posted):
    with sessions() as s:
        last = s.get(ChainHead, 1).last_seq
        prev = s.get(Transfer, last - 2).hash
    _tamper(
        engine,
        f"DELETE FROM settlement_transfers WHERE seq > {last - 2}",
        f"UPDATE settlement_chain_head SET last_seq = {last - 2}, last_hash = '{prev}' WHERE id = 1",
    )
    with sessions() as s:
        assert ledger.verify(s).first_broken is None
    report = _verify(sessions, posted)
    assert report.first_broken == f"transfer {last - 1}"
    assert "missing" in (report.reason or "")


def test_forge_and_move_head_is_caught(engine, sessions, posted):
    with sessions() as s:
        head = s.get(ChainHead, 1)
        t = s.get(Transfer, head.last_seq)
        forged = {f: getattr(t, f) for f in ledger.HASHED_FIELDS}
    forged.update(
        seq=t.seq + 1, amount=99_999, idempotency_id="forged", prev_hash=t.hash, reverses_id=None
    )
    h = ledger.transfer_hash(forged)
    cols = ", ".join((*ledger.HASHED_FIELDS, "hash"))
    values = ", ".join(
        "NULL" if forged[f] is None else repr(str(forged[f])) for f in ledger.HASHED_FIELDS
    )
    _tamper(
        engine,
        f"INSERT INTO settlement_transfers ({cols}) VALUES ({values}, '{h}')",
        f"UPDATE settlement_chain_head SET last_seq = {t.seq + 1}, last_hash = '{h}' WHERE id = 1",
    )
    report = _verify(sessions, posted)
    assert report.first_broken == f"transfer {t.seq + 1}"
    assert "not under any period root" in (report.reason or "")
    with (
        sessions() as s,
        pytest.raises(NoaberError, match=f"refusing to sign.*transfer {t.seq + 1}"),
    ):
        audit.sign_checkpoint(s, checkpoints.checkpoints_dir(posted), posted)


def test_an_edited_member_day_row_is_named(engine, sessions, posted):
    _tamper(
        engine,
        "UPDATE settlement_member_days SET discharge_wh = discharge_wh + 7 "
        "WHERE member_ref = 'm-ev01' AND day = '2026-10-02'",
    )
    report = _verify(sessions, posted)
    assert report.first_broken == "member day run 1 m-ev01 2026-10-02"
    assert "changed" in (report.reason or "")


def test_a_resealed_member_day_is_caught_by_the_checkpoint(engine, sessions, posted):
    key = "member day run 1 m-ev01 2026-10-02"
    _tamper(
        engine,
        "UPDATE settlement_member_days SET discharge_wh = discharge_wh + 7 "
        "WHERE member_ref = 'm-ev01' AND day = '2026-10-02'",
    )
    with sessions() as s:  # the member days' root too
        days = proof._member_day_rows(s, 1)
    days_root = merkle.root([merkle.leaf_hash(proof._content(r)) for r in days]).hex()
    _tamper(engine, f"UPDATE settlement_period_roots SET days_root = '{days_root}'")
    with sessions() as s:  # re-seal the records and re-chain every later record
        rows = proof._current_rows(s)
        recs = s.execute(
            text("SELECT seq, kind, key, digest FROM settlement_records ORDER BY seq")
        ).all()
    prev, updates = ledger.GENESIS_HASH, []
    for seq, kind, k, digest in recs:
        digest = rows[k].digest if k == key or kind == "root" else digest
        prev = proof.record_hash(seq, kind, k, digest, prev)
        updates.append(
            f"UPDATE settlement_records SET digest = '{digest}', hash = '{prev}' WHERE seq = {seq}"
        )
    updates.append(f"UPDATE settlement_chain_head SET last_hash = '{prev}' WHERE id = 2")
    _tamper(engine, *updates)
    with sessions() as s:
        alone = ledger.verify(s)
        assert proof.verify_records(s, alone).ok  # consistent in itself
    report = _verify(sessions, posted)
    assert report.first_broken == key and "signed checkpoint" in (report.reason or "")


def test_a_deleted_statement_is_named(engine, sessions, posted):
    with sessions() as s:
        st = s.scalars(select(Statement).where(Statement.number == "NB-2026-000002")).one()
    _tamper(engine, f"DELETE FROM settlement_statements WHERE id = {st.id}")
    report = _verify(sessions, posted)
    assert report.first_broken == f"statement NB-2026-000002 (id {st.id})"
    assert "missing (deleted)" in (report.reason or "")


def test_a_renumbered_statement_is_named(engine, sessions, posted):
    _tamper(
        engine,
        "UPDATE settlement_statements SET number = 'NB-2026-000009' WHERE number = 'NB-2026-000003'",
    )
    report = _verify(sessions, posted)
    assert report.first_broken == "statement NB-2026-000009 (id 3)"
    assert "record" in (report.reason or "") and "changed" in (report.reason or "")


def test_a_deleted_statement_with_its_record_is_caught_by_its_number(engine, sessions):
    """Without checkpoints: the statement, its record and a re-chained records' tail are
    gone without a trace in either chain; the gap in the statement numbers names it."""
    post_run(sessions, _plan())
    with sessions() as s:
        recs = s.execute(
            text("SELECT seq, kind, key, run_id, digest FROM settlement_records ORDER BY seq")
        ).all()
    gone = next(r[0] for r in recs if r[2].startswith("statement NB-2026-000002"))
    kept = [r for r in recs if r[0] != gone]
    prev, inserts = ledger.GENESIS_HASH, []
    for new_seq, (_, kind, key, run_id, digest) in enumerate(kept, start=1):
        prev = proof.record_hash(new_seq, kind, key, digest, prev)
        inserts.append(
            f"INSERT INTO settlement_records (seq, kind, key, run_id, digest, hash) VALUES "
            f"({new_seq}, '{kind}', '{key}', {run_id}, '{digest}', '{prev}')"
        )
    _tamper(
        engine,
        "DELETE FROM settlement_statements WHERE number = 'NB-2026-000002'",
        "DELETE FROM settlement_records",
        *inserts,
        f"UPDATE settlement_chain_head SET last_seq = {len(kept)}, last_hash = '{prev}' WHERE id = 2",
    )
    with sessions() as s:
        report = ledger.verify(s)
        proof.verify_records(s, report)
    assert report.first_broken == "statement NB-2026-000002"
    assert "jump from 1 to 3" in (report.reason or "")


def test_period_root_is_the_rfc6962_root_of_the_transfers(sessions, posted):
    with sessions() as s:
        root = s.scalars(select(PeriodRoot)).one()
        lines = list(ledger.stream_lines(s, community="dorp-test", period="2026-10"))
    # an independent computation: the recursive MTH of RFC 6962 over the canonical rows
    from tests.settlement.test_merkle import _mth

    bodies = [line.rpartition(b"\t")[0] for line in lines]
    assert root.tree_size == len(bodies) and _mth(bodies).hex() == root.root_hash
    assert merkle.root([merkle.leaf_hash(b) for b in bodies]).hex() == root.root_hash
    published = json.loads(
        next(
            (checkpoints.roots_dir(posted) / "dorp-test" / "2026-10").glob("root-*.json")
        ).read_text()
    )
    assert published["root"] == root.root_hash and published["tree_size"] == root.tree_size


def test_a_changed_root_file_or_database_root_is_refused(engine, sessions, posted):
    path = next((checkpoints.roots_dir(posted) / "dorp-test" / "2026-10").glob("root-*.json"))
    doc = json.loads(path.read_text())
    doc["root"] = "00" * 32
    path.write_text(json.dumps(doc))
    with sessions() as s, pytest.raises(NoaberError, match="one of them was changed"):
        proof.publish_roots(s, checkpoints.roots_dir(posted))


# ------------------------------------------------------------------ statement proofs


def _cli():
    import typer
    from typer.testing import CliRunner

    from noaber.cli.settle import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def _change_one_digit(text_: str, field_: str) -> str:
    """The JSON with one digit of the first ``"field_": <number>`` changed."""
    import re

    m = re.search(rf'"{field_}": (\d)', text_)
    assert m is not None, field_
    digit = str((int(m.group(1)) + 1) % 10)
    return text_[: m.start(1)] + digit + text_[m.end(1) :]


#: The demo's EV owners (opaque refs; their names live in member_personal only).
DEMO_EV_OWNERS = ("m-4c1e7a", "m-9b2d05", "m-e83f61")  # Anna, Jan, Fatima


def test_statement_exported_from_the_demo_verifies_offline(demo, tmp_path):
    from settlement.statements import render_html, render_json, statement_data

    with demo.sessions() as s:
        st = s.scalars(
            select(Statement).where(
                Statement.member_ref == "m-4c1e7a", Statement.period == "2026-11"
            )
        ).one()
        exported = render_json(s, st.id)
        data = statement_data(s, st.id)
        html = render_html(s, st.id)
        html_en = render_html(s, st.id, "en")
    root = data.merkle_root
    assert root is not None and f'id="merkle-root">{root}<' in html  # printed on the statement
    assert "Hoe dit is berekend" in html and "How this was computed" in html_en
    assert 'id="ev-charged-solar"' in html and "V2G-tarief" in html
    published = json.loads(
        next(
            (checkpoints.roots_dir(demo.data_dir) / "energie-exloo" / "2026-11").glob("*.json")
        ).read_text()
    )
    assert published["root"] == root  # the file written when the run posted
    path = tmp_path / "statement.json"
    path.write_text(exported)
    cli = _cli()
    days_root = data.days_root
    assert days_root == published["days_root"] and f'id="days-root">{days_root}<' in html
    res = cli("statement", "verify", path, "--root", root, "--days-root", days_root)
    assert res.exit_code == 0, res.output + repr(res.exception)
    said = " ".join(res.output.split())  # the console wraps long lines
    assert f"statement {st.number} verified" in said and "5 member days" in said
    doc = json.loads(exported)
    assert doc["transfers"] and all(
        t["fields"]["member_ref"] == "m-4c1e7a" for t in doc["transfers"]
    )
    # one changed digit anywhere a figure or a transfer is: refused, naming what
    for field_, named in (
        ("amount", "not in the tree"),
        ("fee_cents", "fee_cents"),
        ("net_cents", "net_cents"),
        ("ev_discharge_wh", "ev_discharge_wh"),
        ("discharge_wh", "not in the member-days tree"),
    ):
        bad = tmp_path / f"bad-{field_}.json"
        bad.write_text(_change_one_digit(exported, field_))
        res = cli("statement", "verify", bad, "--root", root, "--days-root", days_root)
        assert res.exit_code != 0 and named in str(res.exception), (field_, res.exception)
    # another root (e.g. another period's) is refused too
    other = "0" * 64
    res = cli("statement", "verify", path, "--root", other)
    assert res.exit_code != 0 and "names root" in str(res.exception)


def test_the_building_statement_shows_its_solar_evs_and_costs(demo):
    from settlement.statements import render_html, statement_data

    with demo.sessions() as s:
        st = s.scalars(
            select(Statement).where(
                Statement.member_ref == "m-dorpshuis", Statement.period == "2026-11"
            )
        ).one()
        data = statement_data(s, st.id)
        html = render_html(s, st.id)
        evs = s.scalars(
            select(Statement.id).where(
                Statement.member_ref.in_(DEMO_EV_OWNERS), Statement.period == "2026-11"
            )
        ).all()
        ev_data = [statement_data(s, i) for i in evs]
    assert data.building is not None and data.building.evs == 3
    assert data.building.charged_from_community_wh == sum(d.total.received_wh for d in ev_data)
    assert data.building.delivered_wh == sum(d.total.delivered_wh for d in ev_data)
    assert 'id="building"' in html and 'id="ev"' not in html
    assert "Het gebouw" in html


def test_cli_ledger_checkpoint_and_verify(tmp_path, settings_env):
    from energy.db import make_engine, session_factory, upgrade

    eng = make_engine(settings_env.sqlalchemy_url)
    upgrade(eng)
    post_run(session_factory(eng), _plan())
    cli = _cli()
    res = cli("ledger", "checkpoint")
    assert res.exit_code == 0 and "checkpoint signed" in res.output, res.output
    cps = checkpoints.checkpoints_dir(settings_env.data_dir)
    res = cli("ledger", "verify", "--checkpoints", cps)
    assert res.exit_code == 0 and "1 signed checkpoint" in res.output, res.output
    res = cli("ledger", "root", "--community", "dorp-test", "--period", "2026-10")
    assert res.exit_code == 0 and "transfers" in res.output
    with eng.begin() as conn:  # a fee raised and re-hashed would pass alone; here: head back
        last = conn.execute(
            text("SELECT last_seq FROM settlement_chain_head WHERE id = 1")
        ).scalar()
        prev = conn.execute(
            text(f"SELECT hash FROM settlement_transfers WHERE seq = {last - 1}")
        ).scalar()
        for name in (
            conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
            .scalars()
            .all()
        ):
            conn.execute(text(f"DROP TRIGGER {name}"))
        conn.execute(text(f"DELETE FROM settlement_transfers WHERE seq = {last}"))
        conn.execute(
            text(
                f"UPDATE settlement_chain_head SET last_seq = {last - 1}, last_hash = '{prev}' WHERE id = 1"
            )
        )
    eng.dispose()
    res = cli("ledger", "verify", "--checkpoints", cps)
    assert res.exit_code != 0 and f"transfer {last}" in str(res.exception)


def test_the_how_section_appears_once_and_the_title_is_plain_text(demo):
    """The "how this was computed" section sits in the page body once; title and header carry
    only the statement number (a template slip once put the section into both)."""
    import re

    from settlement.statements import render_html

    with demo.sessions() as s:
        st = s.scalars(
            select(Statement).where(
                Statement.member_ref == DEMO_EV_OWNERS[0], Statement.period == "2026-11"
            )
        ).one()
        html = render_html(s, st.id)
    assert html.count('id="how"') == 1
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    assert title is not None and "<" not in title.group(1) and st.number in title.group(1)


def test_member_day_content_fast_path_is_the_canonical_rule():
    """The sealing hot path (:func:`proof.member_day_row_bytes`) against the per-value rule
    of :func:`proof.member_day_bytes`, including a ref with a backslash and absent values."""
    import datetime as dt

    cases = [
        (3, "m-dh01", dt.date(2026, 10, 5), 1200, 300, 0, 0, 0, 0, 0),
        (12, "m-a\\b", dt.date(2026, 3, 29), 0, 0, 5, 5, 2, 1, 1),
        (1, "m-x", dt.date(2026, 10, 25), 7, 0, 0, 0, None, None, None),
        (2**40, "m-big", dt.date(2027, 1, 1), 2**50, 2**49, 1, 0, 0, 0, 0),
    ]
    for row in cases:
        fields = dict(zip(proof.MEMBER_DAY_FIELDS, row))
        assert proof.member_day_row_bytes(row) == proof.member_day_bytes(fields)
    assert b"\tm-a\\\\b\t" in proof.member_day_row_bytes(cases[1])
    assert proof.member_day_row_bytes(cases[2]).endswith(b"\t\\N\t\\N\t\\N")
