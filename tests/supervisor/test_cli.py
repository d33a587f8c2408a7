"""`up`, `worker` and `status` at the command line: refusals, exit codes, warnings."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortexflow.embedded import ServerProcess
from tests.helpers.procs import run_cli
from tests.helpers.project import SUPERVISED, write_project

BROKEN = """
version: 1
queues:
  work:
    handler: handlers:sleepy
    concurrency: "ten"
    timeout: 5
"""


def test_up_refuses_an_invalid_file_with_validates_diagnostics(tmp_path: Path) -> None:
    write_project(tmp_path, BROKEN, SUPERVISED)
    up = run_cli("up", cwd=tmp_path, timeout=30)
    validate = run_cli("validate", "--no-import-check", cwd=tmp_path)
    assert up.returncode == 1
    assert validate.returncode == 1
    diagnostics = [line for line in validate.stdout.splitlines() if "error[" in line]
    assert len(diagnostics) == 2
    for line in diagnostics:
        assert line in up.stderr
    assert not (tmp_path / ".cortexflow").exists()  # nothing was started


def test_up_usage_errors(tmp_path: Path) -> None:
    missing = run_cli("up", "-f", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2
    write_project(
        tmp_path, "version: 1\nqueues:\n  work:\n    handler: handlers:sleepy\n", SUPERVISED
    )
    unknown = run_cli("up", "wrok", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown queue 'wrok'" in unknown.stderr and "work" in unknown.stderr
    assert not (tmp_path / ".cortexflow").exists()


@pytest.mark.slow
def test_worker_exit_codes(tmp_path: Path, redis_url: str) -> None:
    write_project(tmp_path, BROKEN, SUPERVISED)
    assert run_cli("worker", "work", "--redis-url", redis_url, cwd=tmp_path).returncode == 1
    supervised = run_cli(
        "worker", "work", "--redis-url", redis_url, cwd=tmp_path,
        env={"CORTEXFLOW_PARENT_PID": "1"},
    )  # fmt: skip
    assert supervised.returncode == 78  # under up: a config error makes the queue FATAL
    assert "error[" in supervised.stderr
    write_project(tmp_path, "version: 1\nqueues:\n  work:\n    handler: bad:handle\n", SUPERVISED)
    assert run_cli("worker", "nope", "--redis-url", redis_url, cwd=tmp_path).returncode == 2
    unknown_under_up = run_cli(
        "worker", "nope", "--redis-url", redis_url, cwd=tmp_path,
        env={"CORTEXFLOW_PARENT_PID": "1"},
    )  # fmt: skip
    assert unknown_under_up.returncode == 78
    bad = run_cli("worker", "work", "--redis-url", redis_url, cwd=tmp_path)
    assert bad.returncode == 78
    assert "boom at import" in bad.stderr
    assert run_cli("worker", "work", "--stop-timeout", "5", cwd=tmp_path).returncode == 2


@pytest.fixture
def evicting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("lru"),
        appendonly=False,
        extra={"maxmemory-policy": "allkeys-lru", "requirepass": "s3cret-pw"},
    )
    server.start()
    yield server
    server.stop()


def test_up_allowed_an_evicting_server_warns_and_never_prints_the_password(
    tmp_path: Path, evicting_server: ServerProcess, start_up
) -> None:
    """Without `allow_eviction` `up` refuses the server (tests/api/test_eviction_policy.py)."""
    write_project(
        tmp_path,
        """
        version: 1
        redis:
          url: ${SECRET_URL}
          allow_eviction: true
        queues:
          work:
            handler: handlers:sleepy
        """,
        SUPERVISED,
    )
    url = f"redis://:s3cret-pw@127.0.0.1:{evicting_server.port}/0"
    up = start_up(tmp_path, "work", env={"SECRET_URL": url})
    up.wait_for(r"work\.0 \(pid \d+\) ready", 30)
    up.wait_for(r"maxmemory-policy allkeys-lru \(allowed by redis.allow_eviction\)", 5)
    status = run_cli("status", cwd=tmp_path, env={"SECRET_URL": url})
    assert status.returncode == 0, status.stderr
    assert re.search(r"work\s+0\s+\d+\s+(ready|stable)", status.stdout)
    up.send(signal.SIGTERM)
    assert up.wait_exit(20) == 0
    assert "s3cret-pw" not in up.log()
    assert "redis://:***@127.0.0.1" in up.err()
    assert "s3cret-pw" not in status.stdout + status.stderr


def test_status_with_no_supervisor(tmp_path: Path, redis_url: str) -> None:
    write_project(
        tmp_path, "version: 1\nqueues:\n  work:\n    handler: handlers:sleepy\n", SUPERVISED
    )
    result = run_cli("status", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 0
    assert "no cortexflow supervisor is running" in result.stderr
    assert run_cli("status", "--json", "--redis-url", redis_url, cwd=tmp_path).stdout == "[]\n"
