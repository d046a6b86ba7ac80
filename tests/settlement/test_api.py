"""The statements API: a member reads their own statement (page, CSV); others get 404."""

from __future__ import annotations

from fastapi.testclient import TestClient

from energy.models import Member, Role, User
from energy.security import create_access_token
from energy.settings import Settings
from noaber.api import create_app
from settlement.settle import post_run
from tests.settlement.conftest import make_plan

SECRET = "statement-test-secret-" + "z" * 32


def test_member_reads_own_statement_only(engine, sessions):
    post_run(sessions, make_plan())
    with sessions() as s, s.begin():
        from sqlalchemy import select

        ev = s.scalars(select(Member).where(Member.ref == "m-ev01")).one()
        s.add(User(username="jansen", password_hash="x", role=Role.MEMBER, member_id=ev.id))
        s.add(User(username="oper", password_hash="x", role=Role.OPERATOR))
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    member = {"Authorization": "Bearer " + create_access_token("jansen", "member", SECRET, 600)}
    oper = {"Authorization": "Bearer " + create_access_token("oper", "operator", SECRET, 600)}
    with TestClient(app) as client:
        mine = client.get("/statements", headers=member).json()
        assert [m["member_ref"] for m in mine] == ["m-ev01"]
        page = client.get(f"/statements/{mine[0]['id']}", headers=member)
        assert page.status_code == 200 and "Afrekening" in page.text and "ev-jansen" in page.text
        assert (
            "Statement" in client.get(f"/statements/{mine[0]['id']}?lang=en", headers=member).text
        )
        csv = client.get(f"/statements/{mine[0]['id']}/csv", headers=member)
        assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("date,")
        everyone = client.get("/statements", headers=oper).json()
        assert len(everyone) == 4
        other = next(s for s in everyone if s["member_ref"] != "m-ev01")
        assert client.get(f"/statements/{other['id']}", headers=member).status_code == 404
        assert client.get(f"/statements/{other['id']}/csv", headers=member).status_code == 404
        assert client.get(f"/statements/{other['id']}", headers=oper).status_code == 200
