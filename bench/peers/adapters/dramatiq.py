"""dramatiq (RedisBroker): ``actor.send()`` one at a time, no bulk call; one worker process with
10 threads (``dramatiq --processes 1 --threads 10``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.peers.adapters import dist_version, not_installed, python_produce_argv, rates

NAME = "dramatiq"
JOB_KEYS = None  # every message is a field of one hash (dramatiq:default.msgs)


def label() -> str:
    return f"dramatiq {dist_version('dramatiq')} (no bulk call; 1 process x 10 threads)"


def missing() -> str | None:
    return not_installed("dramatiq")


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return python_produce_argv(NAME, url, serial, total)


def worker_argv(url: str, workdir: Path) -> list[str]:
    app = "bench.peers.apps.dramatiq_app"
    return [sys.executable, "-m", "dramatiq", app, "--processes", "1", "--threads", "10"]


def produce(url: str, serial: int, total: int) -> dict[str, Any]:
    from bench.peers.apps.dramatiq_app import noop

    t0 = time.perf_counter()
    for i in range(total):
        noop.send(i)
    t1 = time.perf_counter()
    return rates(total, total, t0, t1, t1, bulk=False)
