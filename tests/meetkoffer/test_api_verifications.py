"""The versions of a savings verification over the API: frozen, what changed, withdrawal."""

from __future__ import annotations

from sqlalchemy import update

from energy.db import make_engine, session_factory
from energy.models import IntervalReading
from meetkoffer import campaign as cp
from meetkoffer.models import Campaign, SavingsRecord
from tests.meetkoffer.test_api_campaigns import _auth, _client


def test_versions_page_and_json(db_url: str) -> None:
    client, world = _client(db_url)
    own, sid = world.extra["campaign-own"], world.extra["savings-own"]
    firm = _auth("firm")
    r = client.get(f"/campaigns/{own}/savings/{sid}/versions", headers=firm)
    assert r.status_code == 200
    (v1,) = r.json()
    assert v1["version"] == 1 and len(v1["data_digest"]) == 64 and v1["withdrawn_at"] is None
    before = client.get(f"/campaigns/{own}/savings/{sid}", headers=firm).text
    # The readings change; the page keeps the frozen result, a recompute adds version 2.
    sessions = session_factory(make_engine(db_url))
    with sessions.begin() as s:
        s.execute(update(IntervalReading).values(energy_wh=IntervalReading.energy_wh * 2))
    after = client.get(f"/campaigns/{own}/savings/{sid}", headers=firm).text
    strip = lambda html: html.split('id="version"')[1].split("Gemaakt")[0]  # noqa: E731
    assert strip(after) == strip(before)
    with sessions.begin() as s:
        c = s.get(Campaign, own)
        r2 = cp.recompute(s, c, s.get(SavingsRecord, sid))
        assert r2.created
        cp.withdraw_verification(s, c, r2.record.verification_id, "wrong meter", "oper")
    rows = client.get(f"/campaigns/{own}/savings/{sid}/versions", headers=firm).json()
    assert [v["version"] for v in rows] == [1, 2]
    assert "data" in rows[1]["changes"] and rows[1]["changes"]["from_version"] == 1
    assert rows[1]["withdrawn_reason"] == "wrong meter" and rows[0]["withdrawn_by"] == "oper"
    page = client.get(f"/campaigns/{own}/savings/{sid}", headers=firm).text
    assert 'id="withdrawn"' in page and "wrong meter" in page and 'id="versions"' in page
    detail = client.get(f"/campaigns/{own}", headers=firm).json()
    assert {(s["verification_id"], s["version"]) for s in detail["savings_list"]} >= {
        (v1["verification_id"], 1),
        (v1["verification_id"], 2),
    }
