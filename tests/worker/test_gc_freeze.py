"""A worker process (and a handler's child process) hides what start-up made from the cyclic
garbage collector before its first job (worker/lean.py freeze_startup_objects): the full
collections a busy worker makes would otherwise walk every module's objects, pausing the event
loop for tens of milliseconds (bench/shared_pickup.py, docs/performance.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import Jobs, wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

pytestmark = pytest.mark.transports

HANDLERS = """
import gc, os

def frozen(data):
    return {"frozen": gc.get_freeze_count(), "pid": os.getpid()}
"""


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_startup_objects_are_frozen_before_the_first_job(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    workers: Callable[..., Proc],
    isolation: str,
) -> None:
    cfg = write_project(
        tmp_path,
        f"""
        version: 1
        queues:
          q:
            handler: gcjobs:frozen
            isolation: {isolation}
        """,
        {"gcjobs.py": HANDLERS},
    )
    worker = workers(cfg, "q", redis_url)
    wait_workers_ready(redis_client, "q", timeout=60)
    jobs = Jobs(cfg, redis_url)
    jobs.run("q", lambda e: e.add("n", {}, JobOptions(job_id="g")))
    job = wait_for(
        lambda: (j := jobs.run("q", lambda e: e.get_job("g"))) and j.state == "completed" and j,
        30,
        message=worker.log,
    )
    # Tens of thousands of objects at the least (the interpreter, redis-py, the handler).
    assert job.result["frozen"] > 10_000, job.result
    assert (job.result["pid"] == worker.pid) == (isolation == "none")
