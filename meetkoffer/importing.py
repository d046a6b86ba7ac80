"""CSV import of Meetkoffer exports, interval energy, bills, production and outdoor temperature.

Formats (a header row, UTF-8; timestamps ISO 8601 *with* an offset, e.g.
``2026-03-02T08:00:00+01:00`` or ``...Z``; the offset is honoured and stored as UTC). The
separator is a comma, or a semicolon with decimal commas (``12,5``: the layout Dutch
spreadsheets write); the header row decides which.

- samples, long layout: ``timestamp,channel,value,unit`` with unit ``W``, ``kW`` or ``MW``
  (power) or ``Wh``, ``kWh`` or ``MWh`` (energy: a cumulative counter, or interval energy per
  period starting at ``timestamp``, as the channel is declared); ``channel`` is an equipment
  name of the campaign or its channel key. One channel keeps one unit within a file.
- samples, wide layout (the kit's logger export): ``timestamp,<channel> [<unit>],...``, one
  column per channel, an empty cell where a channel has no sample.
- billing: ``start,end,value,unit``: energy [Wh, kWh, MWh] of a bill or meter-reading period.
- production: ``start,end,value,unit``: units produced in ``[start, end)`` (an hour, a shift
  or a day); ``unit`` is free text (``t``, ``pcs``) but must be the same on every row;
- temperature: ``timestamp,value,unit`` with unit ``degC``, ``°C`` or ``C``.

Every row is checked before anything is stored: a file with any bad row is rejected with the
line numbers and reasons of (up to 20 of) its bad rows, and changes nothing. Well-formed files
are read with pyarrow's CSV reader; a file it cannot read as it stands goes through the
row-by-row parser, which names each bad line.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from energy.errors import ValidationError
from energy.timegrid import ISP_NS, LOCAL_TZ

POWER_UNITS = {"W": 1.0, "kW": 1e3, "MW": 1e6}
ENERGY_UNITS = {"Wh": 1.0, "kWh": 1e3, "MWh": 1e6}
TEMP_UNITS = {"degC", "°C", "C"}
INTERVALS = ("15min", "hour", "day", "month")
"""Periods of interval energy (local periods: a day is 23, 24 or 25 hours long)."""
_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$",
    re.IGNORECASE,
)
_WIDE = re.compile(r"^(?P<name>.+?)\s*\[(?P<unit>[^\]]+)\]$")
MAX_REPORTED = 20
SAMPLE_COLUMNS = ("timestamp", "channel", "value", "unit")


@dataclass
class ChannelData:
    """Parsed samples of one channel: UTC ns timestamps, values in W or Wh, and the kind."""

    name: str
    kind: str  # "power" [W] or "energy" [Wh: counter or interval energy]
    ts_ns: np.ndarray
    value: np.ndarray
    lines: np.ndarray = field(repr=False)  # source line numbers
    unit: str = ""  # the unit as written in the file


class _Csv:
    """A CSV file as bytes: its name for messages, header, separator and decimal mark; the
    text is decoded only for the row-by-row parser."""

    def __init__(self, name: str, data: bytes):
        self.name = name
        self.data = data.removeprefix(b"\xef\xbb\xbf")
        end = self.data.find(b"\n")
        first = self.data[: end if end >= 0 else len(self.data)].decode("utf-8", errors="replace")
        self.delimiter = ";" if ";" in first else ","
        try:
            row = next(csv.reader(io.StringIO(first), delimiter=self.delimiter))
        except StopIteration:
            raise ValidationError("empty file", name, "line 1") from None
        self.header = [h.strip() for h in row]

    def release(self) -> None:
        """Drop the bytes once parsed: the samples of a month at 1 Hz are large enough."""
        self.data = b""

    @property
    def decimal(self) -> str:
        return "," if self.delimiter == ";" else "."

    @functools.cached_property
    def text(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"cannot read file: {exc}", self.name) from None


def _open(source: Path | str, text: str | None) -> _Csv:
    name = str(source)
    if text is not None:
        return _Csv(name, text.encode("utf-8"))
    try:
        return _Csv(name, Path(source).read_bytes())
    except OSError as exc:
        raise ValidationError(f"cannot read file: {exc}", name) from None


def _rows(f: _Csv, columns: tuple[str, ...]) -> list[list[str]]:
    """The data rows of ``f`` after checking its header is ``columns``."""
    header = [h.lower() for h in f.header]
    if tuple(header) != columns:
        raise ValidationError(
            f"header must be {','.join(columns)}, got {','.join(header)}", f.name, "line 1"
        )
    reader = csv.reader(io.StringIO(f.text), delimiter=f.delimiter)
    next(reader)
    return list(reader)


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


def _parse_values(
    col: list[str], lines: np.ndarray, errors: list[tuple[int, str]], decimal: str = "."
) -> np.ndarray:
    s = pd.Series(col, dtype=object).str.strip()
    if decimal == ",":
        s = s.str.replace(",", ".", regex=False)
    v = pd.to_numeric(s, errors="coerce").to_numpy(float)
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


def _arrow(f: _Csv, types: dict[str, pa.DataType], wide: bool = False) -> pa.Table | None:
    """The file as typed columns by pyarrow, or None if it is not clean enough for that.

    Line numbers are row index + 2 only without blank lines, so a file with one goes through
    the row-by-row parser (as does any file pyarrow refuses: a bad time, number or field count).
    pyarrow finds blank lines itself: kept (``ignore_empty_lines=False``), a blank line is a
    row of one field, which every layout (two columns or more) refuses.
    """
    try:
        t = pcsv.read_csv(
            pa.BufferReader(f.data),
            read_options=pcsv.ReadOptions(column_names=list(types), skip_rows=1),
            parse_options=pcsv.ParseOptions(delimiter=f.delimiter, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                decimal_point=f.decimal,
                strings_can_be_null=False,
                # Only an empty cell is no value: 'nan', 'NULL', 'N/A' are bad values, named
                # by line by the row-by-row parser, never dropped as missing samples.
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    nullable = [c for c, ty in types.items() if pa.types.is_floating(ty)] if wide else []
    if any(t.column(c).null_count for c in types if c not in nullable):
        return None
    return t


def _unit_kind(unit: str) -> tuple[str, float] | None:
    if unit in POWER_UNITS:
        return "power", POWER_UNITS[unit]
    if unit in ENERGY_UNITS:
        return "energy", ENERGY_UNITS[unit]
    return None


def parse_samples(
    source: Path | str, channels: Iterable[str], text: str | None = None
) -> dict[str, ChannelData]:
    """Parse and validate a sample export (long or wide layout); the samples per channel name.

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
    f = _open(source, text)
    known = set(channels)
    header = tuple(h.lower() for h in f.header)
    wide = len(header) >= 2 and header[0] == "timestamp" and header != SAMPLE_COLUMNS
    if wide and all(_WIDE.match(h) for h in f.header[1:]):
        return _parse_wide(f, known)
    fast = _arrow(
        f,
        {
            "timestamp": pa.timestamp("ns", tz="UTC"),
            "channel": pa.dictionary(pa.int32(), pa.string()),
            "value": pa.float64(),
            "unit": pa.dictionary(pa.int32(), pa.string()),
        },
    )
    if fast is not None and tuple(h.lower() for h in f.header) == SAMPLE_COLUMNS:
        out = _long_fast(f, fast, known)
        if out is not None:
            return out
    return _long_slow(f, known)


