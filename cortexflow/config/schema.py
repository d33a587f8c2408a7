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
MEMORY_PATTERN = "^[1-9][0-9]*(MB|GB)$"

# How each pattern reads in an error message.
PATTERN_NAMES = {
    DURATION_PATTERN: 'a duration with a unit, e.g. "250ms", "5s", "1m30s", "2h", "7d"',
    QUEUE_NAME_PATTERN: (
        'a queue name (a lowercase letter, then lowercase letters, digits, "_" or "-")'
    ),
    HANDLER_PATTERN: 'an import path "package.module:function"',
    PREFIX_PATTERN: "a key prefix without spaces or braces",
    MEMORY_PATTERN: 'a memory size in MB or GB, e.g. "512MB", "2GB"',
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
        "processes": _int("Worker processes for this queue on this host.", 1, [1, 4], 1),
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
        "attempts": _int("Total runs of a job, the first included.", 3, [3, 5], 1),
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
            "Stalls after which a job fails instead of being run again.", 2, [2, 0], 0
        ),
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


def build_schema() -> dict[str, Any]:
    queue = {
        "description": "One queue: its handler and how its jobs run.",
        "type": "object",
        "additionalProperties": False,
        "required": ["handler"],
        "properties": {
            "handler": {
                "description": (
                    'The function that processes a job, "package.module:function" (or a '
                    "BaseWorker subclass). queues.yaml's folder is searched first."
                ),
                "type": "string",
                "pattern": HANDLER_PATTERN,
                "examples": ["cortexflow.queues.email_sending:handle", "myapp.workers:EmailWorker"],
            },
            **queue_settings(),
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
                            "redis://, rediss:// (TLS) or unix:// URL; default ${REDIS_URL}. Use "
                            "${VAR} for secrets."
                        ),
                        "type": ["string", "null"],
                        "default": None,
                        "examples": ["redis://localhost:6379/0", "${REDIS_URL}"],
                    },
                    "prefix": {
                        "description": "Prefix of every Redis key cortexflow writes.",
                        "type": "string",
                        "pattern": PREFIX_PATTERN,
                        "default": "cortexflow",
                        "examples": ["cortexflow", "myapp"],
                    },
                },
                "default": {"url": None, "prefix": "cortexflow"},
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
            "stop_timeout": _duration(
                "On stop, how long running jobs get to finish before they are killed.",
                "30s",
                ["30s", "2m"],
            ),
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
