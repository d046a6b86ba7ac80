"""The demo: a dorpshuis with PV, a battery and three V2G EVs, and a process-industry firm.

:func:`build_demo` runs a list of steps over one :class:`DemoContext`:

1. ``core`` (:func:`step_core`): a fresh SQLite database in the demo directory, migrated, with
   the two demo site descriptions (``noaber/services/demo/data/demo_site.yaml``, ``demo_factory.yaml``)
   imported through :mod:`energy.siteconfig` and the demo users created;
2. ``samples`` (:func:`step_samples`): a realistic week of 1-minute power samples (diurnal PV
   from the solar position, an evening-heavy building load, EVs that charge on solar by day
   and deliver in the evening, a battery that shifts the PV surplus, and a factory with two
   shifts and a weekend base load) into the Parquet :class:`~energy.samples.SampleStore`;
3. ``readings`` (:func:`step_readings`): 15-minute interval readings of every power and
   counter channel, computed from the stored samples by :func:`energy.pipeline.update_many`
   (the Numba kernels);
4. then the steps of the domain packages (gateway, optimizer, settlement, Meetkoffer), given
   as ``extra_steps`` (``noaber demo`` passes :data:`noaber.services.demo.DOMAIN_STEPS`): each
   is a function ``demo_step(ctx: DemoContext) -> None`` in ``noaber/services/demo/<part>.py``.

The demo users have fixed passwords, printed on start; they are refused outside local mode.
Everything is deterministic for a given ``end`` and ``seed``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from energy.clock import utc_now
from energy.db import make_engine, session_factory, upgrade
from energy.errors import NoaberError
from energy.models import Site
from energy.samples import SampleStore
from energy.settings import Settings
from energy.timegrid import LOCAL_TZ

DEMO_SITE = "dorpshuis-noaberhof"
DEMO_FACTORY = "polymeer-emmen"
DEMO_FILES = ("demo_site.yaml", "demo_factory.yaml")
#: Marks a directory as made by the demo, so a rebuild may clear it.
MARKER = ".noaber-demo"
SAMPLE_PERIOD_S = 60
DAYS = 7


@dataclass(frozen=True)
class DemoLogin:
    """A demo user and the fixed password printed for it."""

    username: str
    password: str
    role: str
    member_ref: str | None = None
    site_names: tuple[str, ...] = ()
    note: str = ""


#: The demo users (demo-only passwords, printed on start, refused outside local mode).
DEMO_LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin("operator", "noaber-operator", "operator", note="the cooperative: everything"),
    DemoLogin(
        "beheer-noaberhof",
        "noaber-dorpshuis",
        "site_manager",
        site_names=(DEMO_SITE,),
        note="dorpshuis manager",
    ),
    DemoLogin("polymeer", "noaber-fabriek", "firm", member_ref="m-polymeer", note="the firm"),
    DemoLogin("lid-1", "noaber-lid-1", "member", member_ref="m-4c1e7a", note="EV owner"),
    DemoLogin("lid-2", "noaber-lid-2", "member", member_ref="m-9b2d05", note="EV owner"),
    DemoLogin("lid-3", "noaber-lid-3", "member", member_ref="m-e83f61", note="EV owner"),
)


def is_demo_login(username: str, password: str) -> bool:
    """True if ``username`` and ``password`` are one of the printed :data:`DEMO_LOGINS`.

    The demo's credentials are public, so outside local mode the API refuses them whatever
    the database holds (a demo database served in production included); a real user who
    happens to share a demo username keeps their own password.
    """
    return any(lg.username == username and lg.password == password for lg in DEMO_LOGINS)


@dataclass
class DemoContext:
    """What the demo steps share.

    ``start``/``end`` bound the demo week (UTC, half-open, seven local days); ``channels``
    maps channel keys to ids; ``notes`` collects lines printed after the build.
    """

    data_dir: Path
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: SampleStore
    start: dt.datetime
    end: dt.datetime
    seed: int = 2
    sample_period_s: int = SAMPLE_PERIOD_S
    channels: dict[str, int] = field(default_factory=dict)
    logins: tuple[DemoLogin, ...] = DEMO_LOGINS
    notes: list[str] = field(default_factory=list)

    def rng(self, salt: int) -> np.random.Generator:
        """A generator seeded by ``seed`` and a per-use ``salt`` (deterministic replay)."""
        return np.random.default_rng([self.seed, salt])


DemoStep = Callable[[DemoContext], None]


def demo_week(
    now: dt.datetime | None = None, tz: str = LOCAL_TZ
) -> tuple[dt.datetime, dt.datetime]:
    """The seven local days before today's local midnight, as a UTC interval (DST-aware)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    today = (now or utc_now()).astimezone(zone).date()
    end = dt.datetime.combine(today, dt.time(0), tzinfo=zone)
    start = dt.datetime.combine(today - dt.timedelta(days=DAYS), dt.time(0), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def demo_settings(data_dir: Path, base: Settings | None = None) -> Settings:
    """Settings for the demo: local mode, samples in ``data_dir``; the database of
    ``NOABER_DATABASE_URL`` when it is set (see :func:`check_database`), else SQLite in
    ``data_dir``."""
    base = base or Settings()
    if base.mode != "local":
        raise NoaberError(
            f"the demo has fixed, printed passwords and runs only in local mode, not {base.mode!r}"
        )
    return base.model_copy(update={"data_dir": data_dir})


def reading_demo(settings: Settings) -> Settings | None:
    """The demo's settings when ``settings`` point at nothing yet but ``noaber demo`` has run:
    no ``NOABER_DATABASE_URL``, no ``<data_dir>/noaber.db``, and a demo in
    ``<data_dir>/demo`` (its marker file). Read commands (``noaber ledger verify``,
    ``noaber statement``) then work on the demo right after ``make demo``; anything else
    (a site import, ``serve``) keeps the configured data directory, so nothing real is
    written where the next demo would clear it. ``None`` otherwise."""
    if settings.database_url or (settings.data_dir / "noaber.db").exists():
        return None
    demo = settings.data_dir / "demo"
    if not ((demo / MARKER).exists() and (demo / "noaber.db").exists()):
        return None
    return settings.model_copy(update={"data_dir": demo})


#: One ISP [ns].
ISP_NS = 900 * 10**9

#: The table by which the demo knows a database it made (and may therefore empty).
DEMO_TABLE = "noaber_demo"


def check_database(settings: Settings) -> None:
    """Refuse a ``NOABER_DATABASE_URL`` database the demo may not empty: one with tables that
    the demo did not make (no :data:`DEMO_TABLE`). An empty database, or one a previous demo
    made, is fine. Nothing is changed here."""
    if not settings.database_url:
        return  # SQLite in the demo's own data directory
    from sqlalchemy import inspect

    engine = make_engine(settings.database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if tables and DEMO_TABLE not in tables:
        raise NoaberError(
            f"database {settings.database_for_display} holds {len(tables)} tables the demo did "
            "not make; point NOABER_DATABASE_URL at an empty database for the demo"
        )


def reset_database(settings: Settings) -> None:
    """Empty a database a previous demo made (after :func:`check_database`) and mark it as
    the demo's. PostgreSQL: the ``public`` schema is dropped and made again (the ledger's
    triggers and functions with it); another backend: every table is dropped."""
    if not settings.database_url:
        return
    from sqlalchemy import MetaData, text

    from energy.db import is_postgres

    check_database(settings)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            if is_postgres(engine):
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            else:
                meta = MetaData()
                meta.reflect(conn)
                meta.drop_all(conn)
            conn.execute(text(f"CREATE TABLE {DEMO_TABLE} (note VARCHAR(200) NOT NULL)"))
            conn.execute(
                text(f"INSERT INTO {DEMO_TABLE} (note) VALUES (:n)"),
                {"n": "made by `noaber demo`; emptied on every run"},
            )
    finally:
        engine.dispose()


def check_dir(data_dir: Path) -> None:
    """Refuse a ``data_dir`` the demo may not clear: a file, or a non-empty foreign directory."""
    if data_dir.exists():
        if not data_dir.is_dir():
            raise NoaberError(f"demo data dir {data_dir} is a file")
        if any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
            raise NoaberError(
                f"demo data dir {data_dir} is not empty and was not made by the demo; "
                "choose another with --data-dir"
            )


def prepare_dir(data_dir: Path) -> None:
    """Clear a previous demo in ``data_dir`` (only a directory the demo made, or an empty one)."""
    check_dir(data_dir)
    if data_dir.exists():
        for child in data_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by `noaber demo`; rebuilt on every run\n")


# --------------------------------------------------------------------------- step: core


def step_core(ctx: DemoContext) -> None:
    """Migrate the database, import the demo sites and create the demo users."""
    from energy.siteconfig import import_site, load_site_text
    from energy.users import create_user

    upgrade(ctx.engine)
    with ctx.sessions() as session, session.begin():
        for name in DEMO_FILES:
            text = (resources.files("noaber.services.demo") / "data" / name).read_text(
                encoding="utf-8"
            )
            res = import_site(session, load_site_text(text, name), name)
            ctx.channels.update(res.channel_ids)
        for login in ctx.logins:
            create_user(
                session,
                login.username,
                login.password,
                login.role,
                member_ref=login.member_ref,
                site_names=login.site_names,
            )


# ------------------------------------------------------------------------ step: samples


def _local_hours(ts_ns: np.ndarray, tz: str = LOCAL_TZ) -> tuple[np.ndarray, np.ndarray]:
    """Local hour of day (float) and weekday (0 = Monday) of each UTC timestamp."""
    local = pd.DatetimeIndex(pd.to_datetime(ts_ns, unit="ns", utc=True)).tz_convert(tz)
    hours = (
        local.hour.to_numpy() + local.minute.to_numpy() / 60.0 + local.second.to_numpy() / 3600.0
    )
    return hours.astype(float), local.day_of_week.to_numpy()


def pv_power_w(
    ts_ns: np.ndarray, latitude: float, longitude: float, peak_w: float, rng: np.random.Generator
) -> np.ndarray:
    """PV output [W, negative = production] from the solar elevation with daily cloudiness.

    Plane-of-array irradiance is approximated by ``sin(elevation)`` scaled to ``peak_w`` at
    full sun, with a clearness factor per local day (0.25-1.0) and short cloud dips.
    Solar position: :func:`pvlib.solarposition.get_solarposition` (NREL SPA).
    """
    import pvlib

    times = pd.DatetimeIndex(pd.to_datetime(ts_ns, unit="ns", utc=True))
    elevation = pvlib.solarposition.get_solarposition(times, latitude, longitude)[
        "apparent_elevation"
    ].to_numpy()
    sun = np.clip(np.sin(np.radians(elevation)), 0.0, None) ** 1.15
    day = pd.DatetimeIndex(times.tz_convert(LOCAL_TZ).date).factorize()[0]
    clearness = rng.uniform(0.25, 1.0, size=day.max() + 1)[day]
    dips = 1.0 - 0.5 * (rng.random(ts_ns.shape[0]) < 0.08 * (1.0 - clearness))
    noise = rng.normal(1.0, 0.02, ts_ns.shape[0])
    return -peak_w * sun * clearness * dips * np.clip(noise, 0.9, 1.1)


def building_power_w(ts_ns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dorpshuis [W]: base load, coffee mornings, busy evenings and weekend events."""
    h, wd = _local_hours(ts_ns)
    base = 1_200.0 + 300.0 * np.sin(h / 24 * 2 * np.pi)
    morning = np.where((h >= 9) & (h < 12) & (wd < 5), 2_500.0, 0.0)
    evening_kw = np.array([6.0, 9.0, 7.0, 11.0, 8.0, 5.0, 2.0])  # Mon..Sun club nights
    evening = np.where((h >= 18.5) & (h < 23), evening_kw[wd] * 1000.0, 0.0)
    weekend = np.where((wd >= 5) & (h >= 13) & (h < 18), 4_000.0, 0.0)
    kitchen = np.where(rng.random(ts_ns.shape[0]) < 0.03, 3_000.0, 0.0) * ((h > 8) & (h < 23))
    return base + morning + evening + weekend + kitchen + rng.normal(0, 150.0, ts_ns.shape[0])


@dataclass(frozen=True)
class EvPlan:
    """When an EV is parked at the dorpshuis (local hours) and its battery [kWh, kW, %]."""

    asset: str
    arrive_h: float
    leave_h: float
    weekdays: tuple[int, ...]
    capacity_kwh: float
    max_kw: float
    soc_min_pct: float
    soc_arrive_pct: float


EV_PLANS = (
    EvPlan("ev-1", 8.5, 20.5, (0, 1, 2, 3, 4), 64.0, 7.4, 40.0, 45.0),
    EvPlan("ev-2", 17.5, 23.0, (0, 1, 2, 3, 4, 5), 58.0, 7.4, 50.0, 80.0),
    EvPlan("ev-3", 11.0, 22.5, (1, 3, 5, 6), 77.0, 7.4, 35.0, 70.0),
)


def simulate_site(
    ts_ns: np.ndarray,
    pv_w: np.ndarray,
    building_w: np.ndarray,
    evs: Sequence[EvPlan],
    battery_kwh: float,
    battery_kw: float,
    dt_s: float,
) -> dict[str, np.ndarray]:
    """Dispatch EVs and the battery minute by minute with a simple self-consumption rule.

    Parked EVs charge from PV surplus (up to their power). The battery absorbs the surplus
    left, tops up from the grid at night (01:00-05:00, 6 kW, to 70 %), and from 16:00 covers
    the building's import; parked V2G EVs then cover what the battery cannot, down to their
    minimum SoC. Power positive = charging/consumption [W]; SoC [%].

    Returns
    -------
    dict
        ``<ev>/power``, ``<ev>/soc``, ``battery/power``, ``battery/soc``, ``grid/power``.
    """
    n = ts_ns.shape[0]
    h, wd = _local_hours(ts_ns)
    out: dict[str, np.ndarray] = {}
    ev_power = np.zeros((len(evs), n))
    ev_soc = np.full((len(evs), n), np.nan)
    soc_now = [e.soc_arrive_pct for e in evs]
    bat_power = np.zeros(n)
    bat_soc = np.zeros(n)
    b_soc = 50.0
    b_max_w = battery_kw * 1000.0
    hours_per_step = dt_s / 3600.0
    for i in range(n):
        net = pv_w[i] + building_w[i]
        parked = [wd[i] in e.weekdays and e.arrive_h <= h[i] < e.leave_h for e in evs]
        for k, e in enumerate(evs):  # solar surplus into the cars first
            if not parked[k]:
                soc_now[k] = e.soc_arrive_pct
                continue
            p = min(-net, e.max_kw * 1000.0) if net < 0 and soc_now[k] < 95.0 else 0.0
            ev_power[k, i] = p
            net += p
        if net < 0 and b_soc < 95.0:  # the rest of the surplus into the battery
            p = min(-net, b_max_w)
        elif 1.0 <= h[i] < 5.0 and b_soc < 70.0:  # night top-up from the grid
            p = 6_000.0
        elif net > 0 and b_soc > 15.0 and (h[i] >= 16.0 or h[i] < 1.0):  # evening import
            p = -min(net, b_max_w)
        else:
            p = 0.0
        b_soc += (p * 0.95 if p > 0 else p / 0.95) * hours_per_step / (battery_kwh * 10.0)
        bat_power[i] = p
        bat_soc[i] = b_soc
        net += p
        for k, e in enumerate(evs):  # V2G for what the battery could not cover
            if not parked[k]:
                continue
            if h[i] >= 17.0 and net > 0 and soc_now[k] > e.soc_min_pct:
                p = -min(net, e.max_kw * 1000.0)
                ev_power[k, i] += p
                net += p
            soc_now[k] += ev_power[k, i] * hours_per_step / (e.capacity_kwh * 10.0)
            ev_soc[k, i] = soc_now[k]
    for k, e in enumerate(evs):
        out[f"{e.asset}/power"] = ev_power[k]
        out[f"{e.asset}/soc"] = ev_soc[k]
    out["battery/power"] = bat_power
    out["battery/soc"] = bat_soc
    out["grid/power"] = pv_w + building_w + bat_power + ev_power.sum(axis=0)
    return out


def factory_power_w(ts_ns: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A plastics extrusion plant [W]: two shifts on weekdays (06-22), a weekend base load.

    Extruders run at 120-160 kW in shifts and idle warm (8 kW) otherwise; compressors cycle
    between load (55 kW) and unload (18 kW), with leakage keeping them at 15 kW on weekends;
    the chiller follows production and the day temperature; offices and lighting are the
    unmetered remainder of the incomer.
    """
    n = ts_ns.shape[0]
    h, wd = _local_hours(ts_ns)
    shift = (wd < 5) & (h >= 6) & (h < 22)
    out: dict[str, np.ndarray] = {}
    for k in (1, 2):
        level = rng.uniform(120e3, 160e3)
        running = shift & (rng.random(n) > 0.01)
        out[f"extruder-line-{k}/power"] = np.where(
            running, level + rng.normal(0, 4e3, n), 8e3 + rng.normal(0, 300, n)
        )
    for k in (1, 2):
        duty = np.where(shift, 0.7, 0.25)
        loaded = rng.random(n) < duty
        out[f"compressor-{k}/power"] = np.where(loaded, 55e3, 18e3) * np.where(
            (wd >= 5) & ~loaded, 0.83, 1.0
        ) + rng.normal(0, 500, n)
    out["chiller/power"] = (
        20e3 + 25e3 * shift + 8e3 * np.sin((h - 9) / 24 * 2 * np.pi) + rng.normal(0, 1e3, n)
    )
    other = np.where(shift, 30e3, 9e3) + rng.normal(0, 800, n)
    out["main-incomer/power"] = sum(out.values()) + other
    return out


def step_samples(ctx: DemoContext) -> None:
    """Synthesize the demo week and append it to the sample store (1-minute samples)."""
    step_ns = ctx.sample_period_s * 1_000_000_000
    start_ns = pd.Timestamp(ctx.start).as_unit("ns").value
    end_ns = pd.Timestamp(ctx.end).as_unit("ns").value
    ts = np.arange(start_ns, end_ns, step_ns, dtype=np.int64)
    with ctx.sessions() as session:
        site = session.scalar(select(Site).where(Site.name == DEMO_SITE))
        if site is None:
            raise NoaberError(f"demo site {DEMO_SITE!r} missing: run the core step first")
        lat, lon = site.latitude, site.longitude
        pv_asset = next(a for a in site.assets if a.name == "pv")
        bat_asset = next(a for a in site.assets if a.name == "battery")
        peak_w = float(pv_asset.params.get("peak_kw", 30.0)) * 1000.0
        bat_kwh = float(bat_asset.params.get("capacity_kwh", 60.0))
        bat_kw = float(bat_asset.params.get("max_charge_kw", 30.0))
    pv = pv_power_w(ts, lat, lon, peak_w, ctx.rng(1))
    building = building_power_w(ts, ctx.rng(2))
    flows = simulate_site(ts, pv, building, EV_PLANS, bat_kwh, bat_kw, ctx.sample_period_s)
    flows["pv/power"] = pv
    flows["building/power"] = building
    grid = flows["grid/power"]
    step_h = ctx.sample_period_s / 3600.0
    flows["grid/energy_import"] = 1_250_000.0 + np.cumsum(np.clip(grid, 0, None) * step_h)
    flows["grid/energy_export"] = 830_000.0 + np.cumsum(np.clip(-grid, 0, None) * step_h)
    series = {f"{DEMO_SITE}/{k}": v for k, v in flows.items()}
    series |= {f"{DEMO_FACTORY}/{k}": v for k, v in factory_power_w(ts, ctx.rng(3)).items()}
    for key, values in series.items():
        if key not in ctx.channels:
            raise NoaberError(f"demo channel {key!r} is not in the demo site files")
        keep = ~np.isnan(values)  # an EV's SoC exists only while it is parked
        ctx.store.append(ctx.channels[key], ts[keep], values[keep])
    ctx.store.compact()


# ----------------------------------------------------------------------- step: readings


def step_readings(ctx: DemoContext) -> None:
    """15-minute interval readings of every power and energy-counter channel.

    Computed from the stored samples by :func:`energy.pipeline.update_many` (the Numba kernels
    of :mod:`energy.kernels`, each channel under its own aggregation), incrementally, as in
    operation.
    """
    from energy.pipeline import update_many

    with ctx.sessions() as session:
        update_many(ctx.store, session)


def step_live_readings(ctx: DemoContext, now: dt.datetime | None = None) -> None:
    """Readings of the ISPs of the gateway step's live polls: from the end of the demo week
    on, and only in the two hours up to the demo's clock ``now`` (default: the real clock).

    The week was settled as it was synthesised; a live poll shortly after midnight must not
    reach back into the week's last ISP (the pipeline bridges gaps up to 2 h), so only ISPs
    that start at or after ``ctx.end`` are written. The polls run on the real clock: a demo
    built at another ``now`` (the tests' fixed day) writes none of them, so its readings do
    not depend on the day it was built.
    """
    from energy.pipeline import update_many

    clock = pd.Timestamp(now or utc_now()).as_unit("ns").value
    lo = max(pd.Timestamp(ctx.end).as_unit("ns").value, clock - 8 * ISP_NS)
    with ctx.sessions() as session:
        update_many(ctx.store, session, window=(lo, clock + 4 * ISP_NS))


CORE_STEPS: tuple[tuple[str, DemoStep], ...] = (
    ("core", step_core),
    ("samples", step_samples),
    ("readings", step_readings),
)


def build_demo(
    data_dir: Path,
    settings: Settings | None = None,
    extra_steps: Sequence[tuple[str, DemoStep]] = (),
    now: dt.datetime | None = None,
    on_step: Callable[[str], None] | None = None,
    sample_period_s: int = SAMPLE_PERIOD_S,
    logins: Sequence[DemoLogin] = DEMO_LOGINS,
) -> DemoContext:
    """Build the demo in ``data_dir`` (cleared first) and return its context.

    Parameters
    ----------
    data_dir : Path
        Where the SQLite file and the samples go; a previous demo there is replaced.
    settings : Settings, optional
        Base settings (must be local mode).
    extra_steps : sequence of (name, step)
        Steps run after :data:`CORE_STEPS` (the domain packages' ``demo_step``).
    now : datetime, optional
        The clock (the demo week ends at this day's local midnight).
    on_step : callable, optional
        Called with each step's name before it runs (progress display).
    sample_period_s : int
        Period of the synthetic samples [s] (1 minute; tests may use a coarser one).
    logins : sequence of DemoLogin
        The users to create (all of :data:`DEMO_LOGINS` by default).
    """
    data_dir = Path(data_dir).resolve()
    settings = demo_settings(data_dir, settings)
    check_database(settings)  # before anything is cleared: a refusal loses nothing
    prepare_dir(data_dir)
    reset_database(settings)
    engine = make_engine(settings.sqlalchemy_url)
    start, end = demo_week(now)
    ctx = DemoContext(
        data_dir=data_dir,
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        store=SampleStore(settings.samples_dir),
        start=start,
        end=end,
        sample_period_s=sample_period_s,
        logins=tuple(logins),
    )
    for name, step in (*CORE_STEPS, *extra_steps):
        if on_step is not None:
            on_step(name)
        step(ctx)
    if extra_steps:
        # Samples the domain steps added (the gateway's live polls) become readings too.
        step_live_readings(ctx, now)
    return ctx


def logins_table(logins: Sequence[DemoLogin] = DEMO_LOGINS) -> list[tuple[str, str, str, str]]:
    """Rows ``(username, password, role, note)`` to print."""
    return [(lg.username, lg.password, lg.role, lg.note) for lg in logins]
