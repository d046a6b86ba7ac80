"""Reports of a campaign and of a savings verification: HTML (plotly inline), PDF and CSV.

The HTML stands alone (plotly.js inline from :func:`energy.plots.plotly_js`, no CDN); the
PDF is that same page printed by headless Chromium (:func:`energy.pdf.html_to_pdf`); every
table of the report is also written as CSV. Text is translatable (``meetkoffer/locale``),
Dutch by default; numbers, money and times follow the locale and Europe/Amsterdam.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from energy.clock import utc_now
from energy.i18n import template_env, translations
from energy.plots import figure_html, plotly_js
from energy.timegrid import LOCAL_TZ
from meetkoffer import analysis as an
from meetkoffer import findings as fi
from meetkoffer.mv import SavingsResult

#: The template of every report chart, resolved and validated once (see :func:`_new_figure`).
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
#: The layout of every report chart (its template: :data:`TEMPLATE`).
LAYOUT = {
    "margin": {"l": 55, "r": 20, "t": 40, "b": 45},
    "height": 340,
}


def _new_figure() -> go.Figure:
    """An empty figure with the report's template.

    Plotly validates and copies a template on every assignment, also a resolved ``Template``
    object: about 50 ms a figure, most of a report's chart building. The registered template
    is valid already, so it is set with the layout's validation off for that one assignment,
    as Plotly sets its own default template (``BaseFigure._initialize_layout_template``).
    The figure's JSON is the same as with the validated assignment (a test checks it).
    """
    fig = go.Figure()
    layout = fig.layout
    layout._validate = False
    try:
        layout.template = TEMPLATE
    finally:
        layout._validate = True
    return fig


@dataclass
class Report:
    """A rendered report: the HTML page and the tables behind it (for CSV)."""

    title: str
    html: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    charts: list[str] = field(default_factory=list)

    def write(self, out_dir: Path, pdf: bool = False, stem: str = "report") -> dict[str, Path]:
        """Write ``<stem>.html``, one CSV per table and, if asked, ``<stem>.pdf``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        html_path = out_dir / f"{stem}.html"
        html_path.write_text(self.html, encoding="utf-8")
        paths["html"] = html_path
        for name, df in self.tables.items():
            p = out_dir / f"{stem}_{name}.csv"
            df.to_csv(p, index=True, date_format="%Y-%m-%dT%H:%M:%S%z")
            paths[f"csv:{name}"] = p
        if pdf:
            from energy.pdf import html_to_pdf

            paths["pdf"] = html_to_pdf(self.html, out_dir / f"{stem}.pdf")
        return paths


def _fig(title: str) -> go.Figure:
    fig = _new_figure()
    fig.update_layout(title=title, **LAYOUT)
    return fig


def _local(index: pd.Index, tz: str) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M") for t in pd.DatetimeIndex(index).tz_convert(tz)]


def finding_title(f: Any, locale: str = "nl", tz: str = LOCAL_TZ) -> str:
    """The title of a finding (a :class:`~meetkoffer.findings.Finding` or its stored record)
    in the reader's language, rebuilt from its kind and evidence; the stored English title
    if the kind is unknown."""
    from energy.i18n import format_number, format_pct

    _ = translations("meetkoffer", locale).gettext
    ev = f.evidence or {}
    try:
        if f.kind == "standby":
            if ev.get("base_load_method") == "load_floor":
                return _("Load floor of {kw} kW (the plant runs 24/7)").format(
                    kw=format_number(ev["base_load_kw"], 1, locale)
                )
            return _("Base load of {kw} kW outside production").format(
                kw=format_number(ev["base_load_kw"], 1, locale)
            )
        if f.kind == "machine_standby":
            return _("{name}: standby of {kw} kW outside production").format(
                name=f.equipment, kw=format_number(ev["standby_kw"], 1, locale)
            )
        if f.kind == "off_hours_equipment":
            weekend = ev["weekend_kwh_in_campaign"] >= ev["between_shifts_kwh_in_campaign"]
            msg = (
                "{name} runs at weekends" if weekend else "{name} runs between shifts and at night"
            )
            return _(msg).format(name=f.equipment)
        if f.kind == "compressed_air_leak":
            return _("{name}: {pct} of its production load runs outside production (leaks)").format(
                name=f.equipment, pct=format_pct(ev["leak_share_of_production_load"], 0, locale)
            )
        if f.kind == "startup_peak":
            return _("Start-up peaks raise the monthly kW-max by {kw} kW").format(
                kw=format_number(ev["shave_kw"], 0, locale)
            )
        if f.kind == "peak":
            at = pd.Timestamp(ev["peak_at_utc"]).tz_convert(tz)
            return _("Peak of {kw} kW on {at} could be shaved by {shave} kW").format(
                kw=format_number(ev["peak_kw"], 0, locale),
                at=at.strftime("%d-%m-%Y %H:%M"),
                shave=format_number(ev["shave_kw"], 0, locale),
            )
        if f.kind == "enpi_drift":
            start, end = ev["enpi_start_kwh_per_unit"], ev["enpi_end_kwh_per_unit"]
            return _("{name}: energy per unit rose {pct} during the campaign").format(
                name=f.equipment, pct=format_pct((end - start) / start, 0, locale)
            )
        if f.kind == "unmetered":
            share = ev["unmetered_share"]
            if share >= 0:
                return _("{pct} of the energy is not sub-metered").format(
                    pct=format_pct(share, 0, locale)
                )
            return _("The sub-meters add up to {pct} more than the incomer").format(
                pct=format_pct(-share, 0, locale)
            )
        if f.kind == "enpi":
            return _("{value} kWh/{unit} over production hours").format(
                value=format_number(ev["enpi_kwh_per_unit"], 1, locale), unit=ev["unit"]
            )
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        pass
    return str(f.title)


