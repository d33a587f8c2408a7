"""A job as callers see it, and the per-job options they may give."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cortexflow.config.model import Backoff

MAX_PRIORITY = 1_000_000


@dataclass(frozen=True)
class JobOptions:
    """Per-job overrides of the queue's settings (None: the queue's value).

    ``delay`` is in seconds here; the Python API takes milliseconds (BullMQ's unit).
    ``remove_on_complete`` / ``remove_on_fail``: True removes the job as soon as it finishes,
    an int N keeps only the newest N of that state, False/None follow the queue's retention.
    """

    priority: int | None = None
    delay: float | None = None
    attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    job_id: str | None = None
    remove_on_complete: bool | int | None = None
    remove_on_fail: bool | int | None = None


@dataclass(frozen=True)
class Job:
    id: str
    queue: str
    name: str
    data: Any
    state: str
    priority: int
    delay: float  # seconds it was delayed by at enqueue
    attempts: int  # total runs allowed
    attempts_made: int  # runs that ended in failure or success
    stalls: int
    created_at: float  # epoch seconds (server clock)
    processed_at: float | None
    finished_at: float | None
    result: Any = None
    error: str | None = None
    stacktrace: str | None = None
    progress: Any = None
    opts: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `cortexflow job --json` output)."""
        return {
            "id": self.id,
            "queue": self.queue,
            "name": self.name,
            "state": self.state,
            "data": self.data,
            "priority": self.priority,
            "delay": self.delay,
            "attempts": self.attempts,
            "attemptsMade": self.attempts_made,
            "stalls": self.stalls,
            "createdAt": self.created_at,
            "processedAt": self.processed_at,
            "finishedAt": self.finished_at,
            "result": self.result,
            "error": self.error,
            "stacktrace": self.stacktrace,
            "progress": self.progress,
            "opts": dict(self.opts),
        }

    @classmethod
    def from_hash(cls, queue: str, h: Mapping[Any, Any]) -> Job:
        def s(key: str) -> str | None:
            v = h.get(key.encode())
            return v.decode() if v is not None else None

        def num(key: str) -> float | None:
            v = s(key)
            return float(v) / 1000.0 if v not in (None, "") else None

        def js(key: str) -> Any:
            v = s(key)
            return json.loads(v) if v not in (None, "") else None

        opts = js("opts") or {}
        return cls(
            id=s("id") or "",
            queue=queue,
            name=s("name") or "",
            data=js("data"),
            state=s("state") or "unknown",
            priority=int(s("priority") or 0),
            delay=float(s("delay") or 0) / 1000.0,
            attempts=int(opts.get("attempts", 1)),
            attempts_made=int(s("attempts_made") or 0),
            stalls=int(s("stalls") or 0),
            created_at=num("created_at") or 0.0,
            processed_at=num("processed_at"),
            finished_at=num("finished_at"),
            result=js("result"),
            error=s("error"),
            stacktrace=s("stacktrace"),
            progress=js("progress"),
            opts=opts,
        )
