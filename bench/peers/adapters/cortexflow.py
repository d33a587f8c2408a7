"""cortexflow: ``QueueManager.add_job`` one at a time, ``add_bulk`` of 100; one
``cortexflow worker`` process (concurrency 10) on a queue with every feature on
(``bench/peers/apps/queues.yaml``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.peers.adapters import BULK, dist_version, python_produce_argv, rates

NAME = "cortexflow"
QUEUE = "bench"
JOB_KEYS = "{cortexflow:bench}:j:*"  # QueueKeys("cortexflow", QUEUE).job_prefix, checked below
CONFIG = Path(__file__).resolve().parent.parent / "apps" / "queues.yaml"


def label() -> str:
    return f"cortexflow {dist_version('cortexflow')} (add_bulk x{BULK}; 1 process x 10)"


def missing() -> str | None:
    return None


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return python_produce_argv(NAME, url, serial, total)


def worker_argv(url: str, workdir: Path) -> list[str]:
    argv = [sys.executable, "-m", "cortexflow", "worker", QUEUE, "-f", str(CONFIG)]
    return [*argv, "--redis-url", url]


async def produce(url: str, serial: int, total: int) -> dict[str, Any]:
    from cortexflow import get_queue_manager
    from cortexflow.engine.keys import QueueKeys

    assert QueueKeys("cortexflow", QUEUE).job_prefix + "*" == JOB_KEYS
    async with get_queue_manager(config=CONFIG, redis_url=url) as manager:
        t0 = time.perf_counter()
        for i in range(serial):
            await manager.add_job(QUEUE, "noop", {"i": i})
        t1 = time.perf_counter()
        for start in range(serial, total, BULK):
            ids = range(start, min(start + BULK, total))
            await manager.add_bulk(QUEUE, [{"name": "noop", "data": {"i": i}} for i in ids])
        return rates(serial, total, t0, t1, time.perf_counter(), bulk=True)
