"""Reports: HTML opened in headless Chromium has charts with data; the PDF has its pages."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from energy.pdf import chromium_available
from meetkoffer import analysis as an
from meetkoffer import findings as fi
from meetkoffer import mv
from meetkoffer.emissions import EmissionFactor, factor_for_year, load_emission_factors
from meetkoffer.report import (
    campaign_report,
    emission_factor_note,
    evidence_items,
    savings_report,
)
from tests.conftest import need
from tests.meetkoffer.synth import TZ, make_plant

HOURS = an.OperatingHours()
PARAMS = fi.FindingParams(price_eur_per_kwh=0.2)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
]


def _campaign(locale: str = "nl"):
    plant = make_plant()
    energy = {
        "main incomer": plant.incomer_wh,
        "extruder": plant.extruder_wh,
        "compressor": plant.compressor_wh,
        "lighting": plant.lighting_wh,
    }
    found = fi.find_all(
        plant.incomer_wh,
        {k: v for k, v in energy.items() if k != "main incomer"},
        HOURS,
        PARAMS,
        plant.production_per_day,
    )
    meta = {
        "name": "c1",
        "display_name": "Kunststof Emmen",
        "site": "hal 2",
        "start": plant.index[0].to_pydatetime(),
        "end": plant.index[-1].to_pydatetime(),
    }
    return campaign_report(
        meta,
        energy,
        "main incomer",
        found,
        HOURS,
        PARAMS,
        plant.production_per_day,
        locale,
        "0.374 kg CO2/kWh (2021; test)",
    )


def _savings():
    plant = make_plant(start="2026-04-06", days=56, step_kw=25.0, step_at="2026-05-04", peak_kw=0.0)
    daily = mv.daily_frame(plant.incomer_wh, plant.production_per_day)
    cut = pd.Timestamp("2026-05-04", tz=TZ).tz_convert("UTC")
    res = mv.verify_savings(
        daily[daily.index < cut],
        daily[daily.index >= cut],
        option="C",
        price_eur_per_kwh=0.2,
        emission_factors=load_emission_factors(),
        spec=mv.RegressionSpec(time_of_week=True),
        adjustments=[mv.NonRoutineAdjustment(120.0, "new chiller for the mould room")],
    )
    meta = {
        "display_name": "Kunststof Emmen",
        "baseline": "06-04-2026 – 04-05-2026",
        "reporting": "04-05-2026 – 01-06-2026",
    }
    return savings_report(meta, res)


def test_campaign_report_tables_and_language(tmp_path: Path) -> None:
    rep = _campaign("nl")
    assert "Bevindingen" in rep.html and "basislast" in rep.html
    assert "€" in rep.html
    assert not re.search(r"<script[^>]+src=", rep.html)  # plotly.js inline, nothing fetched
    assert "compressor draait in het weekend" in rep.html
    en = _campaign("en")
    assert "Findings" in en.html and "compressor runs at weekends" in en.html
    paths = rep.write(tmp_path, stem="campaign")
    for name in (
        "channels",
        "findings",
        "breakdown",
        "daily_energy_kwh",
        "carpet_incomer_kw",
        "load_duration_incomer",
        "enpi_daily",
        "summary",
    ):
        df = pd.read_csv(paths[f"csv:{name}"])
        assert len(df) > 0, name
    ch = pd.read_csv(paths["csv:channels"], index_col=0)
    assert ch.loc["main incomer", "base_load_kw"] == pytest.approx(40.0, abs=3.0)
    assert ch.loc["compressor", "off_hours_share"] > 0.3
    assert ch.loc["extruder", "off_hours_share"] == 0.0
    findings = pd.read_csv(paths["csv:findings"])
    assert "compressor runs at weekends" in set(findings["title"])


def test_evidence_has_translated_labels_with_units() -> None:
    nl = _campaign("nl").html
    evidence = " ".join(re.findall(r'<div class="muted evidence">(.*?)</div>', nl, re.S))
    assert re.search(r"basislast: \d+,\d kW;", evidence), evidence
    assert re.search(r"kosten basislast per jaar: €\s[\d.]+,\d\d;", evidence)
    assert 'grafiek: <a href="#section-carpet">Tapijtdiagram</a>' in evidence
    assert '<a href="#section-profile-compressor">compressor draait in het weekend</a>' in evidence
    assert "energie in de weekenden in de campagne: 5." in evidence and " kWh" in evidence
    # The synthetic peak is at a production start: the kW-max per month (EUR 40/kW/year).
    assert "piek op: " in evidence and "capaciteitstarief (kW-max): 3,33 €/kW/maand" in evidence
    text = re.sub(r"<[^>]+>", "", evidence)
    assert not re.search(r"\b[a-z0-9]+_[a-z0-9_]+\b", text), text  # no raw keys
    en = _campaign("en").html
    en_ev = " ".join(re.findall(r'<div class="muted evidence">(.*?)</div>', en, re.S))
    assert "energy at weekends in the campaign: 5," in en_ev and "€/kW/month" in en_ev
    items = dict(evidence_items({"peak_at_utc": "2026-03-11T10:00:00+00:00", "odd_key": 1.5}))
    assert items == {"piek op": "11-03-2026 11:00", "odd_key": "1,50"}  # unknown keys kept


def test_reports_state_which_year_factor_was_used() -> None:
    factors = {2021: EmissionFactor(2021, 0.374, "CO2emissiefactoren.nl 2021 mix")}
    applied = factor_for_year(factors, 2026)
    assert emission_factor_note(applied, "nl") == (
        "geen factor voor 2026 ingesteld; de factor van 2021 is gebruikt"
    )
    assert emission_factor_note(factor_for_year(factors, 2021), "en") == ""
    rep = _savings()  # the shipped factors have no 2026 entry
    assert "2026" in rep.html and rep.html.count("de factor van 2021 is gebruikt") == 1
    assert "no factor for 2026" not in rep.html  # not repeated in English among the warnings
    ef = rep.tables["emission_factors"]
    assert list(ef[["year", "factor_year"]].iloc[0]) == [2026, 2021]


def _chart_points(page) -> list[int]:
    """Finite data values drawn per chart (y, or z of a heatmap), from Plotly's own state."""
    return page.evaluate(
        """() => {
          const count = (a) => {
            if (a == null) return 0;
            if (typeof a === 'number') return Number.isFinite(a) ? 1 : 0;
            if (ArrayBuffer.isView(a) || Array.isArray(a)) {
              let n = 0; for (const v of a) n += count(v); return n;
            }
            return 0;
          };
          return Array.from(document.querySelectorAll('.plotly-graph-div')).map(d =>
            (d._fullData || []).reduce((n, t) => n + count(t.z || t.y), 0));
        }"""
    )


