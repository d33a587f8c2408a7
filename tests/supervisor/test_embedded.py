"""With no Redis anywhere, `cortexflow up` runs on its embedded server, and its data survives."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from cortexflow.embedded import DataFolder, pid_alive
from tests.helpers.jobs import Jobs
from tests.helpers.procs import run_cli, wait_gone
from tests.helpers.project import SUPERVISED, write_project


def _job(tmp_path: Path, job_id: str) -> dict[str, object]:
    result = run_cli("job", "work", job_id, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.slow
def test_up_with_no_redis_url_runs_and_keeps_jobs_enqueued_while_it_was_down(
    tmp_path: Path, start_up
) -> None:
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
    (tmp_path / "payload.json").write_text('{"seconds": 0}')
    up = start_up(tmp_path)
    up.wait_for(r"embedded server \(pid \d+\) on unix:///\S+/valkey\.sock\?db=0", 30)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    server = DataFolder(tmp_path / ".cortexflow").read_state()
    assert server is not None and server.owner == "up"

    # Another shell in the same folder: the CLI finds up's server.
    first = run_cli("enqueue", "work", "payload.json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.strip()
    Jobs(tmp_path / "queues.yaml", server.url).wait_stats("work", lambda s: s["completed"] == 1, 20)
    assert _job(tmp_path, first_id)["state"] == "completed"

    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0
    assert wait_gone([server.pid], 5) == []
    assert DataFolder(tmp_path / ".cortexflow").read_state() is None

    # up is down: enqueue starts the embedded server for its own length, and stops it.
    second = run_cli("enqueue", "work", "payload.json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    second_id = second.stdout.strip()
    assert DataFolder(tmp_path / ".cortexflow").read_state() is None
    assert _job(tmp_path, second_id)["state"] == "waiting"

    again = start_up(tmp_path)
    again.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    state = DataFolder(tmp_path / ".cortexflow").read_state()
    assert state is not None and pid_alive(state.pid)
    Jobs(tmp_path / "queues.yaml", state.url).wait_stats("work", lambda s: s["completed"] == 2, 20)
    assert _job(tmp_path, second_id)["state"] == "completed"
    again.send(signal.SIGTERM)
    assert again.wait_exit(20) == 0


def test_the_embedded_server_is_restarted_when_it_dies(tmp_path: Path, start_up) -> None:
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
    up = start_up(tmp_path)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    state = DataFolder(tmp_path / ".cortexflow").read_state()
    assert state is not None
    os.kill(state.pid, signal.SIGKILL)
    up.wait_for(r"the embedded server restarted \(pid \d+\)", 10)
    new = DataFolder(tmp_path / ".cortexflow").read_state()
    assert new is not None and new.pid != state.pid and new.socket == state.socket
    jobs = Jobs(tmp_path / "queues.yaml", new.url)
    jobs.add("work", [{"seconds": 0}])
    jobs.wait_stats("work", lambda s: s["completed"] == 1, 30)  # the worker reconnected
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0
