"""A reader that goes away before the output ends (`cortexflow jobs Q | head -1`, `| true`)
ends the command quietly: exit 0, no traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cortexflow.api.sync import SyncQueueManager
from tests.helpers.procs import clean_env, cortexflow_argv

QUEUES_YAML = """\
version: 1
queues:
  bulk:
    handler: os:getcwd
"""


def test_jobs_into_a_closed_pipe_exits_zero_without_a_traceback(
    tmp_path: Path, redis_url: str
) -> None:
    (tmp_path / "queues.yaml").write_text(QUEUES_YAML)
    with SyncQueueManager(tmp_path / "queues.yaml", redis_url) as manager:
        manager.add_bulk("bulk", [{"name": "n" * 80, "data": {"i": i}} for i in range(3000)])
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the table (~250 KB) is written
    proc = subprocess.Popen(
        cortexflow_argv("jobs", "bulk", "--redis-url", redis_url, "--state", "waiting",
                        "--limit", "3000"),
        cwd=tmp_path, env=clean_env(), stdout=write_end, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert stderr == b"", stderr.decode()
