"""`health` that can alert: `--require-workers`, and no false UNHEALTHY after a clean stop of `up`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cortexflow import QueueManager
from tests.helpers.poll import wait_for
from tests.helpers.procs import CliResult

QUEUES_YAML = """\
version: 1
queues:
  emails:
    handler: handlers:send
  reports:
    handler: handlers:send
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text("def send(data):\n    return None\n")
    (tmp_path / "queues.yaml").write_text(QUEUES_YAML)
    return tmp_path


@pytest.fixture
def up(project: Path, redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CORTEXFLOW_FILE")}
    log = (project / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cortexflow", "up", "--redis-url", redis_url],
        cwd=project,
        env={**env, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield proc
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    log.close()


def health(cli: Callable[..., CliResult], project: Path, url: str, *flags: str) -> CliResult:
    return cli("health", "--redis-url", url, *flags, cwd=project, timeout=60)


def test_require_workers_fails_without_a_live_worker_and_passes_under_up(
    project: Path, redis_url: str, cli: Callable[..., CliResult], up: subprocess.Popen[bytes]
) -> None:
    wait_for(lambda: health(cli, project, redis_url, "--require-workers").returncode == 0, 60)
    up.send_signal(signal.SIGTERM)
    assert up.wait(60) == 0, (project / "up.log").read_text()

    # right after a clean stop: nothing is expected to run, so plain `health` is healthy at once
    # (it used to say UNHEALTHY for the 10 s the supervisor's expectation lived on)...
    plain = health(cli, project, redis_url)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    # ...and --require-workers, the alerting variant, fails: no queue has a live worker
    strict = health(cli, project, redis_url, "--require-workers", "--json")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert '"healthy": false' in strict.stdout
    assert '"emails": false' in strict.stdout and '"reports": false' in strict.stdout


def test_api_health_check_require_workers(project: Path, redis_url: str) -> None:
    async def main() -> tuple[dict[str, object], dict[str, object]]:
        async with QueueManager(project / "queues.yaml", redis_url) as manager:
            return await manager.health_check(), await manager.health_check(require_workers=True)

    relaxed, strict = asyncio.run(main())
    assert relaxed == {"healthy": True, "queues": {"emails": True, "reports": True}}
    assert strict == {"healthy": False, "queues": {"emails": False, "reports": False}}
