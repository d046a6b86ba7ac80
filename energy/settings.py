"""One validated configuration for every Noaber process (env prefix ``NOABER_``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from energy.clock import LOCAL_TZ

#: The file of the local-mode signing secret in the data directory (mode 0600).
SECRET_FILE = "secret_key"
#: The shortest secret accepted, in characters.
SECRET_MIN_CHARS = 32


class Settings(BaseSettings):
    """Noaber settings, read from the environment (``NOABER_*``) and an optional ``.env``.

    ``mode`` is ``local`` on a laptop (SQLite in ``data_dir``; without ``NOABER_SECRET_KEY``
    the tokens are signed with a random secret made once for the data directory, see
    :attr:`signing_key`), ``test`` in the test suite and ``production`` in a deployment, where
    ``NOABER_SECRET_KEY`` must be set and be at least 32 characters long; ``gateway`` on a
    site's gateway, which holds only its own MQTT credentials (no secret key, database or
    queue URL may be set there). No secret is in the source.
    """

    model_config = SettingsConfigDict(env_prefix="NOABER_", env_file=".env", extra="ignore")

    mode: Literal["local", "test", "production", "gateway"] = "local"
    data_dir: Path = Field(
        default=Path("data"), description="Where the SQLite file and Parquet samples live"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite in data_dir"
    )
    secret_key: str | None = Field(
        default=None, description="Token signing key; local mode: default <data_dir>/secret_key"
    )
    token_ttl_s: int = Field(default=8 * 3600, gt=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    timezone: str = LOCAL_TZ
    locale: str = "nl"
    mqtt_url: str | None = None
    mqtt_ca_file: str | None = Field(
        default=None,
        description="CA certificate (PEM) the broker's TLS certificate is checked against, for "
        "an mqtts:// NOABER_MQTT_URL (default: the system's CAs)",
    )
    mqtt_cert_file: str | None = Field(
        default=None, description="Client certificate (PEM) for a TLS broker that asks for one"
    )
    mqtt_key_file: str | None = Field(
        default=None, description="The client certificate's private key (PEM)"
    )
    sample_store: Literal["parquet", "postgresql"] = Field(
        default="parquet",
        description="where raw samples go: Parquet files in the data dir (the embedded "
        "default) or the PostgreSQL database itself (energy.rawstore; several ingest workers)",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where login throttling counts failures (a `limits` storage URL): "
        "memory:// for one process, redis://host:6379/0 shared by several",
    )
    chromium_path: Path = Path("/usr/bin/chromium")
    # --- job queue (noaber.services.jobs: Dramatiq on Redis) ---
    queue_url: str | None = Field(
        default=None,
        description="Redis URL of the job queue (redis://host:6379/1); None: jobs are recorded "
        "but not sent until a scheduler with a queue re-sends them",
    )
    queue_namespace: str = Field(
        default="noaber",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Prefix of every Redis key of the queue (one per deployment or test)",
    )
    job_max_retries: int = Field(default=5, ge=0, le=50)
    job_min_backoff_s: float = Field(default=15.0, gt=0)
    job_max_backoff_s: float = Field(default=3600.0, gt=0)
    job_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="A running job's lease [s], renewed by its worker every third of it; a job "
        "whose lease ran out (its worker died) is taken over when its message comes back",
    )
    job_heartbeat_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Without a broker heartbeat for this long [s] a worker is dead and its "
        "unacknowledged messages go back to the queue",
    )
    job_maintenance_chance: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Broker commands out of a million that look for dead workers' messages",
    )
    job_time_limit_s: float = Field(default=4 * 3600.0, gt=0)
    communities_dir: Path | None = Field(
        default=None,
        description="Community YAML files the monthly settlement runs (<name>.yaml); default "
        "<data_dir>/communities",
    )
    price_series: str | None = Field(
        default=None,
        description="Stored price series 'IMPORT,EXPORT' the re-plans use (noaber prices import)",
    )
    replan_horizon_hours: float = Field(default=24.0, gt=0, le=168)
    entsoe_token: SecretStr | None = Field(
        default=None,
        description="ENTSO-E Transparency Platform Web API token for `noaber prices fetch` "
        "and the scheduler's daily fetch (no default; never printed)",
    )
    entsoe_zone: str = Field(
        default="NL",
        min_length=2,
        max_length=16,
        description="Bidding zone whose day-ahead prices the scheduler fetches (with "
        "NOABER_ENTSOE_TOKEN) into entsoe-<zone>-day-ahead",
    )
    # --- operations ---
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text or as one JSON object per line"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper may use for /metrics (at least 32 "
        "characters); an operator's token works too",
    )

    @model_validator(mode="after")
    def _require_secret(self) -> Settings:
        if self.mode == "gateway":
            # A site's gateway holds its own MQTT credentials and nothing of the centre's.
            for name, value in (
                ("NOABER_SECRET_KEY", self.secret_key),
                ("NOABER_DATABASE_URL", self.database_url),
                ("NOABER_QUEUE_URL", self.queue_url),
                ("NOABER_METRICS_TOKEN", self.metrics_token),
            ):
                if value is not None:
                    raise ValueError(
                        f"{name} must not be set in mode 'gateway': a gateway gets only its "
                        "own MQTT credentials (NOABER_MQTT_URL)"
                    )
            return self
        if self.secret_key is None:
            if self.mode != "local":
                raise ValueError(
                    f"NOABER_SECRET_KEY must be set in mode {self.mode!r}: only local mode makes "
                    f"its own secret (in <data_dir>/{SECRET_FILE})"
                )
        elif len(self.secret_key) < SECRET_MIN_CHARS:
            raise ValueError(
                f"NOABER_SECRET_KEY must be at least {SECRET_MIN_CHARS} characters in mode "
                f"{self.mode!r}, got {len(self.secret_key)}"
            )
        if self.metrics_token is not None and len(self.metrics_token) < SECRET_MIN_CHARS:
            raise ValueError(
                f"NOABER_METRICS_TOKEN must be at least {SECRET_MIN_CHARS} characters, got "
                f"{len(self.metrics_token)}"
            )
        return self

    @property
    def communities_path(self) -> Path:
        """Where the community files of the monthly settlement runs are."""
        return self.communities_dir or self.data_dir / "communities"

    @property
    def queue_for_display(self) -> str | None:
        """:attr:`queue_url` without its password (the only form printed)."""
        return None if self.queue_url is None else redact_database_url(self.queue_url)

    @property
    def signing_key(self) -> str:
        """The key that signs and verifies tokens: ``NOABER_SECRET_KEY``, or in local mode the
        data directory's own secret (:func:`data_dir_secret`, made on first use)."""
        if self.secret_key is not None:
            return self.secret_key
        if self.mode == "gateway":
            from energy.errors import NoaberError

            raise NoaberError("a gateway (mode 'gateway') signs no tokens: run the API elsewhere")
        return data_dir_secret(self.data_dir)

    @property
    def samples_dir(self) -> Path:
        """Root of the Parquet raw-sample store."""
        return self.data_dir / "samples"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, SQLite in ``data_dir`` unless ``NOABER_DATABASE_URL`` is set."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'noaber.db').resolve()}"

    @property
    def database_for_display(self) -> str:
        """:attr:`sqlalchemy_url` with its password replaced by ``***``: the only form printed."""
        return redact_database_url(self.sqlalchemy_url)


