"""Leases that belong to the worker process, not to its event loop (real processes, real server).

A thread of the worker renews its leases over a connection of its own, so an async handler that
blocks the event loop keeps its job; the same thread ends a worker whose loop stays blocked past
a running job's timeout.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import Jobs, wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

# The lease promise holds on the embedded default (unix socket) and over TCP.
pytestmark = pytest.mark.transports

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
    return write_project(tmp_path, queue_yaml, {"blocking.py": BLOCKING})


def _runs(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange("test:runs", 0, -1)]


def _state(client: redis.Redis, queue: str, job_id: str) -> str:
    raw = client.hget(f"{{cortexflow:{queue}}}:j:{job_id}", "state")
    return raw.decode() if raw else "missing"


def _wait_state(
    client: redis.Redis, queue: str, job_id: str, states: set[str], timeout: float
) -> str:
    """The job's state once it is one of ``states``, or at the deadline (the caller asserts)."""
    with contextlib.suppress(AssertionError):
        wait_for(lambda: _state(client, queue, job_id) in states, timeout)
    return _state(client, queue, job_id)


def _add(cfg: Path, url: str, queue: str, job_id: str, data: dict[str, Any]) -> None:
    """Add a job with the queue's settings of ``cfg`` (timeout, attempts are fixed at add)."""
    Jobs(cfg, url).run(queue, lambda e: e.add("n", data, JobOptions(job_id=job_id)))


@pytest.mark.slow
def test_a_handler_blocking_the_event_loop_past_the_lease_runs_once(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    """Lease 3 s, the loop blocked 6 s, two workers: one run, completed."""
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
    wait_workers_ready(redis_client, "cpu", 2)
    _add(cfg, redis_url, "cpu", "b1", {"block": 6})
    state = _wait_state(redis_client, "cpu", "b1", {"completed", "failed"}, 30)
    runs = _runs(redis_client)
    logs = "\n".join(p.log() for p in procs)
    assert state == "completed", (state, runs, logs)
    assert len(runs) == 1, (runs, logs)
    assert "event loop has been blocked" in logs  # blocked for more than lease/4: a warning
    assert "ran again after being blocked" in logs
    assert all(p.alive() for p in procs)


def test_a_loop_blocked_past_the_job_timeout_ends_the_worker_and_the_job_runs_elsewhere(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
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
    wait_workers_ready(redis_client, "hang", 1)
    _add(cfg, redis_url, "hang", "h1", {"block": 60, "once": True})
    first.wait_exit(20)  # fails with its output if it still runs
    assert not first.alive(), first.log()
    assert first.proc.returncode == 70, first.log()
    out = first.log()
    assert "past the timeout of job(s) h1" in out, out
    second = workers(cfg, "hang", redis_url)
    state = _wait_state(redis_client, "hang", "h1", {"completed", "failed"}, 30)
    assert state == "completed", (state, second.log())
    assert [r["pid"] for r in _runs(redis_client)] == [first.pid, second.pid]
