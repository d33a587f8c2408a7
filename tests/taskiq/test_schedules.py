"""A `schedules:` entry fires a taskiq task (docs/taskiq.md: the schedule's `name` is the
task's name, its `data` the call's arguments), under `cortexflow up` on the embedded default."""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc

pytestmark = pytest.mark.slow

TASKS = """
import os
from pathlib import Path

from cortexflow.taskiq import broker_from_config

HERE = Path(__file__).parent
broker = broker_from_config(HERE / "queues.yaml")


@broker.task(queue="reports")
async def report(day: str, *, copies: int = 1) -> str:
    with (HERE / "runs.txt").open("a") as f:
        f.write(f"{day} {copies} {os.getpid()}\\n")
    return day
"""

QUEUES = """
version: 1
stop_timeout: 5s
queues:
  reports:
    tasks: scheduled_tasks:broker
schedules:
  nightly-report:
    queue: reports
    every: 1s
    name: scheduled_tasks:report
    data: {args: ["yesterday"], kwargs: {copies: 2}}
"""


def test_a_schedule_fires_a_task_with_its_arguments(
    tmp_path: Path, start_up: Callable[..., Proc]
) -> None:
    (tmp_path / "scheduled_tasks.py").write_text(textwrap.dedent(TASKS))
    (tmp_path / "queues.yaml").write_text(textwrap.dedent(QUEUES))
    runs = tmp_path / "runs.txt"
    up = start_up(tmp_path)  # no URL: the embedded server on its unix socket
    up.wait_for(r"reports\.0 \(pid \d+\) ready", 60)

    def lines() -> list[str]:
        return runs.read_text().splitlines() if runs.exists() else []

    wait_for(lambda: len(lines()) >= 3, 30, message=up.log)
    up.send(signal.SIGTERM)
    assert up.wait_exit(30) == 0, up.log()
    got = [line.split() for line in lines()]
    assert {(day, copies) for day, copies, _ in got} == {("yesterday", "2")}
    assert "failed" not in up.err()
