"""The operator's write actions on pages and over the API (issue 16, point 2): members with
their personal data apart, users (add, role, password reset), settlement runs queued as a
job with its status page, post/void of a provisional run, and the manager's re-plan button.
Refusals show the form again in Dutch (pages) or as problem+json (API), store nothing, and
every change is in the audit log. Runs on the API world (both backends)."""

from __future__ import annotations

from sqlalchemy import select

from energy.jobs import Job
from energy.models import AuditEntry, Member, MemberPersonal, Role, User
from energy.security import create_access_token, verify_password
from settlement.models import SettlementRun
from tests.noaber.api_authz import COMMUNITY
from tests.noaber.api_world import USERS
from tests.noaber.test_api_authz import SECRET
from tests.noaber.test_pages_roles import HTML, _client, links_of


def _audit(sessions, action: str) -> list[AuditEntry]:
    with sessions() as s:
        return list(
            s.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def _bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_access_token(USERS[role], role, SECRET, 600)}"}


def test_operator_adds_and_edits_a_member_on_the_page(world_app, sessions) -> None:
    app, _world = world_app
    client, csrf = _client(app, "operator")
    form = {
        "csrf_token": csrf,
        "kind": "person",
        "name": "Anna de Vries",
        "email": "anna@example",  # no domain: refused
        "iban": "NL91 ABNA 0417 1643 00",
        "licence_plate": "ab-123-c",
    }
    with client:
        start = client.get("/", headers=HTML)
        assert "/operator/members" in links_of(start.text)
        bad = client.post("/operator/members", data=form, headers=HTML)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
        assert 'data-field="email"' in bad.text and "vul een e-mailadres in" in bad.text
        assert 'value="Anna de Vries"' in bad.text  # what was typed stays
        with sessions() as s:
            assert (
                s.scalar(select(MemberPersonal).where(MemberPersonal.name == "Anna de Vries"))
                is None
            )
        no_csrf = client.post("/operator/members", data={**form, "csrf_token": "x"}, headers=HTML)
        assert no_csrf.status_code == 403
        form["email"] = "anna@example.nl"
        ok = client.post("/operator/members", data=form, headers=HTML, follow_redirects=False)
        assert ok.status_code == 303, ok.text[:400]
        page_url = ok.headers["location"]
        ref = page_url.split("/")[3].split("?")[0]
        page = client.get(page_url, headers=HTML)
        assert 'id="saved"' in page.text and 'value="NL91ABNA0417164300"' in page.text
        # the edit: a bad IBAN is refused and changes nothing, a good edit is stored
        edit = {k: v for k, v in form.items() if k != "kind"}
        bad = client.post(
            f"/operator/members/{ref}",
            data={**edit, "iban": "NL00 ABNA 0417 1643 00"},
            headers=HTML,
        )
        assert bad.status_code == 422 and 'data-field="iban"' in bad.text
        assert "geldig IBAN" in bad.text
        ok = client.post(
            f"/operator/members/{ref}",
            data={**edit, "address": "Brink 1, Exloo"},
            headers=HTML,
            follow_redirects=False,
        )
        assert ok.status_code == 303
    with sessions() as s:
        member = s.scalar(select(Member).where(Member.ref == ref))
        assert member is not None and member.personal is not None
        p = member.personal
        assert (p.name, p.email, p.iban, p.licence_plate, p.address) == (
            "Anna de Vries",
            "anna@example.nl",
            "NL91ABNA0417164300",
            "AB-123-C",
            "Brink 1, Exloo",
        )
        assert "anna" not in member.ref and "vries" not in member.ref  # the ref stays opaque
    added = _audit(sessions, "member.add")
    assert [e.target for e in added] == [ref]
    assert added[0].detail == {
        "kind": "person",
        "fields": ["email", "iban", "licence_plate", "name"],
    }
    updated = _audit(sessions, "member.update")
    assert [e.detail for e in updated] == [{"fields": ["address"]}]
    # never a personal value in the audit log, which cannot be erased
    for e in added + updated:
        assert "Anna" not in str(e.detail) and "NL91" not in str(e.detail)


