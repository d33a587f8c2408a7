"""`cortexflow validate`, `schema`, `config`, `init` run as real subprocesses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.helpers.procs import CliResult
from tests.helpers.project import REPO

Cli = Callable[..., CliResult]
HANDLER = "cortexflow.queues.email_sending:handle"


def test_validate_in_repo_root(cli: Cli) -> None:
    result = cli("validate", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "queues.yaml is valid: 6 queues"


def test_validate_json_of_valid_file(cli: Cli) -> None:
    result = cli("validate", "--json", cwd=REPO)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "valid": True,
        "diagnostics": [],
        "summary": "queues.yaml is valid: 6 queues",
    }


def test_help_lists_the_config_commands(cli: Cli) -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("validate", "schema", "config", "init"):
        assert f"    {command} " in result.stdout


def test_missing_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    result = cli("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert "queues.yaml: error[file.missing] queues.yaml not found" in result.stdout
    assert "cortexflow init" in result.stdout
    result = cli("validate", "--format", "json", "-f", "elsewhere.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert json.loads(result.stdout)["diagnostics"][0]["code"] == "file.missing"
    result = cli("config", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_bad_flag_exits_2(cli: Cli) -> None:
    result = cli("validate", "--format", "xml", cwd=REPO)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert cli("validate", "--no-such-flag", cwd=REPO).returncode == 2


def test_no_import_check(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text("queues:\n  a:\n    handler: cf_not_installed_here:run\n")
    assert cli("validate", cwd=tmp_path).returncode == 1
    assert cli("validate", "--no-import-check", cwd=tmp_path).returncode == 0


def test_cortexflow_file_env(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(f"queues:\n  a:\n    handler: {HANDLER}\n")
    result = cli("validate", cwd=tmp_path, env={"CORTEXFLOW_FILE": "mine.yaml"})
    assert result.returncode == 0
    assert result.stdout.strip() == "mine.yaml is valid: 1 queue"


def test_schema_prints_the_packaged_schema(cli: Cli) -> None:
    result = cli("schema")
    assert result.returncode == 0
    assert result.stdout == (REPO / "schemas" / "queues.schema.json").read_text()


def test_config_resolved_yaml_and_json_with_secret_redacted(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(
        "redis:\n  url: redis://app:${PW}@db:6379/0\n"
        f"queues:\n  a:\n    handler: {HANDLER}\n    concurrency: 4\n"
    )
    result = cli("config", cwd=tmp_path, env={"PW": "hunter2"})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["redis"] == {
        "url": "redis://app:***@db:6379/0",
        "prefix": "cortexflow",
        "durable_adds": False,
        "allow_eviction": False,
    }
    assert data["queues"]["a"]["concurrency"] == 4
    assert data["queues"]["a"]["timeout"] == "5m"
    assert data["queues"]["a"]["backoff"] == {
        "type": "exponential",
        "delay": "1s",
        "max": "10m",
        "jitter": 0.0,
    }
    result = cli(
        "config", "--json", "--redis-url", "redis://:pw@other:1/0", cwd=tmp_path, env={"PW": "x"}
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["redis"]["url"] == "redis://:***@other:1/0"


def test_config_of_invalid_file_shows_the_diagnostics(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(
        f"queues:\n  a:\n    handler: {HANDLER}\n    attempts: 0\n"
    )
    result = cli("config", cwd=tmp_path)
    assert result.returncode == 1
    assert "queues.yaml:4:15: error[schema.minimum] queues.a.attempts" in result.stderr
    assert result.stdout == ""


def test_init_writes_a_valid_starter_and_never_overwrites(cli: Cli, tmp_path: Path) -> None:
    result = cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "queues.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert (tmp_path / "tasks.py").exists()
    assert cli("validate", cwd=tmp_path).returncode == 0
    (tmp_path / "queues.yaml").write_text("mine")
    again = cli("init", cwd=tmp_path)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert (tmp_path / "queues.yaml").read_text() == "mine"
    other = cli("init", "sub/other.yaml", cwd=tmp_path)
    assert other.returncode == 0
    assert (tmp_path / "sub" / "other.yaml").exists()