#: Evidence keys of :mod:`meetkoffer.findings` -> (label msgid, unit, format).
#: Formats: ``("number", decimals)``, ``("pct", decimals)``, ``("money", 0)`` (euros, shown
#: with cents), ``("time", 0)`` (UTC ISO time shown in local time).
EVIDENCE_LABELS: dict[str, tuple[str, str, tuple[str, int]]] = {
    "base_load_kw": ("base load", "kW", ("number", 1)),
    "percentile": ("percentile of off-hours demand used as base load", "", ("number", 0)),
    "base_load_cost_eur_per_year": ("base load cost per year", "", ("money", 0)),
    "off_hours_share_of_energy": ("energy outside operating hours", "%", ("pct", 1)),
    "off_hours_per_year_h": ("hours outside operating hours per year", "h", ("number", 0)),
    "assumed_reducible_share": ("assumed reducible share of standby", "%", ("pct", 0)),
    "floor_kw": ("own floor (5th percentile)", "kW", ("number", 1)),
    "off_hours_kwh_in_campaign": ("energy outside operating hours in the campaign", "kWh", ("number", 0)),
    "weekend_kwh_in_campaign": ("energy at weekends in the campaign", "kWh", ("number", 0)),
    "between_shifts_kwh_in_campaign": ("energy between shifts and at night in the campaign", "kWh", ("number", 0)),
    "off_hours_mean_kw": ("mean power outside operating hours", "kW", ("number", 1)),
    "peak_kw": ("peak 15-minute demand", "kW", ("number", 1)),
    "peak_at_utc": ("peak at", "", ("time", 0)),
    "p99_kw": ("99th percentile of 15-minute demand", "kW", ("number", 1)),
    "p95_kw": ("95th percentile of 15-minute demand", "kW", ("number", 1)),
    "shave_kw": ("shaveable peak", "kW", ("number", 1)),
    "peak_price_eur_per_kw_year": ("capacity charge", "€/kW/yr", ("number", 2)),
    "enpi_start_kwh_per_unit": ("energy per unit at the start", "kWh/unit", ("number", 2)),
    "enpi_end_kwh_per_unit": ("energy per unit at the end", "kWh/unit", ("number", 2)),
    "slope_kwh_per_unit_per_day": ("trend of energy per unit", "kWh/unit/day", ("number", 3)),
    "p_value": ("p-value of the trend", "", ("number", 4)),
    "days": ("days with production", "", ("number", 0)),
    "units_per_year": ("units produced per year", "units/yr", ("number", 0)),
    "base_load_method": ("base load from", "", ("text", 0)),
    "floor_percentile": ("percentile of all 15-minute demand used as load floor", "", ("number", 0)),
    "floor_hours_per_year_h": ("hours per year the load floor runs", "h", ("number", 0)),
    "explained_by_submeters_kw": ("of which drawn by sub-metered equipment", "kW", ("number", 1)),
    "unexplained_base_load_kw": ("base load not sub-metered", "kW", ("number", 1)),
    "standby_kw": ("standby", "kW", ("number", 1)),
    "production_level_kw": ("production level (90th percentile)", "kW", ("number", 1)),
    "standby_share_of_production": ("standby against production level", "%", ("pct", 1)),
    "running_kw": ("power above standby when running", "kW", ("number", 1)),
    "running_hours_in_campaign": ("hours running outside production in the campaign", "h", ("number", 1)),
    "running_hours_per_year": ("hours running outside production per year", "h", ("number", 0)),
    "share_of_machine_energy": ("share of the machine's energy", "%", ("pct", 1)),
    "leak_kw": ("compressor load outside production", "kW", ("number", 1)),
    "production_mean_kw": ("mean compressor load in production", "kW", ("number", 1)),
    "leak_share_of_production_load": ("leak indicator (load outside / in production)", "%", ("pct", 0)),
    "production_hours_per_year": ("production hours per year", "h", ("number", 0)),
    "assumed_reducible_share_of_leaks": ("assumed avoidable share of the leaks", "%", ("pct", 0)),
    "startup_peak_kw": ("highest start-up peak", "kW", ("number", 1)),
    "non_startup_max_kw": ("monthly maximum outside start-ups", "kW", ("number", 1)),
    "startup_window_h": ("start-up window", "h", ("number", 2)),
    "months": ("months measured", "", ("number", 0)),
    "capacity_eur_per_kw_month": ("capacity charge (kW-max)", "€/kW/month", ("number", 2)),
    "unmetered_kwh_in_campaign": ("energy not sub-metered in the campaign", "kWh", ("number", 0)),
    "unmetered_share": ("share of the incomer's energy", "%", ("pct", 1)),
    "enpi_kwh_per_unit": ("energy per unit over production hours", "kWh/unit", ("number", 2)),
    "production_kwh_in_campaign": ("energy in production hours in the campaign", "kWh", ("number", 0)),
    "units_in_campaign": ("units produced in the campaign", "", ("number", 1)),
}  # fmt: skip
#: Text values of evidence (``("text", 0)``), translated.
_EVIDENCE_TEXT = {"off_hours": "off-hours", "load_floor": "the load floor (24/7)"}
#: Units shown after a value, translated (the symbols kW, kWh, h and % stay as they are).
_UNIT_WORDS = {"€/kW/yr": "€/kW/year", "units/yr": "units/year", "€/kW/month": "€/kW/month"}
#: Evidence left out of the text (shown in a chart or a table instead, or in the unit).
EVIDENCE_HIDDEN = frozenset({"top_isps_kw", "enpi_by_equipment", "unit"})


