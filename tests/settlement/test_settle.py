"""Settlement runs on SQLite and PostgreSQL: idempotency, corrections, provisional runs,
crash safety (SIGKILL mid-posting) and concurrency (two simultaneous runs post once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from energy.db import make_engine, session_factory
from energy.errors import NoaberError
from energy.models import Member, MemberPersonal
from settlement import ledger
from settlement.community import MeterData
from settlement.models import ChainHead, MemberDay, SettlementRun, Statement, Transfer
from settlement.settle import post_pending, post_run, void_pending
from tests.settlement.conftest import community, make_plan, meter_data

ROOT = Path(__file__).parents[2]


def _count(sessions, model) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def _changed_data(isp: int = 1000, member: int = 1, delta_wh: int = 700) -> MeterData:
    d = meter_data()
    off = d.offtake_wh.copy()
    off[isp, member] += delta_wh
    return MeterData(d.isps, d.members, off, d.injection_wh)


def test_run_posts_everything_and_is_idempotent(sessions):
    plan = make_plan()
    first = post_run(sessions, plan)
    assert first.created and first.status == "posted" and first.n_transfers > 0
    assert len(first.statements) == 4
    n = _count(sessions, Transfer)
    again = post_run(sessions, make_plan())
    assert not again.created and again.run_id == first.run_id
    assert _count(sessions, Transfer) == n
    assert _count(sessions, SettlementRun) == 1
    with sessions() as s:
        assert ledger.verify(s).ok
        wh = ledger.balances(s, "wh")
        # every member's Wh balance is received minus supplied, from the member-day figures
        for i, ref in enumerate(plan.community.refs):
            expect = int(plan.shared_day[:, i].sum() - plan.supplied_day[:, i].sum())
            assert wh.get(ledger.member_account(ref), 0) == expect
        assert wh.get(ledger.pool_account("dorp-test"), 0) == 0
        # the ledger holds pseudonymous refs only; names live in member_personal
        accounts = {t.debit_account for t in s.scalars(select(Transfer))}
        assert not any("dorpshuis" in a or "Jansen" in a for a in accounts)
        m = s.scalars(select(Member).where(Member.ref == "m-ev01")).one()
        assert s.get(MemberPersonal, m.id).name == "ev-jansen"


def test_correction_posts_reversals_and_a_correction_statement(sessions):
    post_run(sessions, make_plan())
    with sessions() as s:
        before = {
            (t.ledger, t.code, t.day, t.member_ref): t.amount
            for t in ledger.effective_transfers(s, "dorp-test", "2026-10")
        }
    plan2 = make_plan(data=_changed_data())
    res = post_run(sessions, plan2)
    assert res.created and res.n_reversals > 0
    with sessions() as s:
        new_rows = list(s.scalars(select(Transfer).where(Transfer.run_id == res.run_id)))
        reversals = [t for t in new_rows if t.reverses_id is not None]
        assert len(reversals) == res.n_reversals
        for r in reversals:
            orig = s.get(Transfer, r.reverses_id)
            assert (orig.debit_account, orig.credit_account, orig.amount) == (
                r.credit_account,
                r.debit_account,
                r.amount,
            )
        # only the day of the changed ISP is touched
        assert {t.day for t in new_rows if t.code != "fee"} == {
            plan2.days[int(np.searchsorted(plan2.day_starts, 1000, side="right") - 1)]
        }
        after = {
            (t.ledger, t.code, t.day, t.member_ref): t.amount
            for t in ledger.effective_transfers(s, "dorp-test", "2026-10")
        }
        assert after != before
        corr = s.scalars(select(Statement).where(Statement.kind == "correction")).all()
        assert corr and all(c.corrects_id is not None for c in corr)
        for c in corr:
            orig_st = s.get(Statement, c.corrects_id)
            assert orig_st.member_ref == c.member_ref and orig_st.run_id != c.run_id
        numbers = sorted(int(x.number.rsplit("-", 1)[1]) for x in s.scalars(select(Statement)))
        assert numbers == list(range(1, len(numbers) + 1))  # gap-free
        assert ledger.verify(s).ok
    # the corrected ledger equals a fresh settlement of the corrected data
    fresh = make_engine("sqlite://")
    from energy.db import upgrade

    upgrade(fresh)
    fresh_sessions = session_factory(fresh)
    post_run(fresh_sessions, make_plan(data=_changed_data()))
    with fresh_sessions() as s:
        expect = {
            (t.ledger, t.code, t.day, t.member_ref): t.amount
            for t in ledger.effective_transfers(s, "dorp-test", "2026-10")
        }
    assert after == expect
    fresh.dispose()


def test_provisional_run_is_pending_until_posted(sessions):
    res = post_run(sessions, make_plan(), provisional=True)
    assert res.status == "pending" and not res.statements
    with sessions() as s:
        assert ledger.balances(s, "cents") == {}
    with pytest.raises(NoaberError, match="pending"):
        post_run(sessions, make_plan(data=_changed_data()))
    posted = post_pending(sessions, res.run_id)
    assert posted.status == "posted" and len(posted.statements) == 4
    with sessions() as s:
        assert ledger.balances(s, "cents")
        assert ledger.verify(s).ok
    with pytest.raises(NoaberError, match="not pending"):
        void_pending(sessions, res.run_id)


def test_provisional_run_can_be_voided(sessions):
    res = post_run(sessions, make_plan(), provisional=True)
    voided = void_pending(sessions, res.run_id)
    assert voided.status == "voided"
    with sessions() as s:
        assert ledger.balances(s, "wh") == {}
        assert ledger.verify(s).ok
    assert _count(sessions, Statement) == 0


CRASH_SCRIPT = """
import os, sys, time
from energy.db import make_engine, session_factory
from settlement.settle import post_run
from tests.settlement.conftest import make_plan

