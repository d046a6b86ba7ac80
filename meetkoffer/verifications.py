"""Frozen, versioned savings verifications.

A stored verification (:class:`meetkoffer.models.Verification`) is a list of versions
(:class:`meetkoffer.models.SavingsRecord`). A version keeps its result (``frozen``, the whole
report's data from :func:`meetkoffer.mv.freeze`, and its SHA-256 ``result_digest``), its model,
its parameters (``params``: the request, price, emission factors, adjustments) and the digest
of the baseline and reporting data it used. Showing a version thaws the frozen result after
checking its digest: it never recomputes on today's data. Recomputing compares the new run
with the latest version: an identical data digest and parameters change nothing; otherwise a
new version is added saying what changed (data digests and totals, parameters, result delta).

Nothing is rewritten: an ORM guard refuses an update of a stored version, and a verification
takes one change only, its withdrawal (reason, who, when), after which it cannot be
recomputed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from energy.clock import utc_now
from energy.errors import ValidationError
from meetkoffer import mv
from meetkoffer.models import SavingsRecord, Verification

#: Result figures whose change a new version reports.
RESULT_KEYS = (
    "adjusted_baseline_kwh",
    "reporting_kwh",
    "avoided_kwh",
    "avoided_eur",
    "avoided_co2_t",
    "uncertainty_kwh_90",
    "fraction_saved",
)
_WITHDRAWAL = ("withdrawn_at", "withdrawn_by", "withdrawn_reason")


def canonical_digest(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_part(frame: pd.DataFrame) -> dict[str, Any]:
    """Digest and totals of one period's data (what a change of data is reported with)."""
    idx = pd.DatetimeIndex(frame.index)
    return {
        "digest": mv.frame_digest(frame),
        "periods": len(frame),
        "energy_kwh": round(float(frame["energy_kwh"].sum()), 6),
        "first": idx.min().isoformat() if len(idx) else None,
        "last": idx.max().isoformat() if len(idx) else None,
    }


def data_summary(base: pd.DataFrame, rep: pd.DataFrame) -> dict[str, Any]:
    """The data of a verification: per period its digest and totals, and the overall digest."""
    parts = {"baseline": data_part(base), "reporting": data_part(rep)}
    digest = hashlib.sha256(
        (parts["baseline"]["digest"] + parts["reporting"]["digest"]).encode()
    ).hexdigest()
    return {"digest": digest, **parts}


def parameters(
    request: dict[str, Any], price_eur_per_kwh: float, res: mv.SavingsResult
) -> dict[str, Any]:
    """What a result depends on besides the data: the request, the price, the emission
    factors applied and the non-routine adjustments."""
    return mv._clean(
        {
            "request": request,
            "price_eur_per_kwh": price_eur_per_kwh,
            "emission_factors": {
                str(a.requested_year): {
                    "factor_year": a.factor.year,
                    "kg_co2_per_kwh": a.factor.kg_co2_per_kwh,
                    "source": a.factor.source,
                }
                for a in res.emission_factors
            },
            "adjustments": [
                {"energy_kwh": a.energy_kwh, "reason": a.reason} for a in res.adjustments
            ],
        }
    )


def freeze_into(
    rec: SavingsRecord,
    res: mv.SavingsResult,
    data: dict[str, Any],
    params: dict[str, Any],
) -> None:
    """Fill the frozen fields of a new (not yet stored) version."""
    rec.frozen = mv.freeze(res)
    rec.result_digest = canonical_digest(rec.frozen)
    rec.data_digest = data["digest"]
    rec.params = params
    rec.summary = {**(rec.summary or {}), "data": data}


def store_new(session: Session, rec: SavingsRecord) -> SavingsRecord:
    """Store ``rec`` as version 1 of a new verification."""
    v = Verification(campaign_id=rec.campaign_id)
    session.add(v)
    rec.version = 1
    v.versions.append(rec)
    session.add(rec)
    session.flush()
    return rec


def latest(v: Verification) -> SavingsRecord:
    return max(v.versions, key=lambda r: r.version)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix.rstrip("."): d}


def changes(old: SavingsRecord, new: SavingsRecord) -> dict[str, Any]:
    """What differs between two versions: data (per period), parameters, model and result."""
    out: dict[str, Any] = {"from_version": old.version}
    od = (old.summary or {}).get("data") or {}
    nd = (new.summary or {}).get("data") or {}
    data = {}
    for part in ("baseline", "reporting"):
        a, b = od.get(part) or {}, nd.get(part) or {}
        if a.get("digest") != b.get("digest"):
            data[part] = {k: [a.get(k), b.get(k)] for k in ("digest", "periods", "energy_kwh")}
    if data or old.data_digest != new.data_digest:
        out["data"] = {"digest": [old.data_digest, new.data_digest], **data}
    fo, fn = _flat(old.params or {}), _flat(new.params or {})
    params = {
        k: [fo.get(k), fn.get(k)] for k in sorted(set(fo) | set(fn)) if fo.get(k) != fn.get(k)
    }
    if params:
        out["parameters"] = params
    if old.model != new.model:
        out["model"] = [old.model, new.model]
    ro, rn = old.frozen or {}, new.frozen or {}
    out["result"] = {
        k: {"old": ro.get(k), "new": rn.get(k), "delta": _delta(ro.get(k), rn.get(k))}
        for k in RESULT_KEYS
    }
    return out


