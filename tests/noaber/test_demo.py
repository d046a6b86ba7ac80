"""``noaber demo --no-serve``: the demo database, a realistic week, logins; steps and guards."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from energy.db import make_engine, session_factory
from energy.errors import NoaberError
from energy.models import Channel, Site, User
from energy.readings import read_readings
from energy.samples import SampleStore
from energy.settings import Settings
from energy.users import authenticate
from noaber.services.demo.builder import (
    DEMO_FACTORY,
    DEMO_LOGINS,
    DEMO_SITE,
    MARKER,
    build_demo,
    demo_week,
    prepare_dir,
)


def _noaber(*args: str, env_extra: dict[str, str] | None = None, data_dir: Path):
    env = {**os.environ, "NOABER_DATA_DIR": str(data_dir), "NOABER_MODE": "local"}
    env.pop("NOABER_DATABASE_URL", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "noaber.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("demo-cli")
    out = _noaber("demo", "--no-serve", "--port", "8765", data_dir=base)
    assert out.returncode == 0, out.stderr
    for login in DEMO_LOGINS:
        assert login.username in out.stdout and login.password in out.stdout
    assert f"http://127.0.0.1:8765/sites/{DEMO_SITE}/dashboard" in out.stdout.replace("\n", "")
    return base / "demo"


def _frame(session, key: str) -> pd.Series:
    ch = session.scalar(select(Channel).where(Channel.key == key))
    assert ch is not None, key
    df = read_readings(session, ch.id, *demo_week())  # the synthetic week, not today's live polls
    s = df.set_index("isp_start")["power_mean_w"]
    s.index = s.index.tz_convert("Europe/Amsterdam")
    return s


@pytest.mark.slow  # the whole `noaber demo --no-serve`, domain steps included (~20 s)
def test_demo_database_has_sites_users_and_a_week(demo_dir: Path) -> None:
    assert (demo_dir / MARKER).exists()
    engine = make_engine(f"sqlite:///{demo_dir / 'noaber.db'}")
    with session_factory(engine)() as session:
        assert sorted(session.scalars(select(Site.name))) == sorted([DEMO_SITE, DEMO_FACTORY])
        assert session.scalar(select(func.count(User.id))) == len(DEMO_LOGINS)
        for login in DEMO_LOGINS[:2]:  # Argon2 is slow on purpose: two are enough
            assert authenticate(session, login.username, login.password) is not None
        power = session.scalars(select(Channel).where(Channel.quantity == "power")).all()
        assert len(power) == 13  # 7 at the dorpshuis, 6 at the factory
        week_start, week_end = demo_week()
        for ch in power:
            # the synthetic week; the gateway step adds a few live ISPs of today after it
            df = read_readings(session, ch.id, week_start, week_end)
            assert len(df) in (7 * 96 - 4, 7 * 96, 7 * 96 + 4), ch.key
            assert (df["coverage"] > 0.9).all(), ch.key
        pv = _frame(session, f"{DEMO_SITE}/pv/power")
        night = pv[(pv.index.hour < 5) | (pv.index.hour >= 19)]
        noon = pv[(pv.index.hour >= 11) & (pv.index.hour < 14)]
        assert (night.abs() < 1.0).all() and noon.mean() < -500.0  # production is negative
        load = _frame(session, f"{DEMO_SITE}/building/power")
        evening = load[(load.index.hour >= 19) & (load.index.hour < 23)].mean()
        assert evening > 2.0 * load[(load.index.hour < 6)].mean()  # evening-heavy
        parts = [
            _frame(session, f"{DEMO_SITE}/{a}/power")
            for a in ("pv", "building", "battery", "ev-1", "ev-2", "ev-3")
        ]
        grid = _frame(session, f"{DEMO_SITE}/grid/power")
        np.testing.assert_allclose(sum(parts).to_numpy(), grid.to_numpy(), atol=1e-6)
        energy = {
            q: read_readings(
                session,
                session.scalar(select(Channel.id).where(Channel.key == f"{DEMO_SITE}/grid/{q}")),
            )["energy_wh"].sum()
            for q in ("energy_import", "energy_export", "power")
        }
        net_wh = energy["energy_import"] - energy["energy_export"]  # from the counters
        assert energy["energy_import"] > 0 and energy["energy_export"] >= 0
        assert net_wh == pytest.approx(energy["power"], rel=0.01)  # agrees with the power
        incomer = _frame(session, f"{DEMO_FACTORY}/main-incomer/power")
        weekday = incomer.index.day_of_week < 5
        shift = weekday & (incomer.index.hour >= 8) & (incomer.index.hour < 20)
        weekend = ~weekday
        assert incomer[shift].mean() > 2.5 * incomer[weekend].mean() > 0
        assert incomer[weekend].min() > 50_000.0  # base load
    engine.dispose()
    store = SampleStore(demo_dir / "samples")
    assert len(store.channels()) == 19  # every channel of both sites has samples


@pytest.mark.slow  # uses the module's demo
def test_readme_commands_read_the_demo_with_no_variable(demo_dir: Path, tmp_path: Path) -> None:
    """After ``make demo`` (the demo in ``<data dir>/demo``, nothing in ``<data dir>``), the
    README's ``noaber ledger verify`` and ``noaber statement --member M`` read the demo."""
    base = demo_dir.parent
    assert not (base / "noaber.db").exists()
    out = _noaber("ledger", "verify", data_dir=base)
    assert out.returncode == 0, out.stderr
    assert "ledger ok:" in out.stdout and "transfers" in out.stdout
    assert f"reading the demo's in {demo_dir}" in out.stderr.replace("\n", "")
    target = tmp_path / "st.html"
    out = _noaber("statement", "--member", "m-4c1e7a", "--out", str(target), data_dir=base)
    assert out.returncode == 0, out.stderr
    assert "statement" in out.stdout and target.stat().st_size > 1000
    # an unknown member is one line naming it, not a traceback
    out = _noaber("statement", "--member", "m-nobody", data_dir=base)
    assert out.returncode == 1 and "m-nobody" in out.stderr and "Traceback" not in out.stderr