def evidence_items(
    evidence: Mapping[str, Any], locale: str = "nl", tz: str = LOCAL_TZ
) -> list[tuple[str, str]]:
    """The evidence of a finding as ``(label, value with unit)`` in the reader's language.

    Known keys (:data:`EVIDENCE_LABELS`) get a translated label, their unit and locale
    number formatting; an unknown key is shown as it is (never dropped).
    """
    from energy.i18n import format_money_cents, format_number, format_pct

    _ = translations("meetkoffer", locale).gettext
    out: list[tuple[str, str]] = []
    for key, value in (evidence or {}).items():
        if key in EVIDENCE_HIDDEN:
            continue
        if key not in EVIDENCE_LABELS:
            shown = format_number(value, 2, locale) if isinstance(value, (int, float)) else value
            out.append((str(key), str(shown)))
            continue
        label, unit, (kind, decimals) = EVIDENCE_LABELS[key]
        if value is None:
            out.append((_(label), "–"))
            continue
        try:
            if kind == "text":
                text = _(_EVIDENCE_TEXT.get(str(value), str(value)))
            elif kind == "time":
                text = pd.Timestamp(value).tz_convert(tz).strftime("%d-%m-%Y %H:%M")
            elif kind == "pct":
                text = format_pct(float(value), decimals, locale)
            elif kind == "money":
                text = format_money_cents(round(float(value) * 100), locale)
            else:
                text = format_number(float(value), decimals, locale)
                if unit == "kWh/unit" and evidence.get("unit"):
                    text += f" kWh/{evidence['unit']}"
                elif unit:
                    text += " " + _(_UNIT_WORDS.get(unit, unit))
        except (TypeError, ValueError):
            text = str(value)
        out.append((_(label), text))
    return out


