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
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis

from tests.conftest import wait_for
from tests.test_supervisor_support import Jobs, clean_env, start_up

__all__ = ["start_up"]

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
    (folder / "mail.py").write_text(HANDLERS)
    path = folder / "queues.yaml"
    path.write_text(textwrap.dedent(yaml))
    return path


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
    tmp_path: Path, redis_url: str, start_up
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


def test_a_sync_job_still_running_at_the_stop_deadline_is_not_given_back(
    tmp_path: Path, redis_url: str
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
    env = clean_env({"TEST_REDIS_URL": redis_url})
    out = tmp_path / "worker.log"
    with out.open("wb") as sink:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "cortexflow", "worker", "mail", "-f", str(path)),
                *("--redis-url", redis_url, "--stop-timeout", "1s"),
            ],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: b"worker ready" in out.read_bytes(), timeout=30)
            jobs = Jobs(path, redis_url)
            [job_id] = jobs.add("mail", [{"n": 1, "seconds": 4}])
            wait_for(lambda: _started(redis_url) == 1, timeout=10)
            sent_at = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            # Past the 1 s stop timeout the handler still runs: the job stays active, held.
            wait_for(lambda: b"cannot be stopped" in out.read_bytes(), timeout=10)
            assert jobs.states("mail", [job_id]) == ["active"], out.read_text()
            code = worker.wait(30)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    log = out.read_text()
    assert code == 0, log
    assert time.monotonic() - sent_at >= 3.0
    assert "gave 1 unfinished job(s) back" not in log, log
    [job] = [j for j in jobs._run("mail", lambda e: e.list_jobs("completed"))]
    assert (job.id, job.attempts_made) == (job_id, 1), log
    assert len(_sent(redis_url)) == 1
