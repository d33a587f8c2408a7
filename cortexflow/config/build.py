"""Validated plain data -> the frozen Config (defaults merged, durations in seconds).

Only called when the schema and the semantic checks found no error, so it may trust shapes.
Unset keys are not passed on: the dataclass defaults (equal to the schema's) apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cortexflow.config.cpus import available_cpus
from cortexflow.config.model import (
    Backoff,
    Config,
    DashboardConfig,
    GroupConfig,
    Join,
    LoggingConfig,
    QueueConfig,
    RateLimit,
    RedisConfig,
    RestartPolicy,
    Retention,
    RetentionRule,
    Route,
    ScheduleConfig,
    ScheduleOpts,
)
from cortexflow.durations import parse_duration
from cortexflow.ticks import parse_start_at

_QUEUE_DURATIONS = ("timeout", "lease")
_QUEUE_AS_IS = ("dead_letter", "isolation", "process", "tasks")  # taken as written
_QUEUE_PLAIN = (
    "concurrency",
    "priority",
    "attempts",
    "max_stalls",
    "global_concurrency",
)


def merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``; mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return over


def build_config(
    data: Mapping[str, Any],
    path: Path,
    env: Mapping[str, str],
    payload_docs: Mapping[str, dict[str, Any]],
) -> Config:
    defaults = data.get("defaults") or {}
    queues = {
        name: _queue(name, raw, defaults, path.parent, payload_docs)
        for name, raw in data["queues"].items()
    }
    return Config(
        path=path,
        queues=queues,
        redis=_redis(data.get("redis") or {}, env),
        version=int(data.get("version", 1)),
        **_seconds_of(data, ("stop_timeout",)),
        restart=_restart(data.get("restart") or {}),
        schedules={
            name: build_schedule(name, raw) for name, raw in (data.get("schedules") or {}).items()
        },
        dashboard=None if data.get("dashboard") is None else _dashboard(data["dashboard"]),
        logging=LoggingConfig(**(data.get("logging") or {})),
    )


def build_schedule(name: str, raw: Mapping[str, Any]) -> ScheduleConfig:
    """One validated ``schedules:`` entry (also what the Python API's upsert_schedule builds)."""
    opts = dict(raw.get("opts") or {})
    if opts.get("timeout") is not None:
        opts["timeout"] = parse_duration(opts["timeout"])
    kwargs: dict[str, Any] = {}
    if raw.get("timezone") is not None:
        kwargs["timezone"] = raw["timezone"]
    if raw.get("catch_up") is not None:
        kwargs["catch_up"] = raw["catch_up"]
    return ScheduleConfig(
        name=name,
        queue=raw["queue"],
        cron=raw.get("cron"),
        every=parse_duration(raw["every"]) if raw.get("every") is not None else None,
        job_name=raw.get("name") or name,
        data=dict(raw.get("data") or {}),
        opts=ScheduleOpts(**opts),
        start_at=parse_start_at(raw["start_at"]) if raw.get("start_at") is not None else None,
        **kwargs,
    )


def _seconds_of(raw: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: parse_duration(raw[k]) for k in keys if raw.get(k) is not None}


def _redis(raw: Mapping[str, Any], env: Mapping[str, str]) -> RedisConfig:
    url = raw.get("url") or env.get("REDIS_URL") or None
    kwargs: dict[str, Any] = {"url": url}
    if raw.get("prefix") is not None:
        kwargs["prefix"] = raw["prefix"]
    if raw.get("durable_adds") is not None:
        kwargs["durable_adds"] = bool(raw["durable_adds"])
    if raw.get("allow_eviction") is not None:
        kwargs["allow_eviction"] = bool(raw["allow_eviction"])
    return RedisConfig(**kwargs)


def _dashboard(raw: Mapping[str, Any]) -> DashboardConfig:
    return DashboardConfig(
        **{k: raw[k] for k in ("host", "port", "metrics_public", "max_streams") if k in raw}
    )


def _restart(raw: Mapping[str, Any]) -> RestartPolicy:
    kwargs: dict[str, Any] = _seconds_of(raw, ("window", "backoff_max", "stable_after"))
    if raw.get("limit") is not None:
        kwargs["limit"] = int(raw["limit"])
    return RestartPolicy(**kwargs)


def _processes(value: Any) -> dict[str, Any]:
    """``processes``: a count, or ``auto`` resolved here to the CPUs this host lets us use."""
    if value == "auto":
        return {"processes": available_cpus(), "processes_auto": True}
    return {} if value is None else {"processes": int(value)}


def _queue(
    name: str,
    own: Mapping[str, Any],
    defaults: Mapping[str, Any],
    base_dir: Path,
    payload_docs: Mapping[str, dict[str, Any]],
) -> QueueConfig:
    raw = merge(dict(defaults), dict(own))
    if "dead_letter" not in own and raw.get("dead_letter") == name:
        raw["dead_letter"] = None  # a dead-letter queue does not feed itself through defaults
    kwargs: dict[str, Any] = {k: int(raw[k]) for k in _QUEUE_PLAIN if raw.get(k) is not None}
    kwargs.update(_seconds_of(raw, _QUEUE_DURATIONS))
    kwargs.update(_processes(raw.get("processes")))
    if isinstance(raw.get("rate_limit"), dict):
        rl = raw["rate_limit"]
        kwargs["rate_limit"] = RateLimit(
            max=int(rl["max"]), duration=parse_duration(rl.get("duration") or "1s")
        )
    if isinstance(raw.get("backoff"), dict):
        kwargs["backoff"] = _backoff(raw["backoff"])
    if "retention" in raw and raw["retention"] is not None:
        kwargs["retention"] = _retention(raw["retention"])
    if raw.get("payload_schema") is not None:
        target = (base_dir / raw["payload_schema"]).resolve()
        kwargs["payload_schema"] = target
        kwargs["payload_schema_doc"] = payload_docs.get(str(target))
    kwargs.update({k: raw[k] for k in _QUEUE_AS_IS if raw.get(k) is not None})
    kwargs.update(_group(raw.get("group")))
    if raw.get("settings"):
        kwargs["settings"] = dict(raw["settings"])
    if raw.get("max_jobs_per_child") is not None:
        kwargs["max_jobs_per_child"] = int(raw["max_jobs_per_child"])
    if raw.get("max_memory_per_child") is not None:
        kwargs["max_memory_per_child"] = parse_memory(raw["max_memory_per_child"])
    kwargs.update(_routes(own.get("next")))
    return QueueConfig(name=name, handler=raw.get("handler") or "", **kwargs)


def _routes(raw: Any) -> dict[str, Any]:
    """A queue's own next: list (never from defaults) -> {"routes": (Route, ...)} or {}."""
    return {"routes": tuple(_route(r) for r in raw)} if raw else {}


def _id_parts(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    return (raw,) if isinstance(raw, str) else tuple(raw)


def _route(raw: Mapping[str, Any]) -> Route:
    join = raw.get("join")
    return Route(
        to=raw["to"],
        name=raw["name"],
        data=raw.get("data", ""),
        when=dict(raw["when"]) if raw.get("when") else None,
        for_each=raw.get("for_each"),
        id=_id_parts(raw.get("id")),
        priority=raw.get("priority"),
        delay=parse_duration(raw["delay"]) if raw.get("delay") else 0.0,
        on=raw.get("on", "completed"),
        join=None
        if not join
        else Join(
            to=join["to"],
            name=join["name"],
            on_child_failure=join.get("on_child_failure", "collect"),
            id=_id_parts(join.get("id")),
        ),
        allow_cycle=bool(raw.get("allow_cycle", False)),
    )


def _group(raw: Any) -> dict[str, GroupConfig]:
    """``group:`` -> {"group": GroupConfig}, or {} when the queue has none."""
    if not isinstance(raw, dict):
        return {}
    key = raw.get("key")
    rl = raw.get("rate_limit")
    group = GroupConfig(
        key=() if key is None else (key,) if isinstance(key, str) else tuple(key),
        concurrency=int(raw.get("concurrency") or 1),
        rate_limit=(
            RateLimit(max=int(rl["max"]), duration=parse_duration(rl.get("duration") or "1s"))
            if isinstance(rl, dict)
            else None
        ),
        order=raw.get("order") or "strict",
    )
    return {"group": group}


def parse_memory(text: str) -> int:
    """ "512MB" / "2GB" (validated by the schema) -> bytes; 1MB = 1024*1024."""
    unit = 1024**3 if text.endswith("GB") else 1024**2
    return int(text[:-2]) * unit


def format_memory(size: int) -> str:
    """bytes -> "NGB" when whole gigabytes, else "NMB"."""
    if size % 1024**3 == 0:
        return f"{size // 1024**3}GB"
    return f"{size // 1024**2}MB"


def _backoff(raw: Mapping[str, Any]) -> Backoff:
    kwargs: dict[str, Any] = _seconds_of(raw, ("delay", "max"))
    if raw.get("type") is not None:
        kwargs["type"] = raw["type"]
    if raw.get("jitter") is not None:
        kwargs["jitter"] = float(raw["jitter"])
    return Backoff(**kwargs)


_NOTHING = RetentionRule(age=None, count=None, keep=False)


def _retention(raw: Any) -> Retention:
    if raw is False:
        return Retention(completed=_NOTHING, failed=_NOTHING)
    kwargs = {state: _rule(raw[state]) for state in ("completed", "failed") if state in raw}
    return Retention(**kwargs)


def _rule(raw: Any) -> RetentionRule:
    if raw is False:
        return _NOTHING
    age = raw.get("age")
    count = raw.get("count")
    return RetentionRule(
        age=parse_duration(age) if age is not None else None,
        count=int(count) if count is not None else None,
    )
