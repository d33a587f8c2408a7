"""Hung sync handlers never starve a worker (real worker processes, real server).

A sync handler past its timeout fails its attempt on time and frees its slot; its thread is
abandoned and replaced, so the next jobs run. More stuck threads than slots: the worker drains
and exits (75) for its supervisor to replace it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import Jobs, wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

HANGING = """
import os, time
import redis

def work(data):
    r = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    r.rpush("test:ran", data["n"])
    if data.get("hang"):
        time.sleep(120)
    return data["n"]
"""


def _project(tmp_path: Path) -> Path:
    return write_project(
        tmp_path,
        """
        queues:
          sync:
            handler: hanging:work
            concurrency: 2
            timeout: 1s
            attempts: 1
            retention: {completed: {count: 1000}, failed: {count: 1000}}
        """,
        {"hanging.py": HANGING},
    )


def _add(jobs: Jobs, datas: list[dict[str, Any]]) -> None:
    async def go(e: QueueEngine) -> None:
        for d in datas:  # one at a time, in this order
            await e.add("n", d, JobOptions(job_id=f"j{d['n']}"))

    jobs.run("sync", go)


def test_two_hung_sync_handlers_do_not_starve_the_next_jobs(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    """Concurrency 2, two hung jobs, then 20 quick ones: all 20 complete."""
    cfg = _project(tmp_path)
    jobs = Jobs(cfg, redis_url)
    worker = workers(cfg, "sync", redis_url)
    wait_workers_ready(redis_client, "sync")
    _add(jobs, [{"n": 0, "hang": True}, {"n": 1, "hang": True}])
    wait_for(lambda: redis_client.llen("test:ran") >= 2, 20, message="both hung jobs started")
    _add(jobs, [{"n": i} for i in range(2, 22)])
    s = jobs.wait_stats("sync", lambda s: s["completed"] + s["failed"] == 22, 30)
    assert (s["completed"], s["failed"]) == (20, 2), (s, worker.log())
    assert worker.alive(), worker.log()


def test_more_stuck_threads_than_slots_drain_the_worker_and_it_exits(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    cfg = _project(tmp_path)
    jobs = Jobs(cfg, redis_url)
    worker = workers(cfg, "sync", redis_url)
    wait_workers_ready(redis_client, "sync")
    _add(jobs, [{"n": i, "hang": True} for i in range(3)])
    code = worker.wait_exit(30)  # fails with its output if it still runs
    assert code == 75, worker.log()
    assert "stuck past their timeout" in worker.log()
    s = jobs.stats("sync")
    assert (s["failed"], s["active"]) == (3, 0), s
