"""Plotly without the internet and without inline script.

The JS comes from the installed Python package. A figure is a ``<div>`` and its figure as a
JSON data block (``<script type="application/json">``, never executed); the loader that draws
every such block is appended to plotly.js (:func:`plotly_js`), so a page that loads plotly.js
(served pages from :data:`PLOTLY_STATIC_PATH`, stand-alone reports inline) draws its charts
and a Content-Security-Policy of ``script-src 'self'`` holds.
"""

from __future__ import annotations

import json
from functools import lru_cache
from html import escape
from typing import Any

PLOTLY_STATIC_PATH = "/static/plotly.min.js"
#: The plotly.js version every page and report is drawn with: the offline bundle of the
#: ``plotly`` Python package pinned in ``requirements.lock`` (a test fails when an upgrade
#: changes it, so a new plotly.js is taken on purpose, with its config options checked).
PLOTLY_JS_VERSION = "4.1.1"

#: One colour per kind of asset or flow on every page and report (PV yellow everywhere).
PALETTE: dict[str, str] = {
    "pv": "#e0a800",  # solar: yellow
    "load": "#2f5d8a",  # building or process load: blue
    "battery": "#7a4fa3",  # the site battery: purple
    "ev": "#2f7d4a",  # cars charging: green
    "v2g": "#17a398",  # cars delivering to the building: teal
    "grid": "#444444",  # the grid connection: dark grey
    "grid_import": "#444444",
    "grid_export": "#9a9a9a",
    "price_import": "#b3261e",
    "price_export": "#e07b39",
    "money": "#1f5a8a",
    "baseline": "#9a9a9a",
}
#: A series of another kind.
OTHER_COLOUR = "#888888"


def series_colour(kind: str) -> str:
    """The colour of ``kind`` (a key of :data:`PALETTE`), else :data:`OTHER_COLOUR`."""
    return PALETTE.get(kind, OTHER_COLOUR)


def hover_unit(name: str, unit: str, decimals: int = 2, *, x: bool = True) -> str:
    """A hover template that names the series and gives the value with its unit
    (``Zonne-energie: 1,25 kW``; the decimal separator follows the figure's locale)."""
    safe = name.replace("%", "%%").replace("{", "(").replace("}", ")")
    when = " (%{x})" if x else ""
    return f"{safe}: %{{y:,.{decimals}f}} {unit}{when}<extra></extra>"


#: The Plotly config of every figure: no link or button that leaves the server (no "send to
#: cloud", no "edit in Chart Studio", no logo link to plot.ly), responsive.
FIGURE_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "showSendToCloud": False,
    "showEditInChartStudio": False,
    "showLink": False,
    "sendData": False,
    "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio", "lasso2d", "select2d"],
    "responsive": True,
}

#: Plotly's Dutch locale (dates, decimal comma), registered by :data:`FIGURE_LOADER_JS`:
#: month and day names and abbreviations as the CLDR ``nl`` locale has them (``mrt``), dates
#: as ``dd-mm-jjjj``. plotly.js ships only English in its bundle.
NL_LOCALE: dict[str, Any] = {
    "moduleType": "locale",
    "name": "nl",
    "dictionary": {
        "Autoscale": "Automatisch schalen",
        "Double-click to zoom back out": "Dubbelklik om uit te zoomen",
        "Download plot as a png": "Grafiek downloaden als png",
        "Download plot": "Grafiek downloaden",
        "Pan": "Verschuiven",
        "Reset axes": "Assen herstellen",
        "Zoom": "Zoomen",
        "Zoom in": "Inzoomen",
        "Zoom out": "Uitzoomen",
    },
    "format": {
        "days": ["zondag", "maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag"],
        "shortDays": ["zo", "ma", "di", "wo", "do", "vr", "za"],
        "months": ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
                   "september", "oktober", "november", "december"],
        "shortMonths": ["jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt",
                        "nov", "dec"],
        "date": "%d-%m-%Y",
        "decimal": ",",
        "thousands": ".",
        "year": "%Y",
        "month": "%b %Y",
        "dayMonth": "%-d %b",
        "dayMonthYear": "%-d %b %Y",
    },
}  # fmt: skip
#: Decimal and thousands separators of a figure per locale (Plotly ``layout.separators``).
SEPARATORS = {"nl": ",.", "en": ".,"}

#: Draws every figure data block of :func:`figure_html` once the document is parsed.
FIGURE_LOADER_JS = (
    """
(function () {
  if (window.Plotly && Plotly.register) { Plotly.register("""
    + json.dumps(NL_LOCALE)
    + """); }
  function drawFigures() {
    var blocks = document.querySelectorAll('script[type="application/json"][data-plotly-div]');
    Array.prototype.forEach.call(blocks, function (block) {
      var spec = JSON.parse(block.textContent);
      var div = document.getElementById(block.getAttribute("data-plotly-div"));
      if (div) { Plotly.newPlot(div, spec.figure.data, spec.figure.layout, spec.config); }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawFigures);
  } else {
    drawFigures();
  }
})();
"""
)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The minified plotly.js of the installed ``plotly`` package (offline), followed by
    :data:`FIGURE_LOADER_JS`."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs() + "\n" + FIGURE_LOADER_JS


def figure_html(
    fig: Any, div_id: str, *, height_px: int | None = None, locale: str | None = None
) -> str:
    """A ``<div>`` for the figure and the figure as a JSON data block, without plotly.js.

    With ``locale`` (``nl`` or ``en``) the figure uses that locale's decimal separator and,
    in Dutch, Plotly's ``nl`` locale (:data:`NL_LOCALE`: Dutch month and day names in date
    axes and hover labels).

    The page must load :func:`plotly_js` (which draws the figure): served pages from
    :data:`PLOTLY_STATIC_PATH`, stand-alone reports inline via :func:`standalone_html` or
    ``<script>{{ plotly_js }}</script>``.
    """
    import plotly.io as pio

    if height_px is not None:
        fig.update_layout(height=height_px)
    height = fig.layout.height
    style = f"height:{height}px; width:100%;" if height else "height:100%; width:100%;"
    cfg: dict[str, Any] = dict(FIGURE_CONFIG)
    if locale is not None:
        fig.update_layout(separators=SEPARATORS[locale])
        cfg["locale"] = locale
    config = json.dumps(cfg)
    # plotly's JSON escapes "<", ">" and "/" in strings: no text can end the data block early.
    spec = '{"figure":' + pio.to_json(fig) + ',"config":' + config + "}"
    div = escape(div_id)
    return (
        f'<div id="{div}" class="plotly-graph-div" style="{style}"></div>'
        f'<script type="application/json" data-plotly-div="{div}">{spec}</script>'
    )


def standalone_html(title: str, body_html: str, *, lang: str = "nl") -> str:
    """A complete HTML document with plotly.js inline, readable offline (reports, e-mail)."""
    return (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><script>{plotly_js()}</script></head>"
        f"<body>{body_html}</body></html>"
    )
