"""QueueEvents: follow a queue's state changes (added, active, progress, completed, failed,
retried, stalled, removed, ...) as an async iterator.

    async with QueueEvents("notifications") as events:
        async for event in events:
            print(event.event, event.job_id)

Resumable: every event carries its stream id (``event.id``); ``QueueEvents(queue,
last_event_id=that_id)`` yields what came after it (as long as the stream, capped at about
5,000 entries per queue, still holds it). ``last_event_id="$"`` (the default) starts with what
happens next, ``"0"`` with the oldest event kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from cortexflow.api.manager import QueueManager
from cortexflow.api.resolve import ConfigSource
from cortexflow.engine import events as stream
from cortexflow.engine.events import Event

# Longest single blocking read (s): well inside the client's 30 s socket timeout.
BLOCK = 5.0


class QueueEvents:
    """Events of one queue. Pass ``manager`` to share a QueueManager's connection (it is not
    closed here); otherwise ``config`` / ``redis_url`` choose them as QueueManager does."""

    def __init__(
        self,
        queue: str,
        *,
        last_event_id: str = "$",
        config: ConfigSource = None,
        redis_url: str | None = None,
        manager: QueueManager | None = None,
    ) -> None:
        self._own = manager is None
        self.manager = manager if manager is not None else QueueManager(config, redis_url)
        self.queue = str(queue)
        self.last_event_id = last_event_id

    async def __aenter__(self) -> QueueEvents:
        await self.manager.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own:
            await self.manager.close()

    async def read(self, timeout: float | None = None) -> list[Event]:
        """The events after ``last_event_id`` (waiting up to ``timeout`` s for one; None: do
        not wait), advancing ``last_event_id`` past them."""
        self.manager.get_queue(self.queue)  # UsageError for an unknown queue
        client = await self.manager.redis_client()
        prefix = self.manager.config.redis.prefix
        if self.last_event_id == "$":
            # Pin "now" once, so events between two reads are never skipped.
            self.last_event_id = await stream.last_id(client, prefix, self.queue)
        with self.manager._errors():
            got = await stream.read(client, prefix, self.queue, self.last_event_id, timeout)
        if got:
            self.last_event_id = got[-1].id
        return got

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            for event in await self.read(BLOCK):
                yield event
