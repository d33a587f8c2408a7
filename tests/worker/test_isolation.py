"""`isolation: process`: handlers run in child processes of the worker, killed on timeout."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.embedded import pid_alive
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import Jobs, wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

# The lease promise holds on the embedded default (unix socket) and over TCP.
pytestmark = pytest.mark.transports

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


def _project(tmp_path: Path, extra: str = "") -> Path:
    return write_project(
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
        {"isohandlers.py": HANDLERS},
    )


def _ran(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange("test:ran", 0, -1)]


def _finished(jobs: Jobs, job_id: str, worker: Proc, timeout: float = 60) -> Any:
    """Job ``job_id`` of queue iso once completed or failed for good (fails with the log)."""
    return wait_for(
        lambda: (
            (j := jobs.run("iso", lambda e: e.get_job(job_id)))
            and j.state in ("completed", "failed")
            and j
        ),
        timeout,
        message=worker.log,
    )


@pytest.mark.slow
def test_a_hung_handler_is_killed_at_its_timeout_and_the_retry_runs(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    cfg = _project(tmp_path, "max_jobs_per_child: 1")
    worker = workers(cfg, "iso", redis_url)
    wait_workers_ready(redis_client, "iso")
    jobs = Jobs(cfg, redis_url)
    jobs.run("iso", lambda e: e.add("n", {"n": 0, "hang": True}, JobOptions(job_id="h")))
    jobs.run("iso", lambda e: e.add_bulk([("n", {"n": i}, None) for i in range(1, 4)]))
    job = _finished(jobs, "h", worker, 30)
    assert (job.state, job.attempts_made) == ("completed", 2), worker.log()
    runs = _ran(redis_client)
    hung = next(r["pid"] for r in runs if r["n"] == 0)
    assert not pid_alive(hung)  # the timeout really stopped it
    wait_for(lambda: len(_ran(redis_client)) == 5, 20, message="the other jobs ran")
    pids = [r["pid"] for r in _ran(redis_client)]
    assert len(set(pids)) == 5 and worker.pid not in pids  # max_jobs_per_child: 1
    assert worker.alive()


def test_stop_kills_a_running_handler_and_gives_its_job_back(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    """The handler really stops, so giving its job back cannot run it twice."""
    cfg = _project(tmp_path)
    (tmp_path / "queues.yaml").write_text(
        (tmp_path / "queues.yaml").read_text().replace("timeout: 4s", "timeout: 1m")
    )
    worker = workers(cfg, "iso", redis_url)
    wait_workers_ready(redis_client, "iso")
    jobs = Jobs(cfg, redis_url)
    jobs.run("iso", lambda e: e.add("n", {"n": 0, "hang": True}, JobOptions(job_id="s")))
    [run] = wait_for(lambda: _ran(redis_client), 20, message="the job started")
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(20) == 0, worker.log()
    assert not pid_alive(run["pid"])
    job = jobs.run("iso", lambda e: e.get_job("s"))
    assert (job.state, job.attempts_made) == ("waiting", 0), worker.log()
    assert "gave 1 unfinished job(s) back to waiting" in worker.log()
    assert os.getpid() != run["pid"]


def test_a_child_over_max_memory_per_child_is_replaced_after_its_job(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    """1MB: every interpreter is above it after a job, so each job runs in a new process."""
    cfg = _project(tmp_path, "max_memory_per_child: 1MB")
    worker = workers(cfg, "iso", redis_url)
    wait_workers_ready(redis_client, "iso")
    jobs = Jobs(cfg, redis_url)
    for i in range(3):  # one after the other, so each can reuse a kept child if there were one
        jobs.run("iso", lambda e, i=i: e.add("n", {"n": i}, None))
        wait_for(lambda i=i: len(_ran(redis_client)) == i + 1, 20, message=worker.log)
    pids = [r["pid"] for r in _ran(redis_client)]
    assert len(set(pids)) == 3, pids


SLOW_START = """
import os, time

time.sleep(float(os.environ.get("CF_TEST_IMPORT_DELAY", "0")))  # a heavy import


def work(data):
    return os.getpid()
"""


def test_waiting_for_a_child_to_start_does_not_count_against_the_timeout(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    workers: Callable[..., Proc],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each job needs a fresh child whose import takes 3s; the handler itself is instant, so a
    2s timeout must not fire while the job waits for the child."""
    cfg = write_project(
        tmp_path,
        """
        queues:
          iso:
            handler: slowstart:work
            isolation: process
            concurrency: 1
            max_jobs_per_child: 1
            timeout: 2s
            attempts: 1
        """,
        {"slowstart.py": SLOW_START},
    )
    monkeypatch.setenv("CF_TEST_IMPORT_DELAY", "3")
    worker = workers(cfg, "iso", redis_url)
    wait_workers_ready(redis_client, "iso", timeout=60)
    jobs = Jobs(cfg, redis_url)
    for i in range(2):
        jobs.run("iso", lambda e, i=i: e.add("n", {"n": i}, JobOptions(job_id=f"s{i}")))

    def finished() -> list[Any] | None:
        got = [jobs.run("iso", lambda e, i=i: e.get_job(f"s{i}")) for i in range(2)]
        return got if all(j and j.state in ("completed", "failed") for j in got) else None

    done = wait_for(finished, 60, message=worker.log)
    # The second job waited ~3s for the first one's replacement to import its handler.
    assert [j.state for j in done] == ["completed", "completed"], worker.log()
    assert done[0].result != done[1].result  # each ran in a child of its own


