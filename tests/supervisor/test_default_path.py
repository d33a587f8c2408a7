"""The promise on the path a new user walks first: `cortexflow up` in the folder of a queues.yaml
with no `redis:` section and no REDIS_URL (the embedded Valkey on its unix socket), commands
typed without `-f`.

- A job running 3x its lease runs once and completes, for async, sync and `isolation: process`
  handlers (the lease thread once died on its first renewal over the unix socket, unseen).
- The same at the default lease (30 s) with a 70 s job (slow).
- A lease thread that dies is noticed: the worker exits non-zero (71), `up` starts a new one,
  and the job runs at most once more, only after its lease ran out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, run_cli
from tests.helpers.project import write_project

HANDLERS = r"""
import asyncio, json, os, time

def _record(job, event):
    line = json.dumps({"id": job.id, "pid": os.getpid(), "t": time.time(), "event": event,
                       "started": getattr(job, "started", None)})
    with open(os.path.join(os.path.dirname(__file__), "runs.jsonl"), "a") as f:
        f.write(line + "\n")

async def run_async(data, job):
    _record(job, "start")
    await asyncio.sleep(data["seconds"])
    _record(job, "end")
    return {"slept": data["seconds"]}

def run_sync(data, job):
    _record(job, "start")
    time.sleep(data["seconds"])
    _record(job, "end")
    return {"slept": data["seconds"]}
"""

# Imported by the worker with the handler: the first worker process's lease thread raises on
# its first renewal of a running job (what a TypeError from a connection option once did).
BREAKER = r"""
import os
from cortexflow.engine import renewal
from handlers import run_async

_marker = os.path.join(os.path.dirname(__file__), "broken-once")
if not os.path.exists(_marker):
    open(_marker, "w").close()
    _renew = renewal.SyncRenewer.renew

    def renew(self, leases):
        if leases:
            raise RuntimeError("injected: the lease thread breaks")
        return _renew(self, leases)

    renewal.SyncRenewer.renew = renew
"""


def _project(folder: Path, queue: str) -> Path:
    return write_project(
        folder, queue, {"handlers.py": HANDLERS, "breaker.py": BREAKER, "runs.jsonl": ""}
    )


def _runs(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "runs.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _job(folder: Path, queue: str, job_id: str) -> dict[str, Any]:
    shown = run_cli("job", queue, job_id, "--json", cwd=folder)
    assert shown.returncode == 0, shown.stderr
    job: dict[str, Any] = json.loads(shown.stdout)
    return job


def _enqueue(folder: Path, queue: str, job_id: str, seconds: float) -> None:
    added = run_cli(
        "enqueue", queue, "-", "--job-id", job_id, input=json.dumps({"seconds": seconds}),
        cwd=folder,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def _finished(folder: Path, queue: str, job_id: str, timeout: float) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def done() -> bool:
        last.update(_job(folder, queue, job_id))
        return last["state"] in ("completed", "failed")

    wait_for(done, timeout, 0.5, message=lambda: f"job {job_id} never finished: {last}")
    return last


def _up(start_up: Callable[..., Proc], folder: Path) -> Proc:
    up = start_up(folder)  # no -f, no --redis-url, no REDIS_URL (start_up's env is clean)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 60)
    return up


@pytest.mark.parametrize(
    "handler, isolation",
    [  # the first in the fast tier (make test): the default path is tested first
        ("run_async", "none"),
        pytest.param("run_sync", "none", marks=pytest.mark.slow),
        pytest.param("run_async", "process", marks=pytest.mark.slow),
    ],
)
def test_a_job_running_3x_its_lease_runs_once_on_the_embedded_default(
    tmp_path: Path, start_up: Callable[..., Proc], handler: str, isolation: str
) -> None:
    _project(
        tmp_path,
        f"""
        queues:
          work:
            handler: handlers:{handler}
            isolation: {isolation}
            lease: 2s
            timeout: 1m
        """,
    )
    assert "redis" not in (tmp_path / "queues.yaml").read_text()
    up = _up(start_up, tmp_path)
    assert "embedded server" in up.log() and "unix://" in up.log(), up.log()
    _enqueue(tmp_path, "work", "long-1", 6.0)
    job = _finished(tmp_path, "work", "long-1", 40)
    runs = _runs(tmp_path)
    logs = up.log()
    assert job["state"] == "completed", (job, runs, logs)
    assert [r["event"] for r in runs] == ["start", "end"], (runs, logs)
    assert job["stalls"] == 0 and job.get("attemptsStarted") == 1, job
    assert "lease renewal thread died" not in logs and "Traceback" not in logs, logs


@pytest.mark.slow
@pytest.mark.parametrize("handler", ["run_async", "run_sync"])
def test_a_70s_job_at_the_default_lease_runs_once_on_the_embedded_default(
    tmp_path: Path, start_up: Callable[..., Proc], handler: str
) -> None:
    """The trial of the report: `timeout: 5m`, the default lease (30 s), a 70 s job."""
    _project(
        tmp_path,
        f"""
        queues:
          work:
            handler: handlers:{handler}
            timeout: 5m
        """,
    )
    up = _up(start_up, tmp_path)
    _enqueue(tmp_path, "work", "seventy", 70.0)
    job = _finished(tmp_path, "work", "seventy", 150)
    runs = _runs(tmp_path)
    assert job["state"] == "completed", (job, runs, up.log())
    assert [r["event"] for r in runs] == ["start", "end"], (runs, up.log())
    assert job["stalls"] == 0, job


@pytest.mark.slow
def test_a_dead_lease_thread_ends_the_worker_and_up_replaces_it(
    tmp_path: Path, start_up: Callable[..., Proc]
) -> None:
    """The lease thread raises on its first renewal of a running job: within lease/3 the
    worker logs why and exits 71; `up` starts a new worker; the job, whose lease nobody renews
    any more, runs once more, and only once its lease ran out."""
    lease = 2.0
    _project(
        tmp_path,
        """
        queues:
          work:
            handler: breaker:run_async
            lease: 2s
            timeout: 1m
        """,
    )
    up = _up(start_up, tmp_path)
    _enqueue(tmp_path, "work", "victim", 8.0)
    up.wait_for(r"work\.0 \(pid \d+\) exited with code 71", 30)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30, count=2)
    job = _finished(tmp_path, "work", "victim", 60)
    runs = _runs(tmp_path)
    logs = up.log()
    starts = [r for r in runs if r["event"] == "start"]
    assert job["state"] == "completed", (job, runs, logs)
    assert "the lease renewal thread died" in logs, logs
    assert "injected: the lease thread breaks" in logs, logs
    assert len(starts) == 2, (runs, logs)  # the first run was killed with its worker
    first, second = starts
    assert first["pid"] != second["pid"]
    # Not before the first run's lease (taken just before it started) could run out.
    assert second["t"] >= first["t"] + lease - 0.2, (runs, logs)
    assert second["started"] == 2 and job["stalls"] == 1, (job, runs)
    assert [r["event"] for r in runs if r["pid"] == first["pid"]] == ["start"], runs
