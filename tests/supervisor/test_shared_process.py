"""Queues sharing a worker process (`process:` in queues.yaml) under `cortexflow up`.

One child per (process, replica): kill -9 of a shared process takes down only that process, `up`
restarts it, and the jobs of every queue in it come back after their lease; a graceful stop
drains every queue of the process; SIGHUP moves a queue to another process without losing a
job or running one twice at once; each queue's log lines keep their queue's prefix.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cortexflow.embedded import pid_alive
from tests.helpers.jobs import Jobs
from tests.helpers.poll import wait_for
from tests.helpers.procs import run_cli
from tests.helpers.project import write_project

HANDLERS = textwrap.dedent(
    '''
    """Each run appends {id, queue, pid, start, end} to runs.jsonl (one O_APPEND write)."""
    import asyncio, json, logging, os, time
    from pathlib import Path

    RUNS = Path(__file__).parent / "runs.jsonl"

    def _write(record):
        fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (json.dumps(record) + "\\n").encode())
        finally:
            os.close(fd)

    async def work(data, job):
        start = time.time()
        _write({"id": job.id, "queue": job.queue, "pid": os.getpid(), "start": start})
        logging.getLogger("shared").warning("running %s", job.id)
        await asyncio.sleep(data.get("seconds", 0))
        _write({"id": job.id, "queue": job.queue, "pid": os.getpid(), "start": start,
                "end": time.time()})
    '''
)

SHARED = """
version: 1
stop_timeout: 20s
defaults:
  process: light
  lease: {lease}
  retention: {{completed: {{count: 10000}}, failed: {{count: 10000}}}}
queues:
  a:
    handler: shared_handlers:work
    concurrency: 4
  b:
    handler: shared_handlers:work
    concurrency: 2
  c:
    handler: shared_handlers:work
    process: {c_process}
