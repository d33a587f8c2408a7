"""examples/taskiq_fastapi under `cortexflow up` (its folder's embedded server, no URL given):
the web app sends tasks through FastAPI's TestClient; the workers run them with taskiq-fastapi's
lifespan, so the task sees the `Request` dependency and the app state the lifespan set."""

from __future__ import annotations

import importlib
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers.procs import Proc
from tests.helpers.project import REPO

EXAMPLE = REPO / "examples" / "taskiq_fastapi"


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "taskiq_fastapi"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".cortexflow", "__pycache__"))
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in ("mailer_web", "mailer_tasks"):
        sys.modules.pop(name, None)


def _result(client: TestClient, task_id: str, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        reply = client.get(f"/tasks/{task_id}")
        if reply.status_code == 200:
            body: dict[str, Any] = reply.json()
            return body
        assert reply.status_code == 202, reply.text
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish within {timeout}s")


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["none", "process"])
def test_fastapi_example_under_up(
    example: Path, start_up: Callable[..., Proc], isolation: str
) -> None:
    """With ``isolation: process`` the lifespan runs in each child of the emails queue, and the
    task's dependencies resolve there."""
    if isolation == "process":
        config = example / "queues.yaml"
        text = config.read_text().replace("    concurrency: 10\n", "    concurrency: 2\n", 1)
        config.write_text(text.replace("  emails:\n", "  emails:\n    isolation: process\n", 1))
    up = start_up(example)
    (ready,) = up.wait_for(r"emails\.0 \(pid (\d+)\) ready", 60)
    emails = int(ready.group(1))
    up.wait_for(r"reports\.0 \(pid \d+\) ready", 60)
    web = importlib.import_module("mailer_web")
    with TestClient(web.app) as client:
        sent = client.post("/welcome/Bo")
        assert sent.status_code == 202, sent.text
        body = _result(client, sent.json()["task_id"])
        # request.app.state (set by the lifespan) and request.state (what it yielded), in a worker
        assert body == {"ready": True, "value": "Welcome, Bo! (from the mailer)", "error": ""}
        children = Path(f"/proc/{emails}/task/{emails}/children").read_text().split()
        spawned = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(spawned) == (2 if isolation == "process" else 0)  # a slot's child ran it
        sent = client.post("/reports", json=[1, 2, 3])
        body = _result(client, sent.json()["task_id"])
        assert body["value"] == {"count": 3, "sum": 6}
    up.send(signal.SIGTERM)
    up.wait_exit(30)
