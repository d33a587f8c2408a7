"""`cortexflow job` / `jobs` / `retry` on jobs with a history: runs
started beside attempts made, a completed job's earlier error shown as history, an active job's
running try counted, and `retry` of an id that does not exist."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.history import ERROR, TRACE, completed_after_a_failure, failed_once, lease
from tests.helpers.jobs import Jobs
from tests.helpers.procs import Cli
from tests.helpers.project import write_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(
        tmp_path / "proj",
        """
        version: 1
        queues:
          work:
            handler: h:work
            attempts: 3
        """,
        {"h.py": "def work(data):\n    return data\n"},
    )


@pytest.fixture
def jobs(project: Path, redis_url: str) -> Jobs:
    return Jobs(project, redis_url)


def test_job_says_how_many_runs_started_after_a_stall(cf: Cli, jobs: Jobs) -> None:
    async def stalled(e: QueueEngine) -> None:
        await e.add("n", {}, JobOptions(job_id="j"))
        await lease(e, "j", lease=0.2)  # that worker dies: its lease runs out
        await asyncio.sleep(0.4)
        await lease(e, "j")  # recovered and leased again: the second start

    jobs.run("work", stalled)
    r = cf("job", "work", "j", "--json")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert (job["attemptsStarted"], job["attemptsMade"], job["stalls"]) == (2, 0, 1)
    r = cf("job", "work", "j")
    assert "attempts:  0 made of 3, 2 started (one running), 1 stall(s)\n" in r.stdout


@pytest.mark.slow
def test_a_completed_job_shows_its_earlier_error_as_history(cf: Cli, jobs: Jobs) -> None:
    jobs.run("work", lambda e: completed_after_a_failure(e, "done"))
    jobs.run("work", lambda e: failed_once(e, "again"))

    r = cf("job", "work", "done")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "state:     completed" in lines and 'result:    {"sent": true}' in lines
    assert "attempts:  2 made of 3, 2 started" in lines
    assert f"last failed attempt: {ERROR}" in lines and "its traceback:" in lines
    assert not [line for line in lines if line.startswith(("error:", "traceback:"))], r.stdout

    r = cf("job", "work", "done", "--json")
    job = json.loads(r.stdout)
    assert (job["state"], job["error"], job["stacktrace"]) == ("completed", None, None)
    assert (job["lastError"], job["lastStacktrace"]) == (ERROR, TRACE)

    r = cf("jobs", "work", "--state", "completed")
    header, row = r.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "NAME", "TRIES", "PRIO", "AGE"], r.stdout
    assert ERROR not in r.stdout and row.split()[:4] == ["done", "completed", "n", "2/3"]

    # A job waiting for its retry still shows why (its error explains its state).
    r = cf("jobs", "work", "--state", "waiting")
    assert r.stdout.splitlines()[0].split()[-1] == "ERROR" and ERROR in r.stdout
    r = cf("job", "work", "again")
    assert f"error:     {ERROR}" in r.stdout.splitlines()
    assert json.loads(cf("job", "work", "again", "--json").stdout)["error"] == ERROR


def test_an_active_job_counts_its_running_try(cf: Cli, jobs: Jobs) -> None:
    async def running(e: QueueEngine) -> None:
        await e.add("n", {}, JobOptions(job_id="first"))
        await lease(e, "first")
        await failed_once(e, "second")
        await lease(e, "second")

    jobs.run("work", running)
    r = cf("jobs", "work", "--state", "active")
    tries = {line.split()[0]: line.split()[3] for line in r.stdout.splitlines()[1:]}
    # the first run is try 1 of 3, the retry after one failure try 2
    assert tries == {"first": "1/3", "second": "2/3"}, r.stdout


def test_retry_of_a_job_that_does_not_exist_prints_only_an_error(cf: Cli, jobs: Jobs) -> None:
    r = cf("retry", "work", "nope")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == "error: not retried: nope (no such job in queue 'work')\n"

    jobs.run("work", lambda e: completed_after_a_failure(e, "done"))
    r = cf("retry", "work", "done", "nope")
    assert r.returncode == 1 and r.stdout == "" and "moved" not in r.stderr
    assert "done (completed, not failed); nope (no such job in queue 'work')" in r.stderr
