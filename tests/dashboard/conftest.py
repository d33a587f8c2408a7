"""The dashboard's tests: a project, the dashboard served in-process on it, and (for the browser
tests) one headless Chromium per module. A module that needs another of these defines its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.dashboard import CHROMIUM, CHROMIUM_ARGS, serve_dashboard, write_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def base(project: Path, redis_url: str) -> Iterator[str]:
    with serve_dashboard(project, redis_url) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (its own browser download is not reachable)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
