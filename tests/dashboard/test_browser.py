"""The web UI in headless Chromium (Playwright for Python driving Debian's `chromium`):
login with the token URL, live counts, a failed job's page and its Retry button, pause from
the UI, and nothing but the login form without a session."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    CHROMIUM,
    wait_until,
    workers,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)


@pytest.fixture
def page(browser: Any, base: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15000)
    yield p
    context.close()


def login(page: Any, base: str, path: str = "/") -> None:
    page.goto(f"{base}{path}{'&' if '?' in path else '?'}token={ADMIN_TOKEN}")
    assert "token=" not in page.url


def api(base: str, method: str, path: str, body: Any = None) -> Any:
    r = httpx.request(method, base + path, json=body, headers=ADMIN, timeout=20)
    assert r.status_code < 300, r.text
    return r.json()


def stats(base: str, queue: str) -> dict[str, Any]:
    return next(s for s in api(base, "GET", "/api/queues") if s["queueName"] == queue)


def test_login_then_counts_change_without_a_reload(page: Any, base: str) -> None:
    expect = playwright_api.expect
    login(page, base)
    assert page.url == base + "/"
    for queue in ("work", "mail", "dead"):
        expect(page.locator(f"tr[data-queue='{queue}']")).to_be_visible()
    waiting = page.locator("tr[data-queue='work'] td[data-k='waiting']")
    expect(waiting).to_have_text("0")
    page.evaluate("window.__sameDocument = true")
    api(base, "POST", "/api/queues/work/jobs", [{"name": "x", "data": {}}] * 3)
    expect(waiting).to_have_text("3", timeout=5000)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_without_a_token_only_the_login_form(page: Any, base: str) -> None:
    api(base, "POST", "/api/queues/work/jobs", {"name": "hidden-name", "data": {}})
    for path in ("/", "/queues/work"):
        page.goto(base + path)
        assert page.locator("input[name='token']").is_visible()
        body = page.inner_text("body")
        assert "hidden-name" not in body and "mail" not in body and "Workers" not in body
    page.goto(base + "/?token=wrong")
    assert "not valid" in page.inner_text("body")
    page.fill("input[name='token']", ADMIN_TOKEN)
    page.click("button[type='submit']")
    playwright_api.expect(page.locator("tr[data-queue='work']")).to_be_visible()


def test_failed_job_page_shows_the_error_and_retry_runs_it_again(
    page: Any, base: str, project: Path, redis_url: str
) -> None:
    expect = playwright_api.expect
    with workers(project, redis_url, ["work"]):
        jid = api(base, "POST", "/api/queues/work/jobs", {"name": "f", "data": {"fail": "ui"}})[
            "id"
        ]
        wait_until(lambda: stats(base, "work")["failed"] == 1, what="the job failed")
        login(page, base, f"/queues/work/jobs/{jid}")
        expect(page.locator("#job-state")).to_have_text("failed")
        expect(page.locator("#job-error")).to_have_text("ValueError: boom: ui")
        expect(page.locator("#job-stacktrace")).to_contain_text("Traceback")
        expect(page.locator("#job-stacktrace")).to_contain_text("in explode")
        page.click("button:has-text('Retry')")
        # It runs again (and fails again): a second log line, shown without a reload.
        expect(page.locator("#job-logs")).to_have_text(
            f"started {jid}\nstarted {jid}", timeout=10000
        )
        expect(page.locator("#job-state")).to_have_text("failed", timeout=10000)


def test_pause_from_the_ui_stops_a_worker_from_starting_jobs(
    page: Any, base: str, project: Path, redis_url: str
) -> None:
    expect = playwright_api.expect
    with workers(project, redis_url, ["work"]):
        login(page, base, "/queues/work")
        page.click("button:has-text('Pause')")
        expect(page.locator("#paused")).to_have_text("paused", timeout=5000)
        assert stats(base, "work")["paused"] is True
        jid = api(base, "POST", "/api/queues/work/jobs", {"name": "p", "data": {}})["id"]

        async def no_start(seconds: float) -> list[str]:
            from cortexflow import QueueEvents

            events = QueueEvents("work", config=project, redis_url=redis_url, last_event_id="0")
            seen: list[str] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            try:
                while loop.time() < deadline:
                    seen += [e.event for e in await events.read(0.2) if e.job_id == jid]
            finally:
                await events.close()
            return seen

        # The worker is idle and live: for 3 s it must not start the job.
        # (in a thread: Playwright's sync API keeps an event loop running in this one)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            seen = pool.submit(asyncio.run, no_start(3.0)).result(timeout=30)
        assert seen == ["added"]
        assert stats(base, "work")["waiting"] == 1
        page.click("button:has-text('Resume')")
        expect(page.locator("#paused")).to_have_text("running", timeout=5000)
        wait_until(lambda: stats(base, "work")["completed"] == 1, what="ran after resume")
