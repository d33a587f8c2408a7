"""Every broken config under tests/config/broken/ is refused at the right line with the right code.

Each fixture marks the lines it expects a diagnostic on with a trailing ``# <- code[, code]``
comment; the errors reported must be exactly those (line, code) pairs.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cortexflow.config import check_config, load_config
from cortexflow.config.diagnostics import format_line
from cortexflow.errors import ConfigError
from tests.helpers.procs import CliResult

CONFIGS = Path(__file__).parent / "broken"
BROKEN = sorted(CONFIGS.glob("*.yaml"))
_MARK = re.compile(r"# <- (.+)$")


def expected(path: Path) -> set[tuple[int, str]]:
    out = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        m = _MARK.search(line)
        if m:
            out |= {(number, code.strip()) for code in m.group(1).split(",")}
    return out


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "canary"
    monkeypatch.setenv("CF_CANARY", str(path))
    return path


def test_there_are_at_least_30_broken_configs() -> None:
    assert len(BROKEN) >= 30
    assert all(expected(p) for p in BROKEN), "every fixture marks at least one expected line"


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_config_in_process(path: Path, canary: Path) -> None:
    config, diagnostics = check_config(path, env={})
    assert config is None
    got = {(d.line, d.code) for d in diagnostics if d.severity == "error"}
    assert got == expected(path), "\n".join(format_line(d) for d in diagnostics)
    assert [d.sort_key for d in diagnostics] == sorted(d.sort_key for d in diagnostics)
    for d in diagnostics:
        assert d.column is not None and d.column >= 1
        assert d.message and "Traceback" not in d.message
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.exit_code == 1
    assert len(info.value.diagnostics) == len(diagnostics)
    assert str(info.value).splitlines()[-1].endswith(f"in {path}")
    assert not canary.exists()


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_config_cli(path: Path, cli: Callable[..., CliResult], tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    result = cli("validate", "-f", str(path), "--format", "json", env={"CF_CANARY": str(canary)})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is False
    got = {(d["line"], d["code"]) for d in report["diagnostics"]}
    assert got == expected(path)
    assert report["summary"].endswith(f"in {path}")
    assert not canary.exists()


def test_text_format_points_at_file_line_column() -> None:
    path = CONFIGS / "concurrency_string.yaml"
    _, diagnostics = check_config(path, env={})
    assert [format_line(d) for d in diagnostics] == [
        f"{path}:4:18: error[schema.type] queues.emails.concurrency: "
        'expected an integer >= 1, got "ten"'
    ]


def test_several_errors_reported_sorted_with_paths_and_hints() -> None:
    path = CONFIGS / "multiple_errors.yaml"
    _, diagnostics = check_config(path, env={})
    assert [(d.line, d.path) for d in diagnostics] == [
        (3, "defaults.timeout"),
        (4, "defaults.attempts"),
        (8, "queues.message-processing.concurrency"),
        (10, "queues.notifications.handler"),
        (11, "queues.notifications.concurency"),
        (12, "queues.notifications.dead_letter"),
        (13, "queues.webhooks"),
    ]
    by_code = {d.code: d for d in diagnostics}
    assert by_code["schema.additional"].hint == 'did you mean "concurrency"?'
    assert by_code["schema.additional"].column == 5  # the key, not the value
    assert by_code["schema.required"].message == 'missing required key "handler"'


def test_unknown_key_hints_did_you_mean() -> None:
    _, diagnostics = check_config(CONFIGS / "unknown_key_top.yaml", env={})
    unknown = next(d for d in diagnostics if d.code == "schema.additional")
    assert unknown.hint == 'did you mean "queues"?'


def test_bare_number_duration_says_units_are_needed() -> None:
    _, (diag,) = check_config(CONFIGS / "duration_bare_number.yaml", env={})
    assert diag.hint == 'durations need a unit, e.g. "5s"'
    assert diag.message.endswith("got 30")


def test_import_failures_are_told_apart() -> None:
    def only(name: str) -> str:
        _, (diag,) = check_config(CONFIGS / f"{name}.yaml", env={})
        return diag.message

    assert only("handler_module_missing") == 'module "cf_no_such_module_abc" not found'
    raised = only("handler_import_raises")
    assert "raised while importing" in raised
    assert "RuntimeError: boom while importing" in raised
    assert "cf_fixture_raises.py:3" in raised
    assert "SystemExit: 3" in only("handler_import_exits")
    assert "ModuleNotFoundError" in only("handler_missing_dependency")
    assert "cf_no_such_dependency_xyz" in only("handler_missing_dependency")
    _, (attr,) = check_config(CONFIGS / "handler_missing_attribute.yaml", env={})
    assert attr.hint == 'did you mean "handle"?'


def test_python_tags_never_import_or_call_anything(canary: Path) -> None:
    sys.modules.pop("cf_fixture_canary", None)
    config, diagnostics = check_config(CONFIGS / "python_tags.yaml", env={})
    assert config is None
    assert {d.code for d in diagnostics} == {"yaml.tag"}
    assert "cf_fixture_canary" not in sys.modules
    assert not canary.exists()


def test_alias_bomb_is_refused_quickly(cli: Callable[..., CliResult]) -> None:
    """Refused before it is expanded: 9**9 nodes would take minutes and gigabytes, so these
    bounds only tell "refused by the budget" from "expanded"; how fast (milliseconds) is
    measured by bench/timings.py."""
    path = CONFIGS / "alias_bomb.yaml"
    start = time.monotonic()
    _, diagnostics = check_config(path, env={})
    assert time.monotonic() - start < 30
    assert [d.code for d in diagnostics] == ["yaml.alias-bomb"]
    start = time.monotonic()
    result = cli("validate", "-f", str(path))
    assert time.monotonic() - start < 60  # interpreter start included
    assert result.returncode == 1


def test_env_unset_names_the_variable() -> None:
    _, (diag,) = check_config(CONFIGS / "env_unset.yaml", env={})
    assert "CF_TEST_UNSET_PASSWORD" in diag.message
    assert (
        diag.hint
        == "set CF_TEST_UNSET_PASSWORD, or give a default: ${CF_TEST_UNSET_PASSWORD:-value}"
    )


def test_github_format(cli: Callable[..., CliResult]) -> None:
    path = CONFIGS / "multiple_errors.yaml"
    result = cli("validate", "-f", str(path), "--format", "github")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    annotations = [line for line in lines if line.startswith("::error ")]
    assert len(annotations) == len(expected(path))
    assert annotations[0].startswith(f"::error file={path},line=3,col=12,title=duration.invalid::")
    assert all(
        re.match(r"::error file=[^,]+,line=\d+,col=\d+,title=[^:]+::\S", a) for a in annotations
    )
    assert lines[-1] == f"7 errors in {path}"


def test_text_format_cli(cli: Callable[..., CliResult]) -> None:
    path = CONFIGS / "multiple_errors.yaml"
    result = cli("validate", "-f", str(path))
    assert result.returncode == 1
    assert (
        f"{path}:11:5: error[schema.additional] queues.notifications.concurency: " in result.stdout
    )
    assert '  hint: did you mean "concurrency"?' in result.stdout
    assert result.stdout.rstrip().endswith(f"7 errors in {path}")


def test_syntax_error_in_handler_module_is_an_import_error(tmp_path: Path) -> None:
    (tmp_path / "cf_fixture_syntax_err.py").write_text("def handle(:\n    pass\n")
    (tmp_path / "queues.yaml").write_text(
        "queues:\n  a:\n    handler: cf_fixture_syntax_err:handle\n"
    )
    _, (diag,) = check_config(tmp_path / "queues.yaml", env={})
    assert diag.code == "handler.import-error"
    assert "SyntaxError" in diag.message
    assert "cf_fixture_syntax_err.py:1" in diag.message


def test_spelled_out_duration_gets_the_right_spelling() -> None:
    _, (diag,) = check_config(CONFIGS / "duration_5_sec.yaml", env={})
    assert diag.hint == 'write "5s"'
    _, diagnostics = check_config(CONFIGS / "retention_rule_bad.yaml", env={})
    assert diagnostics[0].hint == 'write "7d"'


def test_tab_indentation_says_so() -> None:
    _, (diag,) = check_config(CONFIGS / "yaml_tab_indent.yaml", env={})
    assert "tab" in diag.message
    assert diag.hint == "indent with spaces, not tabs"
