"""SyncQueueManager: QueueManager for code that has no event loop (scripts, Django views, ...).

It runs each call on a private event loop of its own, so it must not be used from inside a
running loop (use QueueManager there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

from cortexflow.api.manager import QueueManager
from cortexflow.api.resolve import ConfigSource
from cortexflow.engine.options import AddOptions
from cortexflow.engine.queue import QueueEngine


class SyncQueueManager:
    """The same methods as QueueManager, blocking. Close it (or use ``with``) when done."""

    def __init__(self, config: ConfigSource = None, redis_url: str | None = None) -> None:
        self._runner = asyncio.Runner()
        self.manager = QueueManager(config, redis_url)

    def get_queue(self, queue: str) -> QueueEngine:
        """The async engine of ``queue``; drive it with ``run()``: ``mgr.run(q.get_job(id))``."""
        return self.manager.get_queue(queue)

    def run(self, coro: Any) -> Any:
        """Run one coroutine (e.g. of ``get_queue(...)``) on this manager's loop."""
        return self._runner.run(coro)

    def add_job(
        self,
        queue: str,
        name: str,
        data: Any,
        **options: Unpack[AddOptions],
    ) -> str:
        """Add one job; returns its id (options as QueueManager.add_job: ``delay`` in ms)."""
        return self._runner.run(self.manager.add_job(queue, name, data, **options))

    def add_bulk(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        return self._runner.run(self.manager.add_bulk(queue, jobs))

    def get_queue_stats(self, queue: str) -> dict[str, Any]:
        return self._runner.run(self.manager.get_queue_stats(queue))

    def get_all_queue_stats(self, queues: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return self._runner.run(self.manager.get_all_queue_stats(queues))

    def health_check(self) -> dict[str, Any]:
        return self._runner.run(self.manager.health_check())

    def pause_queue(self, queue: str) -> None:
        self._runner.run(self.manager.pause_queue(queue))

    def resume_queue(self, queue: str) -> None:
        self._runner.run(self.manager.resume_queue(queue))

    def clean_queue(
        self, queue: str, grace_ms: float = 3_600_000, limit: int = 100, state: str = "completed"
    ) -> list[str]:
        return self._runner.run(self.manager.clean_queue(queue, grace_ms, limit, state))

    def drain_queue(self, queue: str, delayed: bool = False) -> int:
        return self._runner.run(self.manager.drain_queue(queue, delayed))

    def close(self) -> None:
        try:
            self._runner.run(self.manager.close())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncQueueManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
