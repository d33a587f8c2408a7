"""JobReceiver: how the worker runs the jobs it leases (a real worker and Valkey, in this
process). Speed is measured in bench/; these check the shape of the hot path and what a run's
end records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cortexflow.config.model import QueueConfig
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.worker.queue_worker import QueueWorker
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async


def test_a_job_costs_one_task_of_the_event_loop(redis_url: str, tmp_path: Path) -> None:
    """The jobs a fetch leases start at once, one asyncio task each: no prefetcher tasks, no
    per-message waits (taskiq's stock Receiver made three tasks per job). redis-py's own tasks
    (a send with a socket timeout is one) are not the worker's and are not counted."""
    created = 0
    n = 300

    def count(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        nonlocal created
        code = getattr(coro, "cr_code", None)
        if code is None or "/redis/" not in code.co_filename:
            created += 1
        return asyncio.Task(coro, loop=loop, **kw)

    async def main() -> None:
        async with _paused_backlog(redis_url, tmp_path, "tasks", n) as (e, _):
            loop = asyncio.get_running_loop()
            loop.set_task_factory(count)
            await _drain(e, n)
            loop.set_task_factory(None)

    asyncio.run(main())
    # One per job, plus a few for the feed's fetches and its wait for work.
    assert n <= created <= n * 1.2, f"{created} tasks for {n} jobs"


@contextlib.asynccontextmanager
async def _paused_backlog(
    redis_url: str, tmp_path: Path, name: str, n: int
) -> AsyncIterator[tuple[QueueEngine, QueueWorker]]:
    """``n`` no-op jobs in a paused queue (concurrency 10) and a running worker on it."""

    async def noop(data: Any) -> None:
        return None

    queue = QueueConfig(name=name, handler="x:y", concurrency=10)
    async with engine_for(redis_url, queue) as e:
        await e.pause()
        await e.add_bulk([("n", {"i": i}, None) for i in range(n)])
        async with inproc_worker(
            make_config(tmp_path / "q.yaml", queue), name, redis_url, noop
        ) as worker:
            yield e, worker


async def _drain(e: QueueEngine, n: int) -> None:
    await e.resume()
    await wait_for_async(lambda: _count(e, "completed", n), 30, message=f"{n} jobs completed")


async def _count(e: Any, state: str, n: int) -> bool:
    return bool((await e.stats())[state] >= n)


def test_a_handlers_own_timeout_error_is_not_the_runs_timeout(
    redis_url: str, tmp_path: Path
) -> None:
    """Only the run's own timeout is reported as "took longer than its timeout"; a TimeoutError
    the handler raised (asyncio.wait_for in its code) is reported as what it is."""

    async def handler(data: Any) -> None:
        await asyncio.wait_for(asyncio.sleep(5), 0.01)

    async def main() -> None:
        queue = QueueConfig(name="owntimeout", handler="x:y", timeout=30, attempts=1)
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "owntimeout", redis_url, handler
            ):
                await e.add("n", {}, JobOptions(job_id="own", timeout=20))
                job = await e.wait_finished("own", 10)
        assert job is not None and job.state == "failed"
        assert job.error == "TimeoutError", job.error
        assert "wait_for" in (job.stacktrace or "")

    asyncio.run(main())


def test_the_runs_timeout_names_the_timeout_and_where_the_handler_was(
    redis_url: str, tmp_path: Path
) -> None:
    async def handler(data: Any) -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        queue = QueueConfig(name="runtimeout", handler="x:y", timeout=0.2, attempts=1)
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "runtimeout", redis_url, handler
            ):
                await e.add("n", {}, JobOptions(job_id="slow"))
                job = await e.wait_finished("slow", 10)
        assert job is not None and job.state == "failed"
        assert job.error == "TimeoutError: the run took longer than its timeout of 0.2s"
        assert "asyncio.sleep(10)" in (job.stacktrace or "")  # the line the handler was on

    asyncio.run(main())


