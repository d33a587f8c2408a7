"""Children's output through `up`: prefixes, JSON lines, a 1 MB line, a child closing stdout."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.helpers.jobs import Jobs
from tests.helpers.project import SUPERVISED, write_project

NOISY = """
version: 1
queues:
  noisy-queue:
    handler: handlers:noisy
    concurrency: 1
"""


def test_a_one_megabyte_line_and_a_closed_stdout_do_not_hurt_the_supervisor(
    tmp_path: Path, redis_url: str, start_up
) -> None:
    path = write_project(tmp_path, NOISY, SUPERVISED)
    up = start_up(tmp_path, "--redis-url", redis_url)
    up.wait_for(r"noisy-queue\.0 \(pid \d+\) ready", 30)
    jobs = Jobs(path, redis_url)
    jobs.add("noisy-queue", [{"huge": 1024 * 1024, "close_stdout": True, "n": 1}])
    up.wait_for(r"noisy-queue\.0 \| still-alive 1", 20)
    jobs.add("noisy-queue", [{"n": 2}])  # stdout is closed now; stderr still flows
    up.wait_for(r"noisy-queue\.0 \| still-alive 2", 20)
    huge = [line for line in up.out().splitlines() if "HHHH" in line]
    assert len(huge) == 1
    prefix, _, body = huge[0].partition(" | ")
    assert body == "H" * 1024 * 1024
    assert prefix.endswith(" noisy-queue.0")  # HH:MM:SS name, padded
    assert "\x1b[" not in up.out()  # not a terminal: no colour
    assert up.err().count("noisy-queue.0 started") == 1  # the child was never restarted
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0


def test_json_log_format(tmp_path: Path, redis_url: str, start_up) -> None:
    path = write_project(tmp_path, NOISY, SUPERVISED)
    up = start_up(tmp_path, "--redis-url", redis_url, "--log-format", "json")
    up.wait_for(r'noisy-queue\.0 \(pid \d+\) ready"', 30)
    Jobs(path, redis_url).add("noisy-queue", [{"n": 7}])
    up.wait_for(r"still-alive 7", 20)
    records = [json.loads(line) for line in up.out().splitlines()]
    mine = next(r for r in records if r.get("message") == "still-alive 7")
    assert mine["queue"] == "noisy-queue"
    assert mine["replica"] == 0
    assert mine["stream"] == "stderr"
    assert isinstance(mine["pid"], int)
    assert set(mine) == {"ts", "queue", "replica", "pid", "stream", "message"}
    events = [json.loads(line) for line in up.err().splitlines()]
    assert all(e["logger"] == "cortexflow.supervisor" for e in events)
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0
