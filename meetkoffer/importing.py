"""CSV import of Meetkoffer exports, production and outdoor temperature.

Formats (a header row, comma-separated, UTF-8; timestamps ISO 8601 *with* an offset,
e.g. ``2026-03-02T08:00:00+01:00`` or ``...Z``; the offset is honoured and stored as UTC):

- samples: ``timestamp,channel,value,unit`` with unit ``W``, ``kW`` or ``MW`` (power) or
  ``Wh``, ``kWh`` or ``MWh`` (a counter, cumulative); ``channel`` is an equipment name of the
  campaign or its channel key;
- production: ``start,end,value,unit``: units produced in ``[start, end)`` (an hour, a shift
  or a day); ``unit`` is free text (``t``, ``pcs``) but must be the same on every row;
- temperature: ``timestamp,value,unit`` with unit ``degC``, ``°C`` or ``C``.

Every row is checked before anything is stored: a file with any bad row is rejected with the
line numbers and reasons of (up to 20 of) its bad rows, and changes nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from energy.errors import ValidationError

POWER_UNITS = {"W": 1.0, "kW": 1e3, "MW": 1e6}
ENERGY_UNITS = {"Wh": 1.0, "kWh": 1e3, "MWh": 1e6}
TEMP_UNITS = {"degC", "°C", "C"}
_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$",
    re.IGNORECASE,
)
MAX_REPORTED = 20


@dataclass
class ChannelData:
    """Parsed samples of one channel: UTC ns timestamps, values in W or Wh, and the kind."""

    name: str
    kind: str  # "power" [W] or "energy" [Wh counter]
    ts_ns: np.ndarray
    value: np.ndarray
    lines: np.ndarray = field(repr=False)  # source line numbers


def _read_rows(
    source: Path | str, text: str | None, columns: tuple[str, ...]
) -> tuple[str, list[list[str]]]:
    name = str(source)
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"cannot read file: {exc}", name) from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValidationError("empty file", name, "line 1") from None
    if tuple(header) != columns:
        raise ValidationError(
            f"header must be {','.join(columns)}, got {','.join(header)}", name, "line 1"
        )
    return name, list(reader)


def _raise(name: str, errors: list[tuple[int, str]]) -> None:
    if not errors:
        return
    shown = "; ".join(f"line {ln}: {msg}" for ln, msg in errors[:MAX_REPORTED])
    more = (
        f" (and {len(errors) - MAX_REPORTED} more bad rows)" if len(errors) > MAX_REPORTED else ""
    )
    raise ValidationError(
        f"{len(errors)} bad row(s), nothing imported: {shown}{more}", name, f"line {errors[0][0]}"
    )


def _parse_times(
    col: list[str], lines: np.ndarray, what: str, errors: list[tuple[int, str]]
) -> np.ndarray:
    s = pd.Series(col, dtype=object).str.strip()
    has_offset = s.str.contains(_OFFSET, regex=True).to_numpy(bool)
    parsed = pd.to_datetime(s.where(has_offset), utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    for i in np.flatnonzero(bad):
        reason = (
            f"{what} {col[i]!r} has no timezone offset (add +01:00 or Z)"
            if not has_offset[i] and col[i].strip()
            else f"{what} {col[i]!r} is not an ISO 8601 time"
        )
        errors.append((int(lines[i]), reason))
    out = np.zeros(len(col), np.int64)
    ok = ~bad
    out[ok] = pd.DatetimeIndex(parsed[ok]).as_unit("ns").asi8
    return out


def _parse_values(col: list[str], lines: np.ndarray, errors: list[tuple[int, str]]) -> np.ndarray:
    v = pd.to_numeric(pd.Series(col, dtype=object).str.strip(), errors="coerce").to_numpy(float)
    for i in np.flatnonzero(~np.isfinite(v)):
        errors.append((int(lines[i]), f"value {col[i]!r} is not a finite number"))
    return v


def _split(
    rows: list[list[str]], ncol: int, errors: list[tuple[int, str]]
) -> tuple[list[list[str]], np.ndarray]:
    good, lines = [], []
    for i, row in enumerate(rows):
        ln = i + 2
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != ncol:
            errors.append((ln, f"expected {ncol} fields, got {len(row)}"))
            continue
        good.append(row)
        lines.append(ln)
    return good, np.asarray(lines, np.int64)


def parse_samples(
    source: Path | str, channels: Iterable[str], text: str | None = None
) -> dict[str, ChannelData]:
    """Parse and validate a sample export; returns the samples per channel name.

    Parameters
    ----------
    source
        The file (or, with ``text``, its name for messages).
    channels
        Accepted channel names (equipment names and channel keys).

    Raises
    ------
    ValidationError
        Listing the bad rows by line number; nothing is returned then.
    """
    name, rows = _read_rows(source, text, ("timestamp", "channel", "value", "unit"))
    known = set(channels)
    errors: list[tuple[int, str]] = []
    good, lines = _split(rows, 4, errors)
    cols = list(zip(*good)) if good else [(), (), (), ()]
    ts = _parse_times(list(cols[0]), lines, "timestamp", errors)
    vals = _parse_values(list(cols[2]), lines, errors)
    chans = [c.strip() for c in cols[1]]
    units = [u.strip() for u in cols[3]]
    kind = np.empty(len(good), dtype=object)
    factor = np.ones(len(good))
    for i, (ch, unit) in enumerate(zip(chans, units)):
        if ch not in known:
            errors.append(
                (int(lines[i]), f"unknown channel {ch!r} (not an equipment of the campaign)")
            )
        if unit in POWER_UNITS:
            kind[i], factor[i] = "power", POWER_UNITS[unit]
        elif unit in ENERGY_UNITS:
            kind[i], factor[i] = "energy", ENERGY_UNITS[unit]
        else:
            errors.append((int(lines[i]), f"unit {unit!r} is not one of W, kW, MW, Wh, kWh, MWh"))
    out: dict[str, ChannelData] = {}
    if not errors:
        df = pd.DataFrame({"ch": chans, "kind": kind, "ts": ts, "v": vals * factor, "line": lines})
        for ch, g in df.groupby("ch", sort=True):
            kinds = g["kind"].unique()
            if len(kinds) > 1:
                first = int(g["line"][g["kind"] != g["kind"].iloc[0]].iloc[0])
                errors.append((first, f"channel {ch!r} mixes power and energy units"))
                continue
            g = g.sort_values(["ts", "line"], kind="stable")
            dup = g["ts"].duplicated(keep=False) & ~g.duplicated(["ts", "v"], keep=False)
            if dup.any():
                errors.append(
                    (
                        int(g["line"][dup].iloc[-1]),
                        f"channel {ch!r} has two different values at one timestamp",
                    )
                )
                continue
            g = g.drop_duplicates("ts", keep="last")
            v = g["v"].to_numpy(float)
            if kinds[0] == "energy" and (np.diff(v) < 0).any():
                j = int(np.flatnonzero(np.diff(v) < 0)[0]) + 1
                errors.append(
                    (
                        int(g["line"].iloc[j]),
                        f"counter of channel {ch!r} decreases ({v[j - 1]} -> {v[j]} Wh)",
                    )
                )
                continue
            out[str(ch)] = ChannelData(
                str(ch), str(kinds[0]), g["ts"].to_numpy(np.int64), v, g["line"].to_numpy()
            )
    errors.sort()
    _raise(name, errors)
    return out


def parse_production(source: Path | str, text: str | None = None) -> pd.DataFrame:
    """Parse production records; returns ``period_start, period_end`` (UTC), ``units``, ``unit``."""
    name, rows = _read_rows(source, text, ("start", "end", "value", "unit"))
    errors: list[tuple[int, str]] = []
    good, lines = _split(rows, 4, errors)
    cols = list(zip(*good)) if good else [(), (), (), ()]
    start = _parse_times(list(cols[0]), lines, "start", errors)
    end = _parse_times(list(cols[1]), lines, "end", errors)
    vals = _parse_values(list(cols[2]), lines, errors)
    units = [u.strip() for u in cols[3]]
    for i in range(len(good)):
        if end[i] <= start[i] and end[i] and start[i]:
            errors.append((int(lines[i]), "end must be after start"))
        if np.isfinite(vals[i]) and vals[i] < 0:
            errors.append((int(lines[i]), f"production must be >= 0, got {vals[i]}"))
        if units and units[i] != units[0]:
            errors.append(
                (int(lines[i]), f"unit {units[i]!r} differs from {units[0]!r} on the first row")
            )
    if not errors and len(good):
        order = np.argsort(start, kind="stable")
        s, e = start[order], end[order]
        overlap = np.flatnonzero(s[1:] < e[:-1])
        for j in overlap:
            errors.append((int(lines[order[j + 1]]), "period overlaps the previous one"))
    errors.sort()
    _raise(name, errors)
    return pd.DataFrame(
        {
            "period_start": pd.to_datetime(start, unit="ns", utc=True),
            "period_end": pd.to_datetime(end, unit="ns", utc=True),
            "units": vals,
            "unit": units,
        }
    )


def parse_temperature(source: Path | str, text: str | None = None) -> pd.Series:
    """Parse outdoor temperatures; returns a Series [degC] indexed by UTC time."""
    name, rows = _read_rows(source, text, ("timestamp", "value", "unit"))
    errors: list[tuple[int, str]] = []
    good, lines = _split(rows, 3, errors)
    cols = list(zip(*good)) if good else [(), (), ()]
    ts = _parse_times(list(cols[0]), lines, "timestamp", errors)
    vals = _parse_values(list(cols[1]), lines, errors)
    for i, u in enumerate(cols[2]):
        if u.strip() not in TEMP_UNITS:
            errors.append((int(lines[i]), f"unit {u.strip()!r} is not degC"))
        elif np.isfinite(vals[i]) and not -60 <= vals[i] <= 60:
            errors.append((int(lines[i]), f"temperature {vals[i]} degC is implausible (-60..60)"))
    errors.sort()
    _raise(name, errors)
    s = pd.Series(vals, index=pd.to_datetime(ts, unit="ns", utc=True), name="temp_c")
    return s[~s.index.duplicated(keep="last")].sort_index()
