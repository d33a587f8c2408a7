"""A Config back to plain data: what `cortexflow config` prints (itself a valid queues.yaml)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from cortexflow.config.build import format_memory
from cortexflow.config.model import (
    Config,
    GroupConfig,
    QueueConfig,
    RetentionRule,
    ScheduleConfig,
)
from cortexflow.durations import format_duration


def config_to_dict(config: Config, *, redact: bool = True) -> dict[str, Any]:
    """Every setting resolved, defaults included; the Redis password hidden unless ``redact``
    is False."""
    url = config.redis.url
    if url is not None and redact:
        from cortexflow.redact import redact_url

        url = redact_url(url)
    r = config.restart
    return {
        "version": config.version,
        "redis": {
            "url": url,
            "prefix": config.redis.prefix,
            "durable_adds": config.redis.durable_adds,
            "allow_eviction": config.redis.allow_eviction,
        },
        "stop_timeout": format_duration(config.stop_timeout),
        "restart": {
            "limit": r.limit,
            "window": format_duration(r.window),
            "backoff_max": format_duration(r.backoff_max),
            "stable_after": format_duration(r.stable_after),
        },
        **({"dashboard": dataclasses.asdict(config.dashboard)} if config.dashboard else {}),
        "logging": dataclasses.asdict(config.logging),
        "queues": {name: _queue(q, config) for name, q in config.queues.items()},
        "schedules": {name: schedule_to_dict(s) for name, s in config.schedules.items()},
    }


def schedule_to_dict(s: ScheduleConfig) -> dict[str, Any]:
    """A schedule as queues.yaml writes it (build_schedule reads it back to an equal one)."""
    from datetime import UTC, datetime

    out: dict[str, Any] = {"queue": s.queue}
    if s.cron is not None:
        out["cron"] = s.cron
    if s.every is not None:
        out["every"] = format_duration(s.every)
    out["timezone"] = s.timezone
    out["name"] = s.job_name
    out["data"] = dict(s.data)
    opts = {k: v for k, v in vars(s.opts).items() if v is not None}
    if "timeout" in opts:
        opts["timeout"] = format_duration(opts["timeout"])
    out["opts"] = opts
    if s.start_at is not None:
        when = datetime.fromtimestamp(s.start_at, UTC).isoformat(timespec="milliseconds")
        out["start_at"] = when.replace("+00:00", "Z")
    out["catch_up"] = s.catch_up
    return out


def _rule(rule: RetentionRule) -> Any:
    if not rule.keep:
        return False
    return {
        "age": format_duration(rule.age) if rule.age is not None else None,
        "count": rule.count,
    }


def _queue(q: QueueConfig, config: Config) -> dict[str, Any]:
    retention: Any = {
        "completed": _rule(q.retention.completed),
        "failed": _rule(q.retention.failed),
    }
    if retention["completed"] is False and retention["failed"] is False:
        retention = False
    payload_schema = None
    if q.payload_schema is not None:
        payload_schema = os.path.relpath(q.payload_schema, config.base_dir)
    runs = {"tasks": q.tasks} if q.tasks is not None else {"handler": q.handler}
    return {
        **runs,
        "concurrency": q.concurrency,
        "processes": "auto" if q.processes_auto else q.processes,
        "process": q.process,
        "priority": q.priority,
        "rate_limit": (
            {"max": q.rate_limit.max, "duration": format_duration(q.rate_limit.duration)}
            if q.rate_limit
            else None
        ),
        "attempts": q.attempts,
        "backoff": {
            "type": q.backoff.type,
            "delay": format_duration(q.backoff.delay),
            "max": format_duration(q.backoff.max),
            "jitter": q.backoff.jitter,
        },
        "timeout": format_duration(q.timeout),
        "retention": retention,
        "payload_schema": payload_schema,
        "dead_letter": q.dead_letter,
        "lease": format_duration(q.lease),
        "max_stalls": q.max_stalls,
        "global_concurrency": q.global_concurrency,
        "group": _group(q.group),
        "isolation": q.isolation,
        "max_jobs_per_child": q.max_jobs_per_child,
        "max_memory_per_child": (
            format_memory(q.max_memory_per_child) if q.max_memory_per_child else None
        ),
        "settings": dict(q.settings),
    }


def note_auto_processes(text: str, config: Config) -> str:
    """The YAML of config_to_dict with ``processes: auto`` lines saying what ``auto`` is here:
    ``processes: auto  # 8 on this host``."""
    lines = text.split("\n")
    queue = ""
    in_queues = False
    for i, line in enumerate(lines):
        if not line.startswith(" "):
            in_queues = line == "queues:"
        elif in_queues and line.startswith("  ") and not line.startswith("   "):
            queue = line.strip().rstrip(":")
        elif in_queues and line == "    processes: auto" and queue in config.queues:
            lines[i] = f"{line}  # {config.queues[queue].processes} on this host"
    return "\n".join(lines)


def _group(g: GroupConfig | None) -> dict[str, Any] | None:
    if g is None:
        return None
    out: dict[str, Any] = {}
    if g.key:
        out["key"] = g.key[0] if len(g.key) == 1 else list(g.key)
    return out | {
        "concurrency": g.concurrency,
        "rate_limit": (
            {"max": g.rate_limit.max, "duration": format_duration(g.rate_limit.duration)}
            if g.rate_limit
            else None
        ),
        "order": g.order,
    }
