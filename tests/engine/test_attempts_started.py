"""Runs started (BullMQ's attemptsStarted): a handler tells a re-run from a first run.

The job hash's `deliveries` counts every lease; `Job.started`, `to_dict()["attemptsStarted"]`
and the handler's `job.started` show it. A stall, a stopping worker giving the job back and an
operator's `retry` do not reset it (attempts_made counts only runs that ended)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from cortexflow.config.model import QueueConfig, Retention, RetentionRule
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.worker.queue_worker import QueueWorker
from tests.helpers.jobs import Jobs, engine_for, inproc_worker, make_config, wait_workers_ready
from tests.helpers.poll import wait_for, wait_for_async
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

KEEP_ALL = Retention(RetentionRule(None, None), RetentionRule(None, None))
SHORT_LEASE = 0.2  # a lease runs 0.2..0.24 s: the "dead" first worker never renews it


async def _lease_and_die(e: QueueEngine, job_id: str) -> None:
    """Lease ``job_id`` as a worker that then dies: its short lease runs out unrenewed."""
    short = QueueEngine(e.client, dataclasses.replace(e.config, lease=SHORT_LEASE), e.prefix)
    (first,) = (await QueueConsumer(short, "doomed", e.client).fetch(1)).jobs
    assert first.job.id == job_id and first.job.started == 1 and first.job.attempts_made == 0
    await asyncio.sleep(SHORT_LEASE * 1.2 + 0.1)


async def _state(e: QueueEngine, job_id: str, state: str) -> bool:
    job = await e.get_job(job_id)
    return job is not None and job.state == state


def test_the_lease_after_a_stall_is_the_second_start(redis_url: str) -> None:
    async def main() -> None:
        q = QueueConfig(name="stall", handler="x:y", lease=30.0, retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="j"))
            job = await e.get_job("j")
            assert job is not None and job.started == 0 and job.to_dict()["attemptsStarted"] == 0
            await _lease_and_die(e, "j")
            (again,) = (await QueueConsumer(e, "w2", e.client).fetch(1)).jobs
            assert (again.job.started, again.job.attempts_made, again.job.stalls) == (2, 0, 1)
            job = await e.get_job("j")
            assert job is not None
            assert (job.state, job.started, job.attempts_made) == ("active", 2, 0)
            assert job.to_dict()["attemptsStarted"] == 2
            assert job.to_dict()["attemptsMade"] == 0  # the keys before it stay

    asyncio.run(main())


def test_the_handler_sees_started_2_on_its_rerun_after_a_stall(
    redis_url: str, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []

    async def handler(data: Any, job: Any) -> None:
        seen.append((job.attempt, job.started))

    async def main() -> None:
        q = QueueConfig(name="rerun", handler="x:y", lease=30.0, retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="j"))
            await _lease_and_die(e, "j")
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), q.name, redis_url, handler
            ):
                await wait_for_async(lambda: _state(e, "j", "completed"), 20, message="rerun")
            job = await e.get_job("j")
            assert job is not None
            assert (job.attempts_made, job.stalls, job.started) == (1, 1, 2)

    asyncio.run(main())
    # attempt stays 1 (the stalled run never ended: no attempt), started says it is a re-run
    assert seen == [(1, 2)]


def test_a_job_given_back_by_a_stopping_worker_restarts_as_its_second_start(
    redis_url: str, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []

    async def handler(data: Any, job: Any) -> None:
        seen.append((job.attempt, job.started))
        if job.started == 1:
            await asyncio.sleep(60)  # stopped long before this ends

    async def main() -> None:
        q = QueueConfig(name="giveback", handler="x:y", lease=30.0, retention=KEEP_ALL)
        config = make_config(tmp_path / "q.yaml", q, stop_timeout=0.5)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="j"))
            worker = QueueWorker(config, q.name, redis_url, handler=handler)
            await worker.start()
            try:
                await wait_for_async(lambda: _state(e, "j", "active"), 20, message="first run")
                await wait_for_async(lambda: asyncio.sleep(0, bool(seen)), 20, message="ran")
            finally:
                await worker.stop(0.5)
            job = await e.get_job("j")
            assert job is not None
            assert (job.state, job.attempts_made, job.started) == ("waiting", 0, 1)
            async with inproc_worker(config, q.name, redis_url, handler):
                await wait_for_async(lambda: _state(e, "j", "completed"), 20, message="rerun")
            job = await e.get_job("j")
            assert job is not None and (job.attempts_made, job.started) == (1, 2)

    asyncio.run(main())
    assert seen == [(1, 1), (1, 2)]


def test_retry_resets_attempts_but_started_keeps_counting(redis_url: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    async def handler(data: Any, job: Any) -> str:
        seen.append((job.attempt, job.started))
        if job.started == 1:
            raise ValueError("first run fails")
        return "ok"

    async def main() -> None:
        q = QueueConfig(name="again", handler="x:y", attempts=1, lease=30.0, retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="j"))
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), q.name, redis_url, handler
            ):
                await wait_for_async(lambda: _state(e, "j", "failed"), 20, message="failed")
                job = await e.get_job("j")
                assert job is not None and (job.attempts_made, job.started) == (1, 1)
                await e.pause()  # so the worker cannot lease it before it is read back
                assert await e.retry(["j"]) == ["j"]
                job = await e.get_job("j")
                assert job is not None and (job.attempts_made, job.started) == (0, 1)
                await e.resume()
                await wait_for_async(lambda: _state(e, "j", "completed"), 20, message="retried")
            job = await e.get_job("j")
            assert job is not None and (job.attempts_made, job.started) == (1, 2)
            assert job.to_dict()["attemptsStarted"] == 2

    asyncio.run(main())
    assert seen == [(1, 1), (1, 2)]


ISOLATED = """
def work(data, job):
    return {"attempt": job.attempt, "started": job.started}
"""


def test_a_process_isolated_handler_sees_started_too(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          iso:
            handler: startedhandlers:work
            isolation: process
        """,
        {"startedhandlers.py": ISOLATED},
    )
    jobs = Jobs(cfg, redis_url)
    jobs.run("iso", lambda e: e.add("n", {}, JobOptions(job_id="j")))
    jobs.run("iso", lambda e: _lease_and_die(e, "j"))
    worker = workers(cfg, "iso", redis_url)
    wait_workers_ready(redis_client, "iso")
    job = wait_for(
        lambda: (j := jobs.run("iso", lambda e: e.get_job("j"))) and j.state == "completed" and j,
        30,
        message=worker.log,
    )
    assert job.result == {"attempt": 1, "started": 2}, json.dumps(job.to_dict())
