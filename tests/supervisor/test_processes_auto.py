"""`processes: auto` under a real `cortexflow up`: as many workers as the CPUs `up` may use.

`taskset -c 0` stands for a 1-CPU host; the plain run gets this machine's affinity set. The
count is read three ways: the workers `up` says it started, their ready lines, and `status`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from cortexflow.config.cpus import available_cpus
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, run_cli
from tests.helpers.project import SUPERVISED, write_project

QUEUES = """
version: 1
queues:
  work:
    handler: handlers:sleepy
    processes: auto
"""


def _workers(status: list[dict[str, object]]) -> list[dict[str, object]]:
    return [r for r in status if r["queue"] == "work" and r["state"] in ("ready", "stable")]


@pytest.mark.parametrize("pinned", [True, False], ids=["taskset-1-cpu", "all-cpus"])
def test_up_starts_one_worker_per_available_cpu(
    tmp_path: Path, redis_url: str, pinned: bool
) -> None:
    if pinned and shutil.which("taskset") is None:
        pytest.skip("taskset is not installed")
    want = 1 if pinned else available_cpus()
    assert want <= len(os.sched_getaffinity(0))
    write_project(tmp_path, QUEUES, SUPERVISED)
    argv = [sys.executable, "-m", "cortexflow", "up", "--redis-url", redis_url]
    up = Proc(["taskset", "-c", "0", *argv] if pinned else argv, cwd=tmp_path, name="up")
    try:
        up.wait_for(rf"up: work x{want} \(auto\)", 30)
        up.wait_for(r"work\.\d+ \(pid \d+\) ready", 30, count=want)

        def counted() -> list[dict[str, object]] | None:
            r = run_cli("status", "--json", "--redis-url", redis_url, cwd=tmp_path)
            rows = _workers(json.loads(r.stdout)) if r.returncode == 0 else []
            return rows if len(rows) == want else None

        rows = wait_for(counted, 15, message="status never showed the workers")
        assert sorted(r["replica"] for r in rows) == list(range(want))
        assert len(up.started_pids()) == want
        assert f"work.{want} started" not in up.err()
        up.send(signal.SIGTERM)
        assert up.wait_exit(15) == 0
    finally:
        up.kill()


def test_sighup_from_one_process_to_auto_starts_one_per_cpu(tmp_path: Path, redis_url: str) -> None:
    want = available_cpus()
    if want < 2:
        pytest.skip("one CPU: auto would be 1, as before the reload")
    path = write_project(tmp_path, QUEUES.replace("processes: auto", "processes: 1"), SUPERVISED)
    argv = [sys.executable, "-m", "cortexflow", "up", "--redis-url", redis_url]
    up = Proc(argv, cwd=tmp_path, name="up")
    try:
        first = up.child_pid("work.0")
        up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
        path.write_text(QUEUES)
        up.send(signal.SIGHUP)
        up.wait_for(r"SIGHUP: reloaded queues\.yaml", 10)
        up.wait_for(rf"work\.{want - 1} \(pid \d+\) ready", 30)
        assert up.child_pid("work.0") == first  # resized, not replaced
        assert f"work.{want} started" not in up.err()
        up.send(signal.SIGTERM)
        assert up.wait_exit(15) == 0
    finally:
        up.kill()
