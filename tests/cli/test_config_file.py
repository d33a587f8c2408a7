"""The CLI and the Python API pick the same queues.yaml: -f, else $CORTEXFLOW_FILE, else
./queues.yaml (an empty $CORTEXFLOW_FILE counts as unset, for both)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortexflow.api.resolve import config_file
from tests.helpers.procs import run_cli

QUEUES_YAML = """\
version: 1
queues:
  jobs:
    handler: os:getcwd
"""


@pytest.mark.parametrize("value", ["", None])
def test_empty_or_unset_env_means_the_local_queues_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    (tmp_path / "queues.yaml").write_text(QUEUES_YAML)
    env = {} if value is None else {"CORTEXFLOW_FILE": value}
    result = run_cli("validate", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "queues.yaml" in result.stdout + result.stderr
    if value is None:
        monkeypatch.delenv("CORTEXFLOW_FILE", raising=False)
    else:
        monkeypatch.setenv("CORTEXFLOW_FILE", value)
    assert config_file(None) == Path("queues.yaml")


def test_env_names_another_file_and_f_wins_over_it(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text(QUEUES_YAML)
    result = run_cli("validate", cwd=tmp_path, env={"CORTEXFLOW_FILE": "other.yaml"})
    assert result.returncode == 0, result.stderr
    result = run_cli(
        "validate", "-f", "missing.yaml", cwd=tmp_path, env={"CORTEXFLOW_FILE": "other.yaml"}
    )
    assert result.returncode == 2
    assert "missing.yaml not found" in result.stdout + result.stderr
