"""The queue page of a queue with groups, in headless Chromium: the groups table, and pausing
and resuming one group from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.groups.test_operations import PROJECT, SCHEMA
from tests.helpers.dashboard import ADMIN_TOKEN, CHROMIUM, CHROMIUM_ARGS, serve_dashboard
from tests.helpers.project import write_project

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(15000)
        yield pg
        browser.close()


def test_pause_and_resume_a_group_from_the_queue_page(
    page: Any, tmp_path: Path, redis_url: str
) -> None:
    import json

    project = write_project(
        tmp_path / "proj", PROJECT, {"handlers.py": "async def handle(data):\n    return None\n"}
    )
    (project.parent / "chat.schema.json").write_text(json.dumps(SCHEMA))
    expect = playwright_api.expect
    with serve_dashboard(project, redis_url) as base:
        jobs = [{"name": "n", "data": {"channel": "tg", "user": u}} for u in ("a", "a", "b")]
        assert (
            httpx.post(f"{base}/api/queues/chat/jobs", json=jobs, headers=ADMIN).status_code == 201
        )
        page.goto(f"{base}/queues/chat?token={ADMIN_TOKEN}")
        row = page.locator("#groups tr", has_text="tg:a")
        expect(row).to_contain_text("2")
        row.locator("button:has-text('Pause')").click()
        expect(row.locator(".pill.paused")).to_have_text("paused", timeout=10000)
        groups = httpx.get(f"{base}/api/queues/chat/groups", headers=ADMIN).json()["groups"]
        assert {"group": "tg:a", "waiting": 2, "active": 0, "paused": True} in groups
        row.locator("button:has-text('Resume')").click()
        expect(row.locator("button:has-text('Pause')")).to_be_visible(timeout=10000)
        groups = httpx.get(f"{base}/api/queues/chat/groups", headers=ADMIN).json()["groups"]
        assert all(not g["paused"] for g in groups)
