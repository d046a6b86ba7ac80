"""Signed checkpoints of the ledger's chains, kept outside the database.

A hash chain in the database proves nothing against someone who can rewrite the database: an
edited transfer is re-hashed with everything after it, or the last transfers are deleted and
the head moved back, and the chain is consistent again. A checkpoint fixes the chains' heads
(the transfers' and the sealed records' of :mod:`settlement.proof`) at a moment, signed with
an Ed25519 key that lives in the data directory (``<data_dir>/ledger_signing_key``, PKCS #8
PEM, made once, mode 0600), in a directory of files (default ``<data_dir>/ledger/checkpoints``).

Each checkpoint ``checkpoint-<transfers seq>-<records seq>.json`` holds both heads, the seq
it continues from, the sha256 of its segment file (``.bin``: the raw 32-byte hashes of the
transfers and then of the records added since the previous checkpoint), the key id and the
signature over all that. Together the segments mirror every hash of both chains, so
:func:`settlement.audit.verify` with checkpoints names exactly the first transfer or record
whose hash differs (a rewrite), the first one missing (a head moved back) and the first one
no checkpoint covers (a forged tail).

References
----------
RFC 8032 (Ed25519); ``cryptography`` (pyca) ``Ed25519PrivateKey``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.errors import NoaberError
from settlement import ledger, proof
from settlement.models import ChainHead, Record, Transfer

KEY_FILE = "ledger_signing_key"
FORMAT = "noaber-ledger-checkpoint/1"


def checkpoints_dir(data_dir: Path) -> Path:
    """Default directory of the checkpoints of a data directory."""
    return data_dir / "ledger" / "checkpoints"


def roots_dir(data_dir: Path) -> Path:
    """Default directory of the published period roots of a data directory."""
    return data_dir / "ledger" / "roots"


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The data directory's Ed25519 key (made once, mode 0600).

    Raises
    ------
    NoaberError
        If the key file may be read by others, or is not an Ed25519 private key.
    """
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise NoaberError(f"{path} may be read by others (mode {mode:04o}); run: chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise NoaberError(f"{path} is not an Ed25519 private key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _signed_bytes(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Mirror:
    """The chains' hashes as the checkpoints hold them (hex, 64 bytes per hash)."""

    transfers: bytes = b""
    records: bytes = b""
    newest: dict[str, Any] | None = None
    files: int = 0

    @property
    def transfers_seq(self) -> int:
        return len(self.transfers) // 64

    @property
    def records_seq(self) -> int:
        return len(self.records) // 64

    def transfer(self, seq: int) -> bytes | None:
        """The signed hash of transfer ``seq`` (hex bytes), None beyond the checkpoints."""
        if seq > self.transfers_seq:
            return None
        return self.transfers[(seq - 1) * 64 : seq * 64]

    def record(self, seq: int) -> str | None:
        """The signed hash of record ``seq`` (hex), None beyond the checkpoints."""
        if seq > self.records_seq:
            return None
        return self.records[(seq - 1) * 64 : seq * 64].decode()


def load(directory: Path, public: Ed25519PublicKey) -> Mirror:
    """Read and check every checkpoint of a directory, oldest first.

    Raises
    ------
    NoaberError
        Naming the file: a bad signature, another key, a segment that does not match its
        hash, or a checkpoint that does not continue the previous one.
    """
    if not directory.is_dir():
        return Mirror()
    docs = []
    for path in sorted(directory.glob("checkpoint-*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NoaberError(f"{path}: not a checkpoint ({exc})") from exc
        docs.append((path, doc))
    want_id = key_id(public)
    mirror = Mirror()
    t_parts: list[bytes] = []
    r_parts: list[bytes] = []
    t_seq = r_seq = 0
    for path, doc in docs:
        if doc.get("format") != FORMAT:
            raise NoaberError(f"{path}: not a checkpoint (format {doc.get('format')!r})")
        if doc.get("key_id") != want_id:
            raise NoaberError(f"{path}: signed by key {doc.get('key_id')}, not {want_id}")
        try:
            public.verify(base64.b64decode(doc["signature"]), _signed_bytes(doc))
        except (InvalidSignature, KeyError, ValueError) as exc:
            raise NoaberError(f"{path}: the signature does not verify") from exc
        segment = path.with_suffix(".bin").read_bytes()
        if hashlib.sha256(segment).hexdigest() != doc["segment_sha256"]:
            raise NoaberError(f"{path.with_suffix('.bin')}: does not match its signed hash")
        t, r = doc["transfers"], doc["records"]
        if t["from"] != t_seq or r["from"] != r_seq:
            raise NoaberError(
                f"{path}: continues from transfer {t['from']} / record {r['from']}, the "
                f"previous checkpoint ends at {t_seq} / {r_seq} (a checkpoint is missing)"
            )
        n_t = t["seq"] - t["from"]
        if len(segment) != 32 * (n_t + r["seq"] - r["from"]):
            raise NoaberError(f"{path.with_suffix('.bin')}: wrong length")
        t_parts.append(segment[: 32 * n_t])
        r_parts.append(segment[32 * n_t :])
        t_seq, r_seq = t["seq"], r["seq"]
        mirror.newest = {**doc, "file": path.name}
    mirror.transfers = b"".join(t_parts).hex().encode()
    mirror.records = b"".join(r_parts).hex().encode()
    mirror.files = len(docs)
    return mirror


def _hashes(session: Session, model: Any, after: int, upto: int) -> bytes:
    seqs_hashes = session.execute(
        select(model.seq, model.hash)
        .where(model.seq > after, model.seq <= upto)
        .order_by(model.seq)
    ).all()
    if [s for s, _ in seqs_hashes] != list(range(after + 1, upto + 1)):
        raise NoaberError(f"{model.__tablename__}: sequence {after + 1}..{upto} is not contiguous")
    return b"".join(bytes.fromhex(h) for _, h in seqs_hashes)


def write(session: Session, directory: Path, key: Ed25519PrivateKey, mirror: Mirror) -> Path | None:
    """Sign the chains' current heads into a new checkpoint after ``mirror`` (what the
    directory holds); None if nothing was added since. The caller verifies the ledger first
    (:func:`settlement.audit.sign_checkpoint`): a checkpoint vouches for what it signs.
    Takes the chain-head lock, so it is serialised with postings."""
    ledger.lock_chain(session)
    t_head = session.get(ChainHead, 1)
    r_head = session.get(ChainHead, proof.RECORDS_HEAD)
    assert t_head is not None and r_head is not None
    t_seq, r_seq = int(t_head.last_seq), int(r_head.last_seq)
    if (t_seq, r_seq) == (mirror.transfers_seq, mirror.records_seq):
        return None
    segment = _hashes(session, Transfer, mirror.transfers_seq, t_seq) + _hashes(
        session, Record, mirror.records_seq, r_seq
    )
    doc: dict[str, Any] = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "transfers": {"from": mirror.transfers_seq, "seq": t_seq, "hash": t_head.last_hash},
        "records": {"from": mirror.records_seq, "seq": r_seq, "hash": r_head.last_hash},
        "segment_sha256": hashlib.sha256(segment).hexdigest(),
        "key_id": key_id(key.public_key()),
    }
    doc["signature"] = base64.b64encode(key.sign(_signed_bytes(doc))).decode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"checkpoint-{t_seq:012d}-{r_seq:012d}.json"
    path.with_suffix(".bin").write_bytes(segment)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
