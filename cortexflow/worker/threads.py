"""The threads sync handlers run in: a hung handler never starves the worker.

A Python thread cannot be stopped. When a sync handler runs past its timeout, its attempt fails
on time (the Receiver's timeout) and its slot is free again, but its thread runs on. With a
fixed pool of ``concurrency`` threads, two hung handlers would leave every later job waiting for
a thread until its own timeout, failing jobs that never ran a line. So these threads are not a
fixed pool: a timed-out run's thread is *abandoned* (it no longer counts), a new thread takes
its place, and idle threads are reused. Abandoned threads finish on their own if they ever
return. When more than ``max_abandoned`` are stuck at once the worker cannot trust itself any
more: ``on_too_many`` is called (the worker process drains and exits so the supervisor starts a
fresh one; `isolation: process` is the way to really stop a hung handler).

Threads are daemon threads, so a stuck one cannot keep the process from exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_IDLE_TIMEOUT = 60.0  # an idle thread exits after this long without work


class HandlerThreads(Executor):
    """An Executor of daemon threads that replaces abandoned ones (see the module doc)."""

    def __init__(
        self, name: str, max_abandoned: int, on_too_many: Callable[[int], None] | None = None
    ) -> None:
        self._name = name
        self.max_abandoned = max_abandoned
        self._on_too_many = on_too_many
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = 0
        self._threads = 0
        self.abandoned = 0
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("the handler threads are shut down")
            start = self._idle == 0
            if start:
                self._threads += 1
            else:
                self._idle -= 1
        self._work.put((future, lambda: fn(*args, **kwargs)))
        if start:
            threading.Thread(
                target=self._serve, name=f"{self._name}-{self._threads}", daemon=True
            ).start()
        return future

    def abandon(self) -> None:
        """The run in one thread passed its timeout: stop counting that thread."""
        with self._lock:
            self.abandoned += 1
            too_many = self.abandoned > self.max_abandoned
            n = self.abandoned
        if too_many and self._on_too_many is not None:
            self._on_too_many(n)

    def returned(self) -> None:
        """An abandoned run's thread returned after all."""
        with self._lock:
            self.abandoned -= 1

    def _serve(self) -> None:
        while True:
            try:
                item = self._work.get(timeout=_IDLE_TIMEOUT)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if item is None:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._work.put(None)
