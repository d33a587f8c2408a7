"""A job as callers see it, and the per-job options they may give."""

from __future__ import annotations

import functools
import json
import os
import string
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from cortexflow.config.model import Backoff, QueueConfig

MAX_PRIORITY = 1_000_000


_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def new_job_id() -> str:
    """A fresh random job id: 128 random bits as 22 base-62 characters (letters and digits, so
    it never starts with '-' on a command line). The client makes it, so a retried add stays
    idempotent (add.lua leaves an id that exists alone)."""
    n = int.from_bytes(os.urandom(16), "big")
    out = []
    for _ in range(22):
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(out)


def backoff_dict(b: Backoff) -> dict[str, Any]:
    return {"type": b.type, "delay": b.delay, "max": b.max, "jitter": b.jitter}


@functools.lru_cache(maxsize=64)
def queue_options(queue: QueueConfig) -> dict[str, Any]:
    """The options of a job that sets none of its own: the queue's current settings.

    A job hash stores only the options the job set (``opts``, often absent); every reader
    completes them from this. The dict is shared: read it, never change it."""
    return {
        "attempts": queue.attempts,
        "backoff": backoff_dict(queue.backoff),
        "timeout": queue.timeout,
        "remove_on_complete": None,
        "remove_on_fail": None,
    }


def merged_options(stored: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """A job's complete options: ``stored`` (its own, parsed JSON or None) over ``defaults``.
    No options of its own costs nothing: ``defaults`` itself comes back (shared, read-only).
    Raises TypeError for stored options that are not a JSON object."""
    if stored is None:
        return defaults
    if type(stored) is not dict:
        raise TypeError("opts must be a JSON object")
    return {**defaults, **stored}


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
    group: str | None = None  # the job's group, over the one its data names (docs/groups.md)


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
    # Runs started (the hash's `deliveries`: every lease, the current one included). Unlike
    # attempts_made it also counts runs that never finished (a stall, a stopping worker giving
    # the job back) and is not reset by a retry: BullMQ's attemptsStarted.
    started: int = 0
    # Pipelines (docs/pipelines.md): the job that added this one through a `next:` route
    # (queue, id), the jobs this one's routes added (the first 100 of them as (queue, id), and
    # how many in all), and the join of a fan-out this job is a child of.
    parent: tuple[str, str] | None = None
    children: tuple[tuple[str, str], ...] = ()
    children_total: int = 0
    join: str | None = None
    group: str | None = None  # its group (docs/groups.md); None: not in one

    @property
    def error_is_history(self) -> bool:
        """True when ``error`` (and ``stacktrace``) are those of an earlier failed run of a job
        that then completed: kept as history, not why the job is where it is."""
        return self.state == "completed" and self.error is not None

    @property
    def current_error(self) -> str | None:
        """The error that explains the job's state (a failed job, or one waiting for or
        running its retry); None for a completed job (its ``error`` is history)."""
        return None if self.error_is_history else self.error

    @property
    def tries(self) -> int:
        """Attempts made, the running one counted for an active job: the TRIES a list shows
        (an active job on its first run is at try 1, not 0)."""
        return self.attempts_made + (1 if self.state == "active" else 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `cortexflow job --json` output). ``error``/``stacktrace`` are
        the job's own (null once it completed); ``lastError``/``lastStacktrace`` those of its
        latest failed run whatever its state."""
        history = self.error_is_history
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
            "attemptsStarted": self.started,
            "stalls": self.stalls,
            "createdAt": self.created_at,
            "processedAt": self.processed_at,
            "finishedAt": self.finished_at,
            "result": self.result,
            "error": None if history else self.error,
            "stacktrace": None if history else self.stacktrace,
            "progress": self.progress,
            "opts": dict(self.opts),
            "lastError": self.error,
            "lastStacktrace": self.stacktrace,
            "parent": None
            if self.parent is None
            else {"queue": self.parent[0], "id": self.parent[1]},
            "children": [{"queue": q, "id": i} for q, i in self.children],
            "childrenTotal": self.children_total,
            "join": self.join,
            "group": self.group,
        }

    @classmethod
    def from_hash(cls, queue: QueueConfig, job_id: str, h: Mapping[Any, Any]) -> Job:
        """The job stored in hash ``h`` under ``job_id``. Fields the hash leaves out (counters
        still 0, no priority, no delay, no options of its own) read as their defaults; the
        options come out complete, from the queue's settings where the job set none."""

        def s(key: str) -> str | None:
            v = h.get(key.encode())
            return v.decode() if v is not None else None

        def num(key: str) -> float | None:
            v = s(key)
            return float(v) / 1000.0 if v not in (None, "") else None

        def js(key: str) -> Any:
            v = s(key)
            return json.loads(v) if v not in (None, "") else None

        stored = js("opts")
        # A copy the caller owns (the queue's dict is shared, its backoff dict too).
        opts = {**queue_options(queue), **(stored if isinstance(stored, dict) else {})}
        if isinstance(opts.get("backoff"), dict):
            opts["backoff"] = dict(opts["backoff"])
        return cls(
            id=job_id,
            queue=queue.name,
            name=s("name") or "",
            data=js("data"),
            state=s("state") or "unknown",
            priority=int(s("priority") or 0),
            delay=float(s("delay") or 0) / 1000.0,
            attempts=int(opts.get("attempts", 1)),
            attempts_made=int(s("attempts_made") or 0),
            started=int(s("deliveries") or 0),
            stalls=int(s("stalls") or 0),
            created_at=num("created_at") or 0.0,
            processed_at=num("processed_at"),
            finished_at=num("finished_at"),
            result=js("result"),
            error=s("error"),
            stacktrace=s("stacktrace"),
            progress=js("progress"),
            opts=opts,
            **_lineage(js("parent"), js("children"), s("join")),
            group=s("group"),
        )


# The fields of a Job that have a default, for leased_job. (opts, the one default_factory, is
# always given there.)
_JOB_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Job) if f.default is not MISSING}


def leased_job(values: dict[str, Any]) -> Job:
    """``Job(**values)`` for the worker's hot path (one per leased job): a frozen dataclass's
    ``__init__`` sets each of Job's 25 fields through ``object.__setattr__`` (~2.8 us a job on
    the development machine); this fills the instance's ``__dict__`` at once (~0.3 us). The
    caller gives every field without a default, and ``opts``; the result equals ``Job(**values)``
    (tests/unit/test_jobs.py)."""
    job = object.__new__(Job)
    d = job.__dict__
    d.update(_JOB_DEFAULTS)
    d.update(values)
    return job


def _lineage(parent: Any, children: Any, join: str | None) -> dict[str, Any]:
    """Job's pipeline fields from the hash's `parent`, `children` and `join` (tolerant of a
    value another client broke: it reads as absent)."""
    out: dict[str, Any] = {"join": join}
    if isinstance(parent, list) and len(parent) == 2:
        out["parent"] = (str(parent[0]), str(parent[1]))
    if isinstance(children, dict):
        ids = children.get("ids")
        if isinstance(ids, list):
            out["children"] = tuple(
                (str(c[0]), str(c[1])) for c in ids if isinstance(c, list) and len(c) == 2
            )
        n = children.get("n")
        out["children_total"] = n if isinstance(n, int) else len(out.get("children", ()))
    return out
