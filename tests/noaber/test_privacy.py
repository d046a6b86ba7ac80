"""Export and erasure of a member (AVG art. 15, 17, 20), on SQLite and PostgreSQL.

After ``noaber member erase``: ``noaber ledger verify`` passes, every other member's statement
renders exactly as before (same CSV and HTML bytes, same totals) and still matches the ledger,
the erased member's statement keeps its figures (the 7-year bewaarplicht) under the
pseudonymous ref, and no text column of any table holds the member's name, e-mail, address,
IBAN, licence plate or label.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import String, Text, select
from sqlalchemy.types import JSON
from typer.testing import CliRunner

from energy.audit import verify as verify_audit
from energy.db import Base
from energy.errors import NoaberError
from energy.models import AuditEntry, Member, User
from energy.security import create_access_token
from energy.settings import Settings, get_settings
from energy.users import authenticate
from noaber.api import create_app
from noaber.cli import app as cli_app
from noaber.cli.audit import set_actor
from settlement.models import Statement
from settlement.proof import root_for
from settlement.statements import (
    render_csv,
    render_html,
    render_json,
    statement_data,
    verify_json,
)
from tests.energy.test_migrations import MODEL_MODULES
from tests.noaber.privacy_world import (
    BANK,
    LEAVER,
    PASSWORD,
    PEOPLE,
    STAYER,
    USERNAMES,
    build,
)

SECRET = "privacy-test-secret-" + "z" * 40


@pytest.fixture
def cli(db_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Run ``noaber ...`` in-process on the test database (returns the result)."""
    monkeypatch.setenv("NOABER_DATABASE_URL", db_url)
    monkeypatch.setenv("NOABER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NOABER_MODE", "local")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> SimpleNamespace:
        """Exit code and output as ``noaber.cli.main`` gives them (an error: one line, 1)."""
        result = runner.invoke(cli_app, list(args))
        exc = result.exception
        if isinstance(exc, NoaberError | ValueError | OSError):
            return SimpleNamespace(exit_code=1, output=f"error: {exc}")
        if exc is not None and not isinstance(exc, SystemExit):
            raise exc
        return SimpleNamespace(exit_code=result.exit_code, output=result.output)

    yield run
    get_settings.cache_clear()
    set_actor(None)


def _fingerprints(sessions, statement_ids: dict[str, int]) -> dict[str, tuple]:
    """Per member: sha256 of the statement CSV, HTML and JSON export, and its totals.

    Each statement's JSON export must also pass the offline check of ``noaber statement
    verify`` (:func:`settlement.statements.verify_json`) against its period's published roots,
    before and after the erasure.
    """
    out = {}
    with sessions() as session:
        for ref, sid in statement_ids.items():
            data = statement_data(session, sid)  # raises if the total differs from the ledger
            st = session.get(Statement, sid)
            assert st is not None
            root = root_for(session, st.community, st.period, st.max_seq)
            assert root is not None, f"statement {sid} has no period root"
            exported = render_json(session, sid)
            _, problems = verify_json(exported, root.root_hash, root.days_root)
            assert problems == [], (ref, problems)
            out[ref] = (
                hashlib.sha256(render_csv(session, sid).encode()).hexdigest(),
                hashlib.sha256(render_html(session, sid).encode()).hexdigest(),
                hashlib.sha256(exported.encode()).hexdigest(),
                data.total,
                data.ledger_balance_cents,
            )
    return out


def _text_values(sessions) -> list[tuple[str, str, str]]:
    """``(table, column, value)`` of every text and JSON value of every table."""
    for m in MODEL_MODULES:
        importlib.import_module(m)
    found = []
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if not cols:
                continue
            for row in session.execute(select(*cols)):
                for col, value in zip(cols, row, strict=True):
                    if value is None:
                        continue
                    text = (
                        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    )
                    found.append((table.name, col.name, text))
    return found


def _hits(values: list[tuple[str, str, str]], person: dict[str, str]) -> list[str]:
    needles = [v.casefold() for v in person.values()]
    needles += [w.casefold() for w in person["name"].split()]  # each part of the name too
    return [
        f"{table}.{col} holds {needle!r}"
        for table, col, text in values
        for needle in needles
        if needle in text.casefold()
    ]


