"""`process:` in queues.yaml: queues with the same name share one worker process; they must
agree on `processes`, and a conflict is reported at the queue that differs (line:col)."""

from __future__ import annotations

from pathlib import Path

from cortexflow.config import check_config, load_config

GROUPS = """\
version: 1
defaults:
  process: light
queues:
  a:
    handler: tasks:handle
  b:
    handler: tasks:handle
    concurrency: 3
  heavy:
    handler: tasks:handle
    process: null
  c:
    handler: tasks:handle
    process: heavy
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(text)
    return path


def test_queues_with_the_same_process_are_one_group(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GROUPS), check_imports=False)
    # defaults: puts a and b in "light"; `process: null` gives heavy its own (named after
    # it); c joins heavy's process by naming it.
    assert config.process_groups() == {"light": ("a", "b"), "heavy": ("heavy", "c")}
    assert config.queues["b"].concurrency == 3  # each queue keeps its own settings
    assert config.queues["heavy"].process is None
    assert config.queues["heavy"].process_name == "heavy"


def test_no_process_key_means_one_process_per_queue(tmp_path: Path) -> None:
    text = "version: 1\nqueues:\n  a: {handler: 'tasks:handle'}\n  b: {handler: 'tasks:handle'}\n"
    config = load_config(_write(tmp_path, text), check_imports=False)
    assert config.process_groups() == {"a": ("a",), "b": ("b",)}


def test_processes_must_agree_within_a_process(tmp_path: Path) -> None:
    text = GROUPS.replace("    concurrency: 3\n", "    concurrency: 3\n    processes: 2\n")
    config, diagnostics = check_config(_write(tmp_path, text), check_imports=False)
    assert config is None
    (d,) = [d for d in diagnostics if d.code == "process.processes"]
    assert (d.line, d.column) == (10, 16)  # b's `processes: 2`
    assert '"a" and "b" share the worker process "light"' in d.message
    assert "(1 and 2)" in d.message
    assert d.hint is not None and "same processes" in d.hint


def test_processes_set_once_in_defaults_applies_to_the_group(tmp_path: Path) -> None:
    text = GROUPS.replace("  process: light\n", "  process: light\n  processes: 2\n")
    config = load_config(_write(tmp_path, text), check_imports=False)
    assert {q.processes for q in config.queues.values()} == {2}


def test_isolation_process_may_share_a_process(tmp_path: Path) -> None:
    text = GROUPS.replace("    concurrency: 3\n", "    concurrency: 3\n    isolation: process\n")
    config = load_config(_write(tmp_path, text), check_imports=False)
    assert config.queues["b"].isolation == "process"
    assert config.process_groups()["light"] == ("a", "b")