def describe_hours(hours: an.OperatingHours, locale: str = "nl") -> str:
    """The operating hours in words: ``ma–vr 06:00–22:00; za 06:00–14:00`` (consecutive days
    with the same shifts joined), ``24/7``, and whose public holidays are off."""
    _ = translations("meetkoffer", locale).gettext
    if hours.runs_always():
        return "24/7"
    names = [_(d) for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")]
    parts: list[str] = []
    d = 0
    while d < 7:
        e = d
        while e + 1 < 7 and hours.week[e + 1] == hours.week[d]:
            e += 1
        if hours.week[d]:
            days = names[d] if d == e else f"{names[d]}–{names[e]}"
            shifts = ", ".join(str(x).replace("-", "–") for x in hours.week[d])
            parts.append(f"{days} {shifts}")
        d = e + 1
    text = "; ".join(parts) or _("no shifts")
    if hours.holidays:
        text += " · " + _("public holidays ({country}) off").format(country=hours.holidays)
    if hours.closed or hours.calendar:
        text += " · " + _("{n} dates with their own hours").format(
            n=len(hours.closed) + len(hours.calendar)
        )
    return text


def days_off(
    hours: an.OperatingHours, start: Any, end: Any, locale: str = "nl"
) -> list[tuple[str, str]]:
    """The public holidays and closed dates in ``[start, end)`` (local dates) as
    ``(dd-mm-yyyy, name)``, names in the reader's language."""
    _ = translations("meetkoffer", locale).gettext
    a = pd.Timestamp(start).tz_convert(hours.tz).date()
    b = pd.Timestamp(end).tz_convert(hours.tz).date()
    names = hours.holiday_names(range(a.year, b.year + 1), "nl" if locale == "nl" else "en_US")
    return [
        (d.strftime("%d-%m-%Y"), _("closed") if n == "closed" else n)
        for d, n in sorted(names.items())
        if a <= d < b
    ]


def campaign_report(
    meta: Mapping[str, Any],
    energy_wh: Mapping[str, pd.Series],
    incomer: str,
    found: list[fi.Finding],
    hours: an.OperatingHours,
    params: fi.FindingParams,
    production: pd.Series | None = None,
    locale: str = "nl",
    emission_note: str = "",
    coverage: Mapping[str, float] | None = None,
    plotly_src: str | None = None,
    emission_factor: Any = None,
    downloads: str | None = None,
    skipped: list[fi.Skipped] | None = None,
    production_unit: str = "unit",
) -> Report:
    """The campaign report: profiles, base load, peaks, carpet, breakdown, EnPI and findings.

    Parameters
    ----------
    meta
        ``name``, ``display_name``, ``site``, ``start``, ``end`` (UTC datetimes).
    energy_wh
        Energy per ISP [Wh] of every equipment (the incomer included), UTC index.
    incomer
        Which of ``energy_wh`` is the main incomer.
    coverage
        Mean covered share of each channel's ISPs (0..1), shown per channel.
    plotly_src
        Load plotly.js from this URL (a page served by the API, ``/static/plotly.min.js``)
        instead of embedding it (the stand-alone report file and its PDF).
    emission_factor
        The :class:`~meetkoffer.emissions.AppliedFactor` of the campaign's year: the report
        states its value, source and, when the year has none configured, which year's
        factor was used (translated). Without it ``emission_note`` is shown as given.
    downloads
        Base URL of the report's downloads (``<base>/pdf``, ``<base>/csv/<table>``), linked
        from the page; ``None`` for a stand-alone file.
    skipped
        The analyses that could not run (:class:`~meetkoffer.findings.Skipped`), listed with
        their reasons.
    production_unit
        The unit of ``production`` (``t``): EnPI in kWh per that unit.
    """
    _ = translations("meetkoffer", locale).gettext
    tz = hours.tz
    inc = energy_wh[incomer]
    subs = {k: v for k, v in energy_wh.items() if k != incomer}
    daily_df = pd.DataFrame(
        {k: an.daily_energy_kwh(v, tz)["energy_kwh"] for k, v in energy_wh.items()}
    )
    daily_df.index.name = "date"
    prof = an.profile_15min(inc, tz)
    bl = an.base_load(inc, hours, params.price_eur_per_kwh, params.base_load_percentile)
    oh = an.off_hours_share(inc, hours)
    pk = an.peak_demand(inc)
    ldc = an.load_duration_curve(inc)
    carpet = an.carpet(inc, tz)
    bd = an.equipment_breakdown(subs, inc) if subs else pd.DataFrame()
    tables: dict[str, pd.DataFrame] = {
        "daily_energy_kwh": daily_df,
        "profile_incomer_kw": prof,
        "load_duration_incomer": ldc,
        "carpet_incomer_kw": carpet,
        "breakdown": bd,
    }
    f_prof = _profile_figure(_("Average day profile of the incomer [kW]"), prof, _)
    f_prof.add_hline(
        y=bl.base_load_kw,
        line_dash="dot",
        annotation_text=_("load floor") if bl.method == "load_floor" else _("base load"),
    )
    figs: list[tuple[str, str, go.Figure]] = [
        ("daily", _("Energy per day"), _daily_figure(daily_df, incomer, _)),
        ("profile", _("Day profiles"), f_prof),
        ("carpet", _("Carpet plot"), _carpet_figure(carpet, _)),
        ("load_duration", _("Load duration curve"), _load_duration_figure(ldc, _)),
        ("breakdown", _("Breakdown by equipment"), _breakdown_figure(bd, _)),
    ]
    enpi = _enpi(daily_df[incomer], production, tz)
    if enpi is not None:
        tables["enpi_daily"] = enpi.data
        figs.append(
            (
                "enpi",
                _("Energy performance indicator"),
                _enpi_figure(enpi, production_unit, _),
            )
        )
    for f in found:
        if f.chart.startswith("profile:") and f.equipment is not None and f.equipment in energy_wh:
            if f.chart in {k for k, _h, _f in figs}:
                continue
            p = an.profile_15min(energy_wh[f.equipment], tz)
            title = f"{f.equipment}: " + _("average day profile [kW]")
            figs.append((f.chart, finding_title(f, locale, tz), _profile_figure(title, p, _)))
            tables[f"profile_{an_slug(f.equipment)}_kw"] = p
    charts, chart_html = _charts(figs, locale)
    tables["findings"] = _findings_table(found)
    tables["summary"] = _summary_table(bl, oh, pk)
    channels = an.channel_summary(energy_wh, hours, params.price_eur_per_kwh, coverage)
    tables["channels"] = channels
    env = _campaign_env(locale, tz)
    html = env.get_template("meetkoffer_campaign.html").render(
        meta=meta,
        plotly_js=None if plotly_src else plotly_js(),
        plotly_src=plotly_src,
        charts=chart_html,
        findings=[f for f in found if f.counted],
        key_figures=[f for f in found if not f.counted],
        totals=fi.totals(found),
        skipped=skipped or [],
        breakdown=bd,
        channels=channels,
        base=bl,
        off=oh,
        peak=pk,
        peak_local=pk.at.tz_convert(tz).to_pydatetime(),
        enpi=enpi,
        production_unit=production_unit,
        params=params,
        hours=hours,
        hours_text=describe_hours(hours, locale),
        days_off=days_off(hours, meta["start"], meta["end"], locale),
        emission_note=emission_note,
        emission_factor=emission_factor,
        chart_headings={c["key"]: c["heading"] for c in chart_html},
        downloads=downloads,
        tables=list(tables),
        generated=utc_now(),
    )
    return Report(str(meta.get("display_name", meta.get("name"))), html, tables, charts)


#: Campaign charts: legends below the plot and room for them, so that neither a legend nor
#: a colour bar is cut off at the A4 width of the PDF.
_LEGEND_BELOW = {
    "legend": {"orientation": "h", "x": 0, "y": -0.22, "xanchor": "left", "yanchor": "top"},
    "margin": {"l": 60, "r": 20, "t": 40, "b": 95},
}
#: Dates on campaign axes: Dutch/English month abbreviations through the Plotly locale.
_DATE_AXIS = {"type": "date", "tickformat": "%-d %b", "hoverformat": "%d-%m-%Y"}


def _cfig(title: str, x_title: str, y_title: str) -> go.Figure:
    """A campaign chart with its axes titled (units in brackets) and the legend below."""
    fig = _fig(title)
    fig.update_layout(**_LEGEND_BELOW)
    # Whole numbers on the axes, thousands grouped ("4.000", not "4000" or "4k").
    numbers = {"separatethousands": True, "exponentformat": "none"}
    fig.update_xaxes(title=x_title, **numbers)
    fig.update_yaxes(title=y_title, **numbers)
    fig.update_layout(yaxis2=numbers)
    return fig


def _daily_figure(daily_df: pd.DataFrame, incomer: str, _: Any) -> go.Figure:
    """Energy per day: the equipment stacked, the incomer as a line."""
    days = [pd.Timestamp(d).strftime("%Y-%m-%d") for d in daily_df.index]
    fig = _cfig(_("Energy per day [kWh]"), _("date"), _("energy [kWh]"))
    for k in daily_df.columns:
        if k != incomer:
            fig.add_bar(x=days, y=daily_df[k], name=k)
    fig.add_scatter(x=days, y=daily_df[incomer], name=incomer, mode="lines+markers")
    fig.update_layout(barmode="stack")
    fig.update_xaxes(**_DATE_AXIS)
    return fig


def _profile_figure(title: str, prof: pd.DataFrame, _: Any) -> go.Figure:
    """Average day profiles [kW], one line per kind of day (a column of ``prof``)."""
    fig = _cfig(title, _("local time of day"), _("power [kW]"))
    for col in prof.columns:
        fig.add_scatter(x=list(prof.index), y=prof[col], name=_(col), mode="lines")
    fig.update_xaxes(type="category", nticks=13)
    return fig


def _load_duration_figure(ldc: pd.DataFrame, _: Any) -> go.Figure:
    fig = _cfig(
        _("Load duration curve of the incomer"), _("hours at or above [h]"), _("power [kW]")
    )
    fig.add_scatter(x=ldc["hours"], y=ldc["power_kw"], mode="lines", name=_("power [kW]"))
    return fig


def _carpet_figure(carpet: pd.DataFrame, _: Any) -> go.Figure:
    fig = _cfig(_("Carpet plot of the incomer [kW]"), _("local time of day"), _("date"))
    fig.add_heatmap(
        z=carpet.to_numpy(),
        x=list(carpet.columns),
        y=[pd.Timestamp(d).strftime("%Y-%m-%d") for d in carpet.index],
        colorscale="Viridis",
        colorbar={"title": {"text": "kW"}, "thickness": 14, "x": 1.0, "xpad": 4},
        hovertemplate="%{y|%d-%m-%Y} %{x}: %{z:.1f} kW<extra></extra>",
    )
    fig.update_layout(height=420, margin={"l": 70, "r": 60, "t": 40, "b": 60})
    fig.update_xaxes(type="category", nticks=13)
    fig.update_yaxes(**_DATE_AXIS)
    return fig


def _breakdown_figure(bd: pd.DataFrame, _: Any) -> go.Figure:
    """Energy by equipment with the cumulative share (a Pareto chart); empty without submeters."""
    fig = _cfig(_("Energy by equipment (Pareto)"), _("equipment"), _("energy [kWh]"))
    if bd.empty:
        return fig
    names = [_("unmetered remainder") if n == "unmetered" else n for n in bd.index]
    fig.add_bar(x=names, y=bd["energy_kwh"], name=_("energy [kWh]"))
    fig.add_scatter(
        x=names,
        y=bd["cumulative_share"] * 100,
        name=_("cumulative share [%]"),
        yaxis="y2",
        mode="lines+markers",
    )
    fig.update_layout(
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "range": [0, 105],
            "tickmode": "linear",
            "tick0": 0,
            "dtick": 25,
            "showgrid": False,
            "title": {"text": _("cumulative share [%]")},
        },
        margin={"l": 60, "r": 60, "t": 40, "b": 95},
    )
    return fig