def _long_fast(f: _Csv, t: pa.Table, known: set[str]) -> dict[str, ChannelData] | None:
    """The long layout from pyarrow columns; None where a row needs the row-by-row messages."""
    chan = t.column("channel").combine_chunks()
    unit = t.column("unit").combine_chunks()
    value = t.column("value").to_numpy()
    if not np.isfinite(value).all():
        return None
    names = [str(s).strip() for s in chan.dictionary.to_pylist()]
    units = [str(s).strip() for s in unit.dictionary.to_pylist()]
    if any(n not in known for n in names) or any(_unit_kind(u) is None for u in units):
        return None
    ci = chan.indices.to_numpy()
    ui = unit.indices.to_numpy()
    ts = t.column("timestamp").combine_chunks().cast(pa.int64()).to_numpy()
    errors: list[tuple[int, str]] = []
    out: dict[str, ChannelData] = {}
    order = np.argsort(ci, kind="stable")
    bounds = np.flatnonzero(np.diff(ci[order])) + 1
    for sel in np.split(order, bounds):
        name = names[int(ci[sel[0]])]
        if name in out:  # the same name twice in the dictionary (spaces around it)
            return None
        u = ui[sel]
        if (u != u[0]).any():
            return None
        kind, factor = _unit_kind(units[int(u[0])]) or ("", 1.0)
        data = _channel(name, kind, units[int(u[0])], ts[sel], value[sel] * factor, sel + 2, errors)
        if data is not None:
            out[name] = data
    errors.sort()
    _raise(f.name, errors)
    return out


