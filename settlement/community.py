"""Community files (YAML) and meter data (CSV or the interval-reading store).

A community file::

    name: dorpshuis-zuid                 # identifier, [a-z0-9-]
    display_name: Dorpshuis Zuid
    tariff: tariffs_2026.yaml            # optional; default: the shipped 2026 tariff
    key:
      type: optimal        # fixed | relative | proportional | optimal | priority | matrix
      shares: {dorpshuis: 0.5, ev-a: 0.25, ev-b: 0.25}   # fixed, relative, optimal
      shares_csv: shares.csv             # optional: timestamp, member, share per ISP
      order: [dorpshuis, ev-a]           # priority
      matrix:                            # matrix: giver -> {receiver: share of its injection}
        dorpshuis: {ev-a: 0.6, ev-b: 0.4}                # each giver's shares sum to <= 1
    members:
      - ref: m-7f3a9c                    # pseudonymous id in the ledger (default derived)
        name: dorpshuis                  # optional: the member's name in this file (default: ref)
        kind: organisation               # optional: person | organisation
        meters: ["871687400000000011"]   # EANs or channel keys of the store
        assets: [{kind: building}, {kind: pv}]
        joined: 2026-10-15               # optional: member from this local date (inclusive)
        left: 2027-01-01                 # optional: no longer a member from this date
        connection: "871687400000000011" # optional: EAN of the grid connection the meters are
                                         # behind (default: the site EAN of a store channel, or
                                         # the meter id if it is an EAN)
    payments:                            # optional: the community's bank account (SEPA runs)
      name: Energiegemeenschap Zuid
      iban: NL91ABNA0417164300
      bic: ABNANL2A                      # optional
      creditor_id: NL98ZZZ999999999999   # Incassant-ID, needed for direct debits

Connections (energy tax): all meters of a member sit behind one grid connection; flows between
members behind the same connection never cross the public grid and carry no energy tax (see
:func:`member_connections` and ``settlement.settle.taxed_energy``).

A member defined in a site file (:mod:`energy.siteconfig`, with its personal data) is referred
to by ``ref`` alone; ``kind`` or ``name`` given for a stored member must match it. A member
defined only here is created when the community is settled (its ``name`` as personal name).

Meter data (long form), one row per ISP, meter and direction::

    timestamp,meter,direction,energy_wh
    2026-10-01T00:00:00+02:00,871687400000000011,offtake,412

or the wide DSO form ``timestamp,<meter>:offtake,<meter>:injection,...``. A meter that has no
row for an ISP in the file counts as 0 Wh for that ISP (DSO exports omit empty registers).
Every bad row is reported with its line number, and a bad file changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from energy.errors import ValidationError
from energy.siteconfig import ean_check_digit_ok
from energy.timegrid import local_date_of
from energy.yamlio import load_yaml_file
from settlement.allocation import KEY_TYPES

STORAGE_KINDS = ("ev", "battery")
ASSET_KINDS = ("building", "pv", "battery", "ev", "heat_pump", "other")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_ERRORS = 20


@dataclass(frozen=True)
class MemberSpec:
    """One member of a community file, referred to by ``ref``.

    ``name`` and ``kind`` are optional (None: not given): a member defined in a site file
    (with its personal data) is referred to by ref only; a member defined only here is created
    with them (person by default) when the community is settled.
    """

    name: str | None
    ref: str
    kind: str | None
    meters: tuple[str, ...]
    assets: tuple[str, ...] = ()
    storage_efficiency: Decimal = Decimal("1")

    joined: dt.date | None = None
    left: dt.date | None = None
    connection: str | None = None
    """EAN of the grid connection the member's meters are behind (None: not given)."""

    @property
    def label(self) -> str:
        """The member's name in this file (the key refers to it), or its ref."""
        return self.name or self.ref

    @property
    def has_storage(self) -> bool:
        """True if the member's meters serve only batteries or EVs: then offtake is charge and
        injection is discharge, and provenance applies. A meter shared with a building cannot
        tell charge from consumption, so it gets no provenance (and no V2G compensation)."""
        return bool(self.assets) and all(a in STORAGE_KINDS for a in self.assets)

    def active_on(self, day: dt.date) -> bool:
        """Member on local date ``day`` (``joined`` inclusive, ``left`` exclusive)."""
        return (self.joined is None or day >= self.joined) and (
            self.left is None or day < self.left
        )