def _pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", path.read_bytes()))


@pytest.mark.browser
@pytest.mark.slow
def test_reports_in_chromium_and_pdf(tmp_path: Path) -> None:
    need(chromium_available(), "Debian chromium (/usr/bin/chromium) and playwright are needed")
    from playwright.sync_api import sync_playwright

    camp = _campaign()
    sav = _savings()
    files = {
        "campaign": camp.write(tmp_path / "c", pdf=True, stem="campaign"),
        "savings": sav.write(tmp_path / "s", pdf=True, stem="savings"),
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        try:
            for rep, key in ((camp, "campaign"), (sav, "savings")):
                page = browser.new_page()
                page.goto(files[key]["html"].as_uri(), wait_until="load", timeout=30_000)
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.plotly-graph-div')).every(d => d._fullLayout)",
                    timeout=30_000,
                )
                ids = page.evaluate(
                    "() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => d.id)"
                )
                assert ids == rep.charts
                points = _chart_points(page)
                assert len(points) == len(rep.charts) and all(p > 0 for p in points), points
                # Each chart drew an SVG with traces.
                assert page.locator(".plotly-graph-div .main-svg").count() >= len(rep.charts)
                page.close()
        finally:
            browser.close()
    # Campaign: first page (KPIs, findings) + one page per two charts (odd charts start a page)
    # + the breakdown table page; savings: metrics, charts, adjustments.
    n_chart_pages = (len(camp.charts) + 1) // 2
    camp_pages = _pdf_pages(files["campaign"]["pdf"])
    assert camp_pages >= 1 + n_chart_pages + 1, camp_pages
    assert camp_pages <= 1 + n_chart_pages + 3, camp_pages
    sav_pages = _pdf_pages(files["savings"]["pdf"])
    assert 3 <= sav_pages <= 8, sav_pages
    assert files["savings"]["pdf"].read_bytes().startswith(b"%PDF")
