"""The JSON Schema of queues.yaml: built here, published as two identical JSON files.

``build_schema()`` is the one source; ``python -m cortexflow.config.schema`` writes it to
``cortexflow/schemas/queues.schema.json`` (packaged, what the loader validates with) and
``schemas/queues.schema.json`` (for editors); a test holds all three equal.

Only keywords draft-07 also has, so yaml-language-server and `cortexflow validate` agree. No
``$ref``: in draft-07 a ``$ref`` hides its sibling ``description``, which editors show.
"""

from __future__ import annotations

import functools
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from cortexflow.backoff import MAX_ATTEMPTS
from cortexflow.durations import DURATION_PATTERN

# No public URL serves the schema; `cortexflow init` writes the packaged copy beside the
# queues.yaml it creates and points the modeline at it, so editors work offline and the schema
# always matches the installed version. `cortexflow schema` prints it.
SCHEMA_ID = "urn:cortexflow:queues.schema.json"
SCHEMA_URL = "./queues.schema.json"
QUEUE_NAME_PATTERN = "^[a-z][a-z0-9_-]{0,62}$"
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
HANDLER_PATTERN = f"^{_DOTTED}:{_DOTTED}$"
PREFIX_PATTERN = r"^[^{}\s]+$"
SCHEDULE_NAME_PATTERN = "^[A-Za-z0-9_-]{1,100}$"
MEMORY_PATTERN = "^[1-9][0-9]*(MB|GB)$"
POINTER_PATTERN = "^(/([^~]|~[01])*)*$"

# How each pattern reads in an error message.
PATTERN_NAMES = {
    DURATION_PATTERN: 'a duration with a unit, e.g. "250ms", "5s", "1m30s", "2h", "7d"',
    QUEUE_NAME_PATTERN: (
        'a queue name (a lowercase letter, then lowercase letters, digits, "_" or "-")'
    ),
    HANDLER_PATTERN: 'an import path "package.module:function"',
    PREFIX_PATTERN: "a key prefix without spaces or braces",
    SCHEDULE_NAME_PATTERN: 'a schedule name (1-100 letters, digits, "_" or "-")',
    MEMORY_PATTERN: 'a memory size in MB or GB, e.g. "512MB", "2GB"',
    POINTER_PATTERN: 'a JSON pointer: "" or "/" then keys, e.g. "/messages" ("~0" is ~, "~1" /)',
}


def _duration(
    description: str, default: str | None, examples: list[str], *, nullable: bool = False
) -> dict[str, Any]:
    return {
        "description": description + ' A string with a unit: "250ms", "5s", "1m30s", "2h", "7d".',
        "type": ["string", "null"] if nullable else "string",
        "pattern": DURATION_PATTERN,
        "default": default,
        "examples": examples,
    }


def _int(
    description: str,
    default: int | None,
    examples: list[int],
    minimum: int,
    maximum: int | None = None,
    *,
    nullable: bool = False,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "description": description,
        "type": ["integer", "null"] if nullable else "integer",
        "minimum": minimum,
    }
    if maximum is not None:
        s["maximum"] = maximum
    if default is not None or nullable:
        s["default"] = default
    s["examples"] = examples
    return s


def _retention_rule(state: str, age: str, count: int) -> dict[str, Any]:
    return {
        "description": (
            f"How long {state} jobs are kept: older than `age` or beyond the newest "
            "`count` are removed; `false` removes them at once."
        ),
        "oneOf": [
            {"const": False, "description": f"Keep no {state} job."},
            {
                "type": "object",
                "description": "Limits; an omitted or null one is no limit.",
                "additionalProperties": False,
                "properties": {
                    "age": _duration(
                        f"Remove {state} jobs older than this; null: no age limit.",
                        None,
                        [age, "1d"],
                        nullable=True,
                    ),
                    "count": _int(
                        f"Keep at most this many of the newest {state} jobs; null: no count limit.",
                        None,
                        [count, 100],
                        0,
                        nullable=True,
                    ),
                },
            },
        ],
        "default": {"age": age, "count": count},
        "examples": [{"age": age, "count": count}, False],
    }


