"""The dashboard's job and queue pages on jobs with a history: runs
started, a completed job's earlier error as history, an active job's running try; and its
favicon and 503 text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.dashboard import ADMIN_TOKEN, free_port, serve_dashboard
from tests.helpers.history import ERROR, completed_after_a_failure, failed_once, lease
from tests.helpers.jobs import Jobs

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def browser(project: Path, redis_url: str) -> Iterator[httpx.Client]:
    """A logged-in admin session on the dashboard."""
    with serve_dashboard(project, redis_url) as url, httpx.Client(base_url=url, timeout=20) as b:
        b.get("/?token=" + ADMIN_TOKEN)
        yield b


def test_the_job_page_shows_runs_started_and_an_earlier_error_as_history(
    browser: httpx.Client, project: Path, redis_url: str
) -> None:
    jobs = Jobs(project, redis_url)
    jobs.run("work", lambda e: completed_after_a_failure(e, "done"))
    page = browser.get("/queues/work/jobs/done").text
    assert '<dd id="job-started">2</dd>' in page
    assert "Last failed attempt" in page and f'<p id="job-last-error">{ERROR}</p>' in page
    assert 'id="job-error"' not in page and "<h2>Error</h2>" not in page
    api = browser.get("/api/queues/work/jobs/done", headers=ADMIN).json()
    assert (api["attemptsStarted"], api["error"], api["lastError"]) == (2, None, ERROR)

    # The queue table: no error for the completed job.
    table = browser.get("/fragments/queues/work?state=completed").text
    assert ">done</a>" in table and ERROR not in table

    # A job waiting for its retry keeps its error, on its page and in the table.
    jobs.run("work", lambda e: failed_once(e, "again"))
    page = browser.get("/queues/work/jobs/again").text
    assert f'<p class="error" id="job-error">{ERROR}</p>' in page
    assert ERROR in browser.get("/fragments/queues/work?state=waiting").text


def test_an_active_job_counts_its_running_try(
    browser: httpx.Client, project: Path, redis_url: str
) -> None:
    async def running(e: QueueEngine) -> None:
        await e.add("n", {}, JobOptions(job_id="j", attempts=3))
        await lease(e, "j", lease=0.2)  # a worker that dies: the next lease is the second start
        await asyncio.sleep(0.4)
        await lease(e, "j")

    Jobs(project, redis_url).run("work", running)
    table = browser.get("/fragments/queues/work?state=active").text
    assert "<td>1/3</td>" in table, table
    page = browser.get("/queues/work/jobs/j").text
    assert "0 of 3 (one running) (1 stall(s))" in page and '<dd id="job-started">2</dd>' in page


def test_the_favicon_is_served_and_linked(project: Path, redis_url: str) -> None:
    with serve_dashboard(project, redis_url) as url, httpx.Client(base_url=url, timeout=20) as b:
        icon = b.get("/favicon.ico")  # no token: browsers ask for it before any login
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.content.startswith(b"<svg") and b"</svg>" in icon.content
        page = b.get("/").text  # the login form, on the base template as every page
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
        assert b.get("/static/favicon.svg").content == icon.content


def test_the_503_text_has_no_doubled_full_stop(project: Path) -> None:
    with serve_dashboard(project, f"redis://127.0.0.1:{free_port()}/0") as url:
        for path in ("/healthz", "/api/queues"):
            r = httpx.get(url + path, headers=ADMIN, timeout=30)
            assert r.status_code == 503
            text = r.json()["error"]
            assert "Connection refused" in text or "connecting" in text, text
            assert ".." not in text, json.dumps(r.json())
