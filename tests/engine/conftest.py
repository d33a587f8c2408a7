"""The engine's tests: real `cortexflow worker` processes beside in-process ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.procs import Proc, cortexflow_argv


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``workers(config, queue, url, *args)`` starts `cortexflow worker QUEUE ARGS` as a real
    process (the recording handler reads TEST_REDIS_URL); all are killed after the test."""
    started: list[Proc] = []

    def start(config: Path, queue: str, url: str, *args: str) -> Proc:
        argv = cortexflow_argv("worker", queue, "-f", str(config), "--redis-url", url, *args)
        worker = Proc(argv, log_dir=tmp_path, env={"TEST_REDIS_URL": url}, name=f"worker-{queue}")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