def queue_settings() -> dict[str, Any]:
    """Properties of a queue besides ``handler``; also the keys of ``defaults:``."""
    return {
        "concurrency": _int("Jobs processed at once by one worker process.", 10, [10, 50], 1),
        "processes": {
            "description": (
                'Worker processes for this queue on this host; "auto": one per CPU that `up` '
                "may use on the host (its CPU affinity set, capped by a cgroup v2 CPU quota), "
                "counted at each start and reload."
            ),
            "oneOf": [
                {"type": "integer", "minimum": 1, "description": "This many processes."},
                {"type": "string", "const": "auto", "description": "One per available CPU."},
            ],
            "default": 1,
            "examples": [1, 4, "auto"],
        },
        "process": {
            "description": (
                "The worker process this queue runs in: queues with the same `process` share "
                "one process (one event loop, one connection pool, one lease thread; each keeps "
                "its own concurrency, rate limit, timeouts and retries). Unset: the queue's own "
                "name, a process of its own. Queues of one process must agree on `processes`."
            ),
            "type": ["string", "null"],
            "pattern": QUEUE_NAME_PATTERN,
            "default": None,
            "examples": ["light", "main"],
        },
        "priority": _int(
            "Default priority of a job; higher runs first (0..1000000).",
            0,
            [0, 10, 1000],
            0,
            1_000_000,
        ),
        "rate_limit": {
            "description": (
                "At most `max` jobs *started* per `duration`, across all workers of all hosts. "
                "null: no limit."
            ),
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["max"],
            "properties": {
                "max": _int("Jobs started per duration at most.", None, [100, 10], 1),
                "duration": _duration("The window of the limit.", "1s", ["1s", "1m"]),
            },
            "default": None,
            "examples": [{"max": 100, "duration": "1s"}],
        },
        "attempts": _int("Total runs of a job, the first included.", 3, [3, 5], 1, MAX_ATTEMPTS),
        "backoff": {
            "description": (
                "Wait before a failed job runs again: fixed `delay`, or exponential "
                "`delay*2^(k-1)`, capped at `max`; `jitter` j draws the wait in [D*(1-j), D]."
            ),
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {
                    "description": "How the wait grows from one attempt to the next.",
                    "oneOf": [
                        {"const": "fixed", "description": "Always `delay`."},
                        {
                            "const": "exponential",
                            "description": "`delay`, then twice as long after each failure.",
                        },
                    ],
                    "default": "exponential",
                    "examples": ["exponential", "fixed"],
                },
                "delay": _duration("The first wait.", "1s", ["1s", "500ms"]),
                "max": _duration("The longest wait.", "10m", ["10m", "1h"]),
                "jitter": {
                    "description": (
                        "Randomness 0..1: the wait is drawn uniformly in [D*(1-jitter), D]."
                    ),
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "default": 0,
                    "examples": [0, 0.2],
                },
            },
            "default": {"type": "exponential", "delay": "1s", "max": "10m", "jitter": 0},
            "examples": [{"type": "exponential", "delay": "1s", "max": "10m", "jitter": 0.2}],
        },
        "timeout": _duration("A run longer than this fails that attempt.", "5m", ["5m", "30s"]),
        "retention": {
            "description": "How long finished jobs are kept; `false` keeps none.",
            "oneOf": [
                {"const": False, "description": "Remove every finished job at once."},
                {
                    "type": "object",
                    "description": "Rules for completed and failed jobs.",
                    "additionalProperties": False,
                    "properties": {
                        "completed": _retention_rule("completed", "1h", 1000),
                        "failed": _retention_rule("failed", "7d", 10000),
                    },
                },
            ],
            "default": {
                "completed": {"age": "1h", "count": 1000},
                "failed": {"age": "7d", "count": 10000},
            },
            "examples": [
                {
                    "completed": {"age": "1h", "count": 1000},
                    "failed": {"age": "7d", "count": 10000},
                },
                False,
            ],
        },
        "payload_schema": {
            "description": (
                "Path, relative to queues.yaml, of a JSON Schema every payload must satisfy. "
                "null: any JSON object."
            ),
            "type": ["string", "null"],
            "minLength": 1,
            "default": None,
            "examples": ["schemas/payloads/email-sending.json"],
        },
        "dead_letter": {
            "description": (
                "Another queue that receives every job of this one that failed for good. null: "
                "none."
            ),
            "type": ["string", "null"],
            "pattern": QUEUE_NAME_PATTERN,
            "default": None,
            "examples": ["failed-jobs"],
        },
        "lease": _duration(
            "How long a worker holds a job without a heartbeat before it counts as stalled.",
            "30s",
            ["30s", "1m"],
        ),
        "max_stalls": _int(
            "How many times a stalled job (its worker stopped renewing the lease) is recovered "
            "before the next stall fails it (BullMQ's maxStalledCount; 0 fails it at the first "
            "stall).",
            1,
            [1, 0],
            0,
        ),
        "global_concurrency": _int(
            "At most this many jobs of this queue run at once across all workers of all hosts "
            "(on top of each process's `concurrency`). null: no cap.",
            None,
            [3, 20],
            1,
            nullable=True,
        ),
        "group": group_schema(),
        "isolation": {
            "description": (
                "Where handlers run. `none`: in the worker process (async in its event loop, sync "
                "in threads; a sync handler past its timeout cannot be stopped). `process`: in a "
                "pool of child processes of the worker, one job at a time each; a run past its "
                "timeout, or a stop, kills its process, which is replaced. See docs/isolation.md."
            ),
            "oneOf": [
                {"const": "none", "description": "In the worker process (the fastest)."},
                {
                    "const": "process",
                    "description": "In child processes, killed on timeout (timeouts are real).",
                },
            ],
            "default": "none",
            "examples": ["none", "process"],
        },
        "max_jobs_per_child": _int(
            "With isolation: process, a child process is replaced after this many jobs (for "
            "handlers that leak). null: never.",
            None,
            [1000, 1],
            1,
            nullable=True,
        ),
        "max_memory_per_child": {
            "description": (
                "With isolation: process, a child process whose resident memory is above this "
                'after a job is replaced. "512MB", "2GB" (1MB = 1024*1024 bytes). null: no limit.'
            ),
            "type": ["string", "null"],
            "pattern": MEMORY_PATTERN,
            "default": None,
            "examples": ["512MB", "2GB"],
        },
        "settings": {
            "description": (
                "Free-form settings for this queue's handler, which reads them as "
                "`job.settings` (e.g. message-processing's `orchestrator`). Merged key by key "
                "with `defaults.settings`. Keep secrets in the environment, not here."
            ),
            "type": "object",
            "additionalProperties": True,  # the handler's own keys: free-form on purpose
            "default": {},
            "examples": [{"orchestrator": "myapp.ai:Orchestrator"}],
        },
    }