def _long_slow(f: _Csv, known: set[str]) -> dict[str, ChannelData]:
    """The long layout row by row, naming every bad line."""
    rows = _rows(f, SAMPLE_COLUMNS)
    errors: list[tuple[int, str]] = []
    good, lines = _split(rows, 4, errors)
    cols = list(zip(*good)) if good else [(), (), (), ()]
    ts = _parse_times(list(cols[0]), lines, "timestamp", errors)
    vals = _parse_values(list(cols[2]), lines, errors, f.decimal)
    chans = [c.strip() for c in cols[1]]
    units = [u.strip() for u in cols[3]]
    first_unit: dict[str, str] = {}
    for i, (ch, unit) in enumerate(zip(chans, units)):
        if ch not in known:
            errors.append(
                (int(lines[i]), f"unknown channel {ch!r} (not an equipment of the campaign)")
            )
        if _unit_kind(unit) is None:
            errors.append((int(lines[i]), f"unit {unit!r} is not one of W, kW, MW, Wh, kWh, MWh"))
            continue
        was = first_unit.setdefault(ch, unit)
        if unit != was:
            k0, k1 = _unit_kind(was), _unit_kind(unit)
            mixed = k0 is not None and k1 is not None and k0[0] != k1[0]
            what = "mixes power and energy units" if mixed else "changes unit"
            errors.append(
                (
                    int(lines[i]),
                    f"channel {ch!r} {what}: {unit!r} here, {was!r} above "
                    "(one unit per channel in a file)",
                )
            )
    out: dict[str, ChannelData] = {}
    if not errors:
        chan_arr = np.asarray(chans, dtype=object)
        for ch in sorted(set(chans)):
            sel = np.flatnonzero(chan_arr == ch)
            kind, factor = _unit_kind(first_unit[ch]) or ("", 1.0)
            data = _channel(
                ch, kind, first_unit[ch], ts[sel], vals[sel] * factor, lines[sel], errors
            )
            if data is not None:
                out[ch] = data
    errors.sort()
    _raise(f.name, errors)
    return out


def _channel(
    name: str,
    kind: str,
    unit: str,
    ts: np.ndarray,
    v: np.ndarray,
    lines: np.ndarray,
    errors: list[tuple[int, str]],
    increasing: bool = False,
) -> ChannelData | None:
    """One channel's samples sorted by time; two different values at one time refused.

    ``increasing``: the caller knows ``ts`` strictly increases (a subset of the wide layout's
    time column that does), so there is nothing to sort or to check.
    """
    if increasing:
        return ChannelData(name, kind, ts, v, lines, unit)
    if ts.size > 1 and not (np.diff(ts) > 0).all():  # an export in time order needs no sort
        order = np.lexsort((lines, ts))
        ts, v, lines = ts[order], v[order], lines[order]
    same = np.flatnonzero(ts[1:] == ts[:-1])
    if same.size:
        differ = same[v[same + 1] != v[same]]
        if differ.size:
            errors.append(
                (
                    int(lines[differ[0] + 1]),
                    f"channel {name!r} has two different values at one timestamp",
                )
            )
            return None
        keep = np.ones(ts.size, bool)
        keep[same] = False  # identical repeats: keep the last
        ts, v, lines = ts[keep], v[keep], lines[keep]
    return ChannelData(name, kind, ts, v, lines, unit)


