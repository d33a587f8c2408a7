"""The resolved configuration: frozen dataclasses built by the loader after validation.

Durations are seconds (float). Every default here equals the one in
``schemas/queues.schema.json``; a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_PREFIX = "cortexflow"


@dataclass(frozen=True)
class RateLimit:
    """At most ``max`` jobs started per ``duration`` seconds, across all workers of all hosts."""

    max: int
    duration: float


@dataclass(frozen=True)
class GroupConfig:
    """`group:` of a queue (docs/groups.md): jobs with the same group key run at most
    ``concurrency`` at once across all workers, in the order they were added (``strict``: a
    failed job waiting for its retry holds its group), and groups take turns."""

    # JSON pointers into a job's data whose values make its group key (none: only jobs given
    # an explicit group are grouped).
    key: tuple[str, ...] = ()
    concurrency: int = 1
    rate_limit: RateLimit | None = None  # per group
    order: Literal["strict", "relaxed"] = "strict"


@dataclass(frozen=True)
class Backoff:
    type: Literal["fixed", "exponential"] = "exponential"
    delay: float = 1.0
    max: float = 600.0
    jitter: float = 0.0


@dataclass(frozen=True)
class RetentionRule:
    """Keep finished jobs at most ``age`` seconds and at most the newest ``count``.

    ``None`` means no limit on that axis; ``keep=False`` means remove at once.
    """

    age: float | None
    count: int | None
    keep: bool = True


@dataclass(frozen=True)
class Retention:
    completed: RetentionRule = RetentionRule(age=3600.0, count=1000)
    failed: RetentionRule = RetentionRule(age=7 * 86400.0, count=10000)


@dataclass(frozen=True)
class Join:
    """A fan-out's join: one job on ``to`` once every child ended (docs/pipelines.md)."""

    to: str
    name: str
    on_child_failure: Literal["collect", "fail"] = "collect"
    id: tuple[str, ...] | None = None  # id parts (as Route.id), evaluated on the parent's result


@dataclass(frozen=True)
class Route:
    """One entry of a queue's ``next:``: a job added to ``to`` when a job of the queue ends."""

    to: str
    name: str
    data: str = ""  # JSON pointer into the document (result, item of for_each, failure)
    when: Mapping[str, Any] | None = field(default=None, hash=False)  # {path, equals|in|exists}
    for_each: str | None = None  # JSON pointer to a list in the result
    id: tuple[str, ...] | None = None  # parts: "/pointer", "$id", literal; None: the default id
    priority: int | None = None
    delay: float = 0.0  # seconds
    on: Literal["completed", "failed"] = "completed"
    join: Join | None = None
    allow_cycle: bool = False


@dataclass(frozen=True)
class QueueConfig:
    name: str
    handler: str  # "" when the queue runs taskiq tasks (``tasks``)
    concurrency: int = 10
    processes: int = 1  # `processes: auto` is resolved to this host's CPU count when loaded
    processes_auto: bool = field(default=False, compare=False)  # it was written `auto`
    # The worker process this queue shares with the queues of the same name (None: its own,
    # named after the queue; see ``process_name``).
    process: str | None = None
    priority: int = 0
    rate_limit: RateLimit | None = None
    attempts: int = 3
    backoff: Backoff = Backoff()
    timeout: float = 300.0
    retention: Retention = Retention()
    payload_schema: Path | None = None
    # The parsed JSON Schema document of payload_schema (validated by the loader).
    payload_schema_doc: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    dead_letter: str | None = None
    lease: float = 30.0
    max_stalls: int = 1  # BullMQ's maxStalledCount: recoveries before a stall fails the job
    # At most this many jobs of the queue run at once across all workers (None: no cap).
    global_concurrency: int | None = None
    group: GroupConfig | None = None  # None: the queue has no groups
    # Where handlers run: "none" in the worker process, "process" in child processes of it.
    isolation: Literal["none", "process"] = "none"
    max_jobs_per_child: int | None = None
    max_memory_per_child: int | None = None  # bytes
    # Free-form settings for the handler (`job.settings`); the schema default is {}.
    settings: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # "package.module:broker": the queue runs that taskiq broker's tasks labelled with this
    # queue (cortexflow.taskiq) instead of a ``handler``.
    tasks: str | None = None
    # `next:` routes (docs/pipelines.md); () for a queue that hands nothing off.
    routes: tuple[Route, ...] = field(default=(), hash=False)

    @property
    def process_name(self) -> str:
        """The worker process this queue runs in: ``process``, else the queue's own name."""
        return self.process or self.name


