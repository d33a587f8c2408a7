"""The CLI's tests: a small project of three queues, and the CLI bound to it and a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.procs import Cli
from tests.helpers.project import write_ops_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_ops_project(tmp_path / "proj")


@pytest.fixture
def cf(project: Path, redis_url: str) -> Cli:
    return Cli(project, redis_url)