def _enpi(daily_kwh: pd.Series, production: pd.Series | None, tz: str) -> an.EnpiRegression | None:
    """The EnPI regression of the incomer's daily energy on production per local day, if any."""
    if production is None or production.dropna().empty:
        return None
    prod = production.dropna()
    prod_day = prod.groupby(pd.DatetimeIndex(prod.index).tz_convert(tz).date).sum()
    try:
        return an.enpi_regression(daily_kwh, prod_day)
    except ValueError:
        return None


def _enpi_figure(enpi: an.EnpiRegression, unit: str, _: Any) -> go.Figure:
    """Energy per day against production per day, the regression line and, on a second
    axis, the EnPI of each day [kWh/unit]."""
    fig = _cfig(
        _("Energy per day against production (EnPI)"),
        _("production per day [{unit}]").format(unit=unit),
        _("energy per day [kWh]"),
    )
    fig.add_scatter(
        x=enpi.data["production"],
        y=enpi.data["energy_kwh"],
        mode="markers",
        name=_("energy per day [kWh]"),
    )
    xs = np.linspace(0, float(enpi.data["production"].max()), 20)
    fig.add_scatter(
        x=xs,
        y=enpi.intercept_kwh + enpi.slope_kwh_per_unit * xs,
        mode="lines",
        name=_("regression"),
    )
    fig.add_scatter(
        x=enpi.data["production"],
        y=enpi.data["enpi"],
        mode="markers",
        marker={"symbol": "diamond-open"},
        name=f"EnPI [kWh/{unit}]",
        yaxis="y2",
    )
    fig.update_layout(
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "tickmode": "auto",
            "nticks": 6,
            "showgrid": False,
            "title": {"text": f"EnPI [kWh/{unit}]"},
        },
        margin={"l": 60, "r": 60, "t": 40, "b": 95},
    )
    return fig


