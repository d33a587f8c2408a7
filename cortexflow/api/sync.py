"""SyncQueueManager: QueueManager for code that has no event loop (scripts, Django views, ...).

The manager owns one event loop, run by one daemon thread it starts on first use. Every call,
from any thread, is submitted to that loop (``asyncio.run_coroutine_threadsafe``) and waits for
its result, so one manager can be shared by all the threads of a WSGI app: the calls run
concurrently on the loop, over the pooled connections of the one Redis client the wrapped
QueueManager holds (a connection per call in flight, reused afterwards; never a connect per
call).

After a fork (a pre-forking web server that imported the app first), the child starts its own
loop thread and connections on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack

from cortexflow.api.manager import QueueManager
from cortexflow.api.resolve import ConfigSource
from cortexflow.engine.options import AddOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import UsageError

T = TypeVar("T")


class _LoopThread:
    """One event loop running forever in one daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="cortexflow-sync-manager", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


def _stop(loop: _LoopThread) -> None:  # a finalizer: must not hold the manager
    loop.stop()


class SyncQueueManager:
    """The same methods as QueueManager, blocking, safe to share between threads.

    Make one for the life of the process (e.g. at module level of a Django app) and use it from
    every thread; ``close()`` it (or use ``with``) when done. Each call blocks its thread until
    the result is there; calls from several threads run at the same time.
    """

    def __init__(self, config: ConfigSource = None, redis_url: str | None = None) -> None:
        self._args = (config, redis_url)
        self.manager = QueueManager(config, redis_url)
        self._lock = threading.Lock()
        self._loop: _LoopThread | None = None
        self._pid = os.getpid()
        self._closed = False

    def _loop_thread(self) -> _LoopThread:
        with self._lock:
            if self._closed:
                raise UsageError("this SyncQueueManager is closed")
            if self._pid != os.getpid():
                # A forked child (gunicorn --preload, uWSGI, multiprocessing): the loop thread
                # did not survive the fork and the connections are the parent's. Start afresh;
                # the parent's objects are left alone (closing them would close its sockets).
                self._pid = os.getpid()
                self._loop = None
                self.manager = QueueManager(*self._args)
            if self._loop is None:
                self._loop = _LoopThread()
                weakref.finalize(self, _stop, self._loop)
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine (e.g. of ``get_queue(...)``) on this manager's loop; blocks until
        it is done and returns its result (or raises its exception)."""
        return self._call(lambda _: coro, coro)

    def _call(
        self,
        make: Callable[[QueueManager], Coroutine[Any, Any, T]],
        made: Coroutine[Any, Any, Any] | None = None,
    ) -> T:
        """``make(manager)`` run on the loop; the coroutine is made after the loop thread is
        known, so after a fork it uses the child's manager, not the parent's."""
        try:
            lt = self._loop_thread()
            if threading.current_thread() is lt.thread:
                raise UsageError(
                    "SyncQueueManager called from its own event loop (it would wait for "
                    "itself); use the async QueueManager (`manager.manager`) there"
                )
        except BaseException:
            if made is not None:
                made.close()
            raise
        return asyncio.run_coroutine_threadsafe(make(self.manager), lt.loop).result()

    def get_queue(self, queue: str) -> QueueEngine:
        """The async engine of ``queue``; drive it with ``run()``: ``mgr.run(q.get_job(id))``.

        Also callable inside a coroutine that ``run()`` runs (it then answers at once)."""
        if threading.current_thread() is self._loop_thread().thread:
            return self.manager.get_queue(queue)

        async def engine(manager: QueueManager) -> QueueEngine:
            return manager.get_queue(queue)

        return self._call(engine)

    def add_job(
        self,
        queue: str,
        name: str,
        data: Any,
        **options: Unpack[AddOptions],
    ) -> str:
        """Add one job; returns its id (options as QueueManager.add_job: ``delay`` in ms)."""
        return self._call(lambda m: m.add_job(queue, name, data, **options))

    def add_bulk(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        return self._call(lambda m: m.add_bulk(queue, jobs))

    def get_queue_stats(self, queue: str) -> dict[str, Any]:
        return self._call(lambda m: m.get_queue_stats(queue))

    def get_all_queue_stats(self, queues: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return self._call(lambda m: m.get_all_queue_stats(queues))

    def health_check(self, require_workers: bool = False) -> dict[str, Any]:
        return self._call(lambda m: m.health_check(require_workers=require_workers))

    def pause_queue(self, queue: str) -> None:
        self._call(lambda m: m.pause_queue(queue))

    def resume_queue(self, queue: str) -> None:
        self._call(lambda m: m.resume_queue(queue))

    def pause_group(self, queue: str, group: str, paused: bool = True) -> bool:
        return self._call(lambda m: m.pause_group(queue, group, paused))

    def resume_group(self, queue: str, group: str) -> bool:
        return self._call(lambda m: m.resume_group(queue, group))

    def get_group_stats(self, queue: str, limit: int = 20) -> dict[str, Any]:
        return self._call(lambda m: m.get_group_stats(queue, limit))

    def clean_queue(
        self, queue: str, grace_ms: float = 3_600_000, limit: int = 100, state: str = "completed"
    ) -> list[str]:
        return self._call(lambda m: m.clean_queue(queue, grace_ms, limit, state))

    def drain_queue(self, queue: str, delayed: bool = False) -> int:
        return self._call(lambda m: m.drain_queue(queue, delayed))

    def upsert_schedule(self, name: str, *, queue: str, **rule: Any) -> None:
        """As QueueManager.upsert_schedule (cron= or every=, timezone, data, ...)."""
        self._call(lambda m: m.upsert_schedule(name, queue=queue, **rule))

    def remove_schedule(self, name: str) -> bool:
        return self._call(lambda m: m.remove_schedule(name))

    def list_schedules(self) -> list[dict[str, Any]]:
        return self._call(lambda m: m.list_schedules())

    def trigger_schedule(self, name: str) -> str:
        return self._call(lambda m: m.trigger_schedule(name))

    def close(self) -> None:
        """Close the connections and stop the loop thread; later calls raise UsageError.

        Calls still running in other threads finish first only if they were submitted before;
        close once the threads that use the manager are done (e.g. at process exit).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lt, self._loop = self._loop, None
        if lt is None or self._pid != os.getpid():
            return  # never used here (in a forked child: the parent's, not ours to close)
        try:
            asyncio.run_coroutine_threadsafe(self.manager.close(), lt.loop).result(30)
        finally:
            lt.stop()

    def __enter__(self) -> SyncQueueManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
