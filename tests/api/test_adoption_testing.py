"""cortexflow.testing: make_job for unit tests of a handler, and the pytest plugin that runs a
queues.yaml's workers against a private server (no Redis to install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cortexflow import BaseWorker
from cortexflow.testing import QueuesUnderTest, make_job, run_handler
from tests.helpers.project import REPO


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


def test_the_plugin_runs_the_example_apps_tests_with_no_redis(tmp_path: Path) -> None:
    app = tmp_path / "own_app"
    shutil.copytree(REPO / "examples" / "own_app", app)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CORTEXFLOW_FILE")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout
    assert not (app / ".cortexflow").exists(), "the fixture must not use the folder's server"