CHAINING = """
import asyncio, os
from cortexflow.errors import PayloadError


async def chain(data, job):
    first = await job.add_job("after", "follow", {"n": data["n"]}, job_id="f" + str(data["n"]))
    try:
        await job.add_job("after", "follow", {"n": "not a number"})
        refused = None
    except PayloadError as exc:  # the worker's error, as its own type, in the child
        refused = [exc.queue, exc.violations[0][0]]
    both = await asyncio.gather(
        job.add_job("after", "x", {"n": 1}, delay=60_000, priority=7),
        job.add_job("after", "y", {"n": 2}, delay=60_000),
    )
    return {"pid": os.getpid(), "first": first, "refused": refused, "both": sorted(both)}
"""


def test_add_job_in_an_isolated_handler_adds_through_the_worker(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    """job.add_job() in a child: the worker adds the job (the target's payload schema, options),
    and a refusal reaches the handler as the same exception type."""
    (tmp_path / "n.json").write_text(
        json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    )
    cfg = write_project(
        tmp_path,
        """
        queues:
          iso:
            handler: chaining:chain
            isolation: process
            attempts: 1
          after:
            handler: chaining:chain
            payload_schema: n.json
        """,
        {"chaining.py": CHAINING},
    )
    worker = workers(cfg, "iso", redis_url)  # no worker of `after`: its jobs stay put
    wait_workers_ready(redis_client, "iso")
    jobs = Jobs(cfg, redis_url)
    jobs.run("iso", lambda e: e.add("go", {"n": 5}, JobOptions(job_id="go")))
    done = _finished(jobs, "go", worker)
    assert done.state == "completed", (done.error, worker.log())
    result = done.result
    assert result["pid"] != worker.pid  # it ran in a child
    assert result["first"] == "f5" and result["refused"] == ["after", "/n"]
    follow = jobs.run("after", lambda e: e.get_job("f5"))
    assert (follow.state, follow.name, follow.data) == ("waiting", "follow", {"n": 5})
    delayed = {j.id: j for j in jobs.run("after", lambda e: e.list_jobs("delayed"))}
    assert sorted(delayed) == result["both"]
    assert sorted((j.name, j.priority) for j in delayed.values()) == [("x", 7), ("y", 0)]
    assert jobs.run("after", lambda e: e.stats())["waiting"] == 1  # the refused one: not added


CANCELLING = """
import asyncio, os


class NotJson:
    pass


async def handle(data, job):
    if data.get("odd"):  # a value the worker cannot unpickle: the class is the child's own
        await job.add_job("after", "odd", {"o": NotJson()})
    try:  # the caller stops waiting while the add is in flight
        await asyncio.wait_for(job.add_job("after", "c", {"n": 1}, job_id="c" + data["k"]), 1e-6)
        first = "done"
    except asyncio.TimeoutError:
        first = "timed out"
    second = await job.add_job("after", "d", {"n": 2}, job_id="d" + data["k"])
    return {"pid": os.getpid(), "first": first, "second": second}
"""


def test_an_add_whose_caller_stopped_waiting_leaves_the_pipe_in_step(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, workers: Callable[..., Proc]
) -> None:
    """An add cancelled mid-flight still takes its answer: the next add gets its own id, the
    next job runs in the same child; data the worker cannot read fails the run at once."""
    cfg = write_project(
        tmp_path,
        """
        queues:
          iso:
            handler: cancelling:handle
            isolation: process
            concurrency: 1
            attempts: 1
            timeout: 1m
          after:
            handler: cancelling:handle
        """,
        {"cancelling.py": CANCELLING},
    )
    worker = workers(cfg, "iso", redis_url)
    wait_workers_ready(redis_client, "iso")
    jobs = Jobs(cfg, redis_url)

    results = []
    for k in ("1", "2"):
        jobs.run("iso", lambda e, k=k: e.add("go", {"k": k}, JobOptions(job_id="go" + k)))
        done = _finished(jobs, "go" + k, worker)
        assert done.state == "completed", (done.error, worker.log())
        results.append(done.result)
    assert [r["second"] for r in results] == ["d1", "d2"]  # each add its own answer
    assert results[0]["pid"] == results[1]["pid"]  # the child lived on
    added = {j.id for j in jobs.run("after", lambda e: e.list_jobs("waiting", 0, 100))}
    assert {"c1", "d1", "c2", "d2"} <= added  # the cancelled adds were made all the same

    jobs.run("iso", lambda e: e.add("go", {"k": "3", "odd": True}, JobOptions(job_id="go3")))
    odd = _finished(jobs, "go3", worker)
    assert odd.state == "failed" and "JSON values" in (odd.error or ""), odd.error
    jobs.run("iso", lambda e: e.add("go", {"k": "4"}, JobOptions(job_id="go4")))
    assert _finished(jobs, "go4", worker).state == "completed", (
        worker.log()
    )  # a new child took over
