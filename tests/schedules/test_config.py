"""schedules: and global_concurrency in queues.yaml: the model they build, and `validate`
reporting each problem as one diagnostic at the right line and column, exit 1."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cortexflow.config import check_config, load_config
from cortexflow.config.dump import config_to_dict
from cortexflow.config.model import ScheduleOpts
from tests.helpers.procs import run_cli

HEAD = """\
version: 1
queues:
  analytics:
    handler: handlers:tick
    payload_schema: event.json
    global_concurrency: 3
  notifications:
    handler: handlers:tick
schedules:
"""  # the schedules start on line 10


def project(tmp_path: Path, schedules: str) -> Path:
    (tmp_path / "handlers.py").write_text("def tick(data):\n    return data\n")
    (tmp_path / "event.json").write_text(
        json.dumps(
            {
                "type": "object",
                "required": ["event"],
                "properties": {"event": {"type": "string"}},
            }
        )
    )
    path = tmp_path / "queues.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(schedules), "  "))
    return path


def test_a_valid_schedules_section_builds_frozen_schedules(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        """\
        nightly-report:
          queue: analytics
          cron: "0 6 * * *"
          timezone: Europe/Berlin
          name: daily-report
          data: {event: daily_report}
          opts: {priority: 10, attempts: 5, timeout: 1m, remove_on_complete: true}
        heartbeat:
          queue: notifications
          every: 5m
          start_at: "2026-12-01T00:00:00Z"
          catch_up: none
        """,
    )
    config = load_config(path)
    nightly = config.schedules["nightly-report"]
    assert (nightly.queue, nightly.cron, nightly.every) == ("analytics", "0 6 * * *", None)
    assert nightly.timezone == "Europe/Berlin" and nightly.job_name == "daily-report"
    assert nightly.data == {"event": "daily_report"}
    assert nightly.opts == ScheduleOpts(
        priority=10, attempts=5, timeout=60.0, remove_on_complete=True
    )
    assert nightly.catch_up == "one"  # the default
    beat = config.schedules["heartbeat"]
    assert beat.every == 300.0 and beat.timezone == "UTC" and beat.job_name == "heartbeat"
    assert beat.start_at == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert beat.catch_up == "none"
    assert config.queues["analytics"].global_concurrency == 3
    assert config.queues["notifications"].global_concurrency is None
    # `cortexflow config` prints them, and its output loads back to the same config.
    dumped = config_to_dict(config)
    again = tmp_path / "again"
    again.mkdir()
    (again / "event.json").write_text((tmp_path / "event.json").read_text())
    (again / "queues.yaml").write_text(yaml.safe_dump(dumped))
    reloaded = load_config(again / "queues.yaml", check_imports=False)
    assert reloaded.schedules == config.schedules
    assert reloaded.queues["analytics"].global_concurrency == 3


CASES = [
    (
        "bad-cron",
        """\
        bad:
          queue: analytics
          cron: "61 * * * *"
          data: {event: x}
        """,
        (12, 11, "schedule.cron"),
    ),
    (
        "unknown-timezone",
        """\
        bad:
          queue: analytics
          cron: "0 6 * * *"
          timezone: Europe/Berlim
          data: {event: x}
        """,
        (13, 15, "schedule.timezone"),
    ),
    (
        "unknown-queue",
        """\
        bad:
          queue: analytic
          every: 5m
        """,
        (11, 12, "schedule.queue"),
    ),
    (
        "cron-and-every",
        """\
        bad:
          queue: notifications
          cron: "0 6 * * *"
          every: 5m
        """,
        (13, 5, "schedule.rule"),
    ),
    (
        "interval-under-1s",
        """\
        bad:
          queue: notifications
          every: 500ms
        """,
        (12, 12, "schedule.every"),
    ),
    (
        "data-fails-payload-schema",
        """\
        bad:
          queue: analytics
          every: 5m
          data: {event: 42}
        """,
        (13, 11, "schedule.data"),
    ),
    (
        "neither-cron-nor-every",
        """\
        bad:
          queue: notifications
        """,
        (10, 3, "schedule.rule"),
    ),
    (
        "start-at-without-offset",
        """\
        bad:
          queue: notifications
          every: 1h
          start_at: "2026-12-01T00:00:00"
        """,
        (13, 15, "schedule.start-at"),
    ),
    (
        "unknown-catch-up",
        """\
        bad:
          queue: notifications
          every: 1h
          catch_up: some
        """,
        (13, 15, "schema.enum"),
    ),
]


@pytest.mark.parametrize(("schedules", "where"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_one_diagnostic_at_its_place(
    tmp_path: Path, schedules: str, where: tuple[int, int, str]
) -> None:
    path = project(tmp_path, schedules)
    config, diagnostics = check_config(path)
    assert config is None
    errors = [(d.line, d.column, d.code) for d in diagnostics if d.severity == "error"]
    assert errors == [where], diagnostics
    r = run_cli("validate", "-f", str(path), "--format", "json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert [(d["line"], d["column"], d["code"]) for d in report["diagnostics"]] == [where]


def test_all_of_them_at_once(tmp_path: Path) -> None:
    body = "".join(textwrap.dedent(c[1]).replace("bad:", f"{c[0]}:") for c in CASES)
    path = project(tmp_path, body)
    r = run_cli("validate", "-f", str(path))
    assert r.returncode == 1
    codes = [
        line.split("error[")[1].split("]")[0] for line in r.stdout.splitlines() if "error[" in line
    ]
    assert sorted(codes) == sorted(c[2][2] for c in CASES)
    assert "Traceback" not in r.stdout + r.stderr


def test_an_unknown_timezone_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = project(
        tmp_path, "bad:\n  queue: notifications\n  cron: '@daily'\n  timezone: Europe/Berlim\n"
    )
    _, diagnostics = check_config(path)
    assert [d.hint for d in diagnostics] == ['did you mean "Europe/Berlin"?']


def test_global_concurrency_in_defaults_applies_to_every_queue(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(
        "version: 1\ndefaults: {global_concurrency: 2}\nqueues:\n"
        "  a: {handler: x:y}\n  b: {handler: x:y, global_concurrency: 5}\n"
    )
    config = load_config(path, check_imports=False)
    assert config.queues["a"].global_concurrency == 2
    assert config.queues["b"].global_concurrency == 5


def test_global_concurrency_must_be_at_least_one(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text("version: 1\nqueues:\n  q:\n    handler: a:b\n    global_concurrency: 0\n")
    _, diagnostics = check_config(path, check_imports=False)
    assert [(d.line, d.code) for d in diagnostics] == [(5, "schema.minimum")]
