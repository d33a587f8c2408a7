"""What a handler sees of its job: ``handler(data, job)``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Unpack

import redis.asyncio as aioredis

from cortexflow.engine.events import EVENTS_MAXLEN
from cortexflow.engine.options import AddOptions

# (queue, name, data, options) -> job id: how a handler adds follow-up jobs.
Enqueue = Callable[[str, str, Any, AddOptions], Awaitable[str]]

MAX_LOG_LINES = 1000


class JobContext:
    """The running job: ids and counters, plus progress and log lines stored with the job."""

    __slots__ = (
        "_client",
        "_enqueue",
        "_events",
        "_key",
        "attempt",
        "created_at",
        "data",
        "id",
        "name",
        "priority",
        "queue",
        "settings",
    )

    def __init__(
        self,
        client: aioredis.Redis,
        job_key: str,
        *,
        id: str,
        name: str,
        queue: str,
        attempt: int,
        priority: int,
        created_at: float,
        data: Any,
        enqueue: Enqueue | None = None,
        settings: Mapping[str, Any] | None = None,
        events_key: str | None = None,
    ) -> None:
        self._client = client
        self._events = events_key
        self._enqueue = enqueue
        self._key = job_key
        self.id = id
        self.name = name
        self.queue = queue
        self.attempt = attempt  # 1 for the first run
        self.priority = priority
        self.created_at = created_at
        self.data = data
        # The queue's `settings:` from queues.yaml: the handler's own configuration.
        self.settings: Mapping[str, Any] = settings if settings is not None else {}

    async def update_progress(self, progress: Any) -> None:
        """Store a JSON-serialisable progress value (a number, or an object) on the job, and
        append a ``progress`` event to the queue's stream in the same transaction."""
        text = json.dumps(progress)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, "progress", text)
            if self._events:
                entry = {"e": "progress", "id": self.id, "data": text}
                pipe.xadd(self._events, entry, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()

    async def log(self, line: str) -> None:
        """Append a line to the job's log (the newest MAX_LOG_LINES are kept)."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(self._key + ":logs", str(line))
            pipe.ltrim(self._key + ":logs", -MAX_LOG_LINES, -1)
            await pipe.execute()

    @property
    def redis(self) -> aioredis.Redis:
        """The worker's Redis client, for handlers that keep data of their own in Redis."""
        return self._client

    async def add_job(
        self,
        queue: str,
        name: str,
        data: Any,
        **options: Unpack[AddOptions],
    ) -> str:
        """Add a follow-up job to a queue of the same queues.yaml, with the options of
        QueueManager.add_job (``delay`` in ms). The payload schema of that queue applies.
        Returns the job id."""
        if self._enqueue is None:
            raise RuntimeError("this job context cannot add jobs")
        return await self._enqueue(queue, name, data, options)

    def __repr__(self) -> str:
        return f"<JobContext {self.queue}/{self.id} {self.name!r} attempt {self.attempt}>"
