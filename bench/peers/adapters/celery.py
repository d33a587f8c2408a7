"""Celery (Redis transport, no result backend): ``task.delay()`` one at a time, no bulk call;
one worker process with a pool of 10 threads, without gossip, mingle and heartbeats."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.peers.adapters import dist_version, not_installed, python_produce_argv, rates

NAME = "celery"
JOB_KEYS = None  # every message is an item of one list (celery)


def label() -> str:
    return f"Celery {dist_version('celery')} (no bulk call; 1 process x 10 threads)"


def missing() -> str | None:
    return not_installed("celery", "kombu")


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return python_produce_argv(NAME, url, serial, total)


def worker_argv(url: str, workdir: Path) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "bench.peers.apps.celery_app", "worker"]
    argv += ["--pool", "threads", "--concurrency", "10", "--loglevel", "WARNING"]
    return [*argv, "--without-gossip", "--without-mingle", "--without-heartbeat"]


def produce(url: str, serial: int, total: int) -> dict[str, Any]:
    from bench.peers.apps.celery_app import noop

    t0 = time.perf_counter()
    for i in range(total):
        noop.delay(i)
    t1 = time.perf_counter()
    return rates(total, total, t0, t1, t1, bulk=False)
