"""CO2 emission factors per year, read from a configuration file that cites its sources.

The default file is ``meetkoffer/data/emission_factors.yaml``; a deployment may point to its
own (``noaber meetkoffer savings --emission-factors FILE``). A year without a factor uses the
latest earlier year (or, before the first, the earliest) and says so in ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy.errors import ValidationError
from energy.yamlio import load_yaml_file

DEFAULT_PATH = Path(__file__).parent / "data" / "emission_factors.yaml"


@dataclass(frozen=True, slots=True)
class EmissionFactor:
    """A grid emission factor [kg CO2/kWh] for one year, with its source."""

    year: int
    kg_co2_per_kwh: float
    source: str
    scope: str = ""


@dataclass(frozen=True, slots=True)
class AppliedFactor:
    """The factor applied for a requested year (possibly another year's, see ``note``)."""

    requested_year: int
    factor: EmissionFactor
    note: str


def load_emission_factors(path: Path | str | None = None) -> dict[int, EmissionFactor]:
    """Read the factors file (see :func:`parse_emission_factors`); ``None``: the shipped one.

    Raises
    ------
    ValidationError
        Naming the file and the entry that is malformed.
    """
    p = Path(path) if path is not None else DEFAULT_PATH
    return load_yaml_file(
        p, "emission factors file", lambda data: parse_emission_factors(data, str(p))
    )


def parse_emission_factors(data: Any, source_file: str) -> dict[int, EmissionFactor]:
    """Validate a factors document: each entry needs ``year``, ``kg_co2_per_kwh`` >= 0, ``source``.

    Raises
    ------
    ValidationError
        Naming ``source_file`` and the entry that is malformed.
    """
    if not isinstance(data, dict) or data.get("unit") != "kg_co2_per_kwh":
        raise ValidationError("needs 'unit: kg_co2_per_kwh' and a 'factors' list", source_file)
    out: dict[int, EmissionFactor] = {}
    for i, entry in enumerate(data.get("factors") or []):
        loc = f"factors[{i}]"
        if not isinstance(entry, dict):
            raise ValidationError("entry must be a mapping", source_file, loc)
        try:
            year = int(entry["year"])
            kg = float(entry["kg_co2_per_kwh"])
            source = str(entry["source"]).strip()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"needs year, kg_co2_per_kwh and source ({exc})", source_file, loc
            ) from None
        if kg < 0 or not source:
            raise ValidationError(
                f"kg_co2_per_kwh must be >= 0 and source non-empty, got {kg}, {source!r}",
                source_file,
                loc,
            )
        if year in out:
            raise ValidationError(f"year {year} appears twice", source_file, loc)
        out[year] = EmissionFactor(year, kg, source, str(entry.get("scope", "")))
    if not out:
        raise ValidationError("no emission factors given", source_file)
    return out


def factor_for_year(factors: dict[int, EmissionFactor], year: int) -> AppliedFactor:
    """The factor for ``year``: its own, else the latest earlier, else the earliest."""
    if year in factors:
        return AppliedFactor(year, factors[year], "")
    earlier = [y for y in factors if y < year]
    use = max(earlier) if earlier else min(factors)
    return AppliedFactor(
        year, factors[use], f"no factor for {year} configured; the {use} factor is used"
    )