def test_members_over_the_api(world_app, sessions) -> None:
    from fastapi.testclient import TestClient

    app, _world = world_app
    h = _bearer("operator")
    with TestClient(app) as client:
        r = client.post("/members", json={"name": "  ", "kind": "person"}, headers=h)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"][-1] == "name"
        r = client.post("/members", json={"name": "Dorpshuis Odoorn", "kind": "club"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "kind"
        r = client.post(
            "/members", json={"name": "Dorpshuis Odoorn", "kind": "organisation"}, headers=h
        )
        assert r.status_code == 201, r.text
        ref = r.json()["ref"]
        assert r.json()["name"] == "Dorpshuis Odoorn" and ref.startswith("m-")
        r = client.patch(f"/members/{ref}", json={"licence_plate": "??"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "licence_plate"
        r = client.patch(f"/members/{ref}", json={"name": None}, headers=h)
        assert r.status_code == 422  # the name cannot be cleared
        r = client.patch(f"/members/{ref}", json={"email": "bestuur@odoorn.nl"}, headers=h)
        assert r.status_code == 200 and r.json()["email"] == "bestuur@odoorn.nl"
        assert r.json()["name"] == "Dorpshuis Odoorn"  # a field left out stays
        assert client.get("/members/m-nobody", headers=h).status_code == 404
        listed = client.get("/members", headers=h).json()
        assert ref in [m["ref"] for m in listed]
        # a member sees their own record, not someone else's
        mine = client.get("/members/m-ev", headers=_bearer("member"))
        assert mine.status_code == 200
        assert client.get(f"/members/{ref}", headers=_bearer("member")).status_code == 404
    assert [e.detail for e in _audit(sessions, "member.update")] == [{"fields": ["email"]}]


def test_operator_adds_a_user_changes_the_role_and_resets_the_password(world_app, sessions) -> None:
    app, _world = world_app
    client, csrf = _client(app, "operator")
    with client:
        bad = client.post(
            "/operator/users",
            data={
                "csrf_token": csrf,
                "username": "mgr",
                "password": "long-enough-pw",
                "role": "site_manager",
                "site_names": ["hall-b"],
            },
            headers=HTML,
        )
        assert bad.status_code == 422 and "deze gebruikersnaam is al in gebruik" in bad.text
        bad = client.post(
            "/operator/users",
            data={
                "csrf_token": csrf,
                "username": "hall-b-mgr",
                "password": "long-enough-pw",
                "role": "site_manager",
            },
            headers=HTML,
        )
        assert bad.status_code == 422 and "kies ten minste één locatie" in bad.text
        ok = client.post(
            "/operator/users",
            data={
                "csrf_token": csrf,
                "username": "hall-b-mgr",
                "password": "long-enough-pw",
                "role": "site_manager",
                "site_names": ["hall-b"],
            },
            headers=HTML,
            follow_redirects=False,
        )
        assert ok.status_code == 303 and ok.headers["location"].startswith("/operator/users/hall-b")
        # a member user's name must not hold a word of the member's name (pseudonymous)
        client.post(
            "/operator/members/m-ev-other",
            data={"csrf_token": csrf, "name": "Piet Jansen"},
            headers=HTML,
            follow_redirects=False,
        )
        named = client.post(
            "/operator/users",
            data={
                "csrf_token": csrf,
                "username": "piet-ev",
                "password": "long-enough-pw",
                "role": "member",
                "member_ref": "m-ev-other",
            },
            headers=HTML,
        )
        assert named.status_code == 422 and "geen woord uit de naam" in named.text
        page = client.get(ok.headers["location"], headers=HTML)
        assert 'id="saved"' in page.text and "Hall B" in page.text
        # a role that needs a member, without one: refused, the role stays
        bad = client.post(
            "/operator/users/hall-b-mgr/role",
            data={"csrf_token": csrf, "role": "member"},
            headers=HTML,
        )
        assert bad.status_code == 422 and "kies het lid namens wie" in bad.text
        ok = client.post(
            "/operator/users/hall-b-mgr/role",
            data={"csrf_token": csrf, "role": "firm", "member_ref": "m-firm-other"},
            headers=HTML,
            follow_redirects=False,
        )
        assert ok.status_code == 303
        own = client.post(
            f"/operator/users/{USERS['operator']}/role",
            data={"csrf_token": csrf, "role": "member", "member_ref": "m-ev"},
            headers=HTML,
        )
        assert own.status_code == 422 and "eigen rol" in own.text
        short = client.post(
            "/operator/users/hall-b-mgr/password",
            data={"csrf_token": csrf, "new_password": "short"},
            headers=HTML,
        )
        assert short.status_code == 422 and "8 tot 1024 tekens" in short.text
        ok = client.post(
            "/operator/users/hall-b-mgr/password",
            data={"csrf_token": csrf, "new_password": "another-long-password"},
            headers=HTML,
            follow_redirects=False,
        )
        assert ok.status_code == 303
    with sessions() as s:
        user = s.scalar(select(User).where(User.username == "hall-b-mgr"))
        assert user is not None and user.role is Role.FIRM and user.sites == []
        assert user.member is not None and user.member.ref == "m-firm-other"
        assert verify_password(user.password_hash, "another-long-password")
        me = s.scalar(select(User).where(User.username == USERS["operator"]))
        assert me is not None and me.role is Role.OPERATOR
    assert [e.target for e in _audit(sessions, "user.add")] == ["hall-b-mgr"]
    roles = _audit(sessions, "user.role")
    assert [(e.target, e.detail["from"], e.detail["role"]) for e in roles] == [
        ("hall-b-mgr", "site_manager", "firm")
    ]
    assert [e.target for e in _audit(sessions, "user.password_reset")] == ["hall-b-mgr"]


def test_role_over_the_api(world_app, sessions) -> None:
    from fastapi.testclient import TestClient

    app, _world = world_app
    h = _bearer("operator")
    with TestClient(app) as client:
        r = client.put("/users/firm/role", json={"role": "boss"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "role"
        r = client.put("/users/nobody/role", json={"role": "operator"}, headers=h)
        assert r.status_code == 404
        r = client.put(
            "/users/firm/role", json={"role": "site_manager", "site_names": ["hall-b"]}, headers=h
        )
        assert r.status_code == 200 and r.json()["site_names"] == ["hall-b"]
        # the old token carried the old role: it is revoked
        assert client.get("/users/me", headers=_bearer("firm")).status_code == 401


def test_settlement_run_is_queued_as_a_job_with_a_status_page(world_app, sessions) -> None:
    app, _world = world_app
    client, csrf = _client(app, "operator")
    with client:
        start = client.get("/", headers=HTML)
        assert "/operator/runs" in links_of(start.text)
        bad = client.post(
            "/operator/runs", data={"csrf_token": csrf, "community": COMMUNITY, "period": "2026-13"},
            headers=HTML,
        )  # fmt: skip
        assert bad.status_code == 422 and "vul een maand in als JJJJ-MM" in bad.text
        ok = client.post(
            "/operator/runs",
            data={"csrf_token": csrf, "community": COMMUNITY, "period": "2026-02"},
            headers=HTML,
            follow_redirects=False,
        )
        assert ok.status_code == 303 and ok.headers["location"].startswith("/jobs/")
        job_id = int(ok.headers["location"].rsplit("/", 1)[1])
        page = client.get(ok.headers["location"], headers=HTML)
        assert page.status_code == 200
        # no queue in the test app: the job waits, and its page says so and refreshes
        assert 'data-state="queued"' in page.text and "in de wachtrij" in page.text
        assert 'http-equiv="refresh"' in page.text
        # done: the result shows, no more refreshing
        with sessions() as s, s.begin():
            job = s.get(Job, job_id)
            assert job is not None and job.args == {
                "community": COMMUNITY, "period": "2026-02", "provisional": False
            }  # fmt: skip
            job.state, job.result = "done", {"run_id": 7, "transfers": 12}
        page = client.get(f"/jobs/{job_id}", headers=HTML)
        assert 'data-state="done"' in page.text and 'id="job-result"' in page.text
        assert 'http-equiv="refresh"' not in page.text and 'value="3"' in page.text
        # the manager does not see a settlement job
        mgr, _ = _client(app, "site_manager")
        with mgr:
            assert mgr.get(f"/jobs/{job_id}", headers=HTML).status_code == 404


def test_provisional_runs_are_posted_or_voided_once(world_app, sessions) -> None:
    app, world = world_app
    client, csrf = _client(app, "operator")
    post, void = world.extra["run-post"], world.extra["run-void"]
    with client:
        runs = client.get("/operator/runs", headers=HTML)
        assert f'id="post-{post}"' in runs.text and f'id="void-{void}"' in runs.text
        ok = client.post(
            f"/operator/runs/{void}/void", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert ok.status_code == 303, ok.text
        again = client.post(f"/operator/runs/{void}/post", data={"csrf_token": csrf}, headers=HTML)
        assert again.status_code == 409 and "alleen een voorlopige" in again.text
        ok = client.post(
            f"/operator/runs/{post}/post", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert ok.status_code == 303
        page = client.get(ok.headers["location"], headers=HTML)
        assert f"Afrekening {post} is geboekt." in page.text
    with sessions() as s:
        assert s.get(SettlementRun, void).status == "voided"
        assert s.get(SettlementRun, post).status == "posted"
    assert [e.target for e in _audit(sessions, "settlement.void")] == [str(void)]
    assert [e.target for e in _audit(sessions, "settlement.post")] == [str(post)]


PREVIEW_COMMUNITY = """\
name: energie-world
display_name: World community
key:
  type: priority
  order: [m-hall-a, m-ev]
members:
  - ref: m-hall-a
    meters: [hall-a/pv/power, hall-a/building/power]
    assets: [pv, building]
  - ref: m-ev
    meters: [hall-a/ev-own/power]
    assets: [{kind: ev, efficiency: "0.92"}]
"""


def test_a_preview_run_shows_what_posting_it_counts(world_app, sessions, tmp_path) -> None:
    """Ticked "preview": the job makes a provisional run (no statements, no PDF job); its
    page shows per member what posting it would count; after posting from that page, each
    member's statement total is the preview's figure (the statement's own sums)."""
    from energy.jobs import claim
    from energy.models import Community
    from energy.settings import Settings
    from noaber.services.jobs import tasks
    from noaber.services.jobs.queue import JobContext
    from settlement.statements import find_statement, statement_data

    app, _world = world_app
    communities = tmp_path / "communities"
    communities.mkdir()
    (communities / "energie-world.yaml").write_text(PREVIEW_COMMUNITY, encoding="utf-8")
    with sessions() as s, s.begin():
        s.add(Community(name="energie-world", display_name="World community"))
    client, csrf = _client(app, "operator")
    with client:
        ok = client.post(
            "/operator/runs",
            data={"csrf_token": csrf, "community": "energie-world", "period": "2026-06",
                  "preview": "1"},
            follow_redirects=False,
        )  # fmt: skip
        assert ok.status_code == 303, ok.text
        job_id = int(ok.headers["location"].rsplit("/", 1)[1])
        with sessions() as s:  # claim commits
            job = claim(s, job_id, "w1", 60)
            assert job is not None and job.key == "settle:energie-world:2026-06:preview"
            args = dict(job.args)
        settings = Settings(
            mode="test", secret_key=SECRET, data_dir=tmp_path / "data", communities_dir=communities
        )
        out = tasks.settle(JobContext(settings, sessions, job_id, "w1", 1), args)
        assert out["status"] == "pending" and out["provisional"] is True
        assert "statements_pdf_job" not in out and out["statements"] == []
        run_id = out["run_id"]
        page = client.get(f"/operator/runs/{run_id}", headers=HTML)
        assert page.status_code == 200 and 'id="preview-note"' in page.text
        assert 'id="member-m-hall-a"' in page.text and 'id="member-m-ev"' in page.text
        assert f'id="post-{run_id}"' in page.text
        from settlement.settle import run_preview

        with sessions() as s:
            preview = {m.member_ref: m for m in run_preview(s, run_id).members}
            from settlement.models import Statement

            assert s.scalar(select(Statement.id).where(Statement.run_id == run_id)) is None
        assert preview["m-ev"].wh.get("shared", 0) > 0  # the car charged community solar
        posted = client.post(
            f"/operator/runs/{run_id}/post", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert posted.status_code == 303
        assert 'id="preview-note"' not in client.get(f"/operator/runs/{run_id}", headers=HTML).text
        assert client.get("/operator/runs/999999", headers=HTML).status_code == 404
    with sessions() as s:
        for ref, m in preview.items():
            data = statement_data(s, find_statement(s, ref, "2026-06").id)
            assert data.total.net_cents == m.net_cents, ref
            assert data.total.received_wh == m.wh.get("shared", 0), ref
    # a manager may not open a run
    mgr, _ = _client(app, "site_manager")
    with mgr:
        assert mgr.get(f"/operator/runs/{run_id}", headers=HTML).status_code == 403


def test_manager_replan_button_goes_through_the_job(world_app, sessions) -> None:
    app, _world = world_app
    client, csrf = _client(app, "site_manager")
    with client:
        limits = client.get("/sites/hall-a/limits", headers=HTML)
        assert 'action="/sites/hall-a/replan"' in limits.text
        assert client.post("/sites/hall-a/replan", data={}, headers=HTML).status_code == 403
        ok = client.post("/sites/hall-a/replan", data={"csrf_token": csrf}, follow_redirects=False)
        assert ok.status_code == 303
        again = client.post(
            "/sites/hall-a/replan", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert again.headers["location"] == ok.headers["location"]  # the same queued job
        page = client.get(ok.headers["location"], headers=HTML)
        assert page.status_code == 200 and "Hall A" in page.text
        assert (
            client.post("/sites/hall-b/replan", data={"csrf_token": csrf}, headers=HTML).status_code
            == 404
        )
    with sessions() as s:
        jobs = list(
            s.scalars(select(Job).where(Job.kind == "replan", Job.requested_by == "api:mgr"))
        )
        assert len(jobs) == 1 and jobs[0].args["site"] == "hall-a"


def test_operator_adds_a_tariff_version_and_new_runs_use_it(world_app, sessions, tmp_path) -> None:
    """From the start page to the tariff page; a refused value shows the form again in Dutch
    and stores nothing; a version from 1 June 2026 at 0.18 EUR/kWh is shown, audited and is
    what the next settlement run of June is priced with (its stored tariff digest)."""
    from energy.jobs import claim
    from energy.models import Community
    from energy.settings import Settings
    from noaber.services.jobs import tasks
    from noaber.services.jobs.queue import JobContext
    from settlement.models import CommunityTariff
    from settlement.pricing import load_tariff

    app, _world = world_app
    communities = tmp_path / "communities"
    communities.mkdir()
    (communities / "energie-world.yaml").write_text(PREVIEW_COMMUNITY, encoding="utf-8")
    with sessions() as s, s.begin():
        s.add(Community(name="energie-world", display_name="World community"))
    client, csrf = _client(app, "operator")
    with client:
        start = client.get("/", headers=HTML)
        assert "/operator/tariffs" in links_of(start.text)
        listing = client.get("/operator/tariffs", headers=HTML)
        assert 'id="open-energie-world"' in listing.text
        bad = client.post(
            "/operator/tariffs/energie-world",
            data={"csrf_token": csrf, "valid_from": "2026-06-01", "shared_price_eur_per_kwh": "-1"},
            headers=HTML,
        )  # fmt: skip
        assert bad.status_code == 422 and "vul een prijs van ten minste 0 in" in bad.text
        assert 'value="-1"' in bad.text  # what was typed stays in the form
        gap = client.post(
            "/operator/tariffs/energie-world",
            data={"csrf_token": csrf, "valid_from": "2031-01-01", "vat_pct": "9"},
            headers=HTML,
        )
        assert gap.status_code == 422 and "direct na de laatste" in gap.text
        with sessions() as s:
            assert s.scalar(select(CommunityTariff.id)) is None  # nothing stored
        ok = client.post(
            "/operator/tariffs/energie-world",
            data={"csrf_token": csrf, "valid_from": "2026-06-01", "shared_price_eur_per_kwh": "0,18"},
            follow_redirects=False,
        )  # fmt: skip
        assert ok.status_code == 303, ok.text
        page = client.get(ok.headers["location"], headers=HTML)
        assert 'id="saved"' in page.text and 'id="version-2026-06-01"' in page.text
        assert "0,1800" in page.text and "vastgesteld door de beheerder" in page.text
        api = client.get("/api/communities/energie-world/tariff").json()
        assert api["source"] == "operator" and [v["valid_from"] for v in api["versions"]] == [
            "2026-01-01", "2026-06-01"
        ]  # fmt: skip
        assert api["versions"][1]["shared_price_eur_per_kwh"] == "0.18"
        # the API refuses out-of-range input with 422 and stores nothing more
        r = client.post(
            "/api/communities/energie-world/tariff/versions",
            json={"valid_from": "2026-08-01", "vat_pct": 150},
            headers=_bearer("operator"),
        )
        assert r.status_code == 422
        r = client.post(
            "/api/communities/energie-world/tariff/versions",
            json={"valid_from": "2026-08-01"},
            headers=_bearer("operator"),
        )
        assert r.status_code == 422  # no field changed
        # the next run of June is priced with it
        queued = client.post(
            "/operator/runs",
            data={"csrf_token": csrf, "community": "energie-world", "period": "2026-06"},
            follow_redirects=False,
        )
        job_id = int(queued.headers["location"].rsplit("/", 1)[1])
    with sessions() as s:
        job = claim(s, job_id, "w1", 60)
        assert job is not None
        args = dict(job.args)
    settings = Settings(
        mode="test", secret_key=SECRET, data_dir=tmp_path / "data", communities_dir=communities
    )
    out = tasks.settle(JobContext(settings, sessions, job_id, "w1", 1), args)
    with sessions() as s:
        run = s.get(SettlementRun, out["run_id"])
        assert run is not None and run.tariff_digest == api["digest"] != load_tariff(None).digest
        assert s.scalars(select(CommunityTariff)).one().created_by == USERS["operator"]
    assert [e.target for e in _audit(sessions, "tariff.version")] == ["energie-world"]
