"""One adapter per system, each a module with the same small interface:

- ``NAME``; ``label()``: the table's row label (version, bulk method, worker shape);
- ``missing()``: why it cannot run here (not installed, no node), or None;
- ``produce_argv(url, serial, total)``: the process that adds ``serial`` jobs one awaited call at a
  time, then the rest in bulk, and prints {"serial": jobs/s, "bulk": jobs/s or null};
  Python adapters run ``python -m bench.peers.produce NAME ...``, which calls their ``produce``;
- ``worker_argv(url, workdir)``: one worker process at concurrency 10 (env: BENCH_REDIS_URL,
  BENCH_JOBS); its handler reports the processing rate through ``bench.peers.tally``;
- ``JOB_KEYS``: a SCAN pattern for one waiting job's own key, or None if jobs live inside one
  list/stream/hash.

Nothing here imports a system at module level: ``produce`` runs in the producer process only.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

NAMES = (
    "cortexflow",
    "taskiq_stream",
    "taskiq_list",
    "dramatiq",
    "saq",
    "arq",
    "rq",
    "celery",
    "bullmq",
)
GATHER = 100  # async systems without a bulk call: asyncio.gather of this many single adds
BULK = 100  # systems with a bulk call: jobs per call


def load(name: str) -> ModuleType:
    return importlib.import_module(f"bench.peers.adapters.{name}")


def python_produce_argv(name: str, url: str, serial: int, total: int) -> list[str]:
    return [sys.executable, "-m", "bench.peers.produce", name, url, str(serial), str(total)]


def dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def not_installed(*modules: str) -> str | None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def rates(serial: int, total: int, t0: float, t1: float, t2: float, bulk: bool) -> dict[str, Any]:
    """The producer's report: jobs/s of the serial part (t0..t1) and the bulk part (t1..t2)."""
    return {
        "serial": serial / max(t1 - t0, 1e-9),
        "bulk": (total - serial) / max(t2 - t1, 1e-9) if bulk else None,
    }


async def serial_then_gather(
    add: Callable[[int], Awaitable[Any]], serial: int, total: int
) -> dict[str, Any]:
    """``add(i)`` awaited one at a time for the serial part, then gathered GATHER at a time."""
    t0 = time.perf_counter()
    for i in range(serial):
        await add(i)
    t1 = time.perf_counter()
    for start in range(serial, total, GATHER):
        await asyncio.gather(*(add(i) for i in range(start, min(start + GATHER, total))))
    return rates(serial, total, t0, t1, time.perf_counter(), bulk=True)
