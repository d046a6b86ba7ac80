import re

import plotly.graph_objects as go

from energy.pdf import html_to_pdf
from energy.plots import figure_html, standalone_html
from tests.conftest import need, need_executable


def test_html_with_chart_prints_to_pdf(tmp_path):
    need_executable("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need(False, "python playwright is not installed")
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    html = standalone_html(
        "test",
        "<h1>Rapport</h1>"
        + figure_html(fig, "chart")
        + '<div style="page-break-before:always">2</div>',
    )
    out = html_to_pdf(html, tmp_path / "r.pdf")
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    assert pages == 2