def _charts(
    figs: list[tuple[str, str, go.Figure]], locale: str | None = None
) -> tuple[list[str], list[dict[str, str]]]:
    """The div ids and the ``{key, heading, html}`` of the charts ``(key, heading, figure)``;
    with ``locale``, in that locale's number and date format (:func:`energy.plots.figure_html`)."""
    charts, chart_html = [], []
    for key, heading, fig in figs:
        div_id = "chart-" + an_slug(key)
        charts.append(div_id)
        chart_html.append(
            {"key": key, "heading": heading, "html": figure_html(fig, div_id, locale=locale)}
        )
    return charts, chart_html


def _findings_table(found: list[fi.Finding]) -> pd.DataFrame:
    if not found:
        return pd.DataFrame()
    rows = [
        {
            "rank": f.rank,
            "kind": f.kind,
            "title": f.title,
            "equipment": f.equipment or "",
            "energy_kwh_per_year": f.energy_kwh_per_year,
            "cost_eur_per_year": f.cost_eur_per_year,
            "co2_t_per_year": f.co2_t_per_year,
            "counted": f.counted,
            "chart": f.chart,
        }
        for f in found
    ]
    return pd.DataFrame(rows).set_index("rank")


def _summary_table(bl: an.BaseLoad, oh: an.OffHours, pk: an.Peak) -> pd.DataFrame:
    values = {
        "base_load_kw": bl.base_load_kw,
        "base_load_cost_eur_per_year": bl.cost_eur_per_year,
        "off_hours_share": oh.share,
        "total_kwh": oh.total_kwh,
        "peak_kw": pk.peak_kw,
        "peak_at_utc": pk.at.isoformat(),
        "p95_kw": pk.p95_kw,
    }
    return pd.DataFrame({"value": values})


def _new_env(locale: str) -> Any:
    """The Meetkoffer templates in ``locale``, with the emission-factor note of both reports."""
    env = template_env("meetkoffer", locale)
    env.globals["factor_note"] = lambda a: emission_factor_note(a, locale)
    return env


# One environment per locale (and time zone), kept: Jinja compiles a template once per
# environment, and compiling the campaign page took longer than rendering it. Each kept
# environment's globals are set when it is made and never changed, so reports rendered at
# the same time (the API's threads) share it safely.


@functools.lru_cache(maxsize=8)
def _template_env(locale: str) -> Any:
    """The savings report's environment in ``locale`` (kept, see above)."""
    return _new_env(locale)


@functools.lru_cache(maxsize=16)
def _campaign_env(locale: str, tz: str) -> Any:
    """The campaign report's environment: finding titles and evidence in ``locale`` and ``tz``."""
    env = _new_env(locale)
    env.globals["finding_title"] = lambda f: finding_title(f, locale, tz)
    env.globals["evidence_items"] = lambda ev: evidence_items(ev, locale, tz)
    return env


