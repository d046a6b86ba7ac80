"""The gateways API on both backends: an operator lists dead letters and quarantined samples,
accepts one (the raw sample is replaced in the configured store, audited) and rejects one
(the stored value stays, audited); resolving twice is refused, an unknown id is 404."""

from __future__ import annotations

import datetime as dt

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from energy.audit import AuditEntry
from energy.gateways import DeadLetter, QuarantinedSample
from energy.rawstore import open_sample_store
from energy.security import create_access_token
from energy.settings import Settings
from noaber.api import create_app
from tests.noaber.api_world import USERS, build_world

SECRET = "test-secret-" + "y" * 40
TS = 1_780_387_200_000_000_000


def test_operator_resolves_quarantine_audited(engine, sessions, tmp_path):
    pg = engine.dialect.name == "postgresql"
    settings = Settings(mode="test", secret_key=SECRET, data_dir=tmp_path,
                        database_url=str(engine.url.render_as_string(hide_password=False))
                        if pg else None, sample_store="postgresql" if pg else "parquet")  # fmt: skip
    store = open_sample_store(settings, engine)
    with sessions() as session, session.begin():
        world = build_world(session)
        cid = next(iter(world.channels.values()))
        ids = []
        for i in range(2):
            q = QuarantinedSample(received_at=dt.datetime(2026, 6, 2, tzinfo=dt.UTC),
                                  gateway="gw1", batch_id=f"b:{i}", channel_id=cid,
                                  ts_ns=TS + i, stored_value=100.0, stored_quality=0,
                                  value=200.0 + i, quality=0, status="open")  # fmt: skip
            session.add(q)
            session.flush()
            ids.append(q.id)
        session.add(DeadLetter(received_at=dt.datetime(2026, 6, 2, tzinfo=dt.UTC),
                               topic="noaber/gw1/samples", gateway="gw1", batch_id="b:9",
                               reason="other_site", detail="channel of another site",
                               samples=[["x/grid/power", TS, 5.0, 0]]))  # fmt: skip
    store.append_new(cid, np.array([TS, TS + 1]), np.array([100.0, 100.0]), np.zeros(2, np.uint8))
    app = create_app(settings, engine)
    token = create_access_token(USERS["operator"], "operator", SECRET, 600, token_version=0)
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        dead = client.get("/gateways/dead-letters", headers=h)
        assert dead.status_code == 200 and [d["reason"] for d in dead.json()] == ["other_site"]
        assert client.get("/gateways/dead-letters?reason=nope", headers=h).status_code == 422
        listed = client.get("/gateways/quarantine", headers=h).json()
        assert sorted(q["id"] for q in listed) == sorted(ids)
        r = client.post(f"/gateways/quarantine/{ids[0]}/accept", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "accepted"
        r = client.post(f"/gateways/quarantine/{ids[1]}/reject", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "rejected"
        assert client.post(f"/gateways/quarantine/{ids[1]}/accept", headers=h).status_code == 409
        assert client.post("/gateways/quarantine/999999/accept", headers=h).status_code == 404
        assert client.get("/gateways/quarantine", headers=h).json() == []
    got = store.read(cid)
    assert got.ts.tolist() == [TS, TS + 1] and got.value.tolist() == [200.0, 100.0]
    with sessions() as session:
        audit = session.execute(
            select(AuditEntry.actor, AuditEntry.via, AuditEntry.action)
            .where(AuditEntry.action.like("quarantine.%")).order_by(AuditEntry.seq)
        ).all()  # fmt: skip
    assert [tuple(a) for a in audit] == [
        (USERS["operator"], "api", "quarantine.accept"),
        (USERS["operator"], "api", "quarantine.reject"),
    ]
