"""Report charts: the template set without Plotly's re-validation gives the same figure.

:func:`meetkoffer.report._new_figure` sets the registered ``plotly_white`` template with the
layout's validation off (it is Plotly's own, valid already). Checked here against Plotly's
validated assignment of the same template: the same JSON, byte for byte, for an empty figure
and for a report chart with traces, axes and a second axis; and the shared template is not
changed by what one figure does to its own.
"""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from meetkoffer import report as rp


def _validated() -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=pio.templates["plotly_white"])  # Plotly validates and copies
    return fig


def test_new_figure_has_the_json_of_the_validated_template() -> None:
    assert rp._new_figure().to_json() == _validated().to_json()
    assert json.loads(rp._new_figure().to_json())["layout"]["template"]["layout"]["plot_bgcolor"]


def test_a_report_chart_is_the_same_as_with_the_validated_template(monkeypatch) -> None:
    prof = pd.DataFrame(
        {"werkdag": [10.0, 12.5, 40.0], "weekend": [9.0, 9.5, 8.0]},
        index=["00:00", "00:15", "08:00"],
    )
    fast = rp._profile_figure("profiel [kW]", prof, lambda s: s).to_json()
    monkeypatch.setattr(rp, "_new_figure", _validated)
    assert rp._profile_figure("profiel [kW]", prof, lambda s: s).to_json() == fast


def test_one_figure_changing_its_template_leaves_the_others_alone() -> None:
    a = rp._new_figure()
    a.layout.template.layout.font.size = 99
    assert rp._new_figure().layout.template.layout.font.size is None
    assert rp.TEMPLATE.layout.font.size is None
