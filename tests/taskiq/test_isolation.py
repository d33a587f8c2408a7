"""`tasks:` with `isolation: process`: each child process of the worker imports the broker, runs
its worker startup, and runs the tasks there (dependencies, middlewares, progress, requeue, the
timeout's kill) and, at the worker's stop, its shutdown; the worker process itself never imports
the tasks' module."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.embedded import pid_alive
from cortexflow.worker.handlers import HandlerImportError
from cortexflow.worker.queue_worker import QueueWorker
from tests.engine.conftest import workers
from tests.helpers.jobs import wait_workers_ready
from tests.helpers.poll import wait_for_async
from tests.helpers.procs import Proc
from tests.taskiq.conftest import App

__all__ = ["workers"]

# The lease promise holds on the embedded default (unix socket) and over TCP.
pytestmark = pytest.mark.transports

QUEUES = """
version: 1
stop_timeout: 1s
queues:
  iso:
    tasks: {mod}:broker
    isolation: process
    concurrency: 2
    timeout: 4s
    attempts: 2
    backoff: {{type: fixed, delay: 100ms}}
"""

TASKS = """
import asyncio, json, time
from typing import Annotated

import redis
from taskiq import Context, TaskiqDepends, TaskiqEvents, TaskiqMiddleware, TaskiqState
from taskiq.depends.progress_tracker import ProgressTracker

with open(os.environ["TEST_IMPORTS"], "a") as f:  # every process that imports this module
    f.write(f"{os.getpid()}\\n")

r = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])


class Recorder(TaskiqMiddleware):
    async def pre_execute(self, message):
        r.rpush("test:hooks", json.dumps(["pre_execute", message.task_name, os.getpid()]))
        return message

    def post_execute(self, message, result):
        r.rpush("test:hooks", json.dumps(["post_execute", message.task_name, os.getpid()]))


broker.add_middlewares(Recorder())


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def startup(state):
    state.started_in = os.getpid()


@broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
async def shutdown(state):
    r.rpush("test:shutdown", os.getpid())


def pid_of_dependency() -> int:
    return os.getpid()


@broker.task(queue="iso")
async def where(
    n: int,
    dep: Annotated[int, TaskiqDepends(pid_of_dependency)],
    state: TaskiqState = TaskiqDepends(),
) -> dict:
    return {"n": n, "pid": os.getpid(), "dep": dep, "startup": state.started_in}


@broker.task(queue="iso")
async def again(ctx: Context = TaskiqDepends()) -> list:
    runs = r.incr("test:again")
    if runs == 1:
        await ctx.requeue()
    return [runs, os.getpid()]


@broker.task(queue="iso")
def hangs() -> int:
    r.rpush("test:hangs", os.getpid())
    if r.incr("test:hang") == 1:
        time.sleep(120)  # a hung task: only a kill stops it
    return os.getpid()


@broker.task(queue="iso", attempts=1)
async def boom() -> None:
    raise ValueError("boom")


@broker.task(queue="iso")
async def progress(tracker: ProgressTracker[dict] = TaskiqDepends()) -> int:
    await tracker.set_progress("STARTED", {"pid": os.getpid()})
    while not r.exists("test:go"):
        await asyncio.sleep(0.05)
    return os.getpid()
