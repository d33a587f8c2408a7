"""The first week's smaller findings: an error column in `jobs`, handler signatures checked by
`validate`, the `init` template's redis.url comment, "an int", the first `up` log line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cortexflow import QueueManager, WorkerManager
from tests.helpers.poll import wait_for
from tests.helpers.procs import CliResult

TASKS = """\
def one(data):
    return data


def three(a, b, c):
    return a


class NoJob:
    def process(self):
        return None


NUMBER = 5


def fail(data):
    raise ValueError("smtp said 550: mailbox unavailable")
"""


def project(tmp_path: Path, queues: str) -> Path:
    (tmp_path / "tasks.py").write_text(TASKS)
    (tmp_path / "queues.yaml").write_text("version: 1\nqueues:\n" + queues)
    return tmp_path


def test_validate_points_at_a_handler_with_the_wrong_signature(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    folder = project(
        tmp_path,
        "  good:\n    handler: tasks:one\n"
        "  three:\n    handler: tasks:three\n"
        "  klass:\n    handler: tasks:NoJob\n"
        "  number:\n    handler: tasks:NUMBER\n",
    )
    result = cli("validate", cwd=folder)
    assert result.returncode == 1, result.stdout + result.stderr
    text = result.stdout + result.stderr
    # at the handler's value in queues.yaml (line:col), saying why and where the def is
    assert re.search(
        r"queues\.yaml:6:14: error\[handler\.signature\] queues\.three\.handler: "
        r"tasks:three\(a, b, c\) cannot be called as f\(data\) or f\(data, job\)",
        text,
    ), text
    assert "defined at tasks.py:5" in text
    assert "queues.yaml:8:14: error[handler.signature]" in text and "process(self, job)" in text
    assert "tasks:NUMBER is an int, not a function" in text
    assert "queues.good" not in text


def test_jobs_state_failed_shows_the_error(
    tmp_path: Path, redis_url: str, cli: Callable[..., CliResult]
) -> None:
    folder = project(tmp_path, "  mail:\n    handler: tasks:fail\n    attempts: 1\n")
    config = folder / "queues.yaml"

    async def fail_one() -> None:
        async with QueueManager(config, redis_url) as manager:
            await manager.add_job("mail", "send", {"to": "x"})
            async with WorkerManager(config, redis_url):
                deadline = time.monotonic() + 30
                while (await manager.get_queue_stats("mail"))["failed"] < 1:
                    assert time.monotonic() < deadline, "the job did not fail within 30 s"
                    await asyncio.sleep(0.05)

    asyncio.run(fail_one())
    result = cli("jobs", "mail", "--state", "failed", "--redis-url", redis_url, cwd=folder)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "NAME", "TRIES", "PRIO", "AGE", "ERROR"]
    assert "failed" in row and "ValueError: smtp said 550" in row


def test_init_template_redis_block_validates_when_uncommented(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    assert cli("init", cwd=tmp_path).returncode == 0
    path = tmp_path / "queues.yaml"
    text = path.read_text()
    uncommented = re.sub(r"^# (redis:|  url:|  prefix:)", r"\1", text, flags=re.M)
    assert uncommented != text and "${REDIS_URL:-}" in uncommented
    path.write_text(uncommented)
    result = cli("validate", cwd=tmp_path)  # REDIS_URL unset (run_cli drops it)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_first_up_log_line_is_padded_like_the_rest(tmp_path: Path, redis_url: str) -> None:
    folder = project(tmp_path, "  notifications:\n    handler: tasks:one\n    processes: 2\n")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CORTEXFLOW_FILE")}
    log = folder / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cortexflow", "up"],
            cwd=folder,
            env={**env, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: log.read_text().count(") ready") >= 2, 60)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    lines = [ln for ln in log.read_text().splitlines() if " | " in ln]
    assert lines[0].startswith(tuple("0123456789")) and "embedded server" in lines[0]
    bars = {ln.index(" | ") for ln in lines}
    assert len(bars) == 1, "\n".join(lines[:5])
