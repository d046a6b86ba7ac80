"""``noaber settle …``, ``noaber statement`` and ``noaber ledger …``."""

from __future__ import annotations

from pathlib import Path

import typer

from energy.console import console

settle_app = typer.Typer(
    help="Settlement: allocate shared kWh and post settlement runs.", no_args_is_help=True
)


@settle_app.command("allocate")
def settle_allocate(
    community_file: Path = typer.Argument(..., help="Community YAML", exists=True, dir_okay=False),
    meters_file: Path = typer.Argument(
        ..., help="Meter data CSV (long or wide form)", exists=True, dir_okay=False
    ),
    out: Path = typer.Option(..., "--out", help="Allocation CSV to write"),
) -> None:
    """Allocate shared energy per ISP (pure computation, no database)."""
    from settlement.community import (
        allocate_community,
        allocation_frame,
        load_community,
        read_meter_csv,
    )

    community = load_community(community_file)
    data = read_meter_csv(meters_file, community)
    alloc = allocate_community(community, data)
    frame = allocation_frame(community, data, alloc)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    console.print(
        f"{len(data.isps)} ISPs, {len(community.members)} members: "
        f"{int(alloc.shared_wh.sum())} Wh shared of {int(alloc.injection_wh.sum())} Wh injected -> {out}"
    )


def register(app: typer.Typer) -> None:
    """Add the settlement commands to the root ``noaber`` app."""
    app.add_typer(settle_app, name="settle")
