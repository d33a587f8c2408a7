"""Fairness inside a shared worker process: a queue flooded at full load (every one of its slots
busy, thousands waiting) does not delay another queue of the same process. Each queue has
slots of its own and its own fetch connection: an idle queue's job starts at once, never
after a slot of the flooded queue frees up.

The bound is generous (a loaded 2-core machine); the precise numbers come from
bench/shared_pickup.py (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import Jobs, wait_workers_ready
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

HANDLERS = """
import asyncio

async def flood(data):
    await asyncio.sleep(2.0)  # a flood slot frees every 200 ms on average (10 slots)

async def idle(data):
    return None
"""

FLOOD = 1000
SAMPLES = 40
# Waiting for a flood slot would take ~100 ms at the median (one frees every 200 ms): the
# median bound tells apart slots of its own from shared ones; p99 is the promise, loosely.
P50_BOUND_MS = 30.0
P99_BOUND_MS = 150.0


@pytest.mark.slow
def test_a_flooded_queue_does_not_delay_another_queue_of_its_process(
    tmp_path: Path, redis_url: str, workers: Callable[..., Proc]
) -> None:
    cfg = write_project(
        tmp_path,
        """
        version: 1
        defaults:
          process: shared
        queues:
          flood:
            handler: fair:flood
            concurrency: 10
          idle:
            handler: fair:idle
            concurrency: 1
        """,
        {"fair.py": HANDLERS},
    )
    workers(cfg, "flood", redis_url, "--process", "shared")
    client = redis.Redis.from_url(redis_url)
    try:
        wait_workers_ready(client, "flood")
        wait_workers_ready(client, "idle")
        jobs = Jobs(cfg, redis_url)

        async def add_flood(engine: QueueEngine) -> None:
            for _ in range(0, FLOOD, 500):
                await engine.add_bulk([("f", {}, JobOptions())] * 500)

        jobs.run("flood", add_flood)
        jobs.wait_stats("flood", lambda s: s["active"] == 10, 15)  # every flood slot busy
        pickups = []
        for k in range(SAMPLES):
            time.sleep(0.05)
            [job_id] = jobs.add("idle", [{}])
            jobs.wait_stats("idle", lambda s, k=k: s["completed"] == k + 1, 10)
            job = jobs.run("idle", lambda e, i=job_id: e.get_job(i))
            # Added to started, both on the server's clock (no client delay in between).
            pickups.append((job.processed_at - job.created_at) * 1000.0)
        flood = jobs.stats("flood")
    finally:
        client.close()
    pickups.sort()
    p99 = pickups[int(0.99 * (len(pickups) - 1))]
    print(
        f"\nidle pickups beside a flood: p50 {pickups[len(pickups) // 2]:.1f} ms, p99 {p99:.1f} ms"
    )
    assert flood["active"] == 10 and flood["waiting"] > 0  # still flooded at the end
    assert pickups[len(pickups) // 2] < P50_BOUND_MS, pickups
    assert p99 < P99_BOUND_MS, pickups
