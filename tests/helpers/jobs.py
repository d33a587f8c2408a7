"""Jobs through the engine: configs built in code, an engine on a URL, workers in this process
(on the test's loop, or on their own loop in a thread), sync wrappers for tests that drive
real processes, and one handler run on a real JobContext."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from cortexflow.config import load_config
from cortexflow.config.model import Config, QueueConfig
from cortexflow.engine import connect
from cortexflow.engine.options import AddOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.worker.context import JobContext
from cortexflow.worker.queue_worker import QueueWorker
from tests.helpers.poll import wait_for

PREFIX = "cortexflow"


def make_config(path: Path, *queues: QueueConfig, stop_timeout: float = 5.0) -> Config:
    return Config(path=path, queues={q.name: q for q in queues}, stop_timeout=stop_timeout)


@contextlib.asynccontextmanager
async def engine_for(url: str, queue: QueueConfig) -> AsyncIterator[QueueEngine]:
    client = connect(url)
    try:
        yield QueueEngine(client, queue, PREFIX)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def inproc_worker(
    config: Config, queue: str, url: str, handler: Callable[..., Any]
) -> AsyncIterator[QueueWorker]:
    worker = QueueWorker(config, queue, url, handler=handler)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(5)


async def finish_tasks() -> None:
    """Cancel what is left on the loop (and wait a little) before it closes, so no pending task
    is destroyed later, in the middle of unrelated code, by the garbage collector."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=2)


@contextlib.contextmanager
def workers_in_thread(
    config: Path, redis_url: str, queues: list[str] | None = None
) -> Iterator[None]:
    """WorkerManager on its own event loop in a thread, so blocking CLI runs can go on beside it."""
    from cortexflow import WorkerManager

    loop = asyncio.new_event_loop()
    manager = WorkerManager(config, redis_url, queues)
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(manager.start_all())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(manager.stop_all(1.5))
        loop.run_until_complete(finish_tasks())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20), "workers did not start"
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(20)
        loop.close()


class Jobs:
    """Enqueue and inspect jobs of one project on one Redis (sync wrappers over the engine)."""

    def __init__(self, path: Path, url: str) -> None:
        self.config = load_config(path, check_imports=False)
        self.url = url

    def run(self, queue: str, op: Callable[[QueueEngine], Awaitable[Any]]) -> Any:
        """``await op(engine)`` on ``queue``'s engine, on a connection of its own."""

        async def go() -> Any:
            client = connect(self.url)
            try:
                engine = QueueEngine(client, self.config.queues[queue], self.config.redis.prefix)
                return await op(engine)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def add(self, queue: str, datas: Sequence[dict[str, Any]]) -> list[str]:
        jobs = [("job", d, None) for d in datas]
        return list(self.run(queue, lambda e: e.add_bulk(jobs)))

    def stats(self, queue: str) -> dict[str, Any]:
        return dict(self.run(queue, lambda e: e.stats()))

    def states(self, queue: str, ids: Sequence[str]) -> list[str]:
        async def op(e: QueueEngine) -> list[str]:
            return [(j.state if j else "missing") for j in [await e.get_job(i) for i in ids]]

        return list(self.run(queue, op))

    def wait_stats(
        self, queue: str, pred: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """Poll the queue's stats until ``pred`` holds; fail showing the last ones."""
        last: dict[str, Any] = {}

        def matched() -> dict[str, Any] | None:
            last.update(self.stats(queue))
            return dict(last) if pred(last) else None

        result: dict[str, Any] = wait_for(
            matched, timeout, message=lambda: f"stats of {queue} never matched: {last}"
        )
        return result


def wait_workers_ready(client: redis.Redis, queue: str, n: int = 1, timeout: float = 30.0) -> None:
    """Wait until ``n`` workers of ``queue`` have a live heartbeat."""
    key = f"{{{PREFIX}:{queue}}}:workers"
    wait_for(
        lambda: client.zcount(key, int(time.time() * 1000), "+inf") >= n,
        timeout,
        message=f"{n} workers of {queue} ready",
    )


def run_handler(
    redis_url: str,
    handler: Callable[[Any, JobContext], Awaitable[Any]],
    data: Any,
    *,
    queue: str,
    name: str,
    job_id: str,
    settings: dict[str, Any] | None = None,
) -> Any:
    """Run ``handler(data, ctx)`` once, as job ``job_id`` of ``queue`` (with the queue's
    ``settings``) on a real JobContext on ``redis_url``; a job it adds fails the test."""

    async def go() -> Any:
        client = connect(redis_url)

        async def enqueue(to: str, job_name: str, payload: Any, opts: AddOptions) -> str:
            raise AssertionError(f"{queue}'s handler added a job to {to}: none expected")

        engine = QueueEngine(client, QueueConfig(name=queue, handler="tests:none"), "test")
        ctx = JobContext(
            engine, "", id=job_id, name=name, queue=queue, attempt=1,
            priority=0, created_at=time.time(), data=data, enqueue=enqueue, settings=settings,
        )  # fmt: skip
        try:
            return await handler(data, ctx)
        finally:
            await client.aclose()

    return asyncio.run(go())
