"""The supervisor's tests run the real `cortexflow up`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.procs import Proc, cortexflow_argv


@pytest.fixture
def start_up() -> Iterator[Callable[..., Proc]]:
    """``start_up(folder, *args, env=...)`` runs `cortexflow up ARGS` in ``folder`` (its output in
    files there); every run, and all it started, is killed after the test."""
    runs: list[Proc] = []

    def start(folder: Path, *args: str, env: dict[str, str] | None = None) -> Proc:
        up = Proc(cortexflow_argv("up", *args), cwd=folder, env=env, name="up")
        runs.append(up)
        return up

    yield start
    for up in runs:
        up.kill()
