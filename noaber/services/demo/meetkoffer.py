"""Demo step of the Meetkoffer: a campaign at the demo factory with ranked findings and a report.

Called by the demo (``noaber demo``) as ``demo_step(ctx)`` after the core steps have stored a
week of 1-minute samples and 15-minute readings for the factory ``polymeer-emmen``. The
campaign maps the factory's existing channels to its equipment (the main incomer as the
total), runs the findings, and writes the campaign report (HTML + CSV) into the demo dir.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from energy.models import Site

FACTORY = "polymeer-emmen"
CAMPAIGN = "polymeer-demo-week"


def demo_step(ctx: Any) -> None:
    """Create the demo campaign, analyse it and write its report (see module docstring)."""
    from meetkoffer import campaign as cp
    from meetkoffer.emissions import load_emission_factors

    factors = load_emission_factors()
    with ctx.sessions() as session, session.begin():
        site = session.scalar(select(Site).where(Site.name == FACTORY))
        if site is None:
            return
        equipment = []
        for asset in site.assets:
            for ch in asset.channels:
                if ch.quantity.value == "power":
                    role = "incomer" if asset.name == "main-incomer" else "submeter"
                    equipment.append((asset.name.replace("-", " "), ch.id, role))
        c = cp.campaign_on_channels(
            session,
            name=CAMPAIGN,
            display_name=f"{site.display_name}: Meetkoffer week",
            site=site,
            start=ctx.start,
            end=ctx.end,
            price_eur_per_kwh=0.18,
            equipment=equipment,
        )
        _, found = cp.analyze(session, c, factors)
        rep = cp.render_campaign_report(session, c, factors, "nl")
        paths = rep.write(ctx.data_dir / "reports" / CAMPAIGN, stem="campaign")
    top = found[0].title if found else "no findings"
    ctx.notes.append(
        f"Meetkoffer: campaign {CAMPAIGN} with {len(found)} findings (top: {top}); "
        f"report {paths['html']}; dashboard /campaigns/dashboard (login polymeer)"
    )
