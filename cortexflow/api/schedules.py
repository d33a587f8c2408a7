"""Schedules in the Python API: check a runtime upsert as `validate` checks queues.yaml, and
describe stored schedules (what `cortexflow schedules` shows)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jsonschema

from cortexflow.config.build import build_schedule
from cortexflow.config.model import Config, ScheduleConfig
from cortexflow.config.schema import SCHEDULE_NAME_PATTERN, schedule_schema
from cortexflow.durations import format_duration
from cortexflow.engine import schedules as store
from cortexflow.engine.payload import encode_data, make_validator
from cortexflow.errors import UsageError
from cortexflow.ticks import Rule, RuleError, parse_start_at


def make_schedule(
    config: Config,
    name: str,
    *,
    queue: str,
    cron: str | None,
    every: str | float | None,
    timezone: str,
    data: Mapping[str, Any] | None,
    job_name: str | None,
    opts: Mapping[str, Any] | None,
    start_at: str | datetime | None,
    catch_up: str,
) -> ScheduleConfig:
    """The schedule, checked like a ``schedules:`` entry of queues.yaml.

    ``every``: a duration with a unit ("5m") or milliseconds (BullMQ's unit); ``start_at``: an
    aware datetime or ISO 8601 text. UsageError (or PayloadError for ``data``) when wrong.
    """
    if not isinstance(name, str) or not jsonschema.Draft7Validator(
        {"type": "string", "pattern": SCHEDULE_NAME_PATTERN}
    ).is_valid(name):
        raise UsageError(f"schedule name {name!r} is not valid: use 1-100 letters, digits, - or _")
    raw: dict[str, Any] = {"queue": queue, "timezone": timezone, "catch_up": catch_up}
    if cron is not None:
        raw["cron"] = cron
    if every is not None:
        raw["every"] = _every(every)
    if data is not None:
        raw["data"] = dict(data)
    if job_name is not None:
        raw["name"] = job_name
    if opts is not None:
        raw["opts"] = dict(opts)
    if start_at is not None:
        raw["start_at"] = start_at.isoformat() if isinstance(start_at, datetime) else start_at
    errors = sorted(
        jsonschema.Draft7Validator(schedule_schema()).iter_errors(raw), key=lambda e: e.path
    )
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise UsageError(f"schedule {name!r}: {where or 'options'}: {errors[0].message}")
    try:
        Rule.make(
            cron=cron,
            every=None if every is None else _seconds(raw["every"]),
            timezone=timezone,
            start_at=None if start_at is None else parse_start_at(raw["start_at"]),
        )
    except RuleError as exc:
        raise UsageError(f"schedule {name!r}: {exc}") from None
    queue_config = config.queue(queue)
    encode_data(queue, raw.get("data", {}), make_validator(queue_config))  # PayloadError
    return build_schedule(name, raw)


def _every(every: str | float) -> str:
    if isinstance(every, bool) or not isinstance(every, str | int | float):
        raise UsageError(f"every is a duration such as '5m' or milliseconds, got {every!r}")
    if isinstance(every, str):
        return every
    if every < 0:
        raise UsageError(f"every must be at least 1s, got {every!r} ms")
    return format_duration(every / 1000)


def _seconds(text: str) -> float:
    from cortexflow.durations import parse_duration

    return parse_duration(text)


def describe(stored: store.Stored, state: store.State, now_ms: int) -> dict[str, Any]:
    """One row of `cortexflow schedules --json` / ``list_schedules()``; times in epoch seconds."""
    s = stored.schedule
    next_run: float | None = None
    try:
        rule = Rule.make(cron=s.cron, every=s.every, timezone=s.timezone, start_at=s.start_at)
    except RuleError:
        rule_text = s.cron or f"every {format_duration(s.every or 0)}"
    else:
        rule_text = rule.describe()
        last = max(state.last_tick_ms or 0, stored.since_ms, now_ms)
        next_run = rule.next_after(last) / 1000
    return {
        "name": s.name,
        "queue": s.queue,
        "rule": rule_text,
        "timezone": s.timezone,
        "jobName": s.job_name,
        "catchUp": s.catch_up,
        "source": stored.source,
        "lastRun": state.last_run_ms / 1000 if state.last_run_ms is not None else None,
        "lastJob": state.last_job,
        "nextRun": next_run,
    }