def _delta(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else float(b) - float(a)


def add_version(session: Session, v: Verification, new: SavingsRecord) -> SavingsRecord | None:
    """Add ``new`` as the next version of ``v`` if its data or parameters differ from the
    latest version's; ``None`` (nothing stored) when they are the same.

    Raises
    ------
    ValidationError
        If the verification is withdrawn.
    """
    if v.withdrawn_at is not None:
        raise ValidationError(
            f"savings verification {v.id} was withdrawn ({v.withdrawn_reason}); it is not "
            "recomputed",
            location="verification",
        )
    last = latest(v)
    if (
        last.frozen is not None
        and last.data_digest == new.data_digest
        and last.params == new.params
    ):
        return None
    new.version = last.version + 1
    new.changes = mv._clean(changes(last, new))
    v.versions.append(new)
    session.add(new)
    session.flush()
    return new


def withdraw(session: Session, v: Verification, reason: str, by: str) -> Verification:
    """Withdraw a verification (once), with the reason and who withdraws it.

    Raises
    ------
    ValidationError
        If the reason or the user is empty, or the verification is withdrawn already.
    """
    if not reason or not reason.strip():
        raise ValidationError("withdrawing a verification needs a reason", location="reason")
    if not by or not by.strip():
        raise ValidationError("withdrawing a verification needs the user", location="by")
    if v.withdrawn_at is not None:
        raise ValidationError(
            f"savings verification {v.id} was withdrawn already on {v.withdrawn_at:%Y-%m-%d}",
            location="verification",
        )
    v.withdrawn_at = utc_now()
    v.withdrawn_by = by.strip()
    v.withdrawn_reason = reason.strip()
    session.flush()
    return v


def shown_result(rec: SavingsRecord) -> mv.SavingsResult:
    """The frozen result of a version, its digest checked (never recomputed).

    Raises
    ------
    ValidationError
        If the version has no frozen result (stored before versions existed: recompute it)
        or its frozen result does not match its digest.
    """
    if rec.frozen is None:
        raise ValidationError(
            f"savings record {rec.id} was stored without a frozen result; recompute it "
            "(`noaber meetkoffer recompute`) to freeze a version",
            location="frozen",
        )
    if canonical_digest(rec.frozen) != rec.result_digest:
        raise ValidationError(
            f"savings record {rec.id}: its stored result does not match its digest "
            f"{rec.result_digest}; it was changed after it was frozen",
            location="frozen",
        )
    return mv.thaw(rec.frozen)


def version_rows(v: Verification) -> list[dict[str, Any]]:
    """One row per version: id, version, created, model, avoided kWh, data digest, changes."""
    return [
        {
            "id": r.id,
            "version": r.version,
            "created_at": r.created_at,
            "model": r.model,
            "avoided_kwh": r.avoided_kwh,
            "avoided_eur": r.avoided_eur,
            "data_digest": r.data_digest,
            "changed": sorted(k for k in (r.changes or {}) if k not in ("from_version", "result")),
            "avoided_kwh_delta": ((r.changes or {}).get("result") or {})
            .get("avoided_kwh", {})
            .get("delta"),
        }
        for r in sorted(v.versions, key=lambda r: r.version)
    ]


@event.listens_for(SavingsRecord, "before_update")
def _frozen_version(_mapper: Any, _conn: Any, target: SavingsRecord) -> None:
    """A stored version is never rewritten."""
    state = inspect(target)
    changed = [a.key for a in state.attrs if a.history.has_changes()]
    changed = [k for k in changed if k not in ("adjustments", "campaign", "verification")]
    if changed:
        raise ValidationError(
            f"savings verification version {target.id} is frozen; {', '.join(changed)} cannot "
            "change (recompute it for a new version)",
            location="savings",
        )


@event.listens_for(Verification, "before_update")
def _withdraw_only(_mapper: Any, _conn: Any, target: Verification) -> None:
    """A verification changes once: its withdrawal."""
    state = inspect(target)
    for a in state.attrs:
        h = a.history
        if not h.has_changes() or a.key == "versions":
            continue
        if a.key not in _WITHDRAWAL or any(v is not None for v in h.deleted):
            raise ValidationError(
                f"savings verification {target.id}: {a.key} cannot change once stored",
                location="verification",
            )