def redact_database_url(url: str) -> str:
    """``url`` without its password, for logs and messages.

    ``postgresql://noaber:s3cret@db/noaber`` -> ``postgresql://noaber:***@db/noaber``. The
    password is everything between the user's ``:`` and the *last* ``@``, so a password with an
    unescaped ``@``, ``/`` or ``#`` (which URL parsers split in the wrong place) never leaks.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{host}"


def generate_secret() -> str:
    """A fresh random secret suitable for ``NOABER_SECRET_KEY``."""
    return secrets.token_urlsafe(48)


def data_dir_secret(data_dir: Path) -> str:
    """The random secret of ``data_dir`` (``<data_dir>/secret_key``), made once, mode 0600.

    Raises
    ------
    energy.errors.NoaberError
        If the file is readable or writable by others than its owner, or too short.
    """
    from energy.errors import NoaberError

    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # written whole to a private temporary file, then linked into place: link() fails if
        # the name exists, so of two processes starting at once one secret wins and neither
        # ever reads a file that is created but not yet written
        tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(generate_secret())
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # made by another process just now
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise NoaberError(f"{path} may be read by others (mode {mode:04o}); run: chmod 600 {path}")
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < SECRET_MIN_CHARS:
        raise NoaberError(
            f"{path} holds no secret of at least {SECRET_MIN_CHARS} characters; delete it to "
            "make a new one (signed-in users sign in again)"
        )
    return secret


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()


def load_settings() -> Settings:
    """The process settings; an invalid environment raises one line naming the variable.

    Raises
    ------
    energy.errors.NoaberError
        ``invalid NOABER_* settings: secret_key: ...`` instead of pydantic's multi-line text.
    """
    import pydantic

    from energy.errors import NoaberError

    try:
        return get_settings()
    except pydantic.ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}".removeprefix(
                "settings: "
            ).replace("Value error, ", "")
            for e in exc.errors()
        )
        raise NoaberError(f"invalid NOABER_* settings: {msgs}") from None