@dataclass(frozen=True)
class KeySpec:
    """The allocation key of a community."""

    type: str
    shares: dict[str, Decimal] = field(default_factory=dict)
    shares_csv: Path | None = None
    order: tuple[str, ...] = ()
    matrix: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    """``matrix`` key: giver name -> receiver name -> fraction of the giver's injection."""


@dataclass(frozen=True)
class BankAccount:
    """The community's bank account for SEPA payment runs."""

    name: str
    iban: str
    bic: str | None = None
    creditor_id: str | None = None


@dataclass(frozen=True)
class CommunitySpec:
    """A validated community file."""

    name: str
    display_name: str
    members: tuple[MemberSpec, ...]
    key: KeySpec
    tariff_path: Path | None
    source: str = "<community>"
    payments: BankAccount | None = None

    @property
    def refs(self) -> tuple[str, ...]:
        """Member refs in file order."""
        return tuple(m.ref for m in self.members)

    def member_by_name(self, name: str) -> MemberSpec:
        """The member called ``name`` in the file (its :attr:`MemberSpec.label`)."""
        for m in self.members:
            if m.label == name:
                return m
        raise KeyError(name)

    def meter_owner(self) -> dict[str, int]:
        """Meter id -> member index."""
        return {meter: i for i, m in enumerate(self.members) for meter in m.meters}


def derive_ref(community: str, name: str) -> str:
    """A stable pseudonymous ref for a member without an explicit ``ref`` (``m-`` + 10 hex)."""
    return "m-" + hashlib.sha256(f"{community}\x00{name}".encode()).hexdigest()[:10]


