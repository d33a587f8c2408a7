"""`isolation: process`: handlers run in child processes of the worker, killed on timeout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.embedded import pid_alive
from cortexflow.engine.jobs import JobOptions
from tests.engine_helpers import WorkerProcess, engine_for, write_project

HANDLERS = """
import json, os, time
import redis

def work(data):
    r = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    first = r.incr("test:calls:" + str(data["n"])) == 1
    r.rpush("test:ran", json.dumps({"n": data["n"], "pid": os.getpid()}))
    if data.get("hang") and first:
        time.sleep(120)  # a hung handler: only a kill stops it
    return os.getpid()
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


def _project(tmp_path: Path, extra: str = "") -> Path:
    path = write_project(
        tmp_path,
        f"""
        stop_timeout: 1s
        queues:
          iso:
            handler: isohandlers:work
            isolation: process
            concurrency: 2
            timeout: 4s
            attempts: 2
            backoff: {{type: fixed, delay: 100ms}}
            {extra}
        """,
    )
    (tmp_path / "isohandlers.py").write_text(HANDLERS)
    return path


def _ready(client: redis.Redis, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.zcount("{cortexflow:iso}:workers", int(time.time() * 1000), "+inf") < 1:
        if time.monotonic() > deadline:
            raise AssertionError("worker not ready")
        time.sleep(0.05)


def _engine_call(cfg: Path, url: str, op: Any) -> Any:
    async def go() -> Any:
        async with engine_for(url, load_config(cfg).queues["iso"]) as e:
            return await op(e)

    return asyncio.run(go())


def _ran(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange("test:ran", 0, -1)]


def _wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.05)
    return value


def test_a_hung_handler_is_killed_at_its_timeout_and_the_retry_runs(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Any
) -> None:
    cfg = _project(tmp_path, "max_jobs_per_child: 1")
    worker = workers(cfg, "iso", redis_url)
    _ready(redis_client)
    _engine_call(
        cfg, redis_url, lambda e: e.add("n", {"n": 0, "hang": True}, JobOptions(job_id="h"))
    )
    _engine_call(cfg, redis_url, lambda e: e.add_bulk([("n", {"n": i}, None) for i in range(1, 4)]))
    job = _wait(
        lambda: (
            (j := _engine_call(cfg, redis_url, lambda e: e.get_job("h")))
            and j.state in ("completed", "failed")
            and j
        ),
        30,
        worker.output(),
    )
    assert (job.state, job.attempts_made) == ("completed", 2), worker.output()
    runs = _ran(redis_client)
    hung = next(r["pid"] for r in runs if r["n"] == 0)
    assert not pid_alive(hung)  # the timeout really stopped it
    _wait(lambda: len(_ran(redis_client)) == 5, 20, "the other jobs ran")
    pids = [r["pid"] for r in _ran(redis_client)]
    assert len(set(pids)) == 5 and worker.pid not in pids  # max_jobs_per_child: 1
    assert worker.alive()


def test_stop_kills_a_running_handler_and_gives_its_job_back(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Any
) -> None:
    """The handler really stops, so giving its job back cannot run it twice (issue 16, 2)."""
    cfg = _project(tmp_path)
    (tmp_path / "queues.yaml").write_text(
        (tmp_path / "queues.yaml").read_text().replace("timeout: 4s", "timeout: 1m")
    )
    worker = workers(cfg, "iso", redis_url)
    _ready(redis_client)
    _engine_call(
        cfg, redis_url, lambda e: e.add("n", {"n": 0, "hang": True}, JobOptions(job_id="s"))
    )
    [run] = _wait(lambda: _ran(redis_client), 20, "the job started")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0, worker.output()
    assert not pid_alive(run["pid"])
    job = _engine_call(cfg, redis_url, lambda e: e.get_job("s"))
    assert (job.state, job.attempts_made) == ("waiting", 0), worker.output()
    assert "gave 1 unfinished job(s) back to waiting" in worker.output()
    assert os.getpid() != run["pid"]


def test_a_child_over_max_memory_per_child_is_replaced_after_its_job(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Any
) -> None:
    """1MB: every interpreter is above it after a job, so each job runs in a new process."""
    cfg = _project(tmp_path, "max_memory_per_child: 1MB")
    worker = workers(cfg, "iso", redis_url)
    _ready(redis_client)
    for i in range(3):  # one after the other, so each can reuse a kept child if there were one
        _engine_call(cfg, redis_url, lambda e, i=i: e.add("n", {"n": i}, None))
        _wait(lambda i=i: len(_ran(redis_client)) == i + 1, 20, worker.output())
    pids = [r["pid"] for r in _ran(redis_client)]
    assert len(set(pids)) == 3, pids
