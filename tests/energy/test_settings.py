import os
import stat

import pytest
from pydantic import ValidationError

from energy.errors import NoaberError
from energy.settings import Settings, generate_secret


def test_local_mode_makes_its_own_secret_and_defaults_to_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("NOABER_SECRET_KEY", raising=False)
    s = Settings(mode="local", data_dir=tmp_path, database_url=None)
    assert s.secret_key is None
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'noaber.db'}"
    assert not (tmp_path / "secret_key").exists()  # made on first use, not by reading settings
    key = s.signing_key
    path = tmp_path / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key and len(key) >= 32
    # once per data directory: the same secret next time, another one elsewhere
    assert Settings(mode="local", data_dir=tmp_path).signing_key == key
    other = Settings(mode="local", data_dir=tmp_path / "other").signing_key
    assert other != key and len(other) >= 32
    # NOABER_SECRET_KEY wins over the file
    monkeypatch.setenv("NOABER_SECRET_KEY", "e" * 40)
    assert Settings(mode="local", data_dir=tmp_path).signing_key == "e" * 40


def test_local_secret_file_readable_by_others_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("NOABER_SECRET_KEY", raising=False)
    s = Settings(mode="local", data_dir=tmp_path)
    s.signing_key  # noqa: B018 - made here
    os.chmod(tmp_path / "secret_key", 0o644)
    with pytest.raises(NoaberError, match="chmod 600"):
        s.signing_key  # noqa: B018
    os.chmod(tmp_path / "secret_key", 0o600)
    (tmp_path / "secret_key").write_text("short")
    with pytest.raises(NoaberError, match="at least 32"):
        s.signing_key  # noqa: B018


def test_short_secret_is_refused_in_local_mode_too(tmp_path):
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(mode="local", data_dir=tmp_path, secret_key="short")


@pytest.mark.parametrize("mode", ["production", "test"])
def test_deployment_refuses_default_or_short_secret(mode, monkeypatch):
    monkeypatch.delenv("NOABER_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="NOABER_SECRET_KEY must be set"):
        Settings(mode=mode)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(mode=mode, secret_key="short")
    assert Settings(mode=mode, secret_key=generate_secret()).mode == mode


def test_environment_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("NOABER_MODE", "production")
    monkeypatch.setenv("NOABER_SECRET_KEY", "x" * 40)
    monkeypatch.setenv("NOABER_DATABASE_URL", "postgresql://u@127.0.0.1/noaber")
    s = Settings()
    assert s.sqlalchemy_url == "postgresql://u@127.0.0.1/noaber"


def test_first_uses_at_once_agree_on_one_whole_secret(tmp_path) -> None:
    """Concurrent first logins: every caller gets the same full secret, none an empty file."""
    import threading

    from energy.settings import SECRET_MIN_CHARS, data_dir_secret

    for round_ in range(20):
        data_dir = tmp_path / f"d{round_}"
        start = threading.Barrier(8)
        got: list[str] = []
        errors: list[BaseException] = []

        def first_use(d=data_dir, b=start, got=got, errors=errors) -> None:
            b.wait()
            try:
                got.append(data_dir_secret(d))
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == [] and len(got) == 8
        assert len(set(got)) == 1 and len(got[0]) >= SECRET_MIN_CHARS
        assert sorted(p.name for p in data_dir.iterdir()) == ["secret_key"]  # no temp file left