def test_erase_keeps_the_books_and_leaves_no_personal_field(sessions, cli) -> None:
    world = build(sessions)
    # what the member's user sees and can download before
    out = cli(
        "--as", "privacy-officer", "member", "consent", "give", LEAVER, "ev_detail_site_manager"
    )
    assert out.exit_code == 0, out.output
    values = _text_values(sessions)
    leaver = {**PEOPLE[LEAVER], **BANK[LEAVER]}  # with the bank and SEPA mandate fields
    assert _hits(values, leaver), "the scan must see the personal data before erasure"
    assert any(USERNAMES[LEAVER] == v for t, _, v in values if t == "ev_sessions")
    before = _fingerprints(sessions, world.statements)
    assert cli("ledger", "verify").exit_code == 0

    out = cli("--as", "privacy-officer", "member", "erase", LEAVER, "--yes")
    assert out.exit_code == 0, out.output
    assert "7-year bewaarplicht" in out.output

    verified = cli("ledger", "verify")
    assert verified.exit_code == 0 and "ledger ok" in verified.output, verified.output
    after = _fingerprints(sessions, world.statements)
    others = [ref for ref in world.statements if ref != LEAVER]
    assert others and {r: after[r] for r in others} == {r: before[r] for r in others}
    assert after[LEAVER][0] == before[LEAVER][0]  # the figures (CSV) are kept, pseudonymised
    assert after[LEAVER][2] == before[LEAVER][2]

    values = _text_values(sessions)
    assert _hits(values, leaver) == []
    assert _hits(values, {**PEOPLE[STAYER], **BANK[STAYER]}), "the other member's data must stay"
    # the leaver's announced stays are gone (who set them, when the car came); the other's stay
    assert [v for t, c, v in values if t == "ev_sessions" and c == "created_by"] == [
        USERNAMES[STAYER]
    ]
    with sessions() as session:
        member = session.scalar(select(Member).where(Member.ref == LEAVER))
        assert member.erased_at is not None and member.personal is None
        assert all(c.withdrawn_at is not None for c in member.consents)
        user = session.scalar(select(User).where(User.member_id == member.id))
        assert user.disabled and user.username == f"erased-{user.id}" and user.totp_secret is None
        assert authenticate(session, USERNAMES[LEAVER], PASSWORD) is None
        assert authenticate(session, USERNAMES[STAYER], PASSWORD) is not None
        log = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert [(e.actor, e.action, e.target) for e in log] == [
            ("privacy-officer", "consent.give", LEAVER),
            ("privacy-officer", "member.erase", LEAVER),
        ]
        assert (
            log[1].detail["personal_deleted"] is True and log[1].detail["consents_withdrawn"] == 1
        )
        assert verify_audit(session) == (2, [])


def test_export_has_everything_and_the_member_downloads_only_their_own(
    engine, sessions, cli, tmp_path
) -> None:
    build(sessions)
    out = cli("member", "export", LEAVER, "--out", str(tmp_path / "export"))
    assert out.exit_code == 0, out.output
    data = json.loads((tmp_path / "export" / f"{LEAVER}.json").read_text(encoding="utf-8"))
    tables = data["tables"]
    assert tables["member_personal"] == [
        {**PEOPLE[LEAVER], **BANK[LEAVER], "sepa_mandate_date": "2026-05-01", "extra": {}}
    ]
    (stay,) = tables["ev_sessions"]
    assert stay["created_by"] == USERNAMES[LEAVER] and stay["soc_target_pct"] == 80.0
    assert [u["username"] for u in tables["users"]] == [USERNAMES[LEAVER]]
    assert "password_hash" not in tables["users"][0]
    assert len(tables["interval_readings"]) == 8 and tables["assets"][0]["name"] == "ev-1"
    assert tables["settlement_statements"] and tables["settlement_member_days"]
    assert all(
        f"member:{LEAVER}" in (t["debit_account"], t["credit_account"])
        for t in tables["settlement_transfers"]
    )
    assert "7 years" in data["retention"]
    csv_text = (tmp_path / "export" / f"{LEAVER}.csv").read_text(encoding="utf-8")
    n_fields = sum(len(r) for rows in tables.values() for r in rows)
    assert len(csv_text.splitlines()) == 1 + 3 + n_fields  # header, export rows, every field
    assert "NL91ABNA0417164300" in csv_text and PEOPLE[STAYER]["iban"] not in csv_text
    assert BANK[LEAVER]["sepa_mandate_id"] in csv_text and BANK[STAYER]["bic"] not in csv_text

    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    token = create_access_token(USERNAMES[LEAVER], "member", SECRET, 600)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        mine = client.get(f"/members/{LEAVER}/export", headers=headers)
        assert mine.status_code == 200 and mine.headers["cache-control"] == "no-store"
        assert mine.json()["tables"]["member_personal"][0]["name"] == "Anna Bakker"
        assert client.get(f"/members/{STAYER}/export", headers=headers).status_code == 404
        assert client.get(f"/members/{LEAVER}/export/csv", headers=headers).text.startswith(
            "table,row,field,value"
        )
        client.cookies.set("noaber_token", token)
        home = client.get("/")
        assert f'href="/members/{LEAVER}/export/csv"' in home.text and "Mijn gegevens" in home.text
    with sessions() as session:
        actions = [(e.actor, e.via, e.action) for e in session.scalars(select(AuditEntry))]
    assert actions[0][1:] == ("cli", "member.export")
    assert actions[1:] == [(USERNAMES[LEAVER], "api", "member.export")] * 2


