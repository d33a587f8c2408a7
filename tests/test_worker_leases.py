"""Leases that belong to the worker process, not to its event loop (real processes, real server).

A thread of the worker renews its leases over a connection of its own, so an async handler that
blocks the event loop keeps its job; the same thread ends a worker whose loop stays blocked past
a running job's timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.engine.jobs import JobOptions
from tests.engine_helpers import WorkerProcess, engine_for, write_project

BLOCKING = '''
import json, os, time
import redis

def _r():
    return redis.Redis.from_url(os.environ["TEST_REDIS_URL"])

async def block(data, job):
    """Blocks the event loop (no await) for data['block'] seconds on its first run."""
    r = _r()
    r.rpush("test:runs", json.dumps({"id": job.id, "pid": os.getpid(), "t": time.time()}))
    if r.incr("test:started") == 1 or not data.get("once"):
        time.sleep(data["block"])
    return {"pid": os.getpid()}
'''


def _project(tmp_path: Path, queue_yaml: str) -> Path:
    path = write_project(tmp_path, queue_yaml)
    (tmp_path / "blocking.py").write_text(BLOCKING)
    return path


def _runs(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange("test:runs", 0, -1)]


def _ready(client: redis.Redis, queue: str, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.zcount(f"{{cortexflow:{queue}}}:workers", int(time.time() * 1000), "+inf") < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} workers of {queue} not ready in {timeout}s")
        time.sleep(0.05)


def _state(client: redis.Redis, queue: str, job_id: str) -> str:
    raw = client.hget(f"{{cortexflow:{queue}}}:j:{job_id}", "state")
    return raw.decode() if raw else "missing"


def _wait_state(
    client: redis.Redis, queue: str, job_id: str, states: set[str], timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(client, queue, job_id)
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


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


def _add(cfg: Path, url: str, queue: str, job_id: str, data: dict[str, Any]) -> None:
    """Add a job with the queue's settings of ``cfg`` (timeout, attempts are fixed at add)."""

    async def go() -> None:
        async with engine_for(url, load_config(cfg).queues[queue]) as e:
            await e.add("n", data, JobOptions(job_id=job_id))

    asyncio.run(go())


def test_a_handler_blocking_the_event_loop_past_the_lease_runs_once(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Any
) -> None:
    """Issue 10, case 2: lease 3 s, the loop blocked 6 s, two workers: one run, completed."""
    cfg = _project(
        tmp_path,
        """
        queues:
          cpu:
            handler: blocking:block
            lease: 3s
            max_stalls: 5
        """,
    )
    procs = [workers(cfg, "cpu", redis_url), workers(cfg, "cpu", redis_url)]
    _ready(redis_client, "cpu", 2)
    _add(cfg, redis_url, "cpu", "b1", {"block": 6})
    state = _wait_state(redis_client, "cpu", "b1", {"completed", "failed"}, 30)
    runs = _runs(redis_client)
    logs = "\n".join(p.output() for p in procs)
    assert state == "completed", (state, runs, logs)
    assert len(runs) == 1, (runs, logs)
    assert "event loop has been blocked" in logs  # blocked for more than lease/4: a warning
    assert "ran again after being blocked" in logs
    assert all(p.alive() for p in procs)


def test_a_loop_blocked_past_the_job_timeout_ends_the_worker_and_the_job_runs_elsewhere(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Any
) -> None:
    """The watchdog: timeout 1 s, the loop blocked for 60 s. The worker logs the job id and
    exits (70); the job's lease runs out and the other worker runs it to completion."""
    cfg = _project(
        tmp_path,
        """
        queues:
          hang:
            handler: blocking:block
            lease: 2s
            timeout: 1s
        """,
    )
    first = workers(cfg, "hang", redis_url)
    _ready(redis_client, "hang", 1)
    _add(cfg, redis_url, "hang", "h1", {"block": 60, "once": True})
    deadline = time.monotonic() + 20
    while first.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not first.alive(), first.output()
    assert first.proc.returncode == 70, first.output()
    out = first.output()
    assert "past the timeout of job(s) h1" in out, out
    second = workers(cfg, "hang", redis_url)
    state = _wait_state(redis_client, "hang", "h1", {"completed", "failed"}, 30)
    assert state == "completed", (state, second.output())
    assert [r["pid"] for r in _runs(redis_client)] == [first.pid, second.pid]
