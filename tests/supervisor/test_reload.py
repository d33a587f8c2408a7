"""SIGHUP: `up` re-reads queues.yaml; a broken file changes nothing, a changed one is applied."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from cortexflow.embedded import pid_alive
from tests.helpers.jobs import Jobs
from tests.helpers.poll import wait_for
from tests.helpers.project import SUPERVISED, write_project

TWO_QUEUES = """
version: 1
stop_timeout: 10s
queues:
  work:
    handler: handlers:sleepy
    concurrency: {concurrency}
  other:
    handler: handlers:sleepy
"""


def test_a_broken_file_on_sighup_keeps_the_old_config_running(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(tmp_path, TWO_QUEUES.format(concurrency=4), SUPERVISED)
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"other\.0 \(pid \d+\) ready", 30)
    pids = up.started_pids()

    path.write_text(
        textwrap.dedent(TWO_QUEUES.format(concurrency='"ten"'))
        + "  extra:\n    handler: handlers:sleepy\n    concurency: 3\n"
    )
    up.send(signal.SIGHUP)
    up.wait_for(r"is not valid; the running config stays as it was", 10)
    log = up.err()
    assert "queues.yaml:7:" in log  # every diagnostic, with file:line ...
    assert "concurrency" in log and "concurency" in log  # ... both of them
    assert up.started_pids() == pids  # nothing restarted, nothing added
    assert all(pid_alive(p) for p in pids)

    path.write_text(textwrap.dedent(TWO_QUEUES.format(concurrency=4)))
    jobs = Jobs(path, redis_url)
    jobs.add("work", [{"seconds": 0}] * 3)
    jobs.wait_stats("work", lambda s: s["completed"] == 3, 15)
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0


@pytest.mark.slow
def test_a_changed_concurrency_replaces_the_children_without_losing_a_job(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(tmp_path, TWO_QUEUES.format(concurrency=4), SUPERVISED)
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"other\.0 \(pid \d+\) ready", 30)
    old_work, old_other = up.child_pid("work.0"), up.child_pid("other.0")
    jobs = Jobs(path, redis_url)
    ids = jobs.add("work", [{"seconds": 0.3} for _ in range(80)])  # ~6 s of work at 4 at once
    jobs.wait_stats("work", lambda s: s["completed"] >= 4, 10)

    path.write_text(textwrap.dedent(TWO_QUEUES.format(concurrency=8)))
    up.send(signal.SIGHUP)
    up.wait_for(r"SIGHUP: reloaded queues.yaml: replaced work", 10)
    new_work = up.child_pid("work.0", nth=2)
    # The old child stops only once the new one is ready.
    log = up.wait_for(rf"work\.0 \(pid {old_work}\) replaced by pid {new_work}", 30)[0].string
    assert log.index(f"work.0 (pid {new_work}) ready") < log.index(f"pid {old_work}) replaced")
    up.wait_for(rf"work\.0 \(pid {old_work}\) stopped: exited with code 0", 20)
    assert up.child_pid("other.0") == old_other  # the unchanged queue was left alone
    assert "other.0 started" in log and log.count("other.0 started") == 1

    jobs.wait_stats("work", lambda s: s["completed"] == 80, 30)
    assert jobs.states("work", ids) == ["completed"] * 80
    assert jobs.stats("work")["failed"] == 0
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0


def test_sighup_adds_and_removes_queues(tmp_path: Path, redis_url: str, start_up) -> None:
    path = write_project(tmp_path, TWO_QUEUES.format(concurrency=4), SUPERVISED)
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"other\.0 \(pid \d+\) ready", 30)
    other = up.child_pid("other.0")
    path.write_text(
        textwrap.dedent(
            """
            version: 1
            queues:
              work:
                handler: handlers:sleepy
                concurrency: 4
              fresh:
                handler: handlers:sleepy
                processes: 2
            """
        )
    )
    up.send(signal.SIGHUP)
    up.wait_for(r"reloaded queues.yaml: added fresh; removed other", 10)
    up.wait_for(r"fresh\.1 \(pid \d+\) ready", 30)
    up.wait_for(rf"other\.0 \(pid {other}\) stopped", 20)
    wait_for(lambda: not pid_alive(other), timeout=10)
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0
