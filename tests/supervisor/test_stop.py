"""Stopping `cortexflow up`: graceful within stop_timeout, a second signal kills, no orphans."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from cortexflow.embedded import DataFolder
from tests.helpers.jobs import Jobs
from tests.helpers.poll import wait_for
from tests.helpers.procs import wait_gone
from tests.helpers.project import SUPERVISED, write_project


def test_sigterm_lets_50_running_one_second_jobs_finish_and_exits_0(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        stop_timeout: 10s
        queues:
          work:
            handler: handlers:sleepy
            concurrency: 25
            processes: 2
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"work\.1 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)
    ids = jobs.add("work", [{"seconds": 1, "mark": str(i)} for i in range(50)])
    wait_for(lambda: len(list((tmp_path / "running").glob("*"))) == 50, timeout=5)

    sent = time.monotonic()
    up.send(signal.SIGTERM)
    code = up.wait_exit(15)
    took = time.monotonic() - sent
    assert code == 0, up.err()
    assert took < 12
    states = jobs.states("work", ids)
    assert states == ["completed"] * 50, (states, up.log())
    print(f"50 running jobs drained, exit 0 in {took:.2f}s")


@pytest.mark.slow
def test_jobs_longer_than_stop_timeout_go_back_to_waiting_and_run_on_the_next_up(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        stop_timeout: 2s
        queues:
          work:
            handler: handlers:long
            concurrency: 5
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)
    ids = jobs.add("work", [{} for _ in range(5)])
    jobs.wait_stats("work", lambda s: s["active"] == 5, 15)

    sent = time.monotonic()
    up.send(signal.SIGTERM)
    up.wait_exit(30)
    took = time.monotonic() - sent
    assert took < 10, up.err()  # stop_timeout (2 s) and the exits, not the jobs' length
    assert jobs.states("work", ids) == ["waiting"] * 5
    print(f"60 s jobs given back, exit in {took:.2f}s")

    (tmp_path / "fast").touch()  # the handler now returns at once
    again = start_up(tmp_path, "--redis-url", redis_url)
    jobs.wait_stats("work", lambda s: s["completed"] == 5, 30)
    assert jobs.states("work", ids) == ["completed"] * 5
    again.send(signal.SIGTERM)
    assert again.wait_exit(15) == 0


def test_a_second_signal_kills_at_once_and_exits_1(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        stop_timeout: 30s
        queues:
          work:
            handler: handlers:long
            concurrency: 3
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)
    ids = jobs.add("work", [{} for _ in range(3)])
    jobs.wait_stats("work", lambda s: s["active"] == 3, 5)
    up.send(signal.SIGINT)
    up.wait_for(r"SIGINT: stopping", 5)
    sent = time.monotonic()
    up.send(signal.SIGINT)
    assert up.wait_exit(10) == 1
    assert time.monotonic() - sent < 3
    assert "killing every child now" in up.err()
    # Killed with SIGKILL, the worker could not give its jobs back: they stay active until
    # their lease runs out, then go back to waiting (the engine's stall recovery).
    assert set(jobs.states("work", ids)) <= {"active", "waiting"}


def test_sigkill_of_the_supervisor_leaves_no_worker_and_no_server(tmp_path: Path, start_up) -> None:
    write_project(
        tmp_path,
        """
        version: 1
        queues:
          one:
            handler: handlers:sleepy
            processes: 2
          two:
            handler: handlers:sleepy
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path)  # no Redis URL anywhere: the embedded server
    for name in ("one.0", "one.1", "two.0"):
        up.wait_for(rf"{re.escape(name)} \(pid \d+\) ready", 30)
    state = DataFolder(tmp_path / ".cortexflow").read_state()
    assert state is not None and state.owner == "up"
    pids = [*up.started_pids(), state.pid]

    up.send(signal.SIGKILL)
    up.proc.wait()
    killed = time.monotonic()
    left = wait_gone(pids, 5.0)
    took = time.monotonic() - killed
    assert left == [], f"still running 5 s after the supervisor's SIGKILL: {left}"
    print(f"{len(pids)} processes gone {took:.2f}s after the supervisor's SIGKILL")
