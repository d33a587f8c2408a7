"""cortexflow.testing: make_job for unit tests of a handler, and the pytest plugin that runs a
queues.yaml's workers against a private server (no Redis to install)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cortexflow import BaseWorker, QueueManager
from cortexflow.api.resolve import pinned
from cortexflow.testing import QueuesUnderTest, make_job, run_handler
from tests.helpers.project import REPO, write_project


class Counter(BaseWorker):
    async def process(self, job: Any) -> Any:
        await job.update_progress({"done": 1})
        return {"n": job.data["n"] + 1, "attempt": job.attempt}


def plain(data: Any) -> Any:
    return data["n"] * 2


def test_make_job_is_what_a_handler_gets_without_any_server() -> None:
    job = make_job({"n": 1}, queue="counts", attempt=2, settings={"step": 3})
    assert (job.queue, job.attempt, job.settings["step"], job.data) == ("counts", 2, 3, {"n": 1})
    assert run_handler(Counter, job) == {"n": 2, "attempt": 2}
    assert job.progress == [{"done": 1}]
    assert run_handler(plain, data={"n": 4}) == 8
    with pytest.raises(RuntimeError, match="make_job"):
        _ = job.redis


def test_progress_that_is_not_json_fails_as_in_a_worker() -> None:
    async def handler(data: Any, job: Any) -> None:
        await job.update_progress({"at": object()})

    with pytest.raises(TypeError):
        run_handler(handler, make_job())


def test_queues_under_test_runs_real_workers(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "queues.yaml").write_text(
        "version: 1\nqueues:\n  double:\n    handler: calc:double\n    attempts: 1\n"
    )
    (tmp_path / "calc.py").write_text(
        "def double(data):\n    if data['n'] < 0:\n        raise ValueError('negative')\n"
        "    return data['n'] * 2\n"
    )
    with QueuesUnderTest(tmp_path / "queues.yaml", redis_url) as queues:
        assert queues.run_job("double", {"n": 21}).result == 42
        failed = queues.run_job("double", {"n": -1})
        assert failed.state == "failed" and "negative" in (failed.error or "")
        assert queues.stats("double")["completed"] == 1


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``folder`` as a user runs it: no REDIS_URL, no CORTEXFLOW_FILE."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CORTEXFLOW_FILE")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_the_plugin_runs_the_example_apps_tests_with_no_redis(tmp_path: Path) -> None:
    app = tmp_path / "own_app"
    shutil.copytree(REPO / "examples" / "own_app", app)
    proc = run_pytest(app)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout
    assert not (app / ".cortexflow").exists(), "the fixture must not use the folder's server"


APP_TESTS = """\
import asyncio

import pytest

from cortexflow import SyncQueueManager, get_queue_manager
from cortexflow.errors import UsageError


async def enqueue(n):  # the app's code: a manager of ./queues.yaml, no URL given
    async with get_queue_manager() as queues:
        return await queues.add_job("echo", "e", {"n": n}, job_id=f"app-{n}")


def test_the_apps_manager_adds_to_the_fixtures_server(cortexflow):
    job = cortexflow.wait("echo", asyncio.run(enqueue(1)))
    assert job.state == "completed" and job.result == {"n": 1}
    assert cortexflow.stats("echo")["completed"] == 1


kept = SyncQueueManager()  # made once at import, as a module-level manager of an app


def test_a_kept_manager_uses_this_tests_database(cortexflow):
    job_id = kept.add_job("echo", "e", {"n": 2})
    assert cortexflow.wait("echo", job_id).result == {"n": 2}


def test_a_kept_manager_is_refused_in_the_next_test(cortexflow):
    with pytest.raises(UsageError, match="earlier test"):
        kept.add_job("echo", "e", {"n": 3})
    kept.close()
    assert cortexflow.stats("echo")["waiting"] == 0
"""


@pytest.mark.slow
def test_get_queue_manager_under_the_fixture_never_starts_the_folders_server(
    tmp_path: Path,
) -> None:
    app = tmp_path / "app"
    write_project(
        app,
        "version: 1\nqueues:\n  echo:\n    handler: echo:handle\n    attempts: 1\n",
        {
            "echo.py": "def handle(data):\n    return data\n",
            "conftest.py": 'pytest_plugins = ["cortexflow.testing"]\n',
            "test_app.py": APP_TESTS,
        },
    )
    proc = run_pytest(app)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout
    assert not (app / ".cortexflow").exists(), "a manager started the folder's embedded server"


def test_pinned_is_the_default_of_managers_not_an_explicit_url(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_project(tmp_path / "p", "version: 1\nqueues:\n  q:\n    handler: m:h\n")
    monkeypatch.chdir(tmp_path)  # no queues.yaml here: the config comes from the pin
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # the developer's: never used

    async def run() -> tuple[list[str], str, int]:
        explicit = QueueManager(config, redis_url="redis://127.0.0.1:2/0")
        with pinned(redis_url, config):
            async with QueueManager() as default:
                await default.add_job("q", "n", {})
                names = default.queue_names
            explicit._redis()  # resolves its URL (nothing answers there: it is not used)
            await explicit.close()
        async with QueueManager(config, redis_url) as reader:
            waiting = (await reader.get_queue_stats("q"))["waiting"]
        return names, explicit.url, waiting

    names, explicit, waiting = asyncio.run(run())
    assert names == ["q"] and explicit == "redis://127.0.0.1:2/0" and waiting == 1
    assert not (tmp_path / "p" / ".cortexflow").exists()