_POINTER = {
    "description": 'A JSON pointer (RFC 6901): "" for the whole document, "/messages/0/id".',
    "type": "string",
    "pattern": POINTER_PATTERN,
    "examples": ["/messages", ""],
}
_ID_PARTS = {
    "description": (
        'The new job\'s id: "$id" (the parent job\'s id), or parts joined with "-": a part '
        '"/x" is a JSON pointer into the document, "$id" the parent\'s id, any other text is '
        "literal. Default: <parent queue>-<parent id>-<route number>[-<item number>]."
    ),
    "oneOf": [
        {"const": "$id"},
        {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    ],
    "examples": [["/channelType", "/messageId"], ["reply", "$id"], "$id"],
}


def route_schema() -> dict[str, Any]:
    """One entry of a queue's ``next:`` list (docs/pipelines.md)."""
    when = {
        "description": (
            "Take the route only when this holds on the result: `path` (a JSON pointer) and "
            "one of `equals` (a value), `in` (a list of values), `exists` (true/false)."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "minProperties": 2,
        "maxProperties": 2,
        "properties": {
            "path": _POINTER,
            "equals": {"description": "The value at `path` equals this.", "examples": ["email"]},
            "in": {
                "description": "The value at `path` is one of these.",
                "type": "array",
                "examples": [["email", "sms"]],
            },
            "exists": {
                "description": "`path` finds a value (true) or not.",
                "type": "boolean",
                "examples": [True],
            },
        },
        "examples": [{"path": "/type", "equals": "email"}],
    }
    join = {
        "description": (
            "With for_each: one job added to `to` once every child of this fan-out ended "
            "(completed, failed for good, stalled out, removed), with their results."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["to", "name"],
        "properties": {
            "to": {
                "description": "The queue of the join job.",
                "type": "string",
                "pattern": QUEUE_NAME_PATTERN,
                "examples": ["summaries"],
            },
            "name": {
                "description": "The join job's name.",
                "type": "string",
                "minLength": 1,
                "examples": ["summarise"],
            },
            "on_child_failure": {
                "description": (
                    "`collect`: wait for every child, report the failures. `fail`: add the "
                    "join job failed as soon as one child fails for good."
                ),
                "enum": ["collect", "fail"],
                "default": "collect",
                "examples": ["collect", "fail"],
            },
            "id": _ID_PARTS,
        },
        "examples": [{"to": "summaries", "name": "summarise", "on_child_failure": "collect"}],
    }
    return {
        "description": "A job added to another queue when a job of this one ends.",
        "type": "object",
        "additionalProperties": False,
        "required": ["to", "name"],
        "properties": {
            "to": {
                "description": "The queue of the new job.",
                "type": "string",
                "pattern": QUEUE_NAME_PATTERN,
                "examples": ["notifications"],
            },
            "name": {
                "description": "The new job's name.",
                "type": "string",
                "minLength": 1,
                "examples": ["send-notification"],
            },
            "data": {
                **_POINTER,
                "description": "A JSON pointer to the new job's data in the "
                'document (the result, or the item of for_each). Default "": all of it.',
                "default": "",
            },
            "when": when,
            "for_each": {
                **_POINTER,
                "description": "A JSON pointer to a list in the result: one job per item.",
            },
            "id": _ID_PARTS,
            "priority": _int(
                "The new job's priority (default: the target queue's).", None, [10], 0, 1_000_000
            ),
            "delay": _duration(
                "Delay the new job by this much (null: none).", None, ["10s"], nullable=True
            ),
            "on": {
                "description": "`completed`: when the run succeeds. `failed`: when the job "
                "fails for good (besides dead-lettering).",
                "enum": ["completed", "failed"],
                "default": "completed",
                "examples": ["completed", "failed"],
            },
            "join": join,
            "allow_cycle": {
                "description": "true: this route may close a loop of routes.",
                "type": "boolean",
                "default": False,
                "examples": [True],
            },
        },
        "examples": [{"to": "notifications", "name": "notify", "data": "/notification"}],
    }


JSON_POINTER_PATTERN = "^(/([^~]|~[01])*)+$"
PATTERN_NAMES[JSON_POINTER_PATTERN] = 'a JSON pointer into the job\'s data, e.g. "/conversationId"'


def group_schema() -> dict[str, Any]:
    """``group:`` of a queue: per-key order, concurrency and fairness (docs/groups.md)."""
    pointer = {
        "type": "string",
        "pattern": JSON_POINTER_PATTERN,
        "description": "A JSON pointer into the job's data.",
    }
    return {
        "description": (
            "Jobs with the same group key run at most `concurrency` at once across all workers "
            "of all hosts, in the order they were added; groups with waiting jobs take turns "
            "(round-robin). A job whose data has no value at `key` (and that names no group "
            "itself) runs as in a queue without groups. null: no groups. See docs/groups.md."
        ),
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "key": {
                "description": (
                    "Where the group key is in the job's data: a JSON pointer, or a list of "
                    "them whose values are joined with `:` (e.g. channel and user). Omitted: "
                    "only jobs that name their group (`group=` when added) are grouped."
                ),
                "oneOf": [
                    {**pointer},
                    {
                        "type": "array",
                        "items": pointer,
                        "minItems": 1,
                        "maxItems": 8,
                        "description": "Several pointers, values joined with `:`.",
                    },
                ],
                "examples": ["/conversationId", ["/channelType", "/userId"]],
            },
            "concurrency": _int(
                "Jobs of one group running at once, across all workers of all hosts.",
                1,
                [1, 3],
                1,
            ),
            "rate_limit": {
                "description": (
                    "At most `max` jobs of one group *started* per `duration`, across all "
                    "workers of all hosts (each group its own window). null: no limit."
                ),
                "type": ["object", "null"],
                "additionalProperties": False,
                "required": ["max"],
                "properties": {
                    "max": _int("Jobs of one group started per duration at most.", None, [5], 1),
                    "duration": _duration("The window of the limit.", "1s", ["1s", "1m"]),
                },
                "default": None,
                "examples": [{"max": 5, "duration": "1s"}],
            },
            "order": {
                "description": (
                    "`strict`: a failed job waiting for its retry holds its group (nothing "
                    "later in the group starts until it completes or fails for good). "
                    "`relaxed`: later jobs of the group may pass a job waiting for its retry."
                ),
                "oneOf": [
                    {"const": "strict", "description": "A retrying job holds its group."},
                    {"const": "relaxed", "description": "Later jobs may pass a retrying one."},
                ],
                "default": "strict",
                "examples": ["strict", "relaxed"],
            },
        },
        "default": None,
        "examples": [{"key": ["/channelType", "/userId"], "concurrency": 1, "order": "strict"}],
    }


def _no_default(schema: dict[str, Any]) -> dict[str, Any]:
    """For a key whose absence means something else than any value (e.g. the queue's own)."""
    schema.pop("default", None)
    return schema


def schedule_schema() -> dict[str, Any]:
    """One entry of ``schedules:``: a job added on a cron rule or at an interval."""
    return {
        "description": (
            "A job added to `queue` at every tick of `cron` or `every` (exactly one of them), "
            "once per tick however many `cortexflow up` run."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["queue"],
        "properties": {
            "queue": {
                "description": "The declared queue the job is added to.",
                "type": "string",
                "pattern": QUEUE_NAME_PATTERN,
                "examples": ["analytics"],
            },
            "cron": {
                "description": (
                    "Five cron fields: minute hour day-of-month month day-of-week (ranges "
                    "`1-5`, steps `*/15`, lists `1,15`, names `MON`, `JAN`), or @yearly, "
                    "@monthly, @weekly, @daily, @hourly. Read in `timezone`."
                ),
                "type": "string",
                "minLength": 1,
                "examples": ["0 6 * * *", "*/15 9-17 * * MON-FRI", "@daily"],
            },
            "every": _no_default(
                _duration(
                    "An interval instead of cron, at least 1s. Ticks fall on `start_at` + k * "
                    "every (without start_at: multiples of every since 1970-01-01T00:00Z).",
                    None,
                    ["5m", "30s", "1h"],
                )
            ),
            "timezone": {
                "description": "IANA timezone the cron fields are read in.",
                "type": "string",
                "minLength": 1,
                "default": "UTC",
                "examples": ["UTC", "Europe/Berlin", "America/New_York"],
            },
            "name": {
                "description": "The job's name; default the schedule's name.",
                "type": "string",
                "minLength": 1,
                "examples": ["daily-report"],
            },
            "data": {
                "description": "The job's payload, checked against the queue's payload_schema.",
                "type": "object",
                "default": {},
                "examples": [{"event": "daily_report"}],
            },
            "opts": {
                "description": "Options of each job, over the queue's settings.",
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "priority": _int(
                        "Priority of the job; higher runs first.", None, [10], 0, 1_000_000
                    ),
                    "attempts": _int(
                        "Total runs of the job, the first included.", None, [5], 1, MAX_ATTEMPTS
                    ),
                    "timeout": _no_default(
                        _duration("A run longer than this fails.", None, ["1m"])
                    ),
                    "remove_on_complete": {
                        "description": "true: remove the job once completed; N: keep the newest N.",
                        "type": ["boolean", "integer"],
                        "minimum": 0,
                        "examples": [True, 100],
                    },
                    "remove_on_fail": {
                        "description": "true: remove the job once failed; N: keep the newest N.",
                        "type": ["boolean", "integer"],
                        "minimum": 0,
                        "examples": [False, 100],
                    },
                },
                "default": {},
                "examples": [{"priority": 10, "attempts": 5}],
            },
            "start_at": {
                "description": (
                    "No tick before this time (ISO 8601 with a UTC offset or Z); for `every`, "
                    "also where its ticks are counted from."
                ),
                "type": "string",
                "minLength": 1,
                "examples": ["2026-12-01T00:00:00Z"],
            },
            "catch_up": {
                "description": "What runs for the ticks missed while no `cortexflow up` ran.",
                "oneOf": [
                    {"const": "none", "description": "Nothing: missed ticks are skipped."},
                    {"const": "one", "description": "One job for all the missed ticks."},
                    {
                        "const": "all",
                        "description": "One job per missed tick (at most the newest 100).",
                    },
                ],
                "default": "one",
                "examples": ["one", "none", "all"],
            },
        },
        "examples": [
            {"queue": "analytics", "cron": "0 6 * * *", "timezone": "Europe/Berlin"},
            {"queue": "notifications", "every": "5m", "catch_up": "none"},
        ],
    }


def build_schema() -> dict[str, Any]:
    queue = {
        "description": "One queue: its handler and how its jobs run.",
        "type": "object",
        "additionalProperties": False,
        # `tasks:` stands in for `handler:` (a queue of taskiq tasks); semantic.py refuses both.
        "if": {"required": ["tasks"]},
        "else": {"required": ["handler"]},
        "properties": {
            "handler": {
                "description": (
                    'The function that processes a job, "package.module:function" (or a '
                    "BaseWorker subclass). queues.yaml's folder is searched first. Required, "
                    "unless the queue runs taskiq tasks (`tasks`)."
                ),
                "type": "string",
                "pattern": HANDLER_PATTERN,
                "examples": ["cortexflow.queues.email_sending:handle", "myapp.workers:EmailWorker"],
            },
            "tasks": {
                "description": (
                    'A taskiq broker, "package.module:broker" (cortexflow.taskiq\'s '
                    "broker_from_config): the queue runs the broker's tasks whose queue label is "
                    "this queue, instead of a handler. queues.yaml's folder is searched first."
                ),
                "type": "string",
                "pattern": HANDLER_PATTERN,
                "examples": ["myapp.tasks:broker"],
            },
            **queue_settings(),
            "next": {
                "description": (
                    "Jobs added to other queues when a job of this one ends, in the same "
                    "atomic step as its outcome (docs/pipelines.md)."
                ),
                "type": "array",
                "items": route_schema(),
                "default": [],
                "examples": [[{"to": "notifications", "name": "notify", "data": "/notification"}]],
            },
        },
        "examples": [{"handler": "myapp.tasks:send_email", "concurrency": 5}],
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "cortexflow queues.yaml",
        "description": (
            "Every queue of a service: handler, concurrency, priority, rate limit, retries, "
            "retention."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["queues"],
        "properties": {
            "version": {
                "description": "Version of the queues.yaml format.",
                "const": 1,
                "default": 1,
                "examples": [1],
            },
            "redis": {
                "description": (
                    "The Redis/Valkey server. Without a url (here or in $REDIS_URL), `cortexflow "
                    "up` runs an embedded one."
                ),
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "url": {
                        "description": (
                            "redis://, rediss:// (TLS), unix://, redis+sentinel:// or "
                            "redis+cluster:// URL. Unset or null: $REDIS_URL, else the embedded "
                            "server of this folder. "
                            "Keep the password out of this file: `${REDIS_URL:-}` reads the "
                            "environment (empty when unset). A password with @ : / % # ? in it "
                            "must be percent-encoded (`p@ss` -> `p%40ss`)."
                        ),
                        "type": ["string", "null"],
                        "default": None,
                        "examples": ["${REDIS_URL:-}", "redis://:s3cret@localhost:6379/0"],
                    },
                    "prefix": {
                        "description": "Prefix of every Redis key cortexflow writes.",
                        "type": "string",
                        "pattern": PREFIX_PATTERN,
                        "default": "cortexflow",
                        "examples": ["cortexflow", "myapp"],
                    },
                    "durable_adds": {
                        "description": (
                            "true: an add returns only once the server has written it to its "
                            "append-only file (WAITAOF; Valkey >= 8 or Redis >= 7.2 with "
                            "appendonly yes), so a server crash cannot lose an acknowledged add. "
                            "Costs a wait for the server's next fsync per add call."
                        ),
                        "type": "boolean",
                        "default": False,
                        "examples": [False, True],
                    },
                    "allow_eviction": {
                        "description": (
                            "true: use a server whose maxmemory-policy is not noeviction. By "
                            "default `up`, `worker`, `dashboard` and the Python API's first "
                            "connection refuse one: such a server deletes keys when it is full, "
                            "jobs among them, and they are lost without an error."
                        ),
                        "type": "boolean",
                        "default": False,
                        "examples": [False, True],
                    },
                },
                "default": {
                    "url": None,
                    "prefix": "cortexflow",
                    "durable_adds": False,
                    "allow_eviction": False,
                },
                "examples": [{"url": "redis://localhost:6379/0", "prefix": "cortexflow"}],
            },
            "defaults": {
                "description": (
                    "Settings for every queue; a queue's own keys override them (mappings merge "
                    "key by key)."
                ),
                "type": "object",
                "additionalProperties": False,
                "properties": queue_settings(),
                "default": {},
                "examples": [{"attempts": 5, "timeout": "1m"}],
            },
            "queues": {
                "description": "The queues, by name.",
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": QUEUE_NAME_PATTERN},
                "additionalProperties": queue,
                "examples": [{"emails": {"handler": "myapp.tasks:send_email", "concurrency": 5}}],
            },
            "schedules": {
                "description": (
                    "Jobs added on a cron rule or at an interval, by schedule name; exactly one "
                    "job per tick across every `cortexflow up`."
                ),
                "type": "object",
                "propertyNames": {"pattern": SCHEDULE_NAME_PATTERN},
                "additionalProperties": schedule_schema(),
                "default": {},
                "examples": [
                    {"nightly-report": {"queue": "analytics", "cron": "0 6 * * *"}},
                ],
            },
            "stop_timeout": _duration(
                "On stop, how long running jobs get to finish before they are killed.",
                "30s",
                ["30s", "2m"],
            ),
            "dashboard": {
                "description": (
                    "`cortexflow up` also runs `cortexflow dashboard` (web UI, JSON API, "
                    "/metrics) with these settings, restarting it if it exits. Tokens: "
                    "$CORTEXFLOW_TOKEN / $CORTEXFLOW_READ_TOKEN, else one generated into "
                    ".cortexflow/token."
                ),
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "host": {
                        "description": "Address to bind (a non-loopback one needs a token).",
                        "type": "string",
                        "minLength": 1,
                        "default": "127.0.0.1",
                        "examples": ["127.0.0.1", "0.0.0.0"],
                    },
                    "port": _int("TCP port.", 8000, [8000], 1, 65535),
                    "metrics_public": {
                        "description": "Serve /metrics without a token.",
                        "type": "boolean",
                        "default": False,
                        "examples": [False],
                    },
                    "max_streams": _int(
                        "Event streams (SSE) open at once; the one past it gets 503. They "
                        "read Redis through connections of their own, so pages, the API and "
                        "/healthz keep answering however many are open.",
                        50,
                        [50],
                        1,
                        10000,
                    ),
                },
                "default": None,
                "examples": [{"host": "127.0.0.1", "port": 8000}],
            },
            "logging": {
                "description": (
                    "How `cortexflow up`, `worker` and `dashboard` write their logs; their "
                    "--log-format flag wins."
                ),
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "format": {
                        "description": (
                            "text: lines for people; json: one JSON object per line (ts, "
                            "level, logger, pid, queue, replica, job_id, attempt, trace_id, "
                            "span_id, message, exc) for a log pipeline."
                        ),
                        "enum": ["text", "json"],
                        "default": "text",
                        "examples": ["json"],
                    },
                },
                "default": {"format": "text"},
                "examples": [{"format": "json"}],
            },
            "restart": {
                "description": "How the supervisor restarts a worker process that exits.",
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "limit": _int(
                        "More restarts than this within `window` make the queue FATAL.", 10, [10], 1
                    ),
                    "window": _duration("The window of `limit`.", "10m", ["10m"]),
                    "backoff_max": _duration("Longest wait before a restart.", "60s", ["60s"]),
                    "stable_after": _duration(
                        "A process up this long resets its restart backoff.", "120s", ["120s"]
                    ),
                },
                "default": {
                    "limit": 10,
                    "window": "10m",
                    "backoff_max": "60s",
                    "stable_after": "120s",
                },
                "examples": [
                    {"limit": 10, "window": "10m", "backoff_max": "60s", "stable_after": "120s"}
                ],
            },
        },
    }


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def packaged_schema_text() -> str:
    return (resources.files("cortexflow") / "schemas" / "queues.schema.json").read_text("utf-8")


@functools.cache
def _packaged() -> str:
    return packaged_schema_text()


def load_schema() -> dict[str, Any]:
    """The packaged schema (a fresh copy: callers may not share mutations)."""
    schema: dict[str, Any] = json.loads(_packaged())
    return schema


def main() -> None:  # pragma: no cover - a maintainer's tool
    """Write both copies: ``python -m cortexflow.config.schema [REPO_ROOT]``."""
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    text = render_schema()
    for target in (
        root / "cortexflow" / "schemas" / "queues.schema.json",
        root / "schemas" / "queues.schema.json",
    ):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")


if __name__ == "__main__":  # pragma: no cover
    main()
