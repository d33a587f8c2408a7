"""`up --log-format json` under load: a few hundred jobs, a failing one, a worker killed with
SIGKILL and restarted. Every line up writes (its own, the workers' records, a handler's print())
is one JSON object, and the lines about a job carry its id and attempt."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.dashboard import free_port
from tests.helpers.jobs import Jobs
from tests.helpers.project import write_project

HANDLERS = """
import asyncio
import logging

log = logging.getLogger("myapp")


async def work(data, job):
    log.info("working on %s", data["n"])
    if data["n"] % 50 == 0:
        print(f"a plain print for {data['n']}", flush=True)
    await asyncio.sleep(data.get("sleep", 0.005))
    if data.get("fail"):
        raise RuntimeError("told to fail\\nover two lines")
"""

QUEUES = """
version: 1
{logging}
queues:
  work:
    handler: handlers:work
    processes: 2
    concurrency: 4
    lease: 2s
    attempts: 2
    backoff: {{type: fixed, delay: 100ms}}
"""

N = 300


def records(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(record, dict), line
        assert {"ts", "pid", "message"} <= set(record), record
        out.append(record)
    return out


@pytest.mark.slow
def test_every_line_of_up_is_json_under_load_a_failure_and_a_kill(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(tmp_path, QUEUES.format(logging=""), {"handlers.py": HANDLERS})
    up = start_up(tmp_path, "--redis-url", redis_url, "--log-format", "json")
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"work\.1 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)
    ids = jobs.add("work", [{"n": n, "sleep": 0.05} for n in range(1, N // 2)])
    victim = up.child_pid("work.0")
    os.kill(victim, signal.SIGKILL)  # mid-run: its jobs come back after their lease
    [failing] = jobs.add("work", [{"n": 0, "fail": True}])
    ids += jobs.add("work", [{"n": n} for n in range(N // 2, N + 1)])
    restarted = up.child_pid("work.0", 2)
    up.wait_for(rf"work\.0 \(pid {restarted}\) ready", 30)  # a stop before ready is not clean
    jobs.wait_stats("work", lambda s: s["completed"] == len(ids) and s["failed"] == 1, 60)
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0

    out, err = records(up.out()), records(up.err())
    killed = f"work.0 (pid {victim}) killed by SIGKILL"
    assert any(r["message"].startswith(killed) for r in err), err
    assert {r["logger"] for r in err} == {"cortexflow.supervisor"}
    workers = [r for r in out if "level" in r]  # the workers' own records
    assert {r["queue"] for r in out} == {"work"} and {r["replica"] for r in out} == {0, 1}
    assert len({r["pid"] for r in workers}) == 3  # two workers and the restarted one

    handled = [r for r in workers if r["logger"] == "myapp"]
    assert all("job_id" in r and r["attempt"] >= 1 for r in handled)
    assert {r["job_id"] for r in handled} >= {*ids, failing}
    assert all(r["message"].startswith("working on ") for r in handled)
    about_jobs = [r for r in workers if r["message"].startswith("job ")]
    for r in about_jobs:  # every cortexflow line about a job names it in job_id too
        assert r["message"].split()[1] == r["job_id"], r
    failures = [r for r in about_jobs if r["job_id"] == failing]
    assert [(r["attempt"], r["level"]) for r in failures] == [(1, "WARNING"), (2, "WARNING")]
    assert "told to fail\nover two lines" in failures[-1]["message"]

    prints = [r for r in out if r["message"].startswith("a plain print for ")]
    assert prints and all(r["stream"] == "stdout" and "level" not in r for r in prints)


@pytest.mark.slow
def test_logging_format_json_in_queues_yaml_is_the_flag_and_the_flag_wins(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    sections = f"logging: {{format: json}}\ndashboard: {{port: {free_port()}}}"
    write_project(
        tmp_path,
        QUEUES.format(logging=sections).replace("processes: 2", "processes: 1"),
        {"handlers.py": HANDLERS},
    )
    as_json = start_up(tmp_path, "--redis-url", redis_url)
    as_json.wait_for(r'work\.0 \(pid \d+\) ready"', 30)
    as_json.wait_for(r'"logger": "cortexflow.dashboard", .*"message": "dashboard: serving', 30)
    as_json.send(signal.SIGTERM)
    assert as_json.wait_exit(20) == 0
    ready = [r for r in records(as_json.out()) if r["message"].startswith("worker ready")]
    assert ready and ready[0]["queue"] == "work" and ready[0]["level"] == "INFO"
    records(as_json.err())

    as_text = start_up(tmp_path, "--redis-url", redis_url, "--log-format", "text")
    as_text.wait_for(r"work\.0 \(pid \d+\) ready$", 30)
    as_text.wait_for(r"^dashboard: serving", 30)
    as_text.send(signal.SIGTERM)
    assert as_text.wait_exit(20) == 0
    assert re.search(
        r" work\.0 +\| INFO cortexflow\.worker: worker ready: queue=work", as_text.out()
    )
    assert "{" not in as_text.log()
