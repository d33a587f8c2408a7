"""Issue 29, item 4: the pages follow the SSE stream (/api/events) instead of polling. In
headless Chromium against a real `cortexflow dashboard` process: a job added through the HTTP
API shows in the open queue page within 500 ms of the POST's answer (measured in the page: a
MutationObserver stamps the row's arrival), the overview follows every queue through one
stream, a job's page follows its job; and with the stream refused (503 at --max-streams) the
page falls back to polling, then takes the stream again once a place is free."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    CHROMIUM,
    READ_TOKEN,
    dashboard_process,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMIT_MS = 500  # the bound; typically 50-200 ms here

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)

# Stamps (Date.now(), the same clock as the test's time.time()) the first time each job's row
# is in the page's jobs table, and each overview count as it changes.
OBSERVE = """() => {
  window.__seen = {};
  window.__counts = [];
  window.__sameDocument = true;
  new MutationObserver(function () {
    document.querySelectorAll("#jobs a[href*='/jobs/']").forEach(function (a) {
      var id = decodeURIComponent(a.getAttribute("href").split("/").pop());
      if (!(id in window.__seen)) window.__seen[id] = Date.now();
    });
    var cell = document.querySelector("tr[data-queue='dead'] td[data-k='waiting']");
    if (cell) window.__counts.push([cell.textContent.trim(), Date.now()]);
    var pill = document.getElementById("job-state");
    if (pill) window.__counts.push([pill.textContent.trim(), Date.now()]);
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15000)
    yield p
    context.close()


SENT: list[float] = []  # wall-clock ms of the last POST sent: nothing can show before it


def add(base: str, queue: str, body: Any) -> tuple[str, float]:
    """POST a job; its id and the wall-clock ms when the answer arrived."""
    with httpx.Client(timeout=20) as http:
        assert http.get(f"{base}/healthz").status_code == 200  # connected before the clock starts
        SENT[:] = [time.time() * 1000]
        r = http.post(f"{base}/api/queues/{queue}/jobs", json=body, headers=ADMIN)
        answered = time.time() * 1000
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), answered


def open_live(page: Any, base: str, path: str) -> None:
    page.goto(f"{base}{path}?token={ADMIN_TOKEN}")
    assert "token=" not in page.url
    page.wait_for_selector("body[data-live-mode='stream']", timeout=15000)
    page.evaluate(OBSERVE)


# Functions, not expressions: the page's CSP (no 'unsafe-eval') refuses evaluated strings.
SEEN = "(id) => window.__seen[id]"
COUNT = "(t) => (window.__counts.find(function (c) { return c[0] === t; }) || [])[1]"


def seen_at(page: Any, job_id: str, timeout_ms: int = 10000) -> float:
    page.wait_for_function(SEEN, arg=job_id, timeout=timeout_ms)
    at = float(page.evaluate(SEEN, job_id))
    assert at >= SENT[0] - 1, "shown before it was added: the clocks differ"
    return at


def count_at(page: Any, text: str, timeout_ms: int = 10000) -> float:
    page.wait_for_function(COUNT, arg=text, timeout=timeout_ms)
    at = float(page.evaluate(COUNT, text))
    assert at >= SENT[0] - 1, "shown before it was done: the clocks differ"
    return at


def test_a_job_added_through_the_api_shows_in_the_open_queue_page_within_500_ms(
    page: Any, project: Path, redis_url: str
) -> None:
    with dashboard_process(project, redis_url) as base:
        open_live(page, base, "/queues/work")
        latencies = []
        for i in range(3):  # three in a row: polling every 1.5 s would miss 500 ms most times
            job_id, answered = add(base, "work", {"name": f"live-{i}", "data": {}})
            latencies.append(seen_at(page, job_id) - answered)
            time.sleep(0.3)
        print(f"queue page: POST answered -> row shown: {[round(x) for x in latencies]} ms")
        assert all(x < LIMIT_MS for x in latencies), latencies
        assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_the_overview_and_a_job_page_follow_their_streams(
    page: Any, project: Path, redis_url: str
) -> None:
    with dashboard_process(project, redis_url) as base:
        # The overview: every queue through one stream (/api/events?queues=all).
        open_live(page, base, "/")
        _, answered = add(base, "dead", {"name": "x", "data": {}})
        overview_ms = count_at(page, "1") - answered
        # A job's page: its job's events (a delayed job promoted through the API).
        job_id, _ = add(base, "work", {"name": "later", "data": {}, "opts": {"delay": 600000}})
        open_live(page, base, f"/queues/work/jobs/{job_id}")
        SENT[:] = [time.time() * 1000]
        r = httpx.post(f"{base}/api/queues/work/jobs/{job_id}/promote", headers=ADMIN)
        answered = time.time() * 1000
        assert r.status_code == 200, r.text
        job_ms = count_at(page, "waiting") - answered
        print(f"overview: {overview_ms:.0f} ms; job page: {job_ms:.0f} ms")
        assert overview_ms < LIMIT_MS and job_ms < LIMIT_MS, (overview_ms, job_ms)


@pytest.mark.slow
def test_with_the_stream_refused_the_page_polls_then_takes_the_stream_again(
    page: Any, project: Path, redis_url: str
) -> None:
    with dashboard_process(project, redis_url, "--max-streams", "1") as base:
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        with httpx.stream("GET", f"{base}/api/queues/mail/events", headers=read) as held:
            assert held.status_code == 200  # the one place is taken
            page.goto(f"{base}/queues/work?token={ADMIN_TOKEN}")
            page.evaluate(OBSERVE)
            page.wait_for_selector("body[data-stream-errors]")  # its stream got 503
            assert page.evaluate("document.body.dataset.liveMode") == "poll"
            job_id, answered = add(base, "work", {"name": "polled", "data": {}})
            polled_ms = seen_at(page, job_id) - answered  # polling every 1.5 s
            assert page.evaluate("document.body.dataset.liveMode") == "poll"
        # The place is free again: the page's next try (backoff 1, 2, 4, 8, 15 s) takes it.
        page.wait_for_selector("body[data-live-mode='stream']", timeout=40000)
        job_id, answered = add(base, "work", {"name": "streamed", "data": {}})
        streamed_ms = seen_at(page, job_id) - answered
        print(f"polling: {polled_ms:.0f} ms; stream again: {streamed_ms:.0f} ms")
        assert polled_ms < 5000 and streamed_ms < LIMIT_MS, (polled_ms, streamed_ms)
        assert page.evaluate("window.__sameDocument") is True
