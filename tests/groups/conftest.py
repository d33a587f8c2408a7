"""Groups' tests: real `cortexflow worker` processes, and handlers that record their runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.procs import Proc, cortexflow_argv

# Every run's start ("s") and end ("e"), by the handler itself: one JSON line per event,
# appended with O_APPEND, so lines of processes running at once never mix.
RECORDING_HANDLER = r"""
import asyncio, json, os, random, time

RUNS = os.environ["TEST_RUNS_FILE"]

def _write(rec):
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)

async def handle(data, job):
    _write({"id": job.id, "g": data["g"], "i": data["i"], "s": time.time(), "pid": os.getpid()})
    await asyncio.sleep(data.get("sleep", random.uniform(0.005, 0.03)))
    if job.attempt <= data.get("fail", 0):
        _write({"id": job.id, "g": data["g"], "i": data["i"], "e": time.time(), "failed": 1})
        raise ValueError("injected failure")
    _write({"id": job.id, "g": data["g"], "i": data["i"], "e": time.time()})
    return None
"""


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``workers(config, queue, url, *args)`` starts `cortexflow worker QUEUE ARGS` as a real
    process; all are killed after the test."""
    started: list[Proc] = []

    def start(config: Path, queue: str, url: str, *args: str) -> Proc:
        argv = cortexflow_argv("worker", queue, "-f", str(config), "--redis-url", url, *args)
        worker = Proc(argv, log_dir=tmp_path, name=f"worker-{queue}")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def read_runs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def order_violations(runs: list[dict[str, Any]]) -> list[str]:
    """Per group, a job that started before the previous job of its group (by ``i``) ended for
    the last time: none may, with group concurrency 1."""
    first_start: dict[tuple[str, int], float] = {}
    last_end: dict[tuple[str, int], float] = {}
    for r in runs:
        key = (r["g"], r["i"])
        if "s" in r:
            first_start[key] = min(first_start.get(key, r["s"]), r["s"])
        else:
            last_end[key] = max(last_end.get(key, r["e"]), r["e"])
    bad = []
    for (g, i), start in first_start.items():
        before = last_end.get((g, i - 1))
        if i > 0 and (before is None or start < before):
            bad.append(f"group {g}: job {i} started at {start:.3f}, job {i - 1} ended {before}")
    return bad
