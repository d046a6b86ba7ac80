"""The versions of a savings verification over the API: frozen, what changed, withdrawal."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from energy.audit import verify as audit_verify
from energy.db import make_engine, session_factory
from energy.errors import ValidationError
from energy.models import AuditEntry, IntervalReading
from meetkoffer import campaign as cp
from meetkoffer.models import Campaign, SavingsRecord, Verification
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


def _withdraw(client, campaign: int, verification: int, headers: dict, **body):
    return client.post(
        f"/campaigns/{campaign}/verifications/{verification}/withdraw",
        json=body,
        headers=headers,
    )


def test_withdraw_over_the_api(db_url: str) -> None:
    """The campaign's firm withdraws its verification: recorded, audited, still readable."""
    client, world = _client(db_url)
    own, sid, vid = (world.extra[k] for k in ("campaign-own", "savings-own", "verification-own"))
    other, other_vid = world.extra["campaign-other"], world.extra["verification-other"]
    firm = _auth("firm")
    sessions = session_factory(make_engine(db_url))

    def audit_rows() -> list[AuditEntry]:
        with sessions() as s:
            return list(
                s.scalars(select(AuditEntry).where(AuditEntry.action.like("verification%")))
            )

    # Not the firm's campaign, or not a verification of this campaign: 404, as for a missing one.
    assert _withdraw(client, other, other_vid, firm, reason="x").status_code == 404
    assert _withdraw(client, own, other_vid, firm, reason="x").status_code == 404
    assert _withdraw(client, own, 99999, firm, reason="x").status_code == 404
    # Other roles: 403; no token: 401.
    assert _withdraw(client, own, vid, _auth("evowner"), reason="x").status_code == 403
    assert _withdraw(client, own, vid, _auth("mgr"), reason="x").status_code == 403
    assert (
        client.post(
            f"/campaigns/{own}/verifications/{vid}/withdraw", json={"reason": "x"}
        ).status_code
        == 401
    )
    # A withdrawal needs a reason: empty, blank or missing is refused, naming the field.
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        r = _withdraw(client, own, vid, firm, **body)
        assert r.status_code == 422 and "reason" in r.text, body
    assert audit_rows() == []
    with sessions() as s:
        assert s.get(Verification, vid).withdrawn_at is None
        assert s.get(Verification, other_vid).withdrawn_at is None

    r = _withdraw(client, own, vid, firm, reason="  clamp on the wrong phase  ")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == vid and out["campaign_id"] == own
    assert out["withdrawn_by"] == "firm" and out["withdrawn_reason"] == "clamp on the wrong phase"
    assert out["withdrawn_at"] is not None
    assert [v["version"] for v in out["versions"]] == [1] and out["versions"][0]["id"] == sid
    (entry,) = audit_rows()
    assert (entry.actor, entry.via, entry.action) == ("firm", "api", "verification.withdraw")
    assert entry.target == f"own/verification {vid}"
    assert entry.detail == {"verification_id": vid, "versions": [1]}  # no free text in the log
    with sessions() as s:
        assert audit_verify(s)[1] == []  # the audit chain holds
        # The other firm's verification is untouched.
        assert s.get(Verification, other_vid).withdrawn_at is None

    # Still readable, shown as withdrawn: versions, the report page, the detail, the dashboard.
    rows = client.get(f"/campaigns/{own}/savings/{sid}/versions", headers=firm).json()
    assert (
        rows[0]["withdrawn_reason"] == "clamp on the wrong phase"
        and rows[0]["withdrawn_by"] == "firm"
    )
    page = client.get(f"/campaigns/{own}/savings/{sid}", headers=firm)
    assert page.status_code == 200 and 'id="withdrawn"' in page.text
    assert "clamp on the wrong phase" in page.text and "Ingetrokken" in page.text
    detail = client.get(f"/campaigns/{own}", headers=firm).json()
    assert detail["savings_list"][0]["withdrawn_at"] is not None
    dash = client.get("/campaigns/dashboard", headers=firm).text
    row = dash.split(f'id="savings-{sid}"')[1].split("</tr>")[0]
    assert "Ingetrokken" in row and "clamp on the wrong phase" in row

    # The same withdrawal again changes nothing (200, no second audit entry); another
    # reason is refused (409) and the stored one stays.
    again = _withdraw(client, own, vid, firm, reason="clamp on the wrong phase")
    assert again.status_code == 200 and again.json()["withdrawn_at"] == out["withdrawn_at"]
    r = _withdraw(client, own, vid, _auth("oper"), reason="another reason")
    assert r.status_code == 409 and "clamp on the wrong phase" in r.json()["detail"]
    assert len(audit_rows()) == 1
    with sessions.begin() as s:
        v = s.get(Verification, vid)
        assert (v.withdrawn_by, v.withdrawn_reason) == ("firm", "clamp on the wrong phase")
        # A withdrawn verification is no longer recomputed.
        with pytest.raises(ValidationError, match="withdrawn"):
            cp.recompute(s, s.get(Campaign, own), s.get(SavingsRecord, sid))


def test_operator_withdraws_any_firms_verification(db_url: str) -> None:
    client, world = _client(db_url)
    other, vid = world.extra["campaign-other"], world.extra["verification-other"]
    r = _withdraw(client, other, vid, _auth("oper"), reason="baseline period had a stoppage")
    assert r.status_code == 200 and r.json()["withdrawn_by"] == "oper"
    sessions = session_factory(make_engine(db_url))
    with sessions() as s:
        (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "verification.withdraw"))
        assert (entry.actor, entry.via, entry.target) == (
            "oper",
            "api",
            f"other/verification {vid}",
        )
