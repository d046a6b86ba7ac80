"""The four users' journeys in headless Debian Chromium, on a copy of the session demo.

Per role: sign in through the form, reach every task of the start page by clicking its link,
at 1400 px and at 390 px: each page answers 200 in Dutch with the header (name, language
switch, sign-out), has no horizontal overflow, and axe-core (the copy bundled by
``axe-playwright-python``) finds no serious or critical violation; the start page's tasks are
reached with the Tab key. The EV owner sets a session on the page and the next plan keeps
it; the manager sets the grid limit. Screenshots go to ``$NOABER_ARTEFACTS`` (default
``tmp/artefacts/browser`` in the working directory; not committed).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from noaber.services.demo import DEMO_SITE, DemoContext
from tests.browser import live_server, loopback_page
from tests.conftest import copy_demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1400, 390)
LOGINS = {
    "member": ("lid-1", "noaber-lid-1"),
    "site_manager": ("beheer-noaberhof", "noaber-dorpshuis"),
    "firm": ("polymeer", "noaber-fabriek"),
    "operator": ("operator", "noaber-operator"),
}
#: The start page's task links each role must be able to click (ids), and the pages they
#: lead to (a part of the URL).
TASKS = {
    "member": {
        "task-plan": "/schedules/my-car",
        "task-session": "/my/session",
        "task-statements": "/my/statements",
        "task-devices": "/my/devices",
    },
    "site_manager": {
        "task-plan-today": f"/schedules/sites/{DEMO_SITE}",
        "task-dashboard": f"/sites/{DEMO_SITE}/dashboard",
        "task-limits": f"/sites/{DEMO_SITE}/limits",
        "task-statement": f"/sites/{DEMO_SITE}/statement",
    },
    "firm": {"task-campaigns": "/campaigns/dashboard"},
    "operator": {"task-province": "/operator/province"},
}


def artefacts() -> Path:
    out = Path(os.environ.get("NOABER_ARTEFACTS", "tmp/artefacts")) / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def world(demo: DemoContext, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoContext]:
    """A copy of the session demo for this module's writes."""
    yield from copy_demo(demo, tmp_path_factory.mktemp("journeys") / "demo")


@pytest.fixture(scope="module")
def server(world: DemoContext) -> Iterator[str]:
    from noaber.api import create_app

    with live_server(create_app(world.settings, world.engine)) as base:
        yield base


@pytest.fixture(scope="module")
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    """One Chromium for the module."""
    with loopback_page() as (page, outside):
        yield page, outside
    assert not outside, f"a page tried to reach the internet: {outside}"


