"""WorkerManager: run queues' workers inside your own asyncio application.

The in-process counterpart of ``cortexflow up``: one QueueWorker per queue, in this event
loop, no supervisor (so no restarts: a crash of your app stops them all).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from cortexflow.api.resolve import ConfigSource, load, open_endpoint
from cortexflow.engine.connection import connect, ping

if TYPE_CHECKING:
    from cortexflow.worker.queue_worker import QueueWorker


class WorkerManager:
    """Workers for every queue of ``config`` (or only ``queues``), started and stopped together."""

    def __init__(
        self,
        config: ConfigSource = None,
        redis_url: str | None = None,
        queues: Sequence[str] | None = None,
    ) -> None:
        self._source = config
        self._override = redis_url
        self._only = [str(q) for q in queues] if queues is not None else None
        self._stack = contextlib.ExitStack()
        self._workers: list[QueueWorker] = []
        self._running: list[str] = []

    @property
    def queues(self) -> list[str]:
        """Queues whose workers are running."""
        return list(self._running)

    async def start_all(self) -> None:
        """Start one worker per queue; returns once all of them are fetching jobs.

        ConfigError when queues.yaml or a handler is invalid, RedisUnavailableError when the
        server does not answer. If one worker fails to start, the started ones are stopped.
        """
        if self._workers:
            return
        from cortexflow.worker.queue_worker import QueueWorker

        config = load(self._source, check_imports=True)
        names = [config.queue(q).name for q in self._only] if self._only else list(config.queues)
        try:
            url = open_endpoint(self._stack, config, self._override)
            client = connect(url, retries=2)  # a wrong URL fails fast, with its name
            try:
                await ping(client, url)
            finally:
                await client.aclose()
            workers = [QueueWorker(config, name, url) for name in names]
            results = await asyncio.gather(*(w.start() for w in workers), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                await asyncio.gather(*(w.stop(0) for w in workers), return_exceptions=True)
                raise failed[0]
        except BaseException:
            self._stack.close()
            raise
        self._workers, self._running = workers, names

    async def stop_all(self, timeout: float | None = None) -> None:
        """Stop fetching, let running jobs finish within ``timeout`` seconds (None: the
        config's stop_timeout); jobs still running then go back to waiting."""
        workers, self._workers, self._running = self._workers, [], []
        try:
            results = await asyncio.gather(
                *(w.stop(timeout) for w in workers), return_exceptions=True
            )
        finally:
            self._stack.close()
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def __aenter__(self) -> WorkerManager:
        await self.start_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_all()
