"""Plotly without the internet: the JS comes from the installed Python package."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

PLOTLY_STATIC_PATH = "/static/plotly.min.js"


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The minified plotly.js bundled with the installed ``plotly`` package (offline)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_html(fig: Any, div_id: str, *, height_px: int | None = None) -> str:
    """A ``<div>`` with the figure and its inline init script, without plotly.js itself.

    The page must load plotly.js first: served pages from :data:`PLOTLY_STATIC_PATH`, stand-alone
    reports inline via :func:`standalone_html` or ``<script>{{ plotly_js }}</script>``.
    """
    if height_px is not None:
        fig.update_layout(height=height_px)
    return str(
        fig.to_html(
            include_plotlyjs=False,
            full_html=False,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
    )


def standalone_html(title: str, body_html: str, *, lang: str = "nl") -> str:
    """A complete HTML document with plotly.js inline, readable offline (reports, e-mail)."""
    from html import escape

    return (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><script>{plotly_js()}</script></head>"
        f"<body>{body_html}</body></html>"
    )