def axe_serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations of the page (rule id and first target)."""
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['nodes'][0]['target'] if v['nodes'] else ''}"
        for v in result.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def check_page(page: Any, what: str, failures: list[str]) -> None:
    """Dutch, the header, no horizontal overflow, no serious axe violation; a screenshot."""
    lang = page.evaluate("document.documentElement.lang")
    if lang != "nl":
        failures.append(f"{what}: lang={lang}")
    for sel in ("#user-name", "#lang-switch", "#sign-out"):
        if page.locator(sel).count() != 1:
            failures.append(f"{what}: no {sel} in the header")
    over = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if over > 1:
        wide = page.evaluate(
            "() => Array.from(document.querySelectorAll('body *')).filter(e =>"
            " e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)"
            ".slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id)"
        )
        failures.append(f"{what}: {over} px horizontal overflow ({wide})")
    failures.extend(f"{what}: axe {v}" for v in axe_serious(page))
    name = what.replace("/", "_").replace(" ", "_").replace("?", "_")
    page.screenshot(path=str(artefacts() / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, role: str) -> None:
    page.context.clear_cookies()
    # a Dutch reader (headless Chromium asks for en-US by default)
    page.set_extra_http_headers({"Accept-Language": "nl-NL,nl;q=0.9"})
    page.goto(f"{base}/")
    user, password = LOGINS[role]
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_selector("#user-name")


def walk(page: Any, base: str, role: str, width: int, failures: list[str]) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, base, role)
    check_page(page, f"{role}-{width}-start", failures)
    for task, target in TASKS[role].items():
        page.goto(f"{base}/")
        with page.expect_navigation():
            page.click(f"#{task}")
        if target not in page.url:
            failures.append(f"{role} {task}: went to {page.url}, not {target}")
        resp_ok = page.locator("#error").count() == 0
        if not resp_ok:
            failures.append(f"{role} {task}: an error page at {page.url}")
        check_page(page, f"{role}-{width}-{task}", failures)


@pytest.mark.parametrize("role", sorted(LOGINS))
def test_journey_per_role(server, browser_page, role) -> None:
    page, _outside = browser_page
    failures: list[str] = []
    for width in WIDTHS:
        walk(page, server, role, width, failures)
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("role", sorted(LOGINS))
def test_tasks_reachable_by_keyboard(server, browser_page, role) -> None:
    page, _outside = browser_page
    page.set_viewport_size({"width": 1400, "height": 900})
    sign_in(page, server, role)
    seen: set[str] = set()
    for _ in range(80):  # bounded: the header and the tasks come first
        page.keyboard.press("Tab")
        seen.add(page.evaluate("document.activeElement && document.activeElement.id || ''"))
        if set(TASKS[role]) <= seen and "sign-out" in seen:
            break
    assert set(TASKS[role]) | {"sign-out", "lang-en"} <= seen, seen
    # Enter on a focused task opens it
    page.focus(f"#{next(iter(TASKS[role]))}")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert next(iter(TASKS[role].values())) in page.url


def test_ev_owner_session_changes_the_next_plan(server, browser_page, world) -> None:
    from noaber.services.siteplans import plan_site

    page, _outside = browser_page
    page.set_viewport_size({"width": 390, "height": 900})
    sign_in(page, server, "member")
    with page.expect_navigation():
        page.click("#task-session")
    start = world.end  # the demo's plan starts at the end of its week
    tz = ZoneInfo("Europe/Amsterdam")
    day = start.astimezone(tz).date()
    arrival = dt.datetime.combine(day, dt.time(10, 0), tz)
    departure = dt.datetime.combine(day, dt.time(19, 0), tz)
    # a bad one first: departure before arrival is refused, in Dutch, naming the field
    page.fill("#arrival", arrival.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#departure", (arrival - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#soc_target_pct", "93")
    page.fill("#soc_min_pct", "45")  # the car's own minimum is 40 %
    with page.expect_navigation():
        page.click("#session-submit")
    assert "moet na de aankomst" in page.inner_text("#form-errors")
    page.fill("#departure", departure.strftime("%Y-%m-%dT%H:%M"))
    with page.expect_navigation():
        page.click("#session-submit")
    assert page.locator("#saved").count() == 1, page.inner_text("main")
    assert "93 %" in page.inner_text("#current-session")
    page.screenshot(path=str(artefacts() / "member-session-saved.png"), full_page=True)
    # the next plan (what the re-plan job runs) keeps the owner's departure and target
    with world.sessions() as s, s.begin():
        sid = plan_site(s, DEMO_SITE, start, 24, world.data_dir / "optimizer" / "prices.csv")
    page.goto(f"{server}/schedules/my-car")
    text = page.inner_text(".kpi.departure")
    assert "93" in text and departure.strftime("%H:%M") in text, (sid, text)


def test_manager_sets_the_grid_limit(server, browser_page) -> None:
    page, _outside = browser_page
    page.set_viewport_size({"width": 1400, "height": 900})
    sign_in(page, server, "site_manager")
    with page.expect_navigation():
        page.click("#task-limits")
    page.fill("#grid_import_limit_kw", "100000")
    with page.expect_navigation():
        page.click("#limits-submit")
    assert "hoogstens" in page.inner_text("#form-errors")
    page.fill("#grid_import_limit_kw", "12,5")
    with page.expect_navigation():
        page.click("#limits-submit")
    assert page.locator("#saved").count() == 1
    assert "12,5 kW" in page.inner_text("#current-limits")