def test_a_worker_whose_feed_fails_gives_up(redis_url: str, tmp_path: Path) -> None:
    """A fault outside Redis errors (which the feed rides out) stops the feed: the worker
    must not stay up fetching nothing; it gives up so its process exits and is replaced."""

    async def handler(data: Any) -> None:
        return None

    async def main() -> None:
        queue = QueueConfig(name="feedfault", handler="x:y")
        gave_up = asyncio.Event()
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "feedfault", redis_url, handler
            ) as worker:
                worker.on_give_up = gave_up.set
                assert worker.broker is not None

                async def broken(n: int) -> Any:
                    raise ValueError("a fault of the worker itself")

                worker.broker.consumer.fetch = broken  # type: ignore[method-assign]
                await e.add("n", {})  # wakes the feed, whose next fetch fails
                await asyncio.wait_for(gave_up.wait(), 10)
                assert worker.failed

    asyncio.run(main())


def test_while_jobs_run_the_finisher_leases_and_the_feed_does_not(
    redis_url: str, tmp_path: Path
) -> None:
    """A finished run's slot is refilled by the finisher's one call (outcomes written, next jobs
    leased); the feed fetching for it as well was a round trip for one job per batch."""
    n = 400
    fetches = 0

    async def main() -> None:
        async with _paused_backlog(redis_url, tmp_path, "feedquiet", n) as (e, worker):
            assert worker.broker is not None
            consumer = worker.broker.consumer
            fetch = consumer.fetch

            async def counted(k: int) -> Any:
                nonlocal fetches
                fetches += 1
                return await fetch(k)

            consumer.fetch = counted  # type: ignore[method-assign,assignment]
            await _drain(e, n)

    asyncio.run(main())
    # The resume's wake-up, and a fetch or two when the queue runs dry: not one per batch.
    assert fetches <= 5, f"the feed fetched {fetches} times for {n} jobs"


def test_each_run_times_out_at_its_own_deadline(redis_url: str, tmp_path: Path) -> None:
    """Runs share one timer (RunTimeouts): a shorter timeout that starts later still fires
    first, a run that ends in time is never cancelled, and the longer one fires after."""
    ran: dict[str, float] = {}

    async def handler(data: Any, job: Any) -> str:
        await asyncio.sleep(data["sleep"])
        ran[job.id] = data["sleep"]
        return "done"

    async def main() -> None:
        queue = QueueConfig(name="deadlines", handler="x:y", concurrency=3, attempts=1)
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "deadlines", redis_url, handler
            ):
                t0 = time.monotonic()
                await e.add("n", {"sleep": 30}, JobOptions(job_id="long", timeout=2.5))
                await asyncio.sleep(0.2)
                await e.add("n", {"sleep": 30}, JobOptions(job_id="short", timeout=0.4))
                await e.add("n", {"sleep": 0.3}, JobOptions(job_id="in-time", timeout=0.6))
                short = await e.wait_finished("short", 10)
                t_short = time.monotonic() - t0
                in_time = await e.wait_finished("in-time", 10)
                long = await e.wait_finished("long", 10)
                t_long = time.monotonic() - t0
        assert short is not None and short.state == "failed"
        assert short.error == "TimeoutError: the run took longer than its timeout of 0.4s"
        assert 0.55 <= t_short < 2.4, t_short  # 0.2 s later start + its 0.4 s
        assert in_time is not None and in_time.state == "completed", in_time
        assert long is not None and long.state == "failed"
        assert long.error == "TimeoutError: the run took longer than its timeout of 2.5s"
        assert 2.5 <= t_long < 6.0, t_long
        # By the server's clock too: the later, shorter timeout fired well before the long one.
        assert short.finished_at is not None and long.finished_at is not None
        assert long.finished_at - short.finished_at >= 1.0, (short.finished_at, long.finished_at)
        assert ran == {"in-time": 0.3}

    asyncio.run(main())
