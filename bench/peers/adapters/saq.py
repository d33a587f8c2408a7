"""saq: ``Queue.enqueue`` one at a time, then gathered (saq has no bulk enqueue); one ``saq``
worker process at concurrency 10."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.peers.adapters import (
    GATHER,
    dist_version,
    not_installed,
    python_produce_argv,
    serial_then_gather,
)

NAME = "saq"
JOB_KEYS = "saq:job:*"


def label() -> str:
    return f"saq {dist_version('saq')} (gather x{GATHER}; 1 process x 10)"


def missing() -> str | None:
    return not_installed("saq")


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return python_produce_argv(NAME, url, serial, total)


def worker_argv(url: str, workdir: Path) -> list[str]:
    return [sys.executable, "-m", "saq", "bench.peers.apps.saq_app.settings", "--quiet"]


async def produce(url: str, serial: int, total: int) -> dict[str, Any]:
    from bench.peers.apps.saq_app import queue

    await queue.connect()
    try:
        return await serial_then_gather(lambda i: queue.enqueue("noop", i=i), serial, total)
    finally:
        await queue.disconnect()
