"""`taskiq worker module:broker` runs a cortexflow broker's tasks too (the compatible listen()
path): results, failures retried then failed for good with the queue's attempts."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.procs import Proc
from tests.taskiq.conftest import App

TASKS = """
@broker.task(queue="emails")
async def echo(value):
    return value

@broker.task(queue="emails")
async def boom():
    raise ValueError("boom")
"""


@pytest.mark.slow
def test_taskiq_worker_runs_the_tasks(make_app: Callable[..., App], tmp_path: Path) -> None:
    app = make_app(TASKS)
    taskiq = Path(sys.executable).with_name("taskiq")
    worker = Proc(
        [str(taskiq), "worker", f"{app.module.__name__}:broker", "--workers", "1"],
        cwd=tmp_path,
        env={"CORTEXFLOW_REDIS_URL": app.url, "PYTHONPATH": str(tmp_path)},
        name="taskiq-worker",
    )
    try:
        worker.wait_for("Listening started", 60)

        async def main() -> None:
            task = await app.module.echo.kiq("foo")
            assert (await task.wait_result(timeout=30)).return_value == "foo"
            failing = await app.module.boom.kiq()
            result = await failing.wait_result(timeout=30)
            assert result.is_err
            assert str(result.error) == "ValueError: boom"
            job = await app.broker.manager.get_queue("emails").get_job(failing.task_id)
            assert job is not None and job.attempts_made == 2  # the queue's attempts: 2
            await app.broker.manager.close()

        asyncio.run(main())
    finally:
        worker.send(signal.SIGTERM)
        worker.wait_exit(30)
