"""``WorkerGroup``: the queues of one worker process (``process:`` in queues.yaml) in one event
loop, over one connection pool and one lease thread.

Each queue is a QueueWorker of its own: its own slots (concurrency), fetch connections, rate
limit, timeouts, retries and dead letter, so a flood on one queue never takes another's slots.
Each queue's tasks run in a context marked with its queue (cortexflow.logs.set_queue), so every
log record they write names their queue. A process of one queue is a group of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable

from cortexflow.config.model import Config
from cortexflow.engine.connection import connect
from cortexflow.logs import set_queue
from cortexflow.worker.leases import LeaseThread
from cortexflow.worker.queue_worker import QueueWorker, SharedParts


class WorkerGroup:
    """Runs ``queues`` in the running event loop until ``stop()``."""

    def __init__(
        self,
        config: Config,
        queues: tuple[str, ...],
        redis_url: str,
        *,
        replica: int = 0,
        exit_on_hang: bool = True,
    ) -> None:
        self.config = config
        self.names = queues
        self.redis_url = redis_url
        self.replica = replica
        self._exit_on_hang = exit_on_hang
        self.workers: list[QueueWorker] = []
        self._shared: SharedParts | None = None
        self._on_give_up: Callable[[], None] | None = None

    async def start(self) -> None:
        """Start every queue, one after the other (the first fetch of each ran); a queue that
        cannot start stops the ones started before it and raises what it raised."""
        self._shared = SharedParts(
            client=connect(self.redis_url), leases=LeaseThread("cortexflow-leases")
        )
        try:
            for name in self.names:
                worker = QueueWorker(
                    self.config,
                    name,
                    self.redis_url,
                    replica=self.replica,
                    exit_on_hang=self._exit_on_hang,
                    shared=self._shared,
                )
                worker.process_queues = self.names
                self.workers.append(worker)
                context = contextvars.copy_context()
                context.run(set_queue, name)
                # Every task the worker creates inherits this context: its records name it.
                await asyncio.create_task(worker.start(), context=context)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.abort()
            raise

    @property
    def on_give_up(self) -> Callable[[], None] | None:
        return self._on_give_up

    @on_give_up.setter
    def on_give_up(self, callback: Callable[[], None] | None) -> None:
        """Called once a queue decided to drain and exit: the whole process stops, as for
        SIGTERM (every queue drains), and `up` starts a new one."""
        self._on_give_up = callback
        for worker in self.workers:
            worker.on_give_up = callback

    @property
    def gave_up(self) -> bool:
        return any(w.gave_up for w in self.workers)

    @property
    def failed(self) -> bool:
        return any(w.failed for w in self.workers)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop fetching on every queue at once; each drains within ``timeout``."""
        try:
            await asyncio.gather(*(w.stop(timeout) for w in self.workers))
        finally:
            await self._close()

    async def abort(self) -> None:
        try:
            await asyncio.gather(*(w.abort() for w in self.workers), return_exceptions=True)
        finally:
            await self._close()

    async def _close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            with contextlib.suppress(Exception):
                await shared.client.aclose()

    def concurrency(self) -> str:
        """``notifications=5 analytics=10``: what the ready line says."""
        return " ".join(f"{w.queue.name}={w.queue.concurrency}" for w in self.workers)
