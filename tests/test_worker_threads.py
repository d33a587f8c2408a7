"""Hung sync handlers never starve a worker (real worker processes, real server).

A sync handler past its timeout fails its attempt on time and frees its slot; its thread is
abandoned and replaced, so the next jobs run. More stuck threads than slots: the worker drains
and exits (75) for its supervisor to replace it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.engine.jobs import JobOptions
from tests.engine_helpers import WorkerProcess, engine_for, write_project

HANGING = """
import os, time
import redis

def work(data):
    r = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    r.rpush("test:ran", data["n"])
    if data.get("hang"):
        time.sleep(120)
    return data["n"]
"""


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(config: Path, queue: str, url: str) -> WorkerProcess:
        w = WorkerProcess(config, queue, url, tmp_path)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill9()


def _project(tmp_path: Path) -> Path:
    path = write_project(
        tmp_path,
        """
        queues:
          sync:
            handler: hanging:work
            concurrency: 2
            timeout: 1s
            attempts: 1
            retention: {completed: {count: 1000}, failed: {count: 1000}}
        """,
    )
    (tmp_path / "hanging.py").write_text(HANGING)
    return path


def _ready(client: redis.Redis, n: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.zcount("{cortexflow:sync}:workers", int(time.time() * 1000), "+inf") < n:
        if time.monotonic() > deadline:
            raise AssertionError("worker not ready")
        time.sleep(0.05)


def _add(cfg: Path, url: str, datas: list[dict[str, Any]]) -> None:
    async def go() -> None:
        async with engine_for(url, load_config(cfg).queues["sync"]) as e:
            for d in datas:  # one at a time, in this order
                await e.add("n", d, JobOptions(job_id=f"j{d['n']}"))

    asyncio.run(go())


def _stats(cfg: Path, url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with engine_for(url, load_config(cfg).queues["sync"]) as e:
            return await e.stats()

    return asyncio.run(go())


def test_two_hung_sync_handlers_do_not_starve_the_next_jobs(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Any
) -> None:
    """Issue 10, case 3: concurrency 2, two hung jobs, then 20 quick ones: all 20 complete."""
    cfg = _project(tmp_path)
    worker = workers(cfg, "sync", redis_url)
    _ready(redis_client)
    _add(cfg, redis_url, [{"n": 0, "hang": True}, {"n": 1, "hang": True}])
    deadline = time.monotonic() + 20
    while redis_client.llen("test:ran") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    _add(cfg, redis_url, [{"n": i} for i in range(2, 22)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = _stats(cfg, redis_url)
        if s["completed"] + s["failed"] == 22:
            break
        time.sleep(0.1)
    assert (s["completed"], s["failed"]) == (20, 2), (s, worker.output())
    assert worker.alive(), worker.output()


def test_more_stuck_threads_than_slots_drain_the_worker_and_it_exits(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Any
) -> None:
    cfg = _project(tmp_path)
    worker = workers(cfg, "sync", redis_url)
    _ready(redis_client)
    _add(cfg, redis_url, [{"n": i, "hang": True} for i in range(3)])
    try:
        code = worker.proc.wait(30)
    except Exception:
        raise AssertionError(worker.output()) from None
    assert code == 75, worker.output()
    assert "stuck past their timeout" in worker.output()
    s = _stats(cfg, redis_url)
    assert (s["failed"], s["active"]) == (3, 0), s
