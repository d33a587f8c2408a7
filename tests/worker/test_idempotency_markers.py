"""Idempotency markers (queues/common.write_once) live exactly as long as a re-run of their job
can happen: a retried run and the run after a SIGKILL still find the marker and write nothing
twice; the completion of the job deletes it; until then its TTL is the job's re-run window."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.config.model import Backoff, QueueConfig
from cortexflow.engine.jobs import JobOptions
from cortexflow.queues.common import write_once
from cortexflow.worker.context import BACKLOG_MARGIN, MAX_RERUN_WINDOW, JobContext
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, cortexflow_argv
from tests.helpers.project import write_project

COUNT = "{t}:count"


def marker(job_id: str) -> str:
    return "{t}:marker:" + job_id


async def fails_once_after_writing(data: Any, job: JobContext) -> dict[str, Any]:
    added = await write_once(job, marker(job.id), lambda pipe: pipe.incr(COUNT))
    ttl = await job.redis.ttl(marker(job.id))
    if job.attempt == 1:
        raise RuntimeError("the first run fails after its write")
    return {"added": added, "ttl": ttl, "window": job.rerun_window}


def test_a_retry_finds_the_marker_and_the_completion_deletes_it(
    redis_url: str, tmp_path: Path
) -> None:
    queue = QueueConfig(
        name="m", handler="-", attempts=3, backoff=Backoff(type="fixed", delay=0.05, max=20.0)
    )
    config = make_config(tmp_path / "queues.yaml", queue)

    async def main() -> None:
        async with (
            engine_for(redis_url, queue) as engine,
            inproc_worker(config, "m", redis_url, fails_once_after_writing),
        ):
            await engine.add("n", {}, JobOptions(job_id="j1"))

            async def finished() -> Any:
                for _ in range(400):
                    job = await engine.get_job("j1")
                    if job is not None and job.state == "completed":
                        return job
                    await asyncio.sleep(0.025)
                raise AssertionError(f"not completed: {await engine.get_job('j1')}")

            job = await finished()
            assert job.attempts_made == 2
            assert job.result["added"] is False  # the retry wrote nothing
            assert int(await engine.client.get(COUNT)) == 1
            # The second run (attempt 2 of 3) may be followed by a retry and the 1 stall the job
            # may still get: 3 runs of at most timeout + lease, 1 retry wait of at most the
            # backoff's max, plus the backlog margin.
            window = 3 * (queue.timeout + queue.lease) + queue.backoff.max + BACKLOG_MARGIN
            assert job.result["window"] == window <= MAX_RERUN_WINDOW
            # Its TTL was set by the first run: 2 retries left then, and 4 runs.
            first = 4 * (queue.timeout + queue.lease) + 2 * queue.backoff.max + BACKLOG_MARGIN
            assert 0 < job.result["ttl"] <= first
            for _ in range(200):  # the finisher deletes it right after the completion
                if not await engine.client.exists(marker("j1")):
                    break
                await asyncio.sleep(0.025)
            assert not await engine.client.exists(marker("j1"))

    asyncio.run(main())


KILLED_HANDLER = """
import asyncio
from cortexflow.queues.common import write_once

async def handle(data, job):
    added = await write_once(job, "{t}:marker:" + job.id, lambda pipe: pipe.incr("{t}:count"))
    if job.started == 1:
        await asyncio.sleep(3600)  # the first run is killed here, its marker written
    return {"added": added}
"""


@pytest.mark.slow
def test_the_run_after_a_sigkill_finds_the_marker_of_the_killed_run(
    redis_url: str, tmp_path: Path
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        queues:
          m: {handler: "mark:handle", lease: 2s}
        """,
        {"mark.py": KILLED_HANDLER},
    )
    client = redis.Redis.from_url(redis_url)
    argv = cortexflow_argv("worker", "m", "-f", str(path), "--redis-url", redis_url)
    first = Proc(argv, cwd=tmp_path, name="first")
    second = None
    try:
        asyncio.run(add_one(redis_url, path))
        wait_for(lambda: client.get(COUNT) == b"1", 30, message=first.log)
        assert client.ttl(marker("j1")) > 0
        first.kill()  # SIGKILL: the run never completes, its lease runs out
        second = Proc(argv, cwd=tmp_path, name="second")

        def completed() -> bool:
            return client.zscore("{cortexflow:m}:completed", "j1") is not None

        wait_for(completed, 60, message=lambda: second.log() if second else "")
        assert client.get(COUNT) == b"1"  # written once over both runs
        assert b'"added":false' in client.hget("{cortexflow:m}:j:j1", "result").replace(b" ", b"")
        wait_for(lambda: not client.exists(marker("j1")), 10, message="the marker is deleted")
    finally:
        first.kill()
        if second is not None:
            second.stop()
        client.close()


async def add_one(url: str, path: Path) -> None:
    from cortexflow.config import load_config

    queue = load_config(path, check_imports=False).queues["m"]
    async with engine_for(url, queue) as engine:
        await engine.add("n", {}, JobOptions(job_id="j1"))
