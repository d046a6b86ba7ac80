"""Tariffs and prices: money in integer cents, prices as :class:`~decimal.Decimal`.

Rounding rules (stated once, used everywhere in settlement):

1. A price [EUR/kWh] is exact to at most 8 decimals; it becomes an integer number of
   nano-cents per Wh (``price * 10**8``), so ``energy_wh * price`` is exact in integers.
2. Exact amounts are summed per member and local day (a tariff version never changes within
   a local day) and rounded once to whole cents, half to even.
3. Where parts must add up to a whole (the shared energy one member pays and another is
   paid), the day's whole is rounded once and split over the members by largest remainder
   (:func:`settlement.allocation.largest_remainder`, ties by member ref).
4. VAT is computed per member and day on the rounded energy and energy-tax cents, and
   rounded half to even.

The tariff file holds versions with local validity dates; a correction is priced with the
version that held when the energy flowed (:func:`version_for_day`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from energy.errors import ValidationError
from energy.timegrid import LOCAL_TZ
from energy.yamlio import load_yaml_file

NC_PER_CENT = 10**9
"""Nano-cents per cent."""
DEFAULT_TARIFF = "tariffs_2026.yaml"
"""The shipped default tariff file (``settlement/data``)."""


@dataclass(frozen=True)
class TaxBand:
    """Energy tax for consumption up to ``up_to_kwh`` (None: no upper bound) per year."""

    up_to_kwh: int | None
    eur_per_kwh: Decimal


@dataclass(frozen=True)
class TariffVersion:
    """One version of a tariff, valid for local dates ``[valid_from, valid_to)``."""

    valid_from: dt.date
    valid_to: dt.date
    shared_price: dict[str, Any]
    v2g_compensation_eur_per_kwh: Decimal
    energy_tax_bands: tuple[TaxBand, ...]
    vat_pct: Decimal
    fixed_fee_eur_per_month: Decimal


@dataclass(frozen=True)
class Tariff:
    """A named tariff with its versions (sorted, non-overlapping)."""

    name: str
    versions: tuple[TariffVersion, ...]
    digest: str
    document: str = ""
    """The tariff as canonical YAML (its digest is the sha256 of it): stored with the runs
    priced with it, so that a later re-pricing uses exactly this tariff."""

    def version_for_day(self, day: dt.date) -> TariffVersion:
        """The version in force on local date ``day``."""
        for v in self.versions:
            if v.valid_from <= day < v.valid_to:
                return v
        raise ValidationError(f"no tariff version of {self.name!r} covers {day.isoformat()}")


def _dec(value: Any, where: str, source: str, lo: Decimal | None = Decimal(0)) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(f"not a number: {value!r}", source, where) from None
    if not d.is_finite() or (lo is not None and d < lo):
        raise ValidationError(f"must be a finite number >= {lo}, got {value!r}", source, where)
    return d


def nc_per_wh(price_eur_per_kwh: Decimal) -> int:
    """A price [EUR/kWh] as integer nano-cents per Wh; refuses more than 8 decimals."""
    scaled = price_eur_per_kwh * 10**8
    if scaled != scaled.to_integral_value():
        raise ValidationError(f"price {price_eur_per_kwh} EUR/kWh has more than 8 decimals")
    return int(scaled)


def parse_tariff(data: Any, source: str = "<tariff>") -> Tariff:
    """Validate a tariff mapping (see ``settlement/data/tariffs_2026.yaml``)."""
    if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
        raise ValidationError("a tariff needs a list of versions", source, "versions")
    versions = []
    for k, raw in enumerate(data["versions"]):
        loc = f"versions[{k}]"
        try:
            start = dt.date.fromisoformat(str(raw["valid_from"]))
            end = dt.date.fromisoformat(str(raw["valid_to"]))
        except (KeyError, ValueError):
            raise ValidationError(
                "valid_from and valid_to must be dates YYYY-MM-DD", source, loc
            ) from None
        if end <= start:
            raise ValidationError("valid_to must be after valid_from", source, loc)
        sp = raw.get("shared_price")
        if not isinstance(sp, dict) or sp.get("type") not in ("fixed", "time_of_use", "indexed"):
            raise ValidationError(
                "shared_price.type must be fixed, time_of_use or indexed",
                source,
                loc + ".shared_price",
            )
        price: dict[str, Any] = {"type": sp["type"]}
        if sp["type"] == "fixed":
            price["price"] = _dec(
                sp.get("price_eur_per_kwh"), loc + ".shared_price.price_eur_per_kwh", source
            )
            nc_per_wh(price["price"])
        elif sp["type"] == "time_of_use":
            price["default"] = _dec(
                sp.get("default_eur_per_kwh"), loc + ".shared_price.default_eur_per_kwh", source
            )
            periods = []
            for j, p in enumerate(sp.get("periods") or []):
                ploc = f"{loc}.shared_price.periods[{j}]"
                try:
                    t0 = dt.time.fromisoformat(str(p["from"]))
                    t1 = dt.time.fromisoformat(str(p["to"]))
                except (KeyError, ValueError):
                    raise ValidationError("from and to must be times HH:MM", source, ploc) from None
                periods.append(
                    (t0, t1, _dec(p.get("price_eur_per_kwh"), ploc + ".price_eur_per_kwh", source))
                )
            price["periods"] = tuple(periods)
        else:
            for f, lo in (
                ("multiplier", Decimal(0)),
                ("markup_eur_per_kwh", None),
                ("floor_eur_per_kwh", None),
                ("cap_eur_per_kwh", None),
            ):
                price[f] = _dec(
                    sp.get(f, "1" if f == "multiplier" else "0"),
                    f"{loc}.shared_price.{f}",
                    source,
                    lo,
                )
            if price["cap_eur_per_kwh"] < price["floor_eur_per_kwh"]:
                raise ValidationError("cap must be >= floor", source, loc + ".shared_price")
        bands = []
        for j, b in enumerate(raw.get("energy_tax_bands") or []):
            upto = b.get("up_to_kwh")
            bands.append(
                TaxBand(
                    None if upto is None else int(upto),
                    _dec(b.get("eur_per_kwh"), f"{loc}.energy_tax_bands[{j}]", source),
                )
            )
        if not bands or bands[-1].up_to_kwh is not None:
            raise ValidationError(
                "energy_tax_bands must end with an open band (up_to_kwh: null)", source, loc
            )
        versions.append(
            TariffVersion(
                start,
                end,
                price,
                _dec(
                    raw.get("v2g_compensation_eur_per_kwh", "0"),
                    loc + ".v2g_compensation_eur_per_kwh",
                    source,
                ),
                tuple(bands),
                _dec(raw.get("vat_pct", "21"), loc + ".vat_pct", source),
                _dec(
                    raw.get("fixed_fee_eur_per_month", "0"),
                    loc + ".fixed_fee_eur_per_month",
                    source,
                ),
            )
        )
    versions.sort(key=lambda v: v.valid_from)
    for a, b in itertools.pairwise(versions):
        if b.valid_from < a.valid_to:
            raise ValidationError(
                f"versions overlap at {b.valid_from.isoformat()}", source, "versions"
            )
    canon = yaml.safe_dump(data, sort_keys=True)
    return Tariff(
        str(data.get("name", "tariff")),
        tuple(versions),
        hashlib.sha256(canon.encode()).hexdigest(),
        canon,
    )


def tariff_from_document(document: str, source: str = "<stored tariff>") -> Tariff:
    """A tariff from its canonical YAML (:attr:`Tariff.document`); same digest as before."""
    return parse_tariff(yaml.safe_load(document), source)


def load_tariff(path: Path | str | None = None) -> Tariff:
    """Read a tariff file; ``None`` gives the shipped default (2026, with sources)."""
    if path is None:
        data = load_yaml_file(Path(__file__).parent / "data" / DEFAULT_TARIFF, "tariff file")
        return parse_tariff(data, DEFAULT_TARIFF)
    source = str(Path(path))
    return load_yaml_file(path, "tariff file", lambda data: parse_tariff(data, source))


def shared_price_nc(
    version: TariffVersion, isps: pd.DatetimeIndex, day_ahead_eur_per_kwh: np.ndarray | None = None
) -> np.ndarray:
    """Internal price of shared energy per ISP [nano-cents/Wh], ``int64``.

    ``fixed``: one price; ``time_of_use``: by local time of the ISP start (a period
    ``[from, to)`` may wrap midnight); ``indexed``: ``multiplier * day_ahead + markup``
    clipped to ``[floor, cap]`` and rounded half to even to 8 decimals (needs the day-ahead
    price per ISP [EUR/kWh]).
    """
    sp = version.shared_price
    if sp["type"] == "fixed":
        return np.full(len(isps), nc_per_wh(sp["price"]), dtype=np.int64)
    if sp["type"] == "time_of_use":
        local = isps.tz_convert(LOCAL_TZ)
        minutes = np.asarray(local.hour * 60 + local.minute)
        out = np.full(len(isps), nc_per_wh(sp["default"]), dtype=np.int64)
        for t0, t1, price in sp["periods"]:
            a, b = t0.hour * 60 + t0.minute, t1.hour * 60 + t1.minute
            mask = (minutes >= a) & (minutes < b) if a < b else (minutes >= a) | (minutes < b)
            out[mask] = nc_per_wh(price)
        return out
    if day_ahead_eur_per_kwh is None or len(day_ahead_eur_per_kwh) != len(isps):
        raise ValidationError("an indexed shared price needs a day-ahead price for every ISP")
    q = Decimal("0.00000001")
    out = np.empty(len(isps), dtype=np.int64)
    for k, da in enumerate(day_ahead_eur_per_kwh):
        p = sp["multiplier"] * Decimal(str(da)) + sp["markup_eur_per_kwh"]
        p = min(max(p, sp["floor_eur_per_kwh"]), sp["cap_eur_per_kwh"]).quantize(q, ROUND_HALF_EVEN)
        out[k] = nc_per_wh(p)
    return out


def round_nc(nc: np.ndarray | int) -> np.ndarray:
    """Nano-cents to whole cents, half to even (works on arrays of int64)."""
    a = np.asarray(nc, dtype=np.int64)
    q, r = np.divmod(a, NC_PER_CENT)
    half = NC_PER_CENT // 2
    up = (r > half) | ((r == half) & (q % 2 == 1))
    return q + up.astype(np.int64)


def round_cents_decimal(amount_cents: Decimal) -> int:
    """A Decimal amount of cents rounded half to even."""
    return int(amount_cents.quantize(Decimal(1), ROUND_HALF_EVEN))


def energy_tax_nc(consumed_wh: np.ndarray, prior_wh: int, bands: tuple[TaxBand, ...]) -> np.ndarray:
    """Energy tax per consecutive slice of consumption [nano-cents] by annual band.

    Parameters
    ----------
    consumed_wh : numpy.ndarray
        Consumption per day (in order) [Wh].
    prior_wh : int
        Consumption earlier in the same calendar year [Wh]; it decides the band.
    bands : tuple of TaxBand
        Bands with upper bounds per year [kWh] and rates [EUR/kWh].

    References
    ----------
    Wet belastingen op milieugrondslag, art. 59 (Energiebelasting, staffels).
    """
    out = np.zeros(len(consumed_wh), dtype=np.int64)
    cum = int(prior_wh)
    for k, wh in enumerate(np.asarray(consumed_wh, dtype=np.int64)):
        start, end = cum, cum + int(wh)
        lo = 0
        total = 0
        for band in bands:
            hi = None if band.up_to_kwh is None else band.up_to_kwh * 1000
            a = max(start, lo)
            b = end if hi is None else min(end, hi)
            if b > a:
                total += (b - a) * nc_per_wh(band.eur_per_kwh)
            if hi is None or end <= hi:
                break
            lo = hi
        out[k] = total
        cum = end
    return out


def energy_tax_nc_columns(
    consumed_wh: np.ndarray, prior_wh: np.ndarray, bands: tuple[TaxBand, ...]
) -> np.ndarray:
    """:func:`energy_tax_nc` for many connections at once [nano-cents], ``int64``.

    Column ``c`` of ``consumed_wh`` ``(D, C)`` is one connection's consumption per day (in
    order) and ``prior_wh[c]`` its consumption earlier in the year [Wh]; column ``c`` of the
    result equals ``energy_tax_nc(consumed_wh[:, c], prior_wh[c], bands)``. Per band
    ``[lo, hi)`` a day taxes the overlap of ``[start, end)`` (the year's cumulative
    consumption before and after it) with the band, at the band's rate: exact integers.

    Raises
    ------
    ValidationError
        If the amounts could overflow 64-bit integers (:func:`energy_tax_nc` has no bound).
    """
    used = np.asarray(consumed_wh, dtype=np.int64)
    end = np.asarray(prior_wh, dtype=np.int64)[None, :] + np.cumsum(used, axis=0)
    start = end - used
    rates = [nc_per_wh(b.eur_per_kwh) for b in bands]
    if int(np.abs(end).max(initial=0)) * max(rates, default=0) > 2**62:
        raise ValidationError("consumption too large for vectorised energy tax")
    out = np.zeros(used.shape, dtype=np.int64)
    lo = 0
    for band, rate in zip(bands, rates):
        a = np.maximum(start, lo)
        if band.up_to_kwh is None:
            b = end
        else:
            b = np.minimum(end, band.up_to_kwh * 1000)
        out += np.maximum(b - a, 0) * rate
        if band.up_to_kwh is None:
            break
        lo = band.up_to_kwh * 1000
    return out


def vat_cents(net_cents: np.ndarray, vat_pct: Decimal) -> np.ndarray:
    """VAT on net amounts [cents], any shape, rounded half to even per amount (exact integers).

    Raises
    ------
    ValidationError
        If ``vat_pct`` has more than 4 decimals.
    """
    scaled = vat_pct * 10000
    if scaled != scaled.to_integral_value():
        raise ValidationError(f"vat_pct {vat_pct} has more than 4 decimals")
    net = np.asarray(net_cents)
    den = 100 * 10000
    out = np.empty(net.shape, dtype=np.int64)
    flat = out.reshape(-1)
    for k, c in enumerate(net.reshape(-1)):
        q, r = divmod(int(c) * int(scaled), den)
        if 2 * r > den or (2 * r == den and q % 2 == 1):
            q += 1
        flat[k] = q
    return out


def fee_cents(version: TariffVersion) -> int:
    """The fixed monthly fee [cents]."""
    return round_cents_decimal(version.fixed_fee_eur_per_month * 100)


def v2g_nc_per_wh(version: TariffVersion) -> int:
    """V2G compensation per Wh discharged [nano-cents/Wh]."""
    return nc_per_wh(version.v2g_compensation_eur_per_kwh)


def read_day_ahead_csv(path: Path | str, isps: pd.DatetimeIndex) -> np.ndarray:
    """Day-ahead prices per ISP [EUR/kWh] from ``timestamp,price_eur_per_kwh`` (every ISP of
    ``isps`` once; an hourly price is given on each of its four ISPs).

    Raises
    ------
    ValidationError
        Naming the line of a bad row, or the first ISP without a price.
    """
    frame = pd.read_csv(path, dtype=str)
    if list(frame.columns) != ["timestamp", "price_eur_per_kwh"]:
        raise ValidationError("header must be 'timestamp,price_eur_per_kwh'", str(path), "line 1")
    want = {int(v): k for k, v in enumerate(isps.as_unit("ns").asi8)}
    out = np.full(len(isps), np.nan)
    for line, (ts, price) in enumerate(
        zip(frame["timestamp"], frame["price_eur_per_kwh"]), start=2
    ):
        try:
            t = pd.Timestamp(ts)
            if t.tzinfo is None:
                raise ValueError(f"timestamp {ts!r} has no UTC offset")
            value = float(Decimal(str(price).strip()))
        except (ValueError, InvalidOperation) as exc:
            raise ValidationError(str(exc), str(path), f"line {line}") from None
        k = want.get(int(t.tz_convert("UTC").as_unit("ns").value))
        if k is not None:
            out[k] = value
    if np.isnan(out).any():
        missing = isps[int(np.flatnonzero(np.isnan(out))[0])]
        raise ValidationError(f"no day-ahead price for {missing.isoformat()}", str(path))
    return out
