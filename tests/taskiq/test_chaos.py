"""Chaos with taskiq tasks under `cortexflow up`: kill -9 a random worker every 2 s for 20 s
while 3,000 short tasks run (lease 2 s, max_stalls 5): every task completes, none fails, none
is lost (tests/worker/test_chaos.py is the same with a handler)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from taskiq.kicker import AsyncKicker

from cortexflow.taskiq import broker_from_config
from tests.helpers.jobs import Jobs
from tests.helpers.procs import Proc, kill_children_of_up
from tests.helpers.project import write_project

TASKS = """
import asyncio, os, random
from pathlib import Path
import redis.asyncio as aioredis
from cortexflow.taskiq import broker_from_config

broker = broker_from_config(Path(__file__).with_name("queues.yaml"))
_client = None

@broker.task(queue="chaos")
async def count(i: int) -> int:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    await _client.hincrby("test:count", str(i), 1)
    await asyncio.sleep(random.uniform(0.005, 0.03))
    return i
"""

N = 3000


@pytest.mark.slow
def test_kill9_a_random_worker_every_2s_loses_and_fails_no_task(
    tmp_path: Path, redis_url: str, start_up: Callable[..., Proc]
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        stop_timeout: 10s
        queues:
          chaos:
            tasks: chaostasks:broker
            concurrency: 10
            processes: 2
            lease: 2s
            max_stalls: 5
            retention: {completed: {count: 10000}, failed: {count: 10000}}
        """,
        {"chaostasks.py": TASKS},
    )
    up = start_up(tmp_path, "--redis-url", redis_url, env={"TEST_REDIS_URL": redis_url})
    up.wait_for(r"chaos\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"chaos\.1 \(pid \d+\) ready", 30)

    async def send() -> None:
        # A producer that does not import the task: it names it (as taskiq's AsyncKicker can).
        broker = broker_from_config(path, redis_url)
        for start in range(0, N, 500):
            async with broker.bulk():
                for i in range(start, start + 500):
                    kicker = AsyncKicker("chaostasks:count", broker, {"queue": "chaos"})
                    await kicker.with_task_id(f"c{i}").kiq(i)
        await broker.shutdown()

    asyncio.run(send())
    kills = kill_children_of_up(up, r"chaos\.\d")
    jobs = Jobs(path, redis_url)
    stats = jobs.wait_stats("chaos", lambda s: s["completed"] + s["failed"] == N, 120)
    client = redis.Redis.from_url(redis_url)
    try:
        failed = jobs.run("chaos", lambda e: e.list_jobs("failed", 0, 10))
        counts = {k.decode(): int(v) for k, v in client.hgetall("test:count").items()}
    finally:
        client.close()
    print(f"\nchaos: {kills} kills, {sum(c - 1 for c in counts.values())} duplicate runs of {N}")
    assert kills >= 5
    assert stats["failed"] == 0, [(j.id, j.error, j.attempts_made) for j in failed]
    assert stats["completed"] == N
    assert sorted(counts, key=int) == [str(i) for i in range(N)]  # every task ran
    up.send(signal.SIGTERM)
    up.wait_exit(30)
