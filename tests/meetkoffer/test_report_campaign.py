"""The campaign report a plant manager reads: in Dutch throughout, units on every figure,
Dutch dates and decimal commas in the charts, legends and colour bars inside the A4 page."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from energy.pdf import A4_PRINT_WIDTH_PX, chromium_available
from meetkoffer import analysis as an
from meetkoffer import findings as fi
from meetkoffer import report
from tests.conftest import need
from tests.meetkoffer.synth import TZ, make_plant

ROOT = Path(__file__).parents[2]
PARAMS = fi.FindingParams(price_eur_per_kwh=0.2)
META = {
    "name": "c1",
    "display_name": "Kunststof Emmen",
    "site": "hal 2",
    "start": pd.Timestamp("2026-03-02", tz=TZ).to_pydatetime(),
    "end": pd.Timestamp("2026-03-30", tz=TZ).to_pydatetime(),
}


@lru_cache(maxsize=4)
def _plant_report(locale: str, always: bool = False) -> report.Report:
    """The synthetic plant with every kind of finding: standby, weekend compressor with
    leaks, start-up peak, unmetered remainder, kWh per unit; and (24/7) skipped analyses.
    Cached: building the Plotly figures takes seconds."""
    hours = (
        an.OperatingHours.from_dict({"always": True, "holidays": "none"})
        if always
        else an.OperatingHours()
    )
    plant = make_plant()
    comp = plant.compressor_wh.copy()
    prod = hours.producing(pd.DatetimeIndex(comp.index))
    comp[~prod & (comp == 0)] = 8.0 * 250  # holds pressure against leaks at night
    energy = {
        "main incomer": plant.incomer_wh + (comp - plant.compressor_wh),
        "extruder": plant.extruder_wh,
        "compressor": comp,
        "lighting": plant.lighting_wh,
    }
    subs = {k: v for k, v in energy.items() if k != "main incomer"}
    res = fi.run_all(energy["main incomer"], subs, hours, PARAMS, plant.production_per_day, "t")
    return report.campaign_report(
        META,
        energy,
        "main incomer",
        res.findings,
        hours,
        PARAMS,
        plant.production_per_day,
        locale,
        "0.374 kg CO2/kWh (2021; test)",
        skipped=res.skipped,
        production_unit="t",
    )


def _visible_text(html: str) -> str:
    """The text a reader sees: the page without plotly.js, plus every string of the figures
    (titles, axis titles, legend names), decoded from their JSON blocks."""
    figures = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S)
    strings: list[str] = []

    def walk(o) -> None:
        if isinstance(o, str):
            strings.append(o)
        elif isinstance(o, dict):
            for k, v in o.items():
                if k not in ("x", "y", "z", "customdata", "hovertemplate", "template"):
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    for block in figures:
        walk(json.loads(block)["figure"]["layout"])
        for trace in json.loads(block)["figure"]["data"]:
            walk(trace.get("name", ""))
    page = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    page = re.sub(r"<style.*?</style>", " ", page, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", page)) + " " + " ".join(strings)


def _msgids_of_campaign_report() -> set[str]:
    """Every msgid the campaign report can ask for: the literal ones of report.py and the
    template, and the ones it looks up from tables (evidence labels, units, day types,
    weekdays, the analyses that could not run and their reasons)."""
    ids: set[str] = set()
    for _l, msg, _c, _x in extract_from_file("python", str(ROOT / "meetkoffer/report.py")):
        ids.add(msg if isinstance(msg, str) else msg[0])
    tpl = ROOT / "meetkoffer/templates/meetkoffer_campaign.html"
    opts = {"extensions": "jinja2.ext.i18n"}
    for _l, msg, _c, _x in extract_from_file("jinja2.ext:babel_extract", str(tpl), options=opts):
        ids.add(msg if isinstance(msg, str) else msg[0])
    ids |= {v[0] for v in report.EVIDENCE_LABELS.values()}
    ids |= set(report._UNIT_WORDS.values()) | set(report._EVIDENCE_TEXT.values())
    ids |= {"weekday", "saturday", "sunday", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    for src in ("meetkoffer/findings.py", "meetkoffer/analysis.py"):
        text = (ROOT / src).read_text()
        for m in re.finditer(r'AnalysisUnavailable\(\s*"([^"]+)",\s*"([^"]+)"', text):
            ids |= {m.group(1), m.group(2)}
        for m in re.finditer(r'Skipped\("([^"]+)", "([^"]+)"\)', text):
            ids |= {m.group(1), m.group(2)}
        ids |= set(re.findall(r'skipped,\s*"([^"]+)"', text))
    return ids


def _catalogue(package: str, locale: str):
    with (ROOT / package / "locale" / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh)


def test_every_msgid_of_the_campaign_report_has_a_dutch_translation() -> None:
    nl, energy_nl = _catalogue("meetkoffer", "nl"), _catalogue("energy", "nl")
    ids = _msgids_of_campaign_report()
    assert len(ids) > 150  # the extraction found the report's strings
    missing = sorted(
        i for i in ids if not any(c.get(i) is not None and c.get(i).string for c in (nl, energy_nl))
    )
    assert missing == []
    en = _catalogue("meetkoffer", "en")
    assert sorted(i for i in ids if en.get(i) is None and energy_nl.get(i) is None) == []


def test_dutch_report_leaves_no_english_catalogue_entry_untranslated() -> None:
    nl = _catalogue("meetkoffer", "nl")
    english = {
        m.id
        for m in _catalogue("meetkoffer", "en")
        if m.id and nl.get(m.id) is not None and nl.get(m.id).string != m.id
    }
    # Whole phrases, with the placeholders as the boundaries of what must not appear.
    pieces = {
        p.strip(" :;,.()[]")
        for i in english
        for p in re.split(r"\{[a-z_]+\}", i)
        if len(p.strip(" :;,.()[]").split()) >= 2
    }
    for rep in (_plant_report("nl"), _plant_report("nl", True)):
        text = re.sub(r"\s+", " ", _visible_text(rep.html))
        left = sorted(p for p in pieces if re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text))
        assert left == [], left
    # The same phrases do appear in the English report: the check can fail.
    en_text = re.sub(r"\s+", " ", _visible_text(_plant_report("en", True).html))
    assert "Not analysed" in en_text and "Key figures" in en_text


def test_campaign_figures_have_units_dutch_numbers_and_dates() -> None:
    rep = _plant_report("nl")
    blocks = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', rep.html, re.S)
    assert len(blocks) == len(rep.charts) >= 7
    for block in blocks:
        spec = json.loads(block)
        layout = spec["figure"]["layout"]
        assert layout["separators"] == ",." and spec["config"]["locale"] == "nl"
        title = layout["title"]["text"]
        y_title = layout["yaxis"]["title"]["text"]
        assert re.search(r"\[[^\]]+\]", y_title) or layout["yaxis"].get("type") == "date", title
        heat = [t for t in spec["figure"]["data"] if t["type"] == "heatmap"]
        for t in heat:
            assert t["colorbar"]["title"]["text"] == "kW"
        if layout["xaxis"].get("type") == "date" or layout["yaxis"].get("type") == "date":
            axis = layout["xaxis"] if layout["xaxis"].get("type") == "date" else layout["yaxis"]
            assert axis["hoverformat"] == "%d-%m-%Y"
    enpi = next(json.loads(b) for b in blocks if "EnPI" in b)
    names = [t.get("name") for t in enpi["figure"]["data"]]
    assert "EnPI [kWh/t]" in names
    assert enpi["figure"]["layout"]["xaxis"]["title"]["text"] == "productie per dag [t]"
    # The loader registers Plotly's Dutch locale (CLDR month abbreviations).
    from energy.plots import FIGURE_LOADER_JS

    assert '"shortMonths": ["jan", "feb", "mrt"' in FIGURE_LOADER_JS
    assert '"decimal": ","' in FIGURE_LOADER_JS


@pytest.mark.browser
@pytest.mark.slow
def test_legends_and_colour_bars_fit_the_a4_page(tmp_path: Path) -> None:
    """Drawn at the PDF's printable width (as :func:`energy.pdf.html_to_pdf` draws it), every
    legend and colour bar lies inside its chart and the page; the axis ticks are Dutch. A
    PNG of the print layout is left next to the PDF for a person to look at."""
    need(chromium_available(), "Debian chromium (/usr/bin/chromium) and playwright are needed")
    from playwright.sync_api import sync_playwright

    rep = _plant_report("nl")
    paths = rep.write(tmp_path, stem="campaign")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": A4_PRINT_WIDTH_PX, "height": 1000})
            page.emulate_media(media="print")
            page.goto(paths["html"].as_uri(), wait_until="load")
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".every(d => d._fullLayout)"
            )
            boxes = page.evaluate(
                """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => {
                  const r = (e) => { const b = e.getBoundingClientRect();
                    return [b.left, b.top, b.right, b.bottom]; };
                  return {id: d.id, div: r(d), traces: d._fullData.length,
                    colorbars: d.querySelectorAll('g.colorbar').length,
                    parts: Array.from(d.querySelectorAll('g.legend, g.colorbar')).map(r),
                    ticks: Array.from(d.querySelectorAll('.xtick text, .ytick text'))
                      .map(t => t.textContent)};
                })"""
            )
            page.screenshot(path=str(tmp_path / "campaign-print.png"), full_page=True)
            page.pdf(
                path=str(tmp_path / "campaign.pdf"),
                format="A4",
                print_background=True,
                margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"},
            )
        finally:
            browser.close()
    assert len(boxes) == len(rep.charts)
    legends = 0
    for b in boxes:
        left, top, right, bottom = b["div"]
        assert right <= A4_PRINT_WIDTH_PX + 0.5, b["id"]
        for p in b["parts"]:
            legends += 1
            assert p[0] >= left - 0.5 and p[2] <= right + 0.5, (b["id"], p, b["div"])
            assert p[1] >= top - 0.5 and p[3] <= bottom + 0.5, (b["id"], p, b["div"])
    # Every chart with more than one trace has a legend, the carpet plot a colour bar.
    assert legends >= sum(b["traces"] > 1 for b in boxes) + 1
    assert next(b for b in boxes if b["id"] == "chart-carpet")["colorbars"] == 1
    assert (tmp_path / "campaign.pdf").read_bytes().startswith(b"%PDF")
    ticks = " ".join(t for b in boxes for t in b["ticks"])
    assert re.search(r"\bmrt\b", ticks)  # Dutch month abbreviations on the date axes
    assert re.search(r"\d\.\d{3}\b", ticks)  # thousands with a dot (kWh per day)
    assert not re.search(r"\bMar\b", ticks)
    assert (tmp_path / "campaign-print.png").stat().st_size > 10_000
