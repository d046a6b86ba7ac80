"""Pages of a stored schedule: the site manager's view and an EV owner's view of their car.

The site page shows the KPIs against both baselines, the energy flows stacked (supply above
zero, use below), the SoC curves of the battery and the cars, and the prices; the EV page shows
one car's charging plan, its SoC and the guaranteed SoC at each departure. Plotly figures are
divs without plotly.js: served pages load it from :data:`energy.plots.PLOTLY_STATIC_PATH`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from energy.i18n import template_env, translations
from energy.plots import PLOTLY_STATIC_PATH, figure_html, hover_unit, series_colour
from energy.timegrid import LOCAL_TZ
from optimizer.store import Schedule

_STACKED = {
    "hovermode": "x unified",
    "legend": {"orientation": "h", "y": -0.2},
    "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
}
"""Layout shared by the stacked time charts of a schedule (hover, legend below, margins)."""


def _local(ts: pd.Series | pd.DatetimeIndex, tz: str) -> list[str]:
    idx = pd.DatetimeIndex(ts).tz_convert(tz)
    return [t.strftime("%Y-%m-%d %H:%M") for t in idx]


def _wide(steps: pd.DataFrame) -> pd.DataFrame:
    return steps.pivot_table(
        index="ts", columns="asset", values="power_kw", aggfunc="sum"
    ).sort_index()


def flows_figure(steps: pd.DataFrame, tz: str, _: Any) -> Any:
    """Stacked flows [kW]: PV, discharging and import above zero; load, charging and export below."""
    import plotly.graph_objects as go

    wide = _wide(steps)
    kinds = steps.drop_duplicates("asset").set_index("asset")["kind"].to_dict()
    x = _local(wide.index, tz)
    fig = go.Figure()

    def area(name: str, y: np.ndarray, group: str, kind: str) -> None:
        if np.abs(y).max(initial=0.0) > 1e-9:
            colour = series_colour(kind)  # one palette on every page (energy.plots)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=np.round(y, 3),
                    name=name,
                    stackgroup=group,
                    mode="lines",
                    line={"width": 0.5, "shape": "hv", "color": colour},
                    fillcolor=colour,
                    hovertemplate=hover_unit(name, "kW"),
                )
            )

    col = lambda a: wide[a].fillna(0.0).to_numpy() if a in wide else np.zeros(len(wide))  # noqa: E731
    area(_("PV"), -col("pv"), "supply", "pv")
    storage = [a for a, k in kinds.items() if k in ("battery", "ev")]
    for a in storage:
        kind = "battery" if kinds[a] == "battery" else "v2g"
        area(_("%(asset)s discharging") % {"asset": a}, np.maximum(-col(a), 0), "supply", kind)
    area(_("Grid import"), np.maximum(col("grid"), 0), "supply", "grid_import")
    area(_("Building load"), -col("load"), "use", "load")
    for a in storage:
        area(_("%(asset)s charging") % {"asset": a}, -np.maximum(col(a), 0), "use", kinds[a])
    area(_("Grid export"), -np.maximum(-col("grid"), 0), "use", "grid_export")
    fig.update_layout(yaxis_title="kW", **_STACKED)
    return fig


def soc_figure(steps: pd.DataFrame, tz: str, _: Any, assets: list[str] | None = None) -> Any:
    """SoC [%] at the end of each step of the battery and the cars (gaps: car not plugged in)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    storage = steps[steps["kind"].isin(["battery", "ev"])]
    all_ts = pd.DatetimeIndex(sorted(steps["ts"].unique()))
    for asset, part in storage.groupby("asset", sort=True):
        if assets is not None and asset not in assets:
            continue
        soc = part.set_index("ts")["soc_pct"].reindex(all_ts)
        fig.add_trace(
            go.Scatter(
                x=_local(all_ts, tz),
                y=soc.round(2).to_numpy(),
                name=str(asset),
                mode="lines",
                connectgaps=False,
                hovertemplate=hover_unit(str(asset), "%", 1),
            )
        )
    fig.update_layout(yaxis_title="SoC %", yaxis_range=[0, 100], **_STACKED)
    return fig


def price_figure(series: dict[str, Any], tz: str, _: Any) -> Any:
    """Import and export prices [EUR/kWh] per step."""
    import plotly.graph_objects as go

    x = _local(pd.DatetimeIndex(pd.to_datetime(series["timestamps"], utc=True)), tz)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=series["import_price_eur_per_kwh"],
            name=_("Import price"),
            line={"shape": "hv", "color": series_colour("price_import")},
            hovertemplate=hover_unit(_("Import price"), "€/kWh", 3),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=series["export_price_eur_per_kwh"],
            name=_("Export price"),
            line={"shape": "hv", "color": series_colour("price_export")},
            hovertemplate=hover_unit(_("Export price"), "€/kWh", 3),
        )
    )
    fig.update_layout(yaxis_title="EUR/kWh", **_STACKED)
    return fig


