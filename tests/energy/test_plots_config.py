"""Charts without leaks: the Plotly config of every figure, the pinned plotly.js, one palette
and units in hover labels."""

from __future__ import annotations

import json
import re

import pandas as pd
import plotly.graph_objects as go

from energy.plots import (
    FIGURE_CONFIG,
    PALETTE,
    PLOTLY_JS_VERSION,
    figure_html,
    hover_unit,
    plotly_js,
    series_colour,
)


def _spec(html: str) -> dict:
    block = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_no_button_or_link_leaves_the_server() -> None:
    spec = _spec(figure_html(go.Figure(go.Scatter(x=[1], y=[2])), "f", locale="nl"))
    cfg = spec["config"]
    assert cfg["displaylogo"] is False and cfg["showSendToCloud"] is False
    assert cfg["showEditInChartStudio"] is False and cfg["showLink"] is False
    assert {"sendDataToCloud", "editInChartStudio"} <= set(cfg["modeBarButtonsToRemove"])
    assert cfg["locale"] == "nl" and spec["figure"]["layout"]["separators"] == ",."
    assert set(FIGURE_CONFIG) <= set(cfg)


def test_plotly_js_is_the_pinned_bundle() -> None:
    js = plotly_js()
    # the offline bundle names its version in its banner
    found = re.search(r"plotly\.js v([0-9.]+)", js[:2000])
    assert found is not None and found.group(1) == PLOTLY_JS_VERSION
    assert "cdn.plot.ly" not in js[-5000:]  # the loader we append fetches nothing


def test_one_palette_pv_yellow_on_the_dashboard_and_the_plan() -> None:
    from noaber.api.routers.pages import profile_figure
    from optimizer.page import flows_figure

    assert series_colour("pv") == PALETTE["pv"] == "#e0a800"
    idx = pd.date_range("2026-06-01", periods=4, freq="15min", tz="UTC")
    frame = pd.DataFrame({"pv": [-1000.0] * 4, "load": [500.0] * 4}, index=idx)
    dash = profile_figure(frame, "nl")
    assert next(t for t in dash.data if t.name == "Zonne-energie").line.color == PALETTE["pv"]
    steps = pd.DataFrame(
        {
            "ts": list(idx) * 2,
            "asset": ["pv"] * 4 + ["load"] * 4,
            "kind": ["pv"] * 4 + ["load"] * 4,
            "power_kw": [-1.0] * 4 + [0.5] * 4,
            "soc_pct": [float("nan")] * 8,
            "owner_ref": [None] * 8,
        }
    )
    plan = flows_figure(steps, "Europe/Amsterdam", lambda s: s)
    pv = next(t for t in plan.data if t.name == "PV")
    assert pv.fillcolor == PALETTE["pv"] and "kW" in pv.hovertemplate


def test_hover_labels_carry_the_unit() -> None:
    assert hover_unit("Zon", "kW", 1) == "Zon: %{y:,.1f} kW (%{x})<extra></extra>"
    assert "%%" in hover_unit("SoC 100%", "%")  # a literal % in the name is escaped
