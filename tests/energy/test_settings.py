import pytest
from pydantic import ValidationError

from energy.settings import LOCAL_DEV_SECRET, Settings, generate_secret


def test_local_mode_accepts_dev_secret_and_defaults_to_sqlite(tmp_path):
    s = Settings(mode="local", data_dir=tmp_path, database_url=None)
    assert s.secret_key == LOCAL_DEV_SECRET
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'noaber.db'}"


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
