"""Stopping workers the way init systems do, with handlers that cannot be interrupted.

- systemd (KillMode=control-group), `docker stop` on a process tree and Kubernetes send SIGTERM
  to `up` and every worker at the same moment: one stop request, a finished job stays finished
  and ends completed after exactly one run, `up` exits 0.
- A sync handler still running in its thread at the stop deadline cannot be stopped, so its job
  is not given back to waiting (another worker would run it a second time): the worker keeps the
  lease until the thread ends and records its outcome.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.helpers.jobs import Jobs
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

# The lease promise holds on the embedded default (unix socket) and over TCP.
pytestmark = pytest.mark.transports

HANDLERS = """
import json, os, time
import redis


def send(data):
    '''A sync handler that takes data['seconds'] and records that it ran to the end.'''
    r = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    r.rpush("test:started", data["n"])
    time.sleep(data["seconds"])
    r.rpush("test:sent", json.dumps({"n": data["n"], "pid": os.getpid()}))
    return {"sent": data["n"]}
"""


def _project(folder: Path, yaml: str) -> Path:
    return write_project(folder, yaml, {"mail.py": HANDLERS})


def _sent(url: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(url)
    try:
        return [json.loads(x) for x in client.lrange("test:sent", 0, -1)]
    finally:
        client.close()


def _started(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.llen("test:started"))
    finally:
        client.close()


def test_sigterm_to_up_and_every_worker_at_once_is_one_stop(
    tmp_path: Path, redis_url: str, start_up: Callable[..., Proc]
) -> None:
    path = _project(
        tmp_path,
        """
        version: 1
        stop_timeout: 10s
        queues:
          mail:
            handler: mail:send
            concurrency: 2
            processes: 2
        """,
    )
    up = start_up(tmp_path, "--redis-url", redis_url, env={"TEST_REDIS_URL": redis_url})
    up.wait_for(r"mail\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"mail\.1 \(pid \d+\) ready", 30)
    pids = [up.child_pid("mail.0"), up.child_pid("mail.1")]
    jobs = Jobs(path, redis_url)
    ids = jobs.add("mail", [{"n": i, "seconds": 1.5} for i in range(4)])
    wait_for(lambda: _started(redis_url) == 4, timeout=10)

    # What systemd's control-group stop does: SIGTERM to every process. (Sent to the workers a
    # moment first, so that the supervisor's own SIGTERM reaches each of them as a second
    # signal rather than merging with the first while it is pending.)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    up.wait_for(r"got SIGTERM: stopping", 10, count=2)
    up.send(signal.SIGTERM)
    code = up.wait_exit(30)

    log = up.log()
    assert code == 0, log
    assert "second signal" not in log and "Traceback" not in log, log
    assert jobs.states("mail", ids) == ["completed"] * 4, log
    assert sorted(int(str(s["n"])) for s in _sent(redis_url)) == [0, 1, 2, 3], log


@pytest.mark.slow
def test_a_sync_job_still_running_at_the_stop_deadline_is_not_given_back(
    tmp_path: Path, redis_url: str, workers: Callable[..., Proc]
) -> None:
    path = _project(
        tmp_path,
        """
        version: 1
        queues:
          mail:
            handler: mail:send
        """,
    )
    worker = workers(path, "mail", redis_url, "--stop-timeout", "1s")
    worker.wait_for("worker ready", 30)
    jobs = Jobs(path, redis_url)
    [job_id] = jobs.add("mail", [{"n": 1, "seconds": 8}])  # far past the 1 s stop timeout
    wait_for(lambda: _started(redis_url) == 1, timeout=10)
    sent_at = time.monotonic()
    worker.send(signal.SIGTERM)
    # Past the 1 s stop timeout the handler still runs: the job stays active, held.
    worker.wait_for("cannot be stopped", 10)
    assert jobs.states("mail", [job_id]) == ["active"], worker.log()
    code = worker.wait_exit(30)
    log = worker.log()
    assert code == 0, log
    assert time.monotonic() - sent_at >= 3.0  # it waited for the handler, not the timeout
    assert "gave 1 unfinished job(s) back" not in log, log
    [job] = [j for j in jobs.run("mail", lambda e: e.list_jobs("completed"))]
    assert (job.id, job.attempts_made) == (job_id, 1), log
    assert len(_sent(redis_url)) == 1
