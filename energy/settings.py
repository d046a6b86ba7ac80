"""One validated configuration for every Noaber process (env prefix ``NOABER_``)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from energy.clock import LOCAL_TZ

#: The development secret. Accepted only in ``local`` mode; a deployment must set its own.
LOCAL_DEV_SECRET = "noaber-local-development-secret-not-for-deployment"


class Settings(BaseSettings):
    """Noaber settings, read from the environment (``NOABER_*``) and an optional ``.env``.

    ``mode`` is ``local`` on a laptop (SQLite in ``data_dir``, a development secret allowed),
    ``test`` in the test suite and ``production`` in a deployment, where ``secret_key`` must be
    set explicitly and be at least 32 characters long.
    """

    model_config = SettingsConfigDict(env_prefix="NOABER_", env_file=".env", extra="ignore")

    mode: Literal["local", "test", "production"] = "local"
    data_dir: Path = Field(
        default=Path("data"), description="Where the SQLite file and Parquet samples live"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite in data_dir"
    )
    secret_key: str = LOCAL_DEV_SECRET
    token_ttl_s: int = Field(default=8 * 3600, gt=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    timezone: str = LOCAL_TZ
    locale: str = "nl"
    mqtt_url: str | None = None
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where login throttling counts failures (a `limits` storage URL): "
        "memory:// for one process, redis://host:6379/0 shared by several",
    )
    chromium_path: Path = Path("/usr/bin/chromium")

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.mode != "local":
            if self.secret_key == LOCAL_DEV_SECRET:
                raise ValueError(
                    f"NOABER_SECRET_KEY must be set in mode {self.mode!r}: the development "
                    "secret is only accepted in local mode"
                )
            if len(self.secret_key) < 32:
                raise ValueError(
                    f"NOABER_SECRET_KEY must be at least 32 characters in mode {self.mode!r}, "
                    f"got {len(self.secret_key)}"
                )
        return self

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


def generate_secret() -> str:
    """A fresh random secret suitable for ``NOABER_SECRET_KEY``."""
    return secrets.token_urlsafe(48)


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
