"""rq: ``Queue.enqueue`` one at a time, ``enqueue_many`` of 100 (one pipeline); one
``rq worker`` with the SimpleWorker class (no fork per job; rq runs one job at a time)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.peers.adapters import BULK, dist_version, not_installed, python_produce_argv, rates

NAME = "rq"
QUEUE = "bench"
JOB_KEYS = "rq:job:*"


def label() -> str:
    return f"rq {dist_version('rq')} (enqueue_many x{BULK}; SimpleWorker, 1 job at a time)"


def missing() -> str | None:
    return not_installed("rq")


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return python_produce_argv(NAME, url, serial, total)


def worker_argv(url: str, workdir: Path) -> list[str]:
    argv = [sys.executable, "-m", "rq.cli", "worker", QUEUE, "--url", url]
    return [*argv, "--worker-class", "rq.worker.SimpleWorker", "--logging_level", "WARNING"]


def produce(url: str, serial: int, total: int) -> dict[str, Any]:
    from redis import Redis
    from rq import Queue

    from bench.peers.apps.rq_app import noop

    with Redis.from_url(url) as connection:
        queue = Queue(QUEUE, connection=connection)
        t0 = time.perf_counter()
        for i in range(serial):
            queue.enqueue(noop, i)
        t1 = time.perf_counter()
        for start in range(serial, total, BULK):
            ids = range(start, min(start + BULK, total))
            queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in ids])
        return rates(serial, total, t0, t1, time.perf_counter(), bulk=True)