def site_page_figures(
    schedule: Schedule, steps: pd.DataFrame, locale: str = "nl", tz: str | None = None
) -> dict[str, str]:
    """The charts of the site manager's page (flows, SoC, prices) as :func:`figure_html`
    blocks, by name: the costly part of :func:`render_site_page`."""
    _ = translations("optimizer", locale).gettext
    summary = schedule.summary or {}
    tz = tz or summary.get("timezone", LOCAL_TZ)
    figures = {
        "flows": figure_html(flows_figure(steps, tz, _), "flows", height_px=380, locale=locale),
        "soc": figure_html(soc_figure(steps, tz, _), "soc", height_px=300, locale=locale),
    }
    if "series" in summary:
        figures["prices"] = figure_html(
            price_figure(summary["series"], tz, _), "prices", height_px=260, locale=locale
        )
    return figures


@lru_cache(maxsize=4)
def _env(locale: str) -> Any:
    """The schedule pages' environment in ``locale``, kept: Jinja compiles a template once
    per environment, and compiling the site page took longer than rendering it."""
    return template_env("optimizer", locale)


def render_site_page(
    schedule: Schedule,
    steps: pd.DataFrame,
    locale: str = "nl",
    tz: str | None = None,
    figures: dict[str, str] | None = None,
) -> str:
    """The site manager's page of a stored schedule (HTML); ``figures`` as from
    :func:`site_page_figures` of the same arguments (made here when not given)."""
    if figures is None:
        figures = site_page_figures(schedule, steps, locale, tz)
    summary = schedule.summary or {}
    departures = [
        {**d, "departure_ts": pd.Timestamp(d["departure"]).to_pydatetime()}
        for d in summary.get("kpis", {}).get("optimized", {}).get("departures", [])
    ]
    return str(
        _env(locale)
        .get_template("schedule_site.html")
        .render(
            schedule=schedule,
            summary=summary,
            kpis=summary.get("kpis", {}),
            figures=figures,
            departures=departures,
            plotly_src=PLOTLY_STATIC_PATH,
            baselines=("optimized", "no_control", "self_consumption", "no_battery"),
        )
    )


def render_ev_page(
    schedule: Schedule, steps: pd.DataFrame, ev_name: str, locale: str = "nl"
) -> str:
    """An EV owner's page: their car's plan, SoC and guaranteed departure SoC (HTML).

    ``steps`` must hold only this car's rows; nothing of other members is shown.
    """
    import plotly.graph_objects as go

    env = _env(locale)
    _ = translations("optimizer", locale).gettext
    summary = schedule.summary or {}
    tz = summary.get("timezone", LOCAL_TZ)
    car = steps[steps["asset"] == ev_name].set_index("ts").sort_index()
    if "series" in summary:  # the whole horizon, so the plot shows gaps while the car is away
        car = car.reindex(
            pd.DatetimeIndex(pd.to_datetime(summary["series"]["timestamps"], utc=True))
        )
    x = _local(car.index, tz)
    fig = go.Figure()
    power = car["power_kw"].fillna(0.0).to_numpy()
    fig.add_trace(
        go.Bar(
            x=x,
            y=np.maximum(power, 0).round(3),
            name=_("Charging"),
            yaxis="y",
            marker_color=series_colour("ev"),
            hovertemplate=hover_unit(_("Charging"), "kW"),
        )
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=np.minimum(power, 0).round(3),
            name=_("Delivering to the building (V2G)"),
            yaxis="y",
            marker_color=series_colour("v2g"),
            hovertemplate=hover_unit(_("Delivering to the building (V2G)"), "kW"),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=car["soc_pct"].round(2),
            name="SoC %",
            yaxis="y2",
            mode="lines",
            connectgaps=False,
            hovertemplate=hover_unit("SoC", "%", 1),
        )
    )
    fig.update_layout(
        barmode="relative",
        yaxis={"title": "kW"},
        yaxis2={
            "title": "SoC %",
            "overlaying": "y",
            "side": "right",
            "range": [0, 100],
            "tickmode": "linear",
            "tick0": 0,
            "dtick": 20,
            "showgrid": False,
        },
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 50, "r": 50, "t": 10, "b": 40},
    )
    departures = [
        d
        for d in summary.get("kpis", {}).get("optimized", {}).get("departures", [])
        if d["ev"] == ev_name
    ]
    departures = [
        {**d, "departure_ts": pd.Timestamp(d["departure"]).to_pydatetime()} for d in departures
    ]
    v2g = summary.get("kpis", {}).get("optimized", {}).get("v2g_kwh", {}).get(ev_name, 0.0)
    charged_kwh = float(np.maximum(power, 0).sum()) * schedule.step_minutes / 60
    return env.get_template("schedule_ev.html").render(
        schedule=schedule,
        ev_name=ev_name,
        departures=departures,
        v2g_kwh=v2g,
        charged_kwh=charged_kwh,
        figure=figure_html(fig, "car-plan", height_px=340, locale=locale),
        plotly_src=PLOTLY_STATIC_PATH,
    )
