"""Chaos under `cortexflow up`: kill -9 a random worker every 2 s for 20 s while 3,000 short jobs
run, lease 2 s, max_stalls 5: every job ends completed, none failed.

Before leases were drawn in lease..1.2*lease this failed 1-3 jobs ("stalled 5 times", 0
attempts) in some runs: a job recovered from a killed worker fell due exactly one kill period
later, was leased again a few ms before the next kill, and, when the only live worker held it,
was killed with it every time (the kill period equalled the lease).
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis

from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import Jobs
from tests.helpers.procs import Proc, kill_children_of_up
from tests.helpers.project import write_project

HANDLER = """
import asyncio, os, random
import redis.asyncio as aioredis

_client = None

async def handle(data, job):
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    await _client.hincrby("test:count", job.id, 1)
    await asyncio.sleep(random.uniform(0.005, 0.03))
"""

N = 3000
# The shared variant: a second queue in the same processes (`process: chaos` joins the
# process named after the first queue), the jobs split between the two.
SECOND = """
  chaos-b:
    handler: chaoshandler:handle
    process: chaos
    concurrency: 10
    processes: 2
    lease: 2s
    max_stalls: 5
    retention: {completed: {count: 10000}, failed: {count: 10000}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["own-process", "shared-process"])
def test_kill9_a_random_worker_of_up_every_2s_fails_no_job(
    tmp_path: Path, redis_url: str, start_up: Callable[..., Proc], shared: bool
) -> None:
    yaml_text = """
version: 1
stop_timeout: 10s
queues:
  chaos:
    handler: chaoshandler:handle
    concurrency: 10
    processes: 2
    lease: 2s
    max_stalls: 5
    retention: {completed: {count: 10000}, failed: {count: 10000}}
"""
    queues = ("chaos", "chaos-b") if shared else ("chaos",)
    path = write_project(
        tmp_path, yaml_text + (SECOND if shared else ""), {"chaoshandler.py": HANDLER}
    )
    up = start_up(tmp_path, "--redis-url", redis_url, env={"TEST_REDIS_URL": redis_url})
    up.wait_for(r"chaos\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"chaos\.1 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)

    per_queue = N // len(queues)

    def add(queue: str) -> Callable[[QueueEngine], Awaitable[None]]:
        async def go(engine: QueueEngine) -> None:
            for start in range(0, per_queue, 500):
                ids = range(start, min(start + 500, per_queue))
                await engine.add_bulk([("n", {}, JobOptions(job_id=f"{queue}{i}")) for i in ids])

        return go

    for queue in queues:
        jobs.run(queue, add(queue))
    kills = kill_children_of_up(up, r"chaos\.\d")
    for queue in queues:
        stats = jobs.wait_stats(queue, lambda s: s["completed"] + s["failed"] == per_queue, 120)
        failed = jobs.run(queue, lambda e: e.list_jobs("failed", 0, 10))
        assert stats["failed"] == 0, [(j.id, j.error, j.attempts_made) for j in failed]
    client = redis.Redis.from_url(redis_url)
    try:
        counts = [int(v) for v in client.hgetall("test:count").values()]
    finally:
        client.close()
    print(f"\nchaos: {kills} kills, {sum(c - 1 for c in counts)} duplicate runs of {N} jobs")
    assert len(counts) == per_queue * len(queues)
    up.send(signal.SIGTERM)
    up.wait_exit(30)