def test_reading_demo_only_where_nothing_else_is_configured(tmp_path: Path) -> None:
    """A configured database (a file in the data dir, or NOABER_DATABASE_URL) is never
    replaced by the demo's; without a demo there is nothing to fall back to."""
    from noaber.services.demo.builder import reading_demo

    settings = Settings(mode="local", data_dir=tmp_path)
    assert reading_demo(settings) is None  # no demo
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / MARKER).write_text("made by `noaber demo`\n")
    assert reading_demo(settings) is None  # a marker but no database
    (tmp_path / "demo" / "noaber.db").write_bytes(b"")
    demo = reading_demo(settings)
    assert demo is not None and demo.data_dir == tmp_path / "demo"
    assert demo.sqlalchemy_url.endswith("demo/noaber.db")
    url = "postgresql://noaber@127.0.0.1/elsewhere"
    assert reading_demo(Settings(mode="local", data_dir=tmp_path, database_url=url)) is None
    (tmp_path / "noaber.db").write_bytes(b"")
    assert reading_demo(settings) is None  # the data dir's own database wins


def test_rebuild_replaces_the_demo(demo_dir: Path, tmp_path: Path) -> None:
    now = dt.datetime(2026, 10, 27, 12, tzinfo=dt.UTC)  # the week holds 25 October (DST)
    target = tmp_path / "again"
    for _ in range(2):
        ctx = build_demo(
            target, Settings(mode="local"), now=now, sample_period_s=900, logins=DEMO_LOGINS[:1]
        )
    with ctx.sessions() as session:
        assert session.scalar(select(func.count(User.id))) == 1  # replaced, not added to
        ch = ctx.channels[f"{DEMO_SITE}/grid/power"]
        assert len(read_readings(session, ch)) == 7 * 96 + 4  # 25-hour day: 100 ISPs
    ctx.engine.dispose()


def test_domain_steps_run_after_the_core(tmp_path: Path) -> None:
    seen: list[str] = []

    def extra(ctx) -> None:
        with ctx.sessions() as session:
            seen.append(str(session.scalar(select(func.count(Site.id)))))
        ctx.notes.append("extra step ran")

    ctx = build_demo(
        tmp_path / "d",
        Settings(mode="local"),
        extra_steps=[("extra", extra)],
        on_step=seen.append,
        sample_period_s=900,
        logins=(),
    )
    assert seen == ["core", "samples", "readings", "extra", "2"]
    assert ctx.notes == ["extra step ran"]
    ctx.engine.dispose()


def test_demo_week_is_seven_local_days() -> None:
    start, end = demo_week(dt.datetime(2026, 3, 30, 10, tzinfo=dt.UTC))
    assert start == dt.datetime(2026, 3, 22, 23, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 3, 29, 22, tzinfo=dt.UTC)  # 92-ISP day inside


def test_guards(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(NoaberError, match="not made by the demo"):
        prepare_dir(foreign)
    assert (foreign / "thesis.txt").read_text() == "precious"
    with pytest.raises(NoaberError, match="only in local mode"):
        build_demo(tmp_path / "p", Settings(mode="production", secret_key="k" * 40))
    out = _noaber("demo", "--no-serve", "--data-dir", str(foreign), data_dir=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error:") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2  # one line (rich may wrap a long one)