def _decimal(value: Any, where: str, source: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(f"not a number: {value!r}", source, where) from None
    if not d.is_finite():
        raise ValidationError(f"not a finite number: {value!r}", source, where)
    return d


def _share(value: Any, where: str, source: str) -> Decimal:
    """A key share: a number in [0, 1]."""
    d = _decimal(value, where, source)
    if d < 0 or d > 1:
        raise ValidationError(f"share must lie in [0, 1], got {d}", source, where)
    return d


def parse_community(
    data: Any, source: str = "<community>", base_dir: Path | None = None
) -> CommunitySpec:
    """Validate a community mapping (as loaded from YAML or posted to the API).

    Raises
    ------
    ValidationError
        Naming the field and the value that is wrong.
    """
    if not isinstance(data, dict):
        raise ValidationError("a community must be a mapping", source)
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(f"name must match {_NAME.pattern}, got {name!r}", source, "name")
    raw_members = data.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        raise ValidationError("members must be a non-empty list", source, "members")
    seen_meters: dict[str, str] = {}
    members = [
        _parse_member(raw, f"members[{k}]", name, source, seen_meters)
        for k, raw in enumerate(raw_members)
    ]
    names = [m.label for m in members]
    for what, values in (("name", names), ("ref", [m.ref for m in members])):
        dups = sorted({v for v in values if values.count(v) > 1})
        if dups:
            raise ValidationError(f"member {what} {dups[0]!r} appears twice", source, "members")
    key = _parse_key(data.get("key"), names, source, base_dir)
    tariff = data.get("tariff")
    tariff_path = None
    if tariff is not None:
        tariff_path = Path(str(tariff))
        if not tariff_path.is_absolute() and base_dir is not None:
            tariff_path = base_dir / tariff_path
    display = str(data.get("display_name") or name)
    payments = _parse_bank(data.get("payments"), source)
    return CommunitySpec(name, display, tuple(members), key, tariff_path, source, payments)


_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_BIC = re.compile(r"^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$")


def iban_ok(iban: str) -> bool:
    """ISO 13616 IBAN check: format and mod-97 of the rearranged number equals 1."""
    if not _IBAN.match(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def bic_ok(bic: str) -> bool:
    """ISO 9362 BIC shape: bank (4 letters), country (2), location (2), branch (3, optional)."""
    return bool(_BIC.match(bic))


def normalise_iban(value: Any, where: str, source: str) -> str:
    """An IBAN without spaces, upper case, checked (ISO 13616 mod 97)."""
    iban = re.sub(r"\s+", "", str(value or "")).upper()
    if not iban_ok(iban):
        raise ValidationError(f"not a valid IBAN: {value!r}", source, where)
    return iban


def _parse_bank(raw: Any, source: str) -> BankAccount | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValidationError("payments must be a mapping", source, "payments")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("payments.name must be a non-empty string", source, "payments.name")
    iban = normalise_iban(raw.get("iban"), "payments.iban", source)
    bic = raw.get("bic")
    if bic is not None and not bic_ok(str(bic).upper()):
        raise ValidationError(f"not a valid BIC: {bic!r}", source, "payments.bic")
    cid = raw.get("creditor_id")
    if cid is not None and not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{3}[A-Z0-9]{1,28}", str(cid)):
        raise ValidationError(
            f"not a SEPA creditor identifier: {cid!r}", source, "payments.creditor_id"
        )
    return BankAccount(
        name.strip(),
        iban,
        None if bic is None else str(bic).upper(),
        None if cid is None else str(cid),
    )


def _parse_member(
    raw: Any, loc: str, community: str, source: str, seen_meters: dict[str, str]
) -> MemberSpec:
    """One entry of ``members`` (``seen_meters``: meter id -> member label, so far)."""
    if not isinstance(raw, dict):
        raise ValidationError("a member must be a mapping", source, loc)
    mname = raw.get("name")
    if (mname is not None or "ref" not in raw) and (
        not isinstance(mname, str) or not mname.strip()
    ):
        raise ValidationError(
            f"name must be a non-empty string, got {mname!r}", source, loc + ".name"
        )
    ref = raw["ref"] if "ref" in raw else derive_ref(community, str(mname))
    if not isinstance(ref, str) or not _NAME.match(ref):
        raise ValidationError(f"ref must match {_NAME.pattern}, got {ref!r}", source, loc + ".ref")
    kind = raw.get("kind")
    if kind not in (None, "person", "organisation"):
        raise ValidationError(
            f"kind must be person or organisation, got {kind!r}", source, loc + ".kind"
        )
    meters = raw.get("meters")
    if not isinstance(meters, list) or not meters:
        raise ValidationError("meters must be a non-empty list", source, loc + ".meters")
    meter_ids = []
    for j, meter in enumerate(meters):
        mid = str(meter).strip()
        if not mid:
            raise ValidationError("empty meter id", source, f"{loc}.meters[{j}]")
        if mid in seen_meters:
            raise ValidationError(
                f"meter {mid!r} already belongs to member {seen_meters[mid]!r}",
                source,
                f"{loc}.meters[{j}]",
            )
        seen_meters[mid] = mname or ref
        meter_ids.append(mid)
    assets, eff = _parse_assets(raw.get("assets") or [], loc, source)
    dates = {}
    for f in ("joined", "left"):
        if raw.get(f) is not None:
            try:
                dates[f] = dt.date.fromisoformat(str(raw[f]))
            except ValueError:
                raise ValidationError(
                    f"{f} must be a date YYYY-MM-DD, got {raw[f]!r}", source, f"{loc}.{f}"
                ) from None
    if "joined" in dates and "left" in dates and dates["left"] <= dates["joined"]:
        raise ValidationError("left must be after joined", source, f"{loc}.left")
    connection = raw.get("connection")
    if connection is not None:
        connection = str(connection).strip()
        if not ean_check_digit_ok(connection):
            raise ValidationError(
                f"connection must be an 18-digit EAN with a valid check digit, got {connection!r}",
                source,
                f"{loc}.connection",
            )
    return MemberSpec(
        mname,
        ref,
        kind,
        tuple(meter_ids),
        assets,
        eff,
        dates.get("joined"),
        dates.get("left"),
        connection,
    )


def _parse_assets(raw: Any, loc: str, source: str) -> tuple[tuple[str, ...], Decimal]:
    """The asset kinds of a member and its storage round-trip efficiency [-] (default 1)."""
    assets = []
    eff = Decimal("1")
    for j, asset in enumerate(raw):
        akind = asset.get("kind") if isinstance(asset, dict) else asset
        if akind not in ASSET_KINDS:
            raise ValidationError(
                f"asset kind must be one of {', '.join(ASSET_KINDS)}, got {akind!r}",
                source,
                f"{loc}.assets[{j}].kind",
            )
        if isinstance(asset, dict) and "efficiency" in asset:
            eff = _decimal(asset["efficiency"], f"{loc}.assets[{j}].efficiency", source)
            if not Decimal("0") < eff <= Decimal("1"):
                raise ValidationError(
                    f"efficiency must lie in (0, 1], got {eff}",
                    source,
                    f"{loc}.assets[{j}].efficiency",
                )
        assets.append(akind)
    return tuple(assets), eff


def _parse_key(raw: Any, names: Sequence[str], source: str, base_dir: Path | None) -> KeySpec:
    if not isinstance(raw, dict):
        raise ValidationError("key must be a mapping with a type", source, "key")
    ktype = raw.get("type")
    if ktype not in KEY_TYPES:
        raise ValidationError(
            f"key.type must be one of {', '.join(KEY_TYPES)}, got {ktype!r}", source, "key.type"
        )
    shares: dict[str, Decimal] = {}
    order: tuple[str, ...] = ()
    shares_csv = None
    if ktype in ("fixed", "relative", "optimal"):
        raw_shares = raw.get("shares")
        if not isinstance(raw_shares, dict) or not raw_shares:
            raise ValidationError(
                f"key type {ktype!r} needs shares per member", source, "key.shares"
            )
        for member, value in raw_shares.items():
            if member not in names:
                raise ValidationError(f"unknown member {member!r}", source, f"key.shares.{member}")
            shares[str(member)] = _share(value, f"key.shares.{member}", source)
        total = sum(shares.values(), Decimal(0))
        if total != 1:
            raise ValidationError(f"shares must sum to 1, got {total}", source, "key.shares")
        if raw.get("shares_csv"):
            shares_csv = Path(str(raw["shares_csv"]))
            if not shares_csv.is_absolute() and base_dir is not None:
                shares_csv = base_dir / shares_csv
    elif ktype == "priority":
        raw_order = raw.get("order")
        if not isinstance(raw_order, list) or not raw_order:
            raise ValidationError("key type 'priority' needs an order", source, "key.order")
        for j, member in enumerate(raw_order):
            if member not in names:
                raise ValidationError(f"unknown member {member!r}", source, f"key.order[{j}]")
        if len(set(raw_order)) != len(raw_order):
            raise ValidationError("a member appears twice in the order", source, "key.order")
        order = tuple(str(m) for m in raw_order)
    elif ktype == "matrix":
        return KeySpec(str(ktype), matrix=_parse_matrix(raw.get("matrix"), names, source))
    return KeySpec(str(ktype), shares, shares_csv, order)


def _parse_matrix(raw: Any, names: Sequence[str], source: str) -> dict[str, dict[str, Decimal]]:
    """``key.matrix``: per giver, the fraction of its injection each named receiver gets."""
    if not isinstance(raw, dict) or not raw:
        raise ValidationError(
            "key type 'matrix' needs a matrix: giver -> {receiver: share}", source, "key.matrix"
        )
    matrix: dict[str, dict[str, Decimal]] = {}
    for giver, row in raw.items():
        loc = f"key.matrix.{giver}"
        if giver not in names:
            raise ValidationError(f"unknown member {giver!r}", source, loc)
        if not isinstance(row, dict) or not row:
            raise ValidationError("a giver needs a mapping receiver -> share", source, loc)
        parts: dict[str, Decimal] = {}
        for receiver, value in row.items():
            if receiver not in names:
                raise ValidationError(f"unknown member {receiver!r}", source, f"{loc}.{receiver}")
            if receiver == giver:
                raise ValidationError(
                    "a member cannot share with itself (nothing is shared within one meter)",
                    source,
                    f"{loc}.{receiver}",
                )
            parts[str(receiver)] = _share(value, f"{loc}.{receiver}", source)
        total = sum(parts.values(), Decimal(0))
        if total > 1:
            raise ValidationError(f"shares of a giver sum to {total}, more than 1", source, loc)
        matrix[str(giver)] = parts
    return matrix


def load_community(path: Path | str) -> CommunitySpec:
    """Read and validate a community YAML file."""
    p = Path(path)
    return load_yaml_file(p, "community file", lambda data: parse_community(data, str(p), p.parent))


@dataclass(frozen=True)
class MeterData:
    """Offtake and injection per ISP and member [Wh], members in community order.

    ``measured`` (bool ``(T, N)``, optional) tells where a member's meters had a reading at
    all; ISPs without one hold 0 Wh. ``None`` (CSV data) means every ISP of the grid counts as
    measured (a DSO export omits empty registers).
    """

    isps: pd.DatetimeIndex
    members: tuple[str, ...]
    offtake_wh: np.ndarray
    injection_wh: np.ndarray
    measured: np.ndarray | None = None
    #: Per member, the EAN of the connection its meters are behind as the data source knows
    #: it (the site of a store channel, a meter id that is an EAN); None where unknown.
    connections: tuple[str | None, ...] | None = None

    def digest(self) -> str:
        """sha256 over the ISPs, members, volumes and, if known, which ISPs were measured
        (part of the data version: a reading of 0 Wh arriving for a gap is new data)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.isps.as_unit("ns").asi8).tobytes())
        h.update("\x00".join(self.members).encode())
        h.update(np.ascontiguousarray(self.offtake_wh, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.injection_wh, dtype=np.int64).tobytes())
        if self.measured is not None:
            h.update(np.packbits(np.ascontiguousarray(self.measured, dtype=bool)).tobytes())
        if self.connections is not None:
            h.update("\x00".join(c or "" for c in self.connections).encode())
        return h.hexdigest()

    def measured_days(self) -> tuple[list[dt.date], np.ndarray]:
        """Local dates of the ISPs and, per date and member, whether any ISP was measured
        (bool ``(D, N)``; all True without ``measured``)."""
        dates = local_date_of(self.isps)
        starts = (
            np.flatnonzero(np.r_[True, dates[1:] != dates[:-1]])
            if len(dates)
            else np.array([], dtype=np.int64)
        )
        days = [dates[s] for s in starts]
        if self.measured is None:
            return days, np.ones((len(days), len(self.members)), dtype=bool)
        per_day = np.add.reduceat(self.measured.astype(np.int64), starts, axis=0) > 0
        return days, per_day


def _parse_ts(value: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    ts = ts.tz_convert("UTC").as_unit("ns")
    if ts.value % (900 * 10**9):
        raise ValueError(f"timestamp {value!r} is not the start of a 15-minute ISP")
    return ts


def _parse_wh(value: str) -> int:
    text = value.strip()
    d = Decimal(text)
    if not d.is_finite() or d != d.to_integral_value():
        raise ValueError(f"energy_wh must be a whole number of Wh, got {value!r}")
    if d < 0:
        raise ValueError(f"energy_wh must be >= 0, got {value!r}")
    return int(d)


def read_meter_csv(
    source: Path | str | io.TextIOBase,
    community: CommunitySpec,
    isps: pd.DatetimeIndex | None = None,
) -> MeterData:
    """Read meter data in long or wide form for the members of ``community``.

    Parameters
    ----------
    source : path or text stream
        The CSV.
    community : CommunitySpec
        Meters are mapped to members through it; a meter it does not know is an error.
    isps : pandas.DatetimeIndex, optional
        The ISP grid (UTC). Default: every ISP from the first to the last timestamp in the
        file. A timestamp outside a given grid is an error.

    Raises
    ------
    ValidationError
        Listing the bad lines (up to 20) with what is wrong; nothing is returned then.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<meters>"
    if isinstance(source, (str, Path)):
        text = Path(source).read_text(encoding="utf-8-sig")
    else:
        text = source.read()
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValidationError("empty file", name) from None
    owner = community.meter_owner()
    errors: list[str] = []
    records: list[tuple[pd.Timestamp, int, str, int]] = []
    if header == ["timestamp", "meter", "direction", "energy_wh"]:
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                if len(row) != 4:
                    raise ValueError(f"expected 4 fields, got {len(row)}")
                ts = _parse_ts(row[0].strip())
                meter = row[1].strip()
                if meter not in owner:
                    raise ValueError(
                        f"unknown meter {meter!r} (not in community {community.name!r})"
                    )
                direction = row[2].strip()
                if direction not in ("offtake", "injection"):
                    raise ValueError(f"direction must be offtake or injection, got {direction!r}")
                records.append((ts, line, f"{meter}\x00{direction}", _parse_wh(row[3])))
            except (ValueError, ArithmeticError) as exc:
                errors.append(f"line {line}: {exc}")
    elif header and header[0] == "timestamp" and len(header) > 1:
        columns = []
        for col in header[1:]:
            meter, _, direction = col.rpartition(":")
            if meter not in owner or direction not in ("offtake", "injection"):
                raise ValidationError(
                    f"column {col!r} must be <meter>:offtake or <meter>:injection for a meter "
                    f"of community {community.name!r}",
                    name,
                    "line 1",
                )
            columns.append(f"{meter}\x00{direction}")
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                if len(row) != len(header):
                    raise ValueError(f"expected {len(header)} fields, got {len(row)}")
                ts = _parse_ts(row[0].strip())
                for col, cell in zip(columns, row[1:]):
                    if cell.strip():
                        records.append((ts, line, col, _parse_wh(cell)))
            except (ValueError, ArithmeticError) as exc:
                errors.append(f"line {line}: {exc}")
    else:
        raise ValidationError(
            "header must be 'timestamp,meter,direction,energy_wh' (long form) or "
            "'timestamp,<meter>:offtake,<meter>:injection,...' (wide form)",
            name,
            "line 1",
        )
    seen: dict[tuple[int, str], int] = {}
    for ts, line, col, _wh in records:
        k = (ts.value, col)
        if k in seen:
            meter, direction = col.split("\x00")
            errors.append(
                f"line {line}: duplicate value for meter {meter!r} {direction} at "
                f"{ts.isoformat()} (first on line {seen[k]})"
            )
        else:
            seen[k] = line
    if isps is not None and records:
        lo, hi = isps[0].value, isps[-1].value
        for ts, line, _col, _wh in records:
            if not lo <= ts.value <= hi:
                errors.append(f"line {line}: {ts.isoformat()} lies outside the period")
    if errors:
        errors.sort(key=lambda e: int(e.split()[1].rstrip(":")))
        more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
        raise ValidationError("; ".join(errors[:MAX_ERRORS]) + more, name)
    if isps is None:
        if not records:
            raise ValidationError("no meter data", name)
        t0 = min(r[0] for r in records)
        t1 = max(r[0] for r in records)
        isps = pd.date_range(t0, t1, freq="15min", tz="UTC").as_unit("ns")
    data = _assemble(community, isps, ((r[0].value, r[2], r[3]) for r in records))
    # a local day is measured if the file has any row on it (a DSO export omits empty
    # registers within the days it covers, not whole days): a file of one day covers one day
    dates = local_date_of(isps)
    with_rows = {dates[k] for k in _isp_positions(isps, records)}
    day_measured = np.array([d in with_rows for d in dates], dtype=bool)
    measured = np.repeat(day_measured[:, None], len(community.members), axis=1)
    return MeterData(
        data.isps,
        data.members,
        data.offtake_wh,
        data.injection_wh,
        measured,
        _meter_connections(community, {m: m if ean_check_digit_ok(m) else None for m in owner}),
    )


def _isp_positions(
    isps: pd.DatetimeIndex, records: Sequence[tuple[pd.Timestamp, int, str, int]]
) -> set[int]:
    t_index = {int(v): k for k, v in enumerate(isps.as_unit("ns").asi8)}
    return {t_index[r[0].value] for r in records}


def _meter_connections(
    community: CommunitySpec, meter_connection: dict[str, str | None]
) -> tuple[str | None, ...]:
    """Per member, the one connection its meters are behind as the data source knows it.

    Raises
    ------
    ValidationError
        If a member's meters are behind two connections (tax is per connection: make one
        member per connection).
    """
    out: list[str | None] = []
    for k, m in enumerate(community.members):
        known = sorted({c for meter in m.meters if (c := meter_connection.get(meter))})
        if len(known) > 1:
            raise ValidationError(
                f"meters of member {m.label!r} are behind {len(known)} connections "
                f"({', '.join(known)}); make one member per connection",
                community.source,
                f"members[{k}].meters",
            )
        out.append(known[0] if known else None)
    return tuple(out)


def member_connections(community: CommunitySpec, data: MeterData) -> tuple[str, ...]:
    """The grid connection of each member: the file's ``connection``, else what the data
    source knows (a store channel's site EAN, a meter id that is an EAN), else
    ``member:<ref>`` (a connection of its own: every kWh it receives is taxed).

    Raises
    ------
    ValidationError
        If the file names a connection the data source contradicts.
    """
    known = data.connections or (None,) * len(community.members)
    out = []
    for k, (m, c) in enumerate(zip(community.members, known)):
        if m.connection is not None and c is not None and m.connection != c:
            raise ValidationError(
                f"connection {m.connection} of member {m.label!r} differs from {c}, the "
                "connection its meters are behind",
                community.source,
                f"members[{k}].connection",
            )
        out.append(m.connection or c or f"member:{m.ref}")
    return tuple(out)


def _assemble(
    community: CommunitySpec, isps: pd.DatetimeIndex, rows: Iterable[tuple[int, str, int]]
) -> MeterData:
    owner = community.meter_owner()
    t_index = {int(v): k for k, v in enumerate(isps.as_unit("ns").asi8)}
    n = len(community.members)
    off = np.zeros((len(isps), n), dtype=np.int64)
    inj = np.zeros((len(isps), n), dtype=np.int64)
    for ts_ns, col, wh in rows:
        meter, direction = col.split("\x00")
        target = off if direction == "offtake" else inj
        target[t_index[ts_ns], owner[meter]] += wh
    return MeterData(isps, community.refs, off, inj)


def read_meter_store(session: Any, community: CommunitySpec, isps: pd.DatetimeIndex) -> MeterData:
    """Meter data from the interval-reading store: each meter id is a channel key.

    ``energy_wh`` of a reading is positive for offtake and negative for injection; it is
    rounded to whole Wh (half to even). An ISP without a reading counts as 0 Wh and is not
    ``measured`` (a month in progress, or a gap in the data): nothing is invented for it, the
    settlement of such a period stays exact, and its statements list only days with data.
    """
    from sqlalchemy import select

    from energy.models import Channel
    from energy.readings import read_readings

    owner = community.meter_owner()
    keys = list(owner)
    channels = {c.key: c.id for c in session.scalars(select(Channel).where(Channel.key.in_(keys)))}
    missing = [k for k in keys if k not in channels]
    if missing:
        raise ValidationError(
            f"meter {missing[0]!r} is not a channel key in the store", community.source
        )
    end = isps[-1] + pd.Timedelta(minutes=15)
    frame = read_readings(
        session, list(channels.values()), isps[0].to_pydatetime(), end.to_pydatetime()
    )
    by_id = {v: k for k, v in channels.items()}
    t_index = {int(v): k for k, v in enumerate(isps.as_unit("ns").asi8)}
    measured = np.zeros((len(isps), len(community.members)), dtype=bool)
    rows = []
    for cid, ts, e in zip(frame["channel_id"], frame["isp_start"], frame["energy_wh"]):
        ts_ns = pd.Timestamp(ts).as_unit("ns").value
        measured[t_index[ts_ns], owner[by_id[int(cid)]]] = True
        wh = int(np.rint(e))
        if wh == 0:
            continue
        direction = "offtake" if wh > 0 else "injection"
        rows.append((ts_ns, f"{by_id[int(cid)]}\x00{direction}", abs(wh)))
    data = _assemble(community, isps, rows)
    return MeterData(
        data.isps,
        data.members,
        data.offtake_wh,
        data.injection_wh,
        measured,
        _meter_connections(community, _channel_eans(session, keys)),
    )


def _channel_eans(session: Any, keys: list[str]) -> dict[str, str | None]:
    """Channel key -> EAN of the site (grid connection) its asset is at."""
    from sqlalchemy import select

    from energy.models import Asset, Channel, Site

    rows = session.execute(
        select(Channel.key, Site.ean)
        .join(Asset, Asset.id == Channel.asset_id)
        .join(Site, Site.id == Asset.site_id)
        .where(Channel.key.in_(keys))
    ).all()
    return {k: ean for k, ean in rows}


def shares_matrix(community: CommunitySpec, isps: pd.DatetimeIndex) -> np.ndarray:
    """Key shares per ISP and member ``(T, N)`` [-]: the static shares, overridden per ISP by
    ``shares_csv`` (``timestamp,member,share``; every member of an ISP given, summing to 1)."""
    names = [m.label for m in community.members]
    static = np.array([float(community.key.shares.get(n, 0)) for n in names])
    f = np.broadcast_to(static, (len(isps), len(names))).copy()
    path = community.key.shares_csv
    if path is None:
        return f
    t_index = {int(v): k for k, v in enumerate(isps.as_unit("ns").asi8)}
    per_isp: dict[int, dict[str, Decimal]] = {}
    errors = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header != ["timestamp", "member", "share"]:
            raise ValidationError("header must be 'timestamp,member,share'", str(path), "line 1")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                ts = _parse_ts(row[0].strip())
                member = row[1].strip()
                if member not in names:
                    raise ValueError(f"unknown member {member!r}")
                share = Decimal(row[2].strip())
                if not Decimal(0) <= share <= 1:
                    raise ValueError(f"share must lie in [0, 1], got {share}")
                per_isp.setdefault(ts.value, {})[member] = share
            except (ValueError, ArithmeticError, IndexError) as exc:
                errors.append(f"line {line}: {exc}")
    for ts_ns, given in per_isp.items():
        total = sum(given.values(), Decimal(0))
        if total != 1:
            stamp = pd.Timestamp(ts_ns, tz="UTC").isoformat()
            errors.append(f"shares at {stamp} sum to {total}, not 1")
    if errors:
        raise ValidationError("; ".join(errors[:MAX_ERRORS]), str(path))
    for ts_ns, given in per_isp.items():
        if ts_ns in t_index:
            f[t_index[ts_ns]] = [float(given.get(n, 0)) for n in names]
    return f


def key_matrix(community: CommunitySpec) -> np.ndarray:
    """The ``matrix`` key as fractions ``(N, N)`` [-], members in community order: entry
    ``[j, r]`` is the part of member ``j``'s injection that member ``r`` is entitled to."""
    names = [m.label for m in community.members]
    key = np.zeros((len(names), len(names)))
    for giver, row in community.key.matrix.items():
        for receiver, share in row.items():
            key[names.index(giver), names.index(receiver)] = float(share)
    return key


def allocate_community(community: CommunitySpec, data: MeterData):
    """Allocate ``data`` with the community's key (see :func:`settlement.allocation.allocate`)."""
    from settlement.allocation import allocate

    shares = None
    if community.key.type in ("fixed", "relative", "optimal"):
        shares = shares_matrix(community, data.isps)
    matrix = key_matrix(community) if community.key.type == "matrix" else None
    order = [community.member_by_name(n).ref for n in community.key.order] or None
    return allocate(
        community.key.type,
        community.refs,
        data.offtake_wh,
        data.injection_wh,
        shares,
        order,
        matrix,
    )


def allocation_frame(community: CommunitySpec, data: MeterData, alloc: Any) -> pd.DataFrame:
    """The allocation as a long table: ``timestamp, member, offtake_wh, shared_wh,
    net_offtake_wh, injection_wh, net_injection_wh`` (timestamp in UTC ISO 8601, member by
    name as in the community file)."""
    t, n = alloc.shared_wh.shape
    names = np.array([m.label for m in community.members], dtype=object)
    stamps = np.array([ts.isoformat() for ts in data.isps], dtype=object)
    return pd.DataFrame(
        {
            "timestamp": np.repeat(stamps, n),
            "member": np.tile(names, t),
            "offtake_wh": alloc.offtake_wh.reshape(-1),
            "shared_wh": alloc.shared_wh.reshape(-1),
            "net_offtake_wh": alloc.net_offtake_wh.reshape(-1),
            "injection_wh": alloc.injection_wh.reshape(-1),
            "net_injection_wh": alloc.net_injection_wh.reshape(-1),
        }
    )