def test_site_manager_sees_a_car_only_with_consent(engine, sessions) -> None:
    from tests.noaber.api_world import build_world

    with sessions() as session, session.begin():
        world = build_world(session)
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)

    def bearer(username: str, role: str) -> dict[str, str]:
        with sessions() as session:
            v = session.scalar(select(User.token_version).where(User.username == username))
        token = create_access_token(username, role, SECRET, 600, token_version=v or 0)
        return {"Authorization": f"Bearer {token}"}

    car, channel = world.assets["hall-a/ev-own"], world.channels["hall-a/ev-own/power"]
    mgr, owner = bearer("mgr", "site_manager"), bearer("evowner", "member")
    with TestClient(app) as client:

        def manager_view() -> tuple[int, int, bool]:
            names = [a["name"] for a in client.get("/sites/hall-a/assets", headers=mgr).json()]
            return (
                client.get(f"/assets/{car}", headers=mgr).status_code,
                client.get(f"/channels/{channel}/readings", headers=mgr).status_code,
                "ev-own" in names,
            )

        assert manager_view() == (404, 404, False)
        # the building's total EV energy stays visible without consent
        total = client.get("/sites/hall-a/readings", headers=mgr).json()["energy_wh"]["ev"]
        assert total == pytest.approx(
            sum(
                client.get(f"/channels/{channel}/readings", headers=owner).json()["readings"][i][
                    "energy_wh"
                ]
                for i in range(96)
            )
        )
        r = client.post("/members/m-ev/consents", json={"purpose": PURPOSE}, headers=owner)
        assert r.status_code == 201 and r.json()["withdrawn_at"] is None
        assert manager_view() == (200, 200, True)
        url = f"/members/m-ev/consents/{PURPOSE}/withdraw"
        assert client.post(url, headers=owner).json()[0]["withdrawn_at"] is not None
        assert manager_view() == (404, 404, False)
        assert client.post(url, headers=mgr).status_code == 403
        assert client.get("/audit", headers=owner).status_code == 403
        log = client.get("/audit?action=consent.", headers=bearer("oper", "operator")).json()
    assert log["chain_ok"] and log["total"] == 2
    assert [(e["actor"], e["via"], e["action"], e["target"]) for e in log["entries"]] == [
        ("evowner", "api", "consent.withdraw", "m-ev"),
        ("evowner", "api", "consent.give", "m-ev"),
    ]


PURPOSE = "ev_detail_site_manager"


def test_schedule_of_cars_without_consent_is_summed_for_the_site_manager(sessions) -> None:
    import pandas as pd

    from energy.models import Role
    from energy.privacy import give_consent
    from noaber.api.routers.schedules import EV_TOTAL, consented_steps
    from tests.noaber.api_world import build_world

    ts = pd.to_datetime(["2026-06-01T22:00Z", "2026-06-01T22:00Z", "2026-06-01T22:00Z"] * 2)
    steps = pd.DataFrame(
        {
            "ts": ts.sort_values(),
            "asset": ["battery", "ev-own", "ev-other"] * 2,
            "kind": ["battery", "ev", "ev"] * 2,
            "owner_ref": [None, "m-ev", "m-ev-other"] * 2,
            "power_kw": [1.0, 2.0, 3.5, -1.0, 4.0, 0.5],
            "soc_pct": [50.0, 60.0, 70.0, 51.0, 61.0, 71.0],
        }
    )
    steps.loc[3:, "ts"] = pd.Timestamp("2026-06-01T22:15Z")
    with sessions() as session:
        build_world(session)
        mgr = session.scalar(select(User).where(User.username == "mgr"))
        oper = session.scalar(select(User).where(User.username == "oper"))
        assert consented_steps(session, oper, steps) is steps
        seen = consented_steps(session, mgr, steps)
        assert set(seen["asset"]) == {"battery", EV_TOTAL} and mgr.role is Role.SITE_MANAGER
        assert seen.loc[seen["asset"] == EV_TOTAL, "power_kw"].tolist() == [5.5, 4.5]
        assert seen.loc[seen["asset"] == EV_TOTAL, "soc_pct"].isna().all()
        give_consent(session, session.scalar(select(Member).where(Member.ref == "m-ev")), PURPOSE)
        seen = consented_steps(session, mgr, steps)
        assert set(seen["asset"]) == {"battery", "ev-own", EV_TOTAL}
        assert seen.loc[seen["asset"] == EV_TOTAL, "power_kw"].tolist() == [3.5, 0.5]