def an_slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


def emission_factor_note(a: Any, locale: str = "nl") -> str:
    """Which year's factor was applied for ``a.requested_year`` (an
    :class:`~meetkoffer.emissions.AppliedFactor`), in the reader's language; ``""`` if the
    year has its own factor."""
    if a.factor.year == a.requested_year:
        return ""
    _ = translations("meetkoffer", locale).gettext
    return _("no factor for {year} configured; the {used} factor is used").format(
        year=a.requested_year, used=a.factor.year
    )


def savings_report(
    meta: Mapping[str, Any],
    result: SavingsResult,
    locale: str = "nl",
    tz: str = LOCAL_TZ,
    plotly_src: str | None = None,
    downloads: str | None = None,
) -> Report:
    """The savings verification report: fit, adjusted baseline, savings and their uncertainty.

    Parameters
    ----------
    plotly_src
        Load plotly.js from this URL (a page served by the API) instead of embedding it.
    downloads
        Base URL of the report's downloads (``<base>/pdf``, ``<base>/csv/<table>``), linked
        from the page; ``None`` for a stand-alone file.
    """
    _ = translations("meetkoffer", locale).gettext
    charts, chart_html = _charts(_savings_figures(result, tz, _, locale))
    tables = _savings_tables(result)
    html = (
        _template_env(locale)
        .get_template("meetkoffer_savings.html")
        .render(
            meta=meta,
            plotly_js=None if plotly_src else plotly_js(),
            plotly_src=plotly_src,
            downloads=downloads,
            tables=list(tables),
            charts=chart_html,
            res=result,
            # emission-factor notes are shown (translated) with the factors, not twice
            warnings=[
                w for w in result.warnings if w not in {a.note for a in result.emission_factors}
            ],
            m=result.metrics,
            emission_factors=result.emission_factors,
            generated=utc_now(),
        )
    )
    return Report(str(meta.get("display_name", meta.get("name"))), html, tables, charts)


#: Plotly number separators (decimal, thousands) per locale: Dutch decimal commas.
SEPARATORS = {"nl": ",.", "en": ".,"}


def _sfig(title: str, locale: str, y_title: str, x_title: str | None = None) -> go.Figure:
    """A savings-report figure: locale separators, Dutch-style dates (dd-mm-jjjj), units on
    both axes, the legend below the plot (not clipped in the PDF)."""
    fig = _new_figure()
    fig.update_layout(
        title=title,
        separators=SEPARATORS.get(locale, ",."),
        legend={"orientation": "h", "y": -0.25, "x": 0},
        **{**LAYOUT, "margin": {"l": 65, "r": 20, "t": 40, "b": 80}},
    )
    fig.update_yaxes(title_text=y_title)
    if x_title is None:
        fig.update_xaxes(tickformat="%d-%m-%Y", hoverformat="%d-%m-%Y %H:%M")
    else:
        fig.update_xaxes(title_text=x_title)
    return fig


def _local_times(index: pd.Index, tz: str) -> list[pd.Timestamp]:
    """Local wall-clock times (tz-naive) for a date axis."""
    return list(pd.DatetimeIndex(index).tz_convert(tz).tz_localize(None))


def _savings_figures(
    result: SavingsResult, tz: str, _: Any, locale: str = "nl"
) -> list[tuple[str, str, go.Figure]]:
    """The baseline fit, the reporting period against the adjusted baseline, the cumulative
    savings; the usage against outdoor temperature and the EnPI CUSUM where there are data."""
    b, r = result.baseline_series, result.reporting_series
    per = {"hourly": _("kWh/hour"), "monthly": _("kWh/period")}.get(result.interval, _("kWh/day"))
    date = _("date")
    f_base = _sfig(
        _("Baseline period: measured and modelled [{unit}]").format(unit=per), locale, per
    )
    f_base.add_scatter(
        x=_local_times(b.index, tz), y=b["energy_kwh"], name=_("measured"), mode="lines+markers"
    )
    f_base.add_scatter(
        x=_local_times(b.index, tz), y=b["fitted_kwh"], name=_("model"), mode="lines"
    )
    f_rep = _sfig(
        _("Reporting period: adjusted baseline and measured [{unit}]").format(unit=per), locale, per
    )
    f_rep.add_scatter(
        x=_local_times(r.index, tz),
        y=r["adjusted_baseline_kwh"],
        name=_("adjusted baseline"),
        mode="lines",
    )
    f_rep.add_scatter(
        x=_local_times(r.index, tz), y=r["energy_kwh"], name=_("measured"), mode="lines+markers"
    )
    f_cum = _sfig(_("Cumulative avoided energy [kWh]"), locale, "kWh")
    f_cum.add_scatter(
        x=_local_times(r.index, tz),
        y=r["cumulative_avoided_kwh"],
        name="kWh",
        mode="lines",
        fill="tozeroy",
    )
    for f in (f_base, f_rep, f_cum):
        f.update_xaxes(title_text=date)
    figs = [
        ("baseline", _("Baseline model"), f_base),
        ("reporting", _("Reporting period"), f_rep),
        ("cumulative", _("Cumulative savings"), f_cum),
    ]
    if "temp_c" in b and b["temp_c"].notna().any():
        figs.append(
            ("temperature", _("Usage and outdoor temperature"), _temp_figure(result, _, locale))
        )
    if result.enpi:
        figs.append(
            ("cusum", _("EnPI CUSUM (ISO 50006)"), _cusum_figure(result.enpi, tz, _, locale))
        )
    return figs