def on_chunk(done, total):
    print("MID", done, total, flush=True)
    time.sleep(60)

post_run(session_factory(make_engine(sys.argv[1])), make_plan(), on_chunk=on_chunk)
print("DONE", flush=True)
"""


def test_sigkill_mid_posting_leaves_no_partial_run(db_url, sessions):
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, db_url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 90
        line = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("MID") or not line:
                break
        assert line.startswith("MID"), f"subprocess did not reach posting: {line!r}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _count(sessions, SettlementRun) == 0
    assert _count(sessions, Transfer) == 0
    assert _count(sessions, MemberDay) == 0
    with sessions() as s:
        assert s.get(ChainHead, 1).last_seq == 0
    res = post_run(sessions, make_plan())
    assert res.created and res.n_transfers > 0
    with sessions() as s:
        assert ledger.verify(s).ok


def test_two_simultaneous_runs_post_once(db_url):
    engines = [make_engine(db_url), make_engine(db_url)]
    plan = make_plan()
    barrier = threading.Barrier(2, timeout=30)
    results: list = [None, None]
    errors: list[BaseException] = []

    def slow_chunk(done: int, total: int) -> None:
        time.sleep(0.5)  # hold the lock while the other run starts

    def worker(k: int) -> None:
        try:
            barrier.wait()
            results[k] = post_run(session_factory(engines[k]), plan, on_chunk=slow_chunk)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors
    assert sorted(r.created for r in results) == [False, True]
    created = next(r for r in results if r.created)
    sessions = session_factory(engines[0])
    assert _count(sessions, SettlementRun) == 1
    assert _count(sessions, Transfer) == created.n_transfers
    with sessions() as s:
        assert ledger.verify(s).ok
    for e in engines:
        e.dispose()


def test_run_needs_the_whole_period():
    d = meter_data()
    short = MeterData(d.isps[:10], d.members, d.offtake_wh[:10], d.injection_wh[:10])
    with pytest.raises(ValueError, match="cover exactly"):
        make_plan(data=short)
    assert community().refs == ("m-pv01", "m-dh01", "m-ev01", "m-cl01")


def test_member_joining_mid_month(sqlite_sessions):
    """The club joins on 15 October: nothing is shared with it before, its fee is pro rata."""
    from settlement.community import parse_community
    from settlement.pricing import load_tariff
    from settlement.settle import plan_energy, price_plan
    from tests.settlement.conftest import COMMUNITY

    spec = dict(COMMUNITY)
    spec["members"] = [dict(m) for m in COMMUNITY["members"]]
    spec["members"][3]["joined"] = "2026-10-15"
    c = parse_community(spec)
    plan = plan_energy(c, "2026-10", meter_data(), load_tariff())
    club = 3
    assert plan.days[14].isoformat() == "2026-10-15"
    assert not plan.shared_day[:14, club].any() and plan.shared_day[14:, club].any()
    assert not plan.offtake_day[:14, club].any()
    fee = price_plan(plan, {})["fee"]
    assert fee[0].tolist() == [150, 150, 150, 82]  # 150 cents * 17/31 days = 82.26 -> 82
    assert plan.data_version != make_plan().data_version
    res = post_run(sqlite_sessions, plan)
    assert res.created
    with sqlite_sessions() as s:
        assert ledger.verify(s).ok