@dataclass(frozen=True)
class RedisConfig:
    # None: no URL configured anywhere -> the embedded server (docs/supervisor.md).
    url: str | None = None
    prefix: str = DEFAULT_PREFIX
    # An add returns only once the server has written it to its append-only file (WAITAOF).
    durable_adds: bool = False
    # Start even when the server's maxmemory-policy may delete keys (jobs) when it is full.
    allow_eviction: bool = False


@dataclass(frozen=True)
class RestartPolicy:
    limit: int = 10  # more than `limit` restarts within `window` -> FATAL
    window: float = 600.0
    backoff_max: float = 60.0
    stable_after: float = 120.0  # backoff resets after this long up


@dataclass(frozen=True)
class ScheduleOpts:
    """Options of a scheduled job over its queue's settings (None: the queue's value)."""

    priority: int | None = None
    attempts: int | None = None
    timeout: float | None = None
    remove_on_complete: bool | int | None = None
    remove_on_fail: bool | int | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """A job added to ``queue`` at each tick of ``cron`` or ``every`` (exactly one is set)."""

    name: str
    queue: str
    cron: str | None = None
    every: float | None = None  # seconds
    timezone: str = "UTC"
    job_name: str = ""  # "" until built: the schedule's name
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)
    opts: ScheduleOpts = ScheduleOpts()
    start_at: float | None = None  # epoch seconds
    catch_up: Literal["none", "one", "all"] = "one"


@dataclass(frozen=True)
class DashboardConfig:
    """`dashboard:` in queues.yaml: `cortexflow up` also runs `cortexflow dashboard`."""

    host: str = "127.0.0.1"
    port: int = 8000
    metrics_public: bool = False
    max_streams: int = 50  # SSE streams open at once (dashboard/sse.py MAX_STREAMS)


@dataclass(frozen=True)
class LoggingConfig:
    """`logging:` in queues.yaml: how `up`, `worker` and `dashboard` write their logs (their
    --log-format flag wins; cortexflow/logs.py)."""

    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class Config:
    path: Path
    queues: Mapping[str, QueueConfig]
    redis: RedisConfig = RedisConfig()
    version: int = 1
    stop_timeout: float = 30.0
    restart: RestartPolicy = RestartPolicy()
    schedules: Mapping[str, ScheduleConfig] = field(default_factory=dict, hash=False)
    dashboard: DashboardConfig | None = None  # None: `up` runs no dashboard
    logging: LoggingConfig = LoggingConfig()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def process_groups(self) -> dict[str, tuple[str, ...]]:
        """Worker process name -> the queues it runs, in the order of queues.yaml."""
        groups: dict[str, list[str]] = {}
        for name, q in self.queues.items():
            groups.setdefault(q.process_name, []).append(name)
        return {process: tuple(names) for process, names in groups.items()}

    def queue(self, name: str) -> QueueConfig:
        """Return the queue's config; UsageError naming the known queues if it is not declared."""
        try:
            return self.queues[name]
        except KeyError:
            from cortexflow.errors import UsageError  # here: on the add path, imports cost

            known = ", ".join(sorted(self.queues)) or "(none)"
            raise UsageError(
                f"unknown queue {name!r}; queues declared in {self.path.name}: {known}"
            ) from None
