"""The Python API's tests use the CLI tests' project of three queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.project import write_ops_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_ops_project(tmp_path / "proj")