"""


def _project(folder: Path, c_process: str = "null", lease: str = "2s") -> Path:
    return write_project(
        folder, SHARED.format(c_process=c_process, lease=lease), {"shared_handlers.py": HANDLERS}
    )


def _runs(folder: Path) -> list[dict[str, object]]:
    path = folder / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _started(folder: Path, ids: list[str]) -> bool:
    return set(ids) <= {str(r["id"]) for r in _runs(folder)}


def test_one_child_per_process_with_per_queue_log_prefixes(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = _project(tmp_path)
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"light\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"c\.0 \(pid \d+\) ready", 30)
    assert "up: light (a, b) x1, c x1" in up.err()
    light, c = up.child_pid("light.0"), up.child_pid("c.0")
    assert light != c
    jobs = Jobs(path, redis_url)
    [a_id] = jobs.add("a", [{}])
    [b_id] = jobs.add("b", [{}])
    jobs.wait_stats("b", lambda s: s["completed"] == 1, 15)
    jobs.wait_stats("a", lambda s: s["completed"] == 1, 15)
    assert {r["pid"] for r in _runs(tmp_path) if r["queue"] in ("a", "b")} == {light}
    # Each queue's lines under its own name, though one process wrote them both.
    up.wait_for(rf"a\.0 +\| WARNING shared: running {a_id}$", 10)
    up.wait_for(rf"b\.0 +\| WARNING shared: running {b_id}$", 10)
    up.wait_for(r"a\.0 +\| INFO cortexflow.worker: worker ready: queue=a ", 5)
    # status: which queues each process serves, and each queue's own counters.

    def rows() -> list[dict[str, Any]]:
        result = run_cli("status", "--json", "--redis-url", redis_url, cwd=tmp_path)
        return list(json.loads(result.stdout))

    wait_for(lambda: rows()[0]["jobs_done"] == 2, timeout=15)
    by_process = {r["process"]: r for r in rows()}
    assert by_process["light"]["pid"] == light and by_process["c"]["pid"] == c
    assert by_process["light"]["queues"] == {
        "a": {"jobs_done": 1, "jobs_failed": 0, "active": 0},
        "b": {"jobs_done": 1, "jobs_failed": 0, "active": 0},
    }
    assert list(by_process["c"]["queues"]) == ["c"]
    table = run_cli("status", "--redis-url", redis_url, cwd=tmp_path).stdout
    assert table.split("\n")[0].split()[:3] == ["HOST", "PROCESS", "REPLICA"]
    assert "  - a: 1 done, 0 failed, 0 running\n  - b: 1 done, 0 failed, 0 running" in table
    up.send(signal.SIGTERM)
    assert up.wait_exit(30) == 0


@pytest.mark.slow
def test_kill9_of_a_shared_process_loses_no_job_of_any_queue(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = _project(tmp_path)
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"light\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"c\.0 \(pid \d+\) ready", 30)
    light, c = up.child_pid("light.0"), up.child_pid("c.0")
    jobs = Jobs(path, redis_url)
    a_ids = jobs.add("a", [{"seconds": 3}] * 4)
    b_ids = jobs.add("b", [{"seconds": 3}] * 2)
    c_ids = jobs.add("c", [{"seconds": 1}] * 3)
    wait_for(lambda: _started(tmp_path, a_ids + b_ids), timeout=15)

    os.kill(light, signal.SIGKILL)
    up.wait_for(rf"light\.0 \(pid {light}\) killed by SIGKILL", 10)
    new_light = up.child_pid("light.0", nth=2)
    up.wait_for(rf"light\.0 \(pid {new_light}\) ready", 30)
    jobs.wait_stats("a", lambda s: s["completed"] == 4, 40)
    jobs.wait_stats("b", lambda s: s["completed"] == 2, 40)
    jobs.wait_stats("c", lambda s: s["completed"] == 3, 20)
    for queue, ids in (("a", a_ids), ("b", b_ids), ("c", c_ids)):
        assert jobs.states(queue, ids) == ["completed"] * len(ids), queue
        assert jobs.stats(queue)["failed"] == 0, queue
    # The jobs the killed process held ran again in its successor, after their lease.
    ended = {str(r["id"]): r["pid"] for r in _runs(tmp_path) if "end" in r}
    assert {ended[i] for i in a_ids + b_ids} == {new_light}
    # The other process never noticed.
    assert up.child_pid("c.0") == c and pid_alive(c)
    assert up.err().count("c.0 started") == 1
    up.send(signal.SIGTERM)
    assert up.wait_exit(30) == 0


def test_a_graceful_stop_drains_every_queue_of_a_shared_process(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = _project(tmp_path)
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"light\.0 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)
    a_ids = jobs.add("a", [{"seconds": 2}] * 4)
    b_ids = jobs.add("b", [{"seconds": 2}] * 2)
    wait_for(lambda: _started(tmp_path, a_ids + b_ids), timeout=15)
    up.send(signal.SIGTERM)
    assert up.wait_exit(30) == 0
    # Both queues' running jobs finished in the stopping process: none given back.
    assert jobs.states("a", a_ids) == ["completed"] * 4
    assert jobs.states("b", b_ids) == ["completed"] * 2
    assert "gave" not in up.out()


@pytest.mark.slow
def test_sighup_moves_a_queue_to_another_process_without_losing_or_doubling_a_job(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    # A lease no load can outlast: a job runs twice here only if the move made it so.
    path = _project(tmp_path, lease="30s")
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"light\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"c\.0 \(pid \d+\) ready", 30)
    old_light, old_c = up.child_pid("light.0"), up.child_pid("c.0")
    jobs = Jobs(path, redis_url)
    b_ids = jobs.add("b", [{"seconds": 0.2}] * 60)  # ~6 s at 2 at once
    jobs.wait_stats("b", lambda s: s["completed"] >= 4, 15)

    # b joins c's process (named after c, which has no `process:` of its own).
    path.write_text(
        textwrap.dedent(SHARED.format(c_process="null", lease="30s")).replace(
            "    concurrency: 2\n", "    concurrency: 2\n    process: c\n"
        )
    )
    up.send(signal.SIGHUP)
    up.wait_for(r"SIGHUP: reloaded queues.yaml: replaced light, c", 10)
    new_c = up.child_pid("c.0", nth=2)
    up.wait_for(rf"c\.0 \(pid {old_c}\) replaced by pid {new_c}", 30)
    up.wait_for(rf"light\.0 \(pid {old_light}\) stopped: exited with code 0", 30)
    jobs.wait_stats("b", lambda s: s["completed"] == 60, 40)
    assert jobs.states("b", b_ids) == ["completed"] * 60
    assert jobs.stats("b")["failed"] == 0
    runs = [r for r in _runs(tmp_path) if r["queue"] == "b"]
    starts = [str(r["id"]) for r in runs if "end" not in r]
    assert sorted(starts) == sorted(b_ids)  # each job ran once: none lost, none twice
    assert {r["pid"] for r in runs} >= {old_light, new_c}  # b moved to c's new process
    up.send(signal.SIGTERM)
    assert up.wait_exit(30) == 0
