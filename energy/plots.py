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
    cfg: dict[str, Any] = {"displaylogo": False, "responsive": True}
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