def _parse_wide(f: _Csv, known: set[str]) -> dict[str, ChannelData]:
    """The wide layout ``timestamp,<channel> [<unit>],...``; an empty cell is no sample."""
    heads = [_WIDE.match(h) for h in f.header[1:]]
    names = [m.group("name").strip() for m in heads if m]
    units = [m.group("unit").strip() for m in heads if m]
    errors: list[tuple[int, str]] = []
    for name, unit in zip(names, units):
        if name not in known:
            errors.append((1, f"unknown channel {name!r} (not an equipment of the campaign)"))
        if _unit_kind(unit) is None:
            errors.append((1, f"unit {unit!r} of {name!r} is not one of W, kW, MW, Wh, kWh, MWh"))
    if len(set(names)) != len(names):
        errors.append((1, "a channel appears in two columns"))
    _raise(f.name, errors)
    cols = [f"c{i}" for i in range(len(names))]
    fast = _arrow(
        f,
        {"timestamp": pa.timestamp("ns", tz="UTC"), **dict.fromkeys(cols, pa.float64())},
        wide=True,
    )
    values: list[np.ndarray] = []
    nulls: list[np.ndarray | None] = []
    increasing = False
    if fast is not None:
        ts = fast.column("timestamp").combine_chunks().cast(pa.int64()).to_numpy()
        lines = np.arange(fast.num_rows, dtype=np.int32) + 2
        # A logger's export is in time order: then every channel's samples are, checked once.
        increasing = bool(ts.size < 2 or (ts[1:] > ts[:-1]).all())
        for c in cols:  # column by column, each freed once converted (a month at 1 Hz is GBs)
            col = fast.column(c)
            v = col.to_numpy(zero_copy_only=False)  # an empty cell (null) becomes NaN
            fast = fast.drop_columns([c])
            # Every non-finite value an empty cell (no 'nan' or 'inf' written in the file):
            # else the row-by-row parser names the line. One pass over the column.
            nan = ~np.isfinite(v)
            n_bad = int(np.count_nonzero(nan))
            if n_bad != col.null_count:
                fast = None
                break
            values.append(v)
            nulls.append(nan if n_bad else None)
    if fast is None:
        ts, lines, slow_values, slow_nulls = _wide_slow(f, len(names))
        values, nulls, increasing = slow_values, list(slow_nulls), False
    else:
        f.release()
    del fast
    out: dict[str, ChannelData] = {}
    for name, unit in zip(names, units):
        v, null = values.pop(0), nulls.pop(0)
        kind, factor = _unit_kind(unit) or ("", 1.0)
        t, lns = ts, lines
        if null is not None and null.any():
            keep = ~null
            t, v, lns = ts[keep], v[keep], lines[keep]
        v = v * factor if factor != 1.0 else v
        data = _channel(name, kind, unit, t, v, lns, errors, increasing)
        if data is not None:
            out[name] = data
    _raise(f.name, sorted(errors))
    return out


