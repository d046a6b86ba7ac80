"""Per-gateway broker identities: Mosquitto password-file and ACL entries.

Each gateway is one MQTT user named like the gateway, allowed to publish only its samples
topic and read only its ack topic (:func:`acl_block`); the centre's user reads every
gateway's samples and writes every ack topic (:func:`centre_acl_block`). Mosquitto reads both
files at start and on SIGHUP (``password_file``, ``acl_file`` in ``docker/mosquitto.conf``).

Password hashes are Mosquitto 2's own format, ``$7$<iterations>$<salt>$<hash>``: PBKDF2 with
HMAC-SHA512, a 12-byte salt, 101 iterations by default, both base64 (what ``mosquitto_passwd``
writes; ``tests/modbus_gateway/test_broker_auth.py`` checks a real Mosquitto accepts it and
that our check accepts a hash ``mosquitto_passwd`` made). Only the hash is kept anywhere.

Both files are rewritten atomically (a temporary file in the same directory, then rename),
keeping every other user's lines as they were. A running Mosquitto picks them up on SIGHUP
(it re-reads ``password_file`` and ``acl_file`` and applies them to new connections):
:func:`reload_mosquitto` sends it to the pid of the broker's ``pid_file``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import signal
from pathlib import Path

from modbus_gateway.mqtt import ACK_TOPIC, TOPIC, TOPIC_ALL

ITERATIONS = 101
"""Mosquitto 2.0's default PBKDF2 iterations (``mosquitto_passwd``)."""
CENTRE_USER = "noaber"
"""The centre's broker user (ingest) by default."""


def new_password() -> str:
    """A random broker password (URL-safe, 32 bytes of entropy)."""
    return secrets.token_urlsafe(32)


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The Mosquitto 2 password-file hash of ``password`` (``$7$`` PBKDF2-SHA512)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_mosquitto_hash(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash of a Mosquitto password file."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    iterations, salt, digest = int(parts[2]), base64.b64decode(parts[3]), parts[4]
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(base64.b64encode(got).decode(), digest)


def _write_atomic(path: Path, text: str, mode: int = 0o640) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def set_password_entry(path: Path, user: str, hashed: str) -> None:
    """Add or replace ``user``'s line in a Mosquitto password file (others kept)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [ln for ln in lines if ln.strip() and ln.split(":", 1)[0] != user]
    _write_atomic(path, "\n".join([*kept, f"{user}:{hashed}"]) + "\n")


def password_users(path: Path) -> set[str]:
    """The users of a Mosquitto password file."""
    if not path.exists():
        return set()
    return {ln.split(":", 1)[0] for ln in path.read_text(encoding="utf-8").splitlines() if ln}


def acl_block(gateway: str, comment: str = "") -> list[str]:
    """A gateway's ACL: publish its samples, read its acknowledgements, nothing else."""
    head = [f"# gateway {gateway}{': ' + comment if comment else ''}"]
    return [
        *head,
        f"user {gateway}",
        f"topic write {TOPIC.format(gateway=gateway)}",
        f"topic read {ACK_TOPIC.format(gateway=gateway)}",
    ]


def centre_acl_block(user: str = CENTRE_USER) -> list[str]:
    """The centre's ACL: read every gateway's samples, write every gateway's ack topic."""
    return [
        "# the centre's ingest",
        f"user {user}",
        f"topic read {TOPIC_ALL}",
        f"topic write {ACK_TOPIC.format(gateway='+')}",
    ]


def _blocks(lines: list[str]) -> dict[str, list[str]]:
    """ACL lines per user (``""``: lines before the first ``user`` line)."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    pending_comments: list[str] = []
    for ln in lines:
        s = ln.strip()
        if not s:
            continue
        if s.startswith("#"):
            pending_comments.append(ln)
            continue
        if s.startswith("user "):
            current = s.split(None, 1)[1]
            out[current] = [*pending_comments, ln]
        else:
            out.setdefault(current, []).extend([*pending_comments, ln])
        pending_comments = []
    return out


def set_acl_entry(path: Path, user: str, block: list[str], centre_user: str = CENTRE_USER) -> None:
    """Add or replace ``user``'s block in a Mosquitto ACL file; the centre's block is added
    if the file has none (a new file is the centre's block plus this one)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    blocks = _blocks(lines)
    if centre_user not in blocks:
        blocks[centre_user] = centre_acl_block(centre_user)
    blocks[user] = block
    out: list[str] = list(blocks.pop(""))
    for lines_of in blocks.values():
        out.extend(["", *lines_of] if out else lines_of)
    _write_atomic(path, "\n".join(out) + "\n", 0o644)


def reload_mosquitto(pid_file: Path) -> int:
    """Tell the Mosquitto whose pid ``pid_file`` holds to re-read its password file and ACL
    (SIGHUP, Mosquitto's documented reload); returns the pid signalled.

    Raises
    ------
    ValueError
        The pid file is missing or unreadable, does not hold a pid, or names no running
        mosquitto process (or one this user may not signal), in one line naming the file.
    """
    try:
        text = pid_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"Mosquitto pid file {pid_file}: {exc.strerror or exc}") from None
    if not text.isdigit() or int(text) <= 1:
        raise ValueError(f"Mosquitto pid file {pid_file}: holds {text[:40]!r}, not a process id")
    pid = int(text)
    comm = Path(f"/proc/{pid}/comm")  # Linux: never signal another program of a reused pid
    try:
        name = comm.read_text(encoding="utf-8").strip()
    except OSError:
        name = None
    if name is not None and "mosquitto" not in name:
        raise ValueError(
            f"Mosquitto pid file {pid_file}: process {pid} is {name!r}, not mosquitto (a stale "
            "pid file); not signalled"
        )
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ValueError(
            f"Mosquitto pid file {pid_file}: no process {pid} (the broker is not running, or "
            "the file is stale)"
        ) from None
    except PermissionError:
        raise ValueError(
            f"Mosquitto pid file {pid_file}: not allowed to signal process {pid} (run as the "
            "broker's user)"
        ) from None
    return pid