def test_member_and_audit_commands(sessions, cli) -> None:
    out = cli(
        "--as",
        "beheer",
        "member",
        "add",
        "--name",
        "Fatima El Amrani",
        "--iban",
        "NL20 INGB 0001 2345 67",
        "--plate",
        "t-789-ef",
        "--label",
        "ev-fatima",
    )
    assert out.exit_code == 0, out.output
    ref = out.output.split()[1]
    assert ref.startswith("m-") and len(ref) == 8
    with sessions() as session:
        p = session.scalar(select(Member).where(Member.ref == ref)).personal
        assert (p.name, p.iban, p.licence_plate) == (
            "Fatima El Amrani",
            "NL20INGB0001234567",
            "T-789-EF",
        )
    named = cli("member", "add", "--name", "Fatima El Amrani", "--ref", "m-fatima")
    assert named.exit_code == 1 and "member add:member.ref: member ref 'm-fatima'" in named.output
    assert "no consent" in cli("member", "consent", "list", ref).output
    assert cli("member", "consent", "give", ref, PURPOSE).exit_code == 0
    assert "already given" in cli("member", "consent", "give", ref, PURPOSE).output
    assert "active" in cli("member", "consent", "list", ref).output
    assert "withdrawn" in cli("member", "consent", "withdraw", ref, PURPOSE).output
    assert "was not given" in cli("member", "consent", "withdraw", ref, PURPOSE).output
    bad = cli("member", "consent", "give", ref, "marketing")
    assert (
        bad.exit_code == 1
        and "consent:purpose: must be one of ev_detail_site_manager" in bad.output
    )
    with sessions() as session, session.begin():
        from energy.users import create_user

        create_user(session, "lid-9", "long-enough-pw", "member", member_ref=ref)
    assert cli("--as", "beheer", "user", "disable", "lid-9").exit_code == 0
    moved = cli("user", "set-role", "lid-9", "--role", "site_manager", "--site", "nowhere")
    assert moved.exit_code == 1 and "site_names: no site(s) 'nowhere'" in moved.output
    listed = cli("audit", "list", "--action", "consent.", "--limit", "10", "--plain")
    assert listed.exit_code == 0 and "2 entries" in listed.output, listed.output
    assert "consent.withdraw" in listed.output and "member.add" not in listed.output
    mine = cli("audit", "list", "--actor", "beheer", "--plain")
    assert (
        "member.add" in mine.output and "user.disable" in mine.output and "2 entries" in mine.output
    )
    assert "hash chain intact" in cli("audit", "verify").output
    assert cli("audit", "list", "--since", "yesterday").exit_code == 1


def test_schedule_summary_leaves_out_hidden_cars() -> None:
    from noaber.api.routers.schedules import consented_summary
    from optimizer.store import Schedule

    summary = {
        "kpis": {
            "optimized": {
                "departures": [{"ev": "ev-own", "soc_pct": 80}, {"ev": "ev-other", "soc_pct": 70}],
                "v2g_kwh": {"ev-own": 1.5, "ev-other": 2.0},
            }
        }
    }
    stored = Schedule(id=7, site_name="hall-a", summary=summary)
    view = consented_summary(stored, {"ev-other"})
    assert view.id == 7 and view is not stored
    assert view.summary["kpis"]["optimized"] == {
        "departures": [{"ev": "ev-own", "soc_pct": 80}],
        "v2g_kwh": {"ev-own": 1.5},
    }
    assert len(stored.summary["kpis"]["optimized"]["departures"]) == 2  # the row is untouched
    assert consented_summary(stored, set()) is stored


def test_control_run_records_each_written_setpoint(sessions, cli) -> None:
    from pathlib import Path

    from noaber.cli.control import _audit_setpoints
    from noaber.services.control import SetpointRecord

    assert cli("--as", "nachtdienst", "audit", "verify").exit_code == 0  # sets the actor
    records = [
        SetpointRecord("ev-1", "ev-1", 3000.0, 3000.0, 2500.0, "optimizer.mpc", True),
        SetpointRecord("battery", "battery-gx", -1000.0, -800.0, -800.0, "optimizer.mpc", False),
    ]
    _audit_setpoints(Path("/x/demo_site.yaml"), records)
    with sessions() as session:
        log = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [(e.actor, e.action, e.target, e.detail["written_w"]) for e in log] == [
        ("nachtdienst", "device.setpoint", "ev-1", 2500.0),
        ("nachtdienst", "device.setpoint", "battery", -800.0),
    ]
    assert log[1].detail == {
        "site_file": "demo_site.yaml",
        "control": "battery-gx",
        "requested_w": -800.0,
        "written_w": -800.0,
        "read_back": False,
        "by": "optimizer.mpc",
    }
