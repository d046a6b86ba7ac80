"""The four users' journeys in headless Debian Chromium, on a copy of the session demo.

Per role: sign in through the form, reach every task of the start page by clicking its link,
at 1400 px and at 390 px: each page answers 200 in Dutch with the header (name, language
switch, sign-out), has no horizontal overflow, and axe-core (the copy bundled by
``axe-playwright-python``) finds no serious or critical violation; the start page's tasks are
reached with the Tab key. The EV owner sets a session on the page and the next plan keeps
it; the manager sets the grid limit and asks for a re-plan (its job's status page); the
operator adds and edits a member, adds a user and changes their role, and queues a month's
settlement (its job's status page), at both widths. Screenshots go to ``$NOABER_ARTEFACTS`` (default
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
    "operator": {
        "task-province": "/operator/province",
        "task-members": "/operator/members",
        "task-runs": "/operator/runs",
        "task-users": "/operator/users",
    },
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


def test_ev_owner_session_changes_the_next_plan(server, browser_page, world, tmp_path) -> None:
    import pandas as pd

    from noaber.services.siteplans import plan_site

    page, _outside = browser_page
    page.set_viewport_size({"width": 390, "height": 900})
    sign_in(page, server, "member")
    with page.expect_navigation():
        page.click("#task-session")
    start = world.end  # the demo's plan starts at the end of its week
    tz = ZoneInfo("Europe/Amsterdam")
    day = start.astimezone(tz).date()
    # the form refuses a departure in the past (the real clock): late in the day the session
    # is tomorrow's, and so is the plan that must carry it
    prices = world.data_dir / "optimizer" / "prices.csv"
    if dt.datetime.combine(day, dt.time(19, 0), tz) < dt.datetime.now(tz) + dt.timedelta(hours=1):
        day += dt.timedelta(days=1)
        start = dt.datetime.combine(day, dt.time(0, 0), tz).astimezone(dt.UTC)
        # the demo's prices cover its own next day: the same prices a day later
        frame = pd.read_csv(prices)
        frame["timestamp"] = (pd.to_datetime(frame["timestamp"]) + pd.Timedelta(days=1)).map(
            pd.Timestamp.isoformat
        )
        prices = tmp_path / "prices.csv"
        frame.to_csv(prices, index=False)
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
        sid = plan_site(s, DEMO_SITE, start, 24, prices)
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


@pytest.mark.parametrize("width", WIDTHS)
def test_operator_adds_a_member_and_a_user(server, browser_page, width) -> None:
    page, _outside = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    failures: list[str] = []
    sign_in(page, server, "operator")
    with page.expect_navigation():
        page.click("#add-member")
    page.fill("#name", "Jan Hoekstra")
    page.fill("#iban", "NL91 ABNA 0417 1643 01")  # a wrong check digit
    with page.expect_navigation():
        page.click("#member-add-submit")
    assert "geldig IBAN" in page.inner_text("#form-errors")
    check_page(page, f"operator-{width}-member-refused", failures)
    page.fill("#iban", "NL91 ABNA 0417 1643 00")
    with page.expect_navigation():
        page.click("#member-add-submit")
    assert page.locator("#saved").count() == 1, page.inner_text("main")
    check_page(page, f"operator-{width}-member-added", failures)
    ref = page.url.split("/operator/members/")[1].split("?")[0]
    page.fill("#email", "jan@example.nl")
    with page.expect_navigation():
        page.click("#member-submit")
    assert page.locator("#saved").count() == 1
    assert page.input_value("#email") == "jan@example.nl"
    # a user for the new member, then another role
    page.goto(f"{server}/")
    with page.expect_navigation():
        page.click("#add-user")
    page.fill("#username", f"lid-{width}")
    page.fill("#password", "a-long-enough-password")
    page.select_option("#role", "member")
    page.select_option("#member_ref", ref)
    with page.expect_navigation():
        page.click("#user-add-submit")
    assert page.locator("#saved").count() == 1, page.inner_text("main")
    check_page(page, f"operator-{width}-user-added", failures)
    page.select_option("#role", "site_manager")
    page.select_option("#member_ref", "")
    page.check(f"#site-{DEMO_SITE}")
    with page.expect_navigation():
        page.click("#role-submit")
    assert page.locator("#saved").count() == 1, page.inner_text("main")
    role = page.inner_text("#user-role")
    assert "beheerder gebouw" in role and "Noaberhof" in role, role
    assert failures == [], "\n".join(failures)


def finish(world: DemoContext, url: str, result: dict[str, Any]) -> None:
    """Mark the job of the status page ``url`` done, as a worker would (the test server has
    no queue), so the page stops refreshing itself before it is checked; then reload it."""
    from energy.jobs import Job

    job_id = int(url.rstrip("/").rsplit("/", 1)[1])
    with world.sessions() as s, s.begin():
        job = s.get(Job, job_id)
        assert job is not None and job.state == "queued"
        job.state, job.result = "done", result
        job.started_at = job.finished_at = dt.datetime.now(dt.UTC)


@pytest.mark.parametrize("width", WIDTHS)
def test_settlement_and_replan_go_through_jobs(server, browser_page, world, width) -> None:
    page, _outside = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    failures: list[str] = []
    sign_in(page, server, "operator")
    with page.expect_navigation():
        page.click("#settle-month")
    page.fill("#period", "2026-1")
    with page.expect_navigation():
        page.click("#run-submit")
    assert "JJJJ-MM" in page.inner_text("#form-errors")
    check_page(page, f"operator-{width}-runs-refused", failures)
    period = world.start.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%Y-%m")
    page.fill("#period", period)
    with page.expect_navigation():
        page.click("#run-submit")
    assert "/jobs/" in page.url
    assert page.get_attribute("#job-state [data-state]", "data-state") == "queued"
    finish(world, page.url, {"run_id": 1, "transfers": 0})
    page.reload()
    check_page(page, f"operator-{width}-job", failures)
    assert "klaar" in page.inner_text("#job-state")
    # the manager's re-plan button leads to its job's page
    sign_in(page, server, "site_manager")
    with page.expect_navigation():
        page.click("#task-limits")
    with page.expect_navigation():
        page.click("#replan-submit")
    assert "/jobs/" in page.url and page.locator("#job-progress").count() == 1
    finish(world, page.url, {"site": DEMO_SITE, "status": "optimal"})
    page.reload()
    check_page(page, f"site_manager-{width}-replan-job", failures)
    assert failures == [], "\n".join(failures)
