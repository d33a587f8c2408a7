"""`cortexflow up` restarts dead workers with backoff and gives up on hopeless queues."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.jobs import Jobs
from tests.helpers.poll import wait_for
from tests.helpers.procs import run_cli
from tests.helpers.project import SUPERVISED, write_project


@pytest.mark.slow
def test_a_killed_worker_is_restarted_within_the_backoff_and_its_jobs_complete(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        queues:
          work:
            handler: handlers:sleepy
            concurrency: 5
            processes: 2
            lease: 2s
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"work\.1 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)
    # 5 s jobs: both workers' 5 slots are busy at once long enough to be seen on a loaded machine
    ids = jobs.add("work", [{"seconds": 5} for _ in range(10)])
    jobs.wait_stats("work", lambda s: s["active"] == 10, 10)

    victim = up.child_pid("work.0")
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    up.wait_for(rf"work\.0 \(pid {victim}\) killed by SIGKILL; restart 1 in a row in", 5)
    replacement = up.child_pid("work.0", nth=2)
    restart_gap = time.monotonic() - killed_at
    assert replacement != victim
    assert restart_gap < 1.2 + 2.0  # first backoff is 1 s ±20%; margin for a loaded machine

    # The killed worker's jobs come back after their 2 s lease and are run by someone.
    jobs.wait_stats("work", lambda s: s["completed"] == 10, 30)
    assert jobs.states("work", ids) == ["completed"] * 10
    up.send(signal.SIGTERM)
    assert up.wait_exit(15) == 0, up.log()


def test_a_handler_that_raises_at_import_makes_its_queue_fatal_and_the_others_run(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        queues:
          good:
            handler: handlers:sleepy
          broken:
            handler: bad:handle
            processes: 2
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path, "--redis-url", redis_url)
    # A configuration error is FATAL at once (no restart); the bound is only for a loaded machine
    # where starting the interpreters alone can take seconds.
    up.wait_for(r"queue broken is FATAL", 30)
    fatal_after = time.monotonic() - up.started
    log = up.err()
    assert "configuration error" in log
    assert "boom at import" in log.split("queue broken is FATAL", 1)[1]  # its last stderr lines
    assert "broken.0 started" in log and log.count("broken.0 started") == 1  # never restarted

    jobs = Jobs(path, redis_url)
    ids = jobs.add("good", [{"seconds": 0} for _ in range(5)])
    jobs.wait_stats("good", lambda s: s["completed"] == 5, 30)
    assert jobs.states("good", ids) == ["completed"] * 5

    # Status (published every 2 s, workers' counts too) says FATAL, with exit 1.
    def status() -> tuple[int, list[dict[str, Any]]]:
        r = run_cli("status", "--json", "-f", str(path), "--redis-url", redis_url)
        return r.returncode, json.loads(r.stdout or "null") or []

    last: list[tuple[int, list[dict[str, Any]]]] = []

    def good_counted_five() -> bool:
        last[:] = [status()]
        return [r["jobs_done"] for r in last[0][1] if r["queue"] == "good"] == [5]

    wait_for(good_counted_five, 30, 0.2, message=lambda: f"status never counted 5: {last}")
    code, rows = last[0]
    states = {(r["queue"], r["replica"]): r["state"] for r in rows}
    assert code == 1
    assert states[("broken", 0)] == "fatal"
    assert states[("broken", 1)] == "fatal"
    assert states[("good", 0)] in ("ready", "stable")
    good = next(r for r in rows if r["queue"] == "good")
    assert good["jobs_done"] == 5
    assert good["restarts"] == 0
    assert good["pid"] and good["uptime"] is not None
    print(f"FATAL {fatal_after:.1f}s after up started")

    up.send(signal.SIGTERM)
    assert up.wait_exit(15) == 0, up.log()


@pytest.mark.slow
def test_a_child_crashing_at_start_backs_off_1_2_4_seconds_then_goes_fatal(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(
        tmp_path,
        """
        version: 1
        restart: {limit: 3, window: 1m}
        queues:
          good:
            handler: handlers:sleepy
          crashy:
            handler: crashy:handle
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path, "--redis-url", redis_url, "--log-format", "json")
    up.wait_for(r"queue crashy is FATAL", 60)
    events = [json.loads(line) for line in up.err().splitlines() if line.startswith("{")]

    def at(e: dict[str, str]) -> float:
        return time.mktime(time.strptime(e["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(e["ts"][19:23])

    exits = [
        e
        for e in events
        if e["message"].startswith("crashy.0") and "exited with code 3" in e["message"]
    ]
    starts = [e for e in events if e["message"].startswith("crashy.0 started")]
    assert len(starts) == 4  # the first start and 3 restarts; the 4th exit is one too many
    assert len(exits) == 4
    gaps = [at(s) - at(x) for x, s in zip(exits, starts[1:], strict=False)]
    for gap, base in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert base * 0.8 - 0.05 <= gap <= base * 1.2 + 1.0, gaps
    print("observed restart gaps:", [round(g, 2) for g in gaps])
    assert "more than 3 restarts within 60s" in up.err()

    jobs = Jobs(path, redis_url)  # the other queue kept working throughout
    jobs.add("good", [{"seconds": 0}])
    jobs.wait_stats("good", lambda s: s["completed"] == 1, 20)
    up.send(signal.SIGTERM)
    assert up.wait_exit(15) == 0, up.log()


def test_exit_on_fatal_stops_everything_with_exit_1(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    write_project(
        tmp_path,
        """
        version: 1
        queues:
          good:
            handler: handlers:sleepy
          broken:
            handler: bad:handle
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path, "--redis-url", redis_url, "--exit-on-fatal")
    assert up.wait_exit(30) == 1
    assert "--exit-on-fatal: stopping every queue" in up.err()


@pytest.mark.slow
def test_a_stop_while_a_restarted_worker_is_still_starting_is_clean(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    """SIGTERM to `up` just as it restarts a killed worker: the new worker may get the stop
    while the CLI is still starting it (it then exits 143, having taken no job). That is a
    clean stop: `up` exits 0. The stop lands at several points of the restart window in turn
    (the backoff is 1 s, the start takes a few hundred ms)."""
    write_project(
        tmp_path,
        """
        version: 1
        queues:
          work:
            handler: handlers:sleepy
        """,
        SUPERVISED,
    )
    codes = []
    for delay in (1.0, 1.15, 1.3, 1.45, 1.6, 1.8):
        up = start_up(tmp_path, "--redis-url", redis_url)
        first = int(up.wait_for(r"work\.0 \(pid (\d+)\) ready", 30)[0].group(1))
        os.kill(first, signal.SIGKILL)
        up.wait_for(r"work\.0 \(pid \d+\) killed by SIGKILL", 10)
        time.sleep(delay)
        up.send(signal.SIGTERM)
        code = up.wait_exit(30)
        codes.append(code)
        assert code == 0, (delay, up.log())
    assert codes == [0] * 6