"""


@pytest.fixture
def iso_app(
    make_app: Callable[..., App],
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[App, Path]]:
    """The project (its module imported here, the producer side) and the file of the pids of
    the processes that imported its module."""
    imports = tmp_path / "imports.txt"
    monkeypatch.setenv("TEST_IMPORTS", str(imports))
    monkeypatch.setenv("TEST_REDIS_URL", redis_url)
    yield make_app(TASKS, QUEUES), imports


def _pids(imports: Path) -> list[int]:
    return [int(line) for line in imports.read_text().split()]


def _start(app: App, workers: Callable[..., Proc], client: redis.Redis) -> Proc:
    worker = workers(app.path, "iso", app.url)
    wait_workers_ready(client, "iso", timeout=60)
    return worker


def test_tasks_run_in_child_processes_the_worker_never_imports(
    iso_app: tuple[App, Path], workers: Callable[..., Proc], redis_client: redis.Redis
) -> None:
    app, imports = iso_app
    worker = _start(app, workers, redis_client)

    async def main() -> list[dict[str, Any]]:
        try:
            tasks = [await app.module.where.kiq(n) for n in range(4)]
            return [(await t.wait_result(timeout=30)).return_value for t in tasks]
        finally:
            await app.broker.manager.close()

    results = asyncio.run(main())
    assert [r["n"] for r in results] == [0, 1, 2, 3], worker.log()
    children = {r["pid"] for r in results}
    assert worker.pid not in children and os.getpid() not in children
    for r in results:  # the dependency and the broker's worker startup ran in the task's child
        assert r["dep"] == r["pid"] == r["startup"]
    hooks = [json.loads(x) for x in redis_client.lrange("test:hooks", 0, -1)]
    assert {(h[0], h[2] in children) for h in hooks} == {
        ("pre_execute", True),
        ("post_execute", True),
    }
    assert len(hooks) == 8
    imported = _pids(imports)
    assert worker.pid not in imported, "the worker process imported the tasks' module"
    assert children <= set(imported)
    # A worker's stop: its idle children run the broker's shutdown before they exit.
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.log()
    assert children <= {int(x) for x in redis_client.lrange("test:shutdown", 0, -1)}


def test_requeue_progress_and_a_failing_task_in_a_child(
    iso_app: tuple[App, Path], workers: Callable[..., Proc], redis_client: redis.Redis
) -> None:
    app, _ = iso_app
    worker = _start(app, workers, redis_client)

    async def main() -> None:
        try:
            engine = app.broker.manager.get_queue("iso")
            task = await app.module.again.kiq()
            runs, pid = (await task.wait_result(timeout=30)).return_value
            assert runs == 2 and pid != worker.pid, worker.log()
            job = await engine.get_job(task.task_id)
            assert job is not None and job.attempts_made == 1  # the requeued run is not one
            failing = await app.module.boom.kiq()
            result = await failing.wait_result(timeout=30)
            assert result.is_err and str(result.error) == "ValueError: boom"
            job = await engine.get_job(failing.task_id)
            assert job is not None and job.state == "failed" and job.attempts_made == 1
            running = await app.module.progress.kiq()

            async def started() -> bool:
                got = await running.get_progress()
                return got is not None and got.state == "STARTED"

            await wait_for_async(started, 30, message="progress set")
            got = await running.get_progress()
            redis_client.set("test:go", 1)
            pid = (await running.wait_result(timeout=30)).return_value
            assert got.meta == {"pid": pid} and pid != worker.pid
        finally:
            await app.broker.manager.close()

    asyncio.run(main())


@pytest.mark.slow
def test_a_hung_task_is_killed_at_its_timeout_and_the_retry_runs(
    iso_app: tuple[App, Path], workers: Callable[..., Proc], redis_client: redis.Redis
) -> None:
    app, _ = iso_app
    worker = _start(app, workers, redis_client)

    async def main() -> None:
        try:
            task = await app.module.hangs.kiq()
            result = await task.wait_result(timeout=40)
            assert not result.is_err, worker.log()
            job = await app.broker.manager.get_queue("iso").get_job(task.task_id)
            assert job is not None and (job.state, job.attempts_made) == ("completed", 2)
        finally:
            await app.broker.manager.close()

    asyncio.run(main())
    hung, retried = (int(x) for x in redis_client.lrange("test:hangs", 0, -1))
    assert hung != retried and not pid_alive(hung)  # the timeout really stopped it
    assert worker.alive()


BROKEN_QUEUES = """
version: 1
queues:
  iso:
    tasks: {mod}:broker
    isolation: process
"""


def test_a_broker_that_fails_to_import_exits_with_the_config_code(
    tmp_path: Path, redis_url: str, workers: Callable[..., Proc]
) -> None:
    (tmp_path / "queues.yaml").write_text(BROKEN_QUEUES.format(mod="exploding"))
    (tmp_path / "exploding.py").write_text("raise RuntimeError('bad import')\n")
    worker = workers(tmp_path / "queues.yaml", "iso", redis_url)
    assert worker.proc.wait(60) == 78, worker.log()
    assert "bad import" in worker.log() and "Traceback" not in worker.log()


REFUSED = """
from taskiq.middlewares import SmartRetryMiddleware

broker.add_middlewares(SmartRetryMiddleware())

@broker.task(queue="iso")
async def noop():
    return None
"""


def test_a_refused_broker_gives_the_same_error_as_in_the_worker(
    make_app: Callable[..., App],
) -> None:
    """The child's refusal is the worker's HandlerImportError, word for word."""
    app = make_app(REFUSED, BROKEN_QUEUES)
    iso = app.config.queues["iso"]
    in_process = replace(app.config, queues={"iso": replace(iso, isolation="none")})
    messages = []

    async def main() -> None:
        for config in (app.config, in_process):
            worker = QueueWorker(config, "iso", app.url)
            with pytest.raises(HandlerImportError) as caught:
                await worker.start()
            messages.append(str(caught.value))
        await app.broker.manager.close()

    asyncio.run(main())
    assert "SmartRetryMiddleware re-kicks failed tasks" in messages[0]
    assert messages[0] == messages[1]
