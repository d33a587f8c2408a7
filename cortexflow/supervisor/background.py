"""The supervisor's own background tasks (status publisher, scheduler): never silently gone.

Each is built from a factory; the reconcile loop calls ``check()`` every tick, and a task that
ended while the supervisor is not stopping is logged with its cause and started again (at most
once per RESTART_EVERY seconds, so a task that dies at once cannot spin).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cortexflow.supervisor.logmux import LogSink

RESTART_EVERY = 2.0  # seconds between two restarts of the same task
FINISH_WAIT = 10.0  # seconds a task asked to end may take before it is cancelled

Factory = Callable[[], Coroutine[Any, Any, None]]


class Background:
    """Named long-lived tasks of the supervisor, restarted when they end on their own."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink
        self._factories: dict[str, Factory] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._restarted: dict[str, float] = {}

    def start(self, name: str, factory: Factory) -> None:
        self._factories[name] = factory
        self._tasks[name] = asyncio.create_task(factory(), name=name)

    def check(self, now: float | None = None) -> None:
        """Restart each task that ended (logging why); call it while not stopping."""
        now = time.monotonic() if now is None else now
        for name, task in list(self._tasks.items()):
            if not task.done() or now - self._restarted.get(name, -RESTART_EVERY) < RESTART_EVERY:
                continue
            self._sink.event(f"the {name} ended unexpectedly ({_cause(task)}); restarting it")
            self._restarted[name] = now
            self._tasks[name] = asyncio.create_task(self._factories[name](), name=name)

    async def finish(self, name: str) -> None:
        """Wait for ``name``, which was asked to end; a bug there must not stop the rest."""
        task = self._tasks.pop(name, None)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), FINISH_WAIT)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception as exc:
            self._sink.event(f"the {name} failed: {exc!r}")


def _cause(task: asyncio.Task[None]) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return repr(error) if error is not None else "it returned"
