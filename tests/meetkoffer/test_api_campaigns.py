"""The campaign routes: a firm sees only its own campaigns, in JSON and on its dashboard."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from energy.db import make_engine, session_factory, upgrade
from energy.pdf import chromium_available
from energy.security import create_access_token
from energy.settings import Settings
from noaber.api import create_app
from tests.conftest import need
from tests.meetkoffer.api_authz import seed
from tests.noaber.api_world import build_world

SECRET = "test-secret-" + "y" * 40


def _client(db_url: str):
    engine = make_engine(db_url)
    with session_factory(engine).begin() as s:
        world = build_world(s)
        seed(s, world)
    app = create_app(Settings(mode="test", secret_key=SECRET, database_url=db_url), engine)
    return TestClient(app), world


def _auth(username: str) -> dict[str, str]:
    token = create_access_token(username, "firm", SECRET, 600)
    return {"Authorization": f"Bearer {token}"}


def test_firm_sees_only_its_campaigns(db_url: str) -> None:
    client, world = _client(db_url)
    r = client.get("/campaigns", headers=_auth("firm"))
    assert r.status_code == 200
    assert [c["name"] for c in r.json()] == ["own"]
    assert r.json()[0]["savings_eur_per_year"] == 200.0  # the key figure (900) is not a saving
    r = client.get("/campaigns", headers=_auth("oper"))
    assert sorted(c["name"] for c in r.json()) == ["other", "own"]
    own = world.extra["campaign-own"]
    d = client.get(f"/campaigns/{own}", headers=_auth("firm")).json()
    assert d["finding_list"][0]["title"] == "Base load at own"
    assert [f["counted"] for f in d["finding_list"]] == [True, False]
    # The seeded hourly verification: 30 kW all day, 70 kW from 18 to 23 h local; baseline
    # 00-12 h, reporting 12-24 h -> adjusted baseline 360 kWh, measured 560 kWh.
    assert d["savings_list"][0]["avoided_kwh"] == pytest.approx(-200.0)
    assert (
        client.get(f"/campaigns/{world.extra['campaign-other']}", headers=_auth("firm")).status_code
        == 404
    )
    assert client.get("/campaigns/99999", headers=_auth("oper")).status_code == 404
    assert client.get("/campaigns", headers=_auth("evowner")).status_code == 403
    assert client.get("/campaigns").status_code == 401
    page = client.get("/campaigns/dashboard", headers=_auth("firm"))
    assert page.status_code == 200
    assert "Basislast van 1,0 kW buiten productietijd" in page.text  # from kind + evidence
    assert page.text.count("Basislast van") == 1  # not the other firm's finding
    assert "Bevindingen" in page.text and "Geverifieerde besparingen" in page.text
    en = client.get("/campaigns/dashboard?lang=en", headers=_auth("firm"))
    assert "Verified savings" in en.text


def test_campaign_report_page(db_url: str) -> None:
    client, world = _client(db_url)
    own = world.extra["campaign-own"]
    r = client.get(f"/campaigns/{own}/report", headers=_auth("firm"))
    assert r.status_code == 200
    assert "Meetkoffercampagne" in r.text and "plotly-graph-div" in r.text
    assert '<script src="/static/plotly.min.js"></script>' in r.text
    assert client.get("/static/plotly.min.js").status_code == 200
    assert "Basislast van 1,0 kW buiten productietijd" in r.text
    other = world.extra["campaign-other"]
    assert client.get(f"/campaigns/{other}/report", headers=_auth("firm")).status_code == 404
    page = client.get("/campaigns/dashboard", headers=_auth("firm"))
    assert f'href="/campaigns/{own}/report?lang=nl"' in page.text


def test_savings_report_page_and_downloads(db_url: str) -> None:
    client, world = _client(db_url)
    own, other = world.extra["campaign-own"], world.extra["campaign-other"]
    sid, other_sid = world.extra["savings-own"], world.extra["savings-other"]
    firm = _auth("firm")
    page = client.get("/campaigns/dashboard", headers=firm)
    assert f'href="/campaigns/{own}/savings/{sid}?lang=nl"' in page.text
    assert f"/campaigns/{own}/savings/{sid}/pdf" in page.text and "per uur" in page.text
    r = client.get(f"/campaigns/{own}/savings/{sid}", headers=firm)
    assert r.status_code == 200
    assert "Besparingsverificatie" in r.text and "plotly-graph-div" in r.text
    assert '<script src="/static/plotly.min.js"></script>' in r.text
    assert "[kWh\\u002fuur]" in r.text  # hourly model, Dutch unit in the chart title
    assert "geen factor voor 2026 ingesteld; de factor van 2021 is gebruikt" in r.text
    links = set(re.findall(rf'href="(/campaigns/{own}/savings/{sid}/csv/[a-z_]+)"', r.text))
    assert f"/campaigns/{own}/savings/{sid}/csv/baseline_hourly" in links and len(links) == 6
    for link in links:  # every linked table downloads
        assert client.get(link, headers=firm).status_code == 200, link
    csv = client.get(f"/campaigns/{own}/savings/{sid}/csv/savings_summary", headers=firm)
    assert csv.headers["content-type"].startswith("text/csv")
    summary = pd.read_csv(io.StringIO(csv.text), index_col=0)["value"]
    assert float(summary["avoided_kwh"]) == pytest.approx(-200.0)
    assert float(summary["adjusted_baseline_kwh"]) == pytest.approx(360.0)
    assert summary["interval"] == "hourly"
    rep = client.get(f"/campaigns/{own}/savings/{sid}/csv/reporting_hourly", headers=firm)
    assert len(pd.read_csv(io.StringIO(rep.text))) == 12
    assert client.get(f"/campaigns/{own}/savings/{sid}/csv/nope", headers=firm).status_code == 404
    # someone else's verification: 404 under its own campaign and under the firm's campaign
    for url in (f"/campaigns/{other}/savings/{other_sid}", f"/campaigns/{own}/savings/{other_sid}"):
        for suffix in ("", "/pdf", "/csv/savings_summary"):
            assert client.get(url + suffix, headers=firm).status_code == 404, url + suffix
    assert (
        client.get(f"/campaigns/{own}/savings/{sid}", headers=_auth("evowner")).status_code == 403
    )


def test_campaign_report_downloads(db_url: str) -> None:
    client, world = _client(db_url)
    own, other = world.extra["campaign-own"], world.extra["campaign-other"]
    firm = _auth("firm")
    r = client.get(f"/campaigns/{own}/report?lang=en", headers=firm)
    assert "no factor for 2026 configured; the 2021 factor is used" in r.text
    assert "base load: 1.0 kW" in r.text  # the seeded evidence, labelled with its unit
    links = re.findall(rf'href="(/campaigns/{own}/report/csv/[a-z_]+)"', r.text)
    assert f"/campaigns/{own}/report/csv/channels" in links
    for link in links:
        assert client.get(link, headers=firm).status_code == 200, link
    ch = client.get(f"/campaigns/{own}/report/csv/channels", headers=firm)
    df = pd.read_csv(io.StringIO(ch.text), index_col=0)
    assert df.loc["line 1", "energy_kwh"] == pytest.approx(30 * 24 + 40 * 5)
    assert client.get(f"/campaigns/{own}/report/csv/nope", headers=firm).status_code == 404
    for suffix in ("/report/pdf", "/report/csv/channels"):
        assert client.get(f"/campaigns/{other}{suffix}", headers=firm).status_code == 404


@pytest.mark.slow
def test_pdf_downloads(tmp_path: Path) -> None:
    """PDF printing does not depend on the database backend: one SQLite file."""
    need(chromium_available(), "Debian chromium (/usr/bin/chromium) and playwright are needed")
    db_url = f"sqlite:///{tmp_path / 'noaber.db'}"
    upgrade(make_engine(db_url))
    client, world = _client(db_url)
    own, sid = world.extra["campaign-own"], world.extra["savings-own"]
    # (the campaign report's PDF is printed in tests/meetkoffer/test_report.py)
    url = f"/campaigns/{own}/savings/{sid}/pdf?lang=en"
    r = client.get(url, headers=_auth("firm"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF")
    assert f'filename="own_savings-{sid}.pdf"' in r.headers["content-disposition"]
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", r.content))
    assert pages >= 2, pages


def test_identical_pdf_documents_are_printed_once(monkeypatch, tmp_path: Path) -> None:
    import energy.pdf
    from noaber.api.routers import campaigns

    printed: list[str] = []

    def fake_print(html: str, out: Path) -> Path:
        printed.append(html)
        out.write_bytes(b"%PDF-" + html.encode())
        return out

    monkeypatch.setattr(energy.pdf, "html_to_pdf", fake_print)
    monkeypatch.setattr(campaigns, "_PDF_CACHE", type(campaigns._PDF_CACHE)())
    docs = [f"<p>{i}</p>" for i in range(campaigns._PDF_CACHE_MAX + 1)]
    assert campaigns._print_pdf(docs[0]) == campaigns._print_pdf(docs[0]) == b"%PDF-<p>0</p>"
    assert printed == [docs[0]]
    for d in docs[1:]:  # fills the cache past its bound: the oldest is dropped
        campaigns._print_pdf(d)
    campaigns._print_pdf(docs[0])
    assert printed == [*docs, docs[0]]
    assert len(campaigns._PDF_CACHE) == campaigns._PDF_CACHE_MAX