def _wide_slow(
    f: _Csv, n: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    reader = csv.reader(io.StringIO(f.text), delimiter=f.delimiter)
    next(reader)
    errors: list[tuple[int, str]] = []
    good, lines = _split(list(reader), n + 1, errors)
    cols = list(zip(*good)) if good else [()] * (n + 1)
    ts = _parse_times(list(cols[0]), lines, "timestamp", errors)
    values, nulls = [], []
    for col in cols[1:]:
        null = np.asarray([not c.strip() for c in col], bool)
        v = np.full(len(col), np.nan)
        present = [c for c, e in zip(col, null) if not e]
        v[~null] = _parse_values(present, lines[~null], errors, f.decimal)
        values.append(v)
        nulls.append(null)
    _raise(f.name, sorted(errors))
    return ts, lines, values, nulls


def counter_errors(data: ChannelData) -> list[tuple[int, str]]:
    """A cumulative counter never decreases: the first line where it does, if any."""
    drop = np.flatnonzero(np.diff(data.value) < 0)
    if not drop.size:
        return []
    j = int(drop[0]) + 1
    v = data.value
    return [
        (
            int(data.lines[j]),
            f"counter of channel {data.name!r} decreases ({v[j - 1]} -> {v[j]} Wh); "
            "declare it as interval energy if each value is the energy of one period",
        )
    ]


def period_bounds(ts_ns: np.ndarray, interval: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The local periods ``[start, end)`` [ns, UTC] of interval energy that start at ``ts_ns``.

    A ``day`` runs from local midnight to the next (23, 24 or 25 hours), a ``month`` from the
    first local midnight of the month to the next month's; ``15min`` and ``hour`` are fixed.
    Returns ``(start_ns, end_ns, aligned)``, ``aligned`` False where ``ts_ns`` is not the
    start of such a period (then the row is refused).
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    ts_ns = np.asarray(ts_ns, np.int64)
    if interval in ("15min", "hour"):
        step = ISP_NS if interval == "15min" else 4 * ISP_NS
        return ts_ns, ts_ns + step, ts_ns % step == 0
    local = pd.DatetimeIndex(ts_ns).tz_localize("UTC").tz_convert(LOCAL_TZ)
    if interval == "day":
        start = local.normalize()
        end = (start.tz_localize(None) + pd.Timedelta(days=1)).tz_localize(LOCAL_TZ)
    else:
        start = (local.tz_localize(None).to_period("M").to_timestamp()).tz_localize(LOCAL_TZ)
        end = (start.tz_localize(None) + pd.offsets.MonthBegin(1)).tz_localize(LOCAL_TZ)
    start_ns = start.tz_convert("UTC").as_unit("ns").asi8
    end_ns = end.tz_convert("UTC").as_unit("ns").asi8
    return start_ns, end_ns, start_ns == ts_ns


def spread_over_isps(
    start_ns: np.ndarray, end_ns: np.ndarray, energy_wh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Energy of periods spread uniformly over their ISPs: ``(isp_start_ns, energy_wh)``.

    Periods must start and end on ISP edges (every local period does); a DST day has 92 or
    100 ISPs, so each gets 1/92 or 1/100 of the day's energy.
    """
    n = ((end_ns - start_ns) // ISP_NS).astype(np.int64)
    isp = np.repeat(start_ns, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) * ISP_NS
    return isp, np.repeat(energy_wh / n, n)


def parse_periods(
    source: Path | str, text: str | None = None, *, units: dict[str, float] | None = None
) -> pd.DataFrame:
    """Parse ``start,end,value,unit`` rows; ``period_start, period_end`` (UTC), ``value``,
    ``unit`` and ``line``. With ``units`` the unit must be one of them and the value is scaled
    by its factor (a bill in kWh -> Wh); without, the unit is free but the same on every row.
    """
    f = _open(source, text)
    rows = _rows(f, ("start", "end", "value", "unit"))
    errors: list[tuple[int, str]] = []
    good, lines = _split(rows, 4, errors)
    cols = list(zip(*good)) if good else [(), (), (), ()]
    start = _parse_times(list(cols[0]), lines, "start", errors)
    end = _parse_times(list(cols[1]), lines, "end", errors)
    vals = _parse_values(list(cols[2]), lines, errors, f.decimal)
    unit = [u.strip() for u in cols[3]]
    for i in range(len(good)):
        if end[i] <= start[i] and end[i] and start[i]:
            errors.append((int(lines[i]), "end must be after start"))
        if np.isfinite(vals[i]) and vals[i] < 0:
            errors.append((int(lines[i]), f"value must be >= 0, got {vals[i]}"))
        if units is not None and unit[i] not in units:
            errors.append((int(lines[i]), f"unit {unit[i]!r} is not one of {', '.join(units)}"))
        elif unit[i] != unit[0]:
            errors.append(
                (int(lines[i]), f"unit {unit[i]!r} differs from {unit[0]!r} on the first row")
            )
    if not errors and len(good):
        order = np.argsort(start, kind="stable")
        s, e = start[order], end[order]
        for j in np.flatnonzero(s[1:] < e[:-1]):
            errors.append((int(lines[order[j + 1]]), "period overlaps the previous one"))
    errors.sort()
    _raise(f.name, errors)
    factor = np.asarray([units[u] for u in unit]) if units is not None and unit else 1.0
    return pd.DataFrame(
        {
            "period_start": pd.to_datetime(start, unit="ns", utc=True),
            "period_end": pd.to_datetime(end, unit="ns", utc=True),
            "value": vals * factor,
            "unit": unit,
            "line": lines,
        }
    )


def parse_production(source: Path | str, text: str | None = None) -> pd.DataFrame:
    """Parse production records; returns ``period_start, period_end`` (UTC), ``units``, ``unit``."""
    df = parse_periods(source, text)
    return df.rename(columns={"value": "units"}).drop(columns="line")


def parse_billing(source: Path | str, text: str | None = None) -> pd.DataFrame:
    """Parse bills or meter-reading periods; ``period_start, period_end`` (UTC), ``energy_wh``."""
    df = parse_periods(source, text, units=ENERGY_UNITS)
    return df.rename(columns={"value": "energy_wh"})


def parse_temperature(source: Path | str, text: str | None = None) -> pd.Series:
    """Parse outdoor temperatures; returns a Series [degC] indexed by UTC time."""
    f = _open(source, text)
    fast = _arrow(
        f,
        {
            "timestamp": pa.timestamp("ns", tz="UTC"),
            "value": pa.float64(),
            "unit": pa.dictionary(pa.int32(), pa.string()),
        },
    )
    if fast is not None and tuple(h.lower() for h in f.header) == ("timestamp", "value", "unit"):
        vals = fast.column("value").to_numpy()
        unit = fast.column("unit").combine_chunks()
        units_ok = all(str(u).strip() in TEMP_UNITS for u in unit.dictionary.to_pylist())
        if units_ok and fast.num_rows and (np.abs(vals) <= 60).all():
            ts = fast.column("timestamp").combine_chunks().cast(pa.int64()).to_numpy()
            return _temperature_series(ts, vals)
    rows = _rows(f, ("timestamp", "value", "unit"))
    errors: list[tuple[int, str]] = []
    good, lines = _split(rows, 3, errors)
    cols = list(zip(*good)) if good else [(), (), ()]
    ts = _parse_times(list(cols[0]), lines, "timestamp", errors)
    vals = _parse_values(list(cols[1]), lines, errors, f.decimal)
    for i, u in enumerate(cols[2]):
        if u.strip() not in TEMP_UNITS:
            errors.append((int(lines[i]), f"unit {u.strip()!r} is not degC"))
        elif np.isfinite(vals[i]) and not -60 <= vals[i] <= 60:
            errors.append((int(lines[i]), f"temperature {vals[i]} degC is implausible (-60..60)"))
    errors.sort()
    _raise(f.name, errors)
    return _temperature_series(ts, vals)


def _temperature_series(ts: np.ndarray, vals: np.ndarray) -> pd.Series:
    s = pd.Series(vals, index=pd.to_datetime(ts, unit="ns", utc=True), name="temp_c")
    return s[~s.index.duplicated(keep="last")].sort_index()


_SPACING_S = (("15min", 900, 900), ("hour", 3600, 3600), ("day", 82_800, 90_000))


def detect_energy_kind(data: ChannelData) -> tuple[str, str | None] | str:
    """Whether energy values are a cumulative counter or interval energy, where that is clear.

    Clear cases: a value that drops means interval energy (a counter never decreases), with
    the period from the median spacing (15 min, an hour, a day or a month); values that never
    drop and stay far above what flows between readings (the level above 20 times the median
    increase, three readings or more) are a counter. Returns ``("counter", None)``,
    ``("interval", period)`` or, when not clear, the reason as a string.
    """
    v = data.value
    if v.size < 3:
        return "fewer than 3 values"
    d = np.diff(v)
    if (d >= 0).all():
        inc = float(np.median(d))
        if float(np.median(v)) > 20 * max(inc, 1e-9):
            return "counter", None
        return "the values never drop but stay close to their increases"
    spacing_s = float(np.median(np.diff(data.ts_ns))) / 1e9
    for name, lo, hi in _SPACING_S:
        if lo <= spacing_s <= hi:
            return "interval", name
    if 28 * 86_400 <= spacing_s <= 31 * 86_400:
        return "interval", "month"
    return (
        f"the values drop, but their spacing of {spacing_s:.0f} s is no 15 min, hour, day or month"
    )