def _per_day(series: pd.DataFrame) -> np.ndarray:
    """Usage per 24 hours [kWh/d] of each period (days of 23/25 hours and bills scaled)."""
    e = series["energy_kwh"].to_numpy(float)
    if "days" in series:
        return e / series["days"].to_numpy(float)
    if "hours" in series:
        return e * 24.0 / series["hours"].to_numpy(float)
    return e


def _temp_figure(result: SavingsResult, _: Any, locale: str) -> go.Figure:
    """Usage per day against the mean outdoor temperature: baseline and reporting points and,
    for a CalTRACK model, its change-point line."""
    b, r = result.baseline_series, result.reporting_series
    unit = _("kWh/hour") if result.interval == "hourly" else _("kWh/day")
    fig = _sfig(
        _("Usage against outdoor temperature [{unit}]").format(unit=unit),
        locale,
        unit,
        _("mean outdoor temperature [°C]"),
    )
    fig.add_scatter(x=b["temp_c"], y=_per_day(b), name=_("baseline"), mode="markers")
    fig.add_scatter(x=r["temp_c"], y=_per_day(r), name=_("reporting period"), mode="markers")
    c = result.coefficients
    if result.model.startswith("caltrack") and "intercept" in c:
        t = np.linspace(
            float(np.nanmin([b["temp_c"].min(), r["temp_c"].min()])),
            float(np.nanmax([b["temp_c"].max(), r["temp_c"].max()])),
            200,
        )
        y = np.full(t.shape, c["intercept"])
        if np.isfinite(c.get("heating_bp_c", np.nan)):
            y = y + c["beta_hdd"] * np.maximum(c["heating_bp_c"] - t, 0.0)
        if np.isfinite(c.get("cooling_bp_c", np.nan)):
            y = y + c["beta_cdd"] * np.maximum(t - c["cooling_bp_c"], 0.0)
        fig.add_scatter(x=t, y=y, name=_("model"), mode="lines")
    return fig


def _cusum_figure(enpi: Mapping[str, Any], tz: str, _: Any, locale: str) -> go.Figure:
    """The CUSUM of actual minus expected energy [kWh] over baseline and reporting period."""
    cs = enpi["cusum"]
    x = _local_times(pd.DatetimeIndex(pd.to_datetime(cs["index"], utc=True)), tz)
    fig = _sfig(_("CUSUM of measured minus expected energy [kWh]"), locale, "kWh")
    fig.add_scatter(x=x, y=cs["cusum_kwh"], name="CUSUM", mode="lines+markers")
    start = _local_times(pd.DatetimeIndex([pd.Timestamp(enpi["reporting_start"])]), tz)[0]
    fig.add_vline(x=start, line_dash="dash", line_color="grey")
    fig.update_xaxes(title_text=_("date"))
    return fig


def _savings_tables(result: SavingsResult) -> dict[str, pd.DataFrame]:
    """The tables of a savings report (each also a CSV download)."""
    adj = pd.DataFrame(
        [
            {"energy_kwh": a.energy_kwh, "reason": a.reason, "start": a.start, "end": a.end}
            for a in result.adjustments
        ],
        columns=["energy_kwh", "reason", "start", "end"],
    )
    ef = pd.DataFrame(
        [
            {
                "year": a.requested_year,
                "factor_year": a.factor.year,
                "kg_co2_per_kwh": a.factor.kg_co2_per_kwh,
                "source": a.factor.source,
                "note": a.note,
            }
            for a in result.emission_factors
        ],
        columns=["year", "factor_year", "kg_co2_per_kwh", "source", "note"],
    )
    out = {
        "savings_summary": pd.DataFrame({"value": result.summary()}),
        "coefficients": pd.DataFrame({"value": result.coefficients}),
        f"baseline_{result.interval}": result.baseline_series,
        f"reporting_{result.interval}": result.reporting_series,
        "nonroutine_adjustments": adj,
        "emission_factors": ef,
    }
    if result.coefficient_table:
        out["caltrack_coefficients"] = pd.DataFrame(result.coefficient_table).set_index("term")
    if result.enpi:
        out["enpi_terms"] = pd.DataFrame(result.enpi["terms"]).set_index("term")
        cs = result.enpi["cusum"]
        out["enpi_cusum"] = pd.DataFrame(
            {k: v for k, v in cs.items() if k != "index"},
            index=pd.DatetimeIndex(pd.to_datetime(cs["index"], utc=True)),
        )
    return out
