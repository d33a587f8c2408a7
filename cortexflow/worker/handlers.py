"""Turn a queue's ``handler`` import path into one async callable ``run(data, job)``.

A handler is ``f(data)`` or ``f(data, job)``, async or sync (sync ones run in a thread pool), or
a class with an async ``process(self, job)`` (BaseWorker subclasses, docs/api.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from cortexflow.config.importer import ImportFromStringError, resolve_handler, takes_job
from cortexflow.errors import CortexflowError
from cortexflow.worker.context import JobContext
from cortexflow.worker.threads import HandlerThreads


class Run:
    """One run of a handler, as the broker needs to know it when the worker stops.

    A sync handler's thread cannot be stopped, so a job whose handler runs (or may still start)
    in a thread is never given back: it would run twice. ``withdraw()`` settles the race with
    a thread about to start: afterwards the handler either is running (``in_thread``) or will
    never start."""

    __slots__ = ("_lock", "abandoned", "in_thread", "start_clock", "withdrawn")

    def __init__(self) -> None:
        self.in_thread = False
        self.withdrawn = False
        self.abandoned = False  # past its timeout: its thread no longer counts (threads.py)
        self._lock: threading.Lock | None = None
        # Starts the run's timeout, for a runner that first waits for somewhere to run the
        # handler (a child process being started; see ``starts_clock``): it calls this once the
        # handler really starts, so the wait is not the handler's time. None: the clock started
        # with the run, or the job has no timeout.
        self.start_clock: Callable[[], None] | None = None

    def _enter(self) -> bool:
        """In the thread, before the handler: False if the run was withdrawn."""
        assert self._lock is not None
        with self._lock:
            if self.withdrawn:
                return False
            self.in_thread = True
            return True

    def withdraw(self) -> bool:
        """True if the handler is not running and now never will: the job may be given back."""
        if self._lock is None:  # not a thread run
            return True
        with self._lock:
            if not self.in_thread:
                self.withdrawn = True
            return self.withdrawn


Runner = Callable[[Any, JobContext, Run], Awaitable[Any]]


def starts_clock(runner: Runner) -> bool:
    """True for a runner that starts its runs' timeouts itself (``Run.start_clock``)."""
    return bool(getattr(runner, "starts_clock", False))


class HandlerImportError(CortexflowError):
    """The handler could not be imported or is not something cortexflow can call."""


class Requeue(Exception):
    """``Context.requeue()`` in a taskiq task (worker/tasks.py), in the worker or in a child
    process of ``isolation: process``: the job goes back to waiting, no attempt counted."""


def load_handler(spec: str, base_dir: Path | None = None) -> Any:
    """Import the queue's handler through the one importer; HandlerImportError on failure."""
    try:
        return resolve_handler(spec, search_path=base_dir)
    except ImportFromStringError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        raise HandlerImportError(f"handler {spec!r}: {exc}{hint}") from exc


def build_runner(obj: Any, executor: Executor) -> Runner:
    """Wrap the imported handler as ``async run(data, job)``."""
    if inspect.isclass(obj):
        process = getattr(obj, "process", None)
        if process is None:
            raise HandlerImportError(f"{obj.__name__} has no process(self, job) method")
        try:
            instance: Any = obj()
        except Exception as exc:
            raise HandlerImportError(f"{obj.__name__}() raised: {exc!r}") from exc
        bound = instance.process

        async def run_worker_class(data: Any, job: JobContext, run: Run) -> Any:
            out = bound(job)
            return await out if inspect.isawaitable(out) else out

        return run_worker_class
    if not callable(obj):
        raise HandlerImportError(f"handler {obj!r} is not callable")
    wants_job = takes_job(obj)  # the rule `validate` checks the handler by
    if inspect.iscoroutinefunction(obj):
        # Always wrapped: taskiq reads the type hints of what it runs, and a user's
        # annotations may not resolve outside their module.
        async def run_async(data: Any, job: JobContext, run: Run) -> Any:
            return await (obj(data, job) if wants_job else obj(data))

        return run_async

    return sync_runner(obj, wants_job, executor)


def sync_runner(obj: Callable[..., Any], wants_job: bool, executor: Executor) -> Runner:
    """A sync handler runs in a thread of ``executor`` (HandlerThreads in a worker)."""

    async def run_sync(data: Any, job: JobContext, run: Run) -> Any:
        call = functools.partial(obj, data, job) if wants_job else functools.partial(obj, data)
        context = contextvars.copy_context()  # the run's job id (logs) reaches its thread

        def in_thread() -> Any:
            if not run._enter():
                raise asyncio.CancelledError
            try:
                return context.run(call)
            finally:
                with run._lock:  # type: ignore[union-attr]
                    run.in_thread = False
                    returned = run.abandoned
                if returned and isinstance(executor, HandlerThreads):
                    executor.returned()

        run._lock = threading.Lock()
        try:
            out = await asyncio.get_running_loop().run_in_executor(executor, in_thread)
        except BaseException:
            # Timed out (or stopped) while the handler runs on in its thread: let the thread
            # go; the run's slot is free and another thread serves the next job.
            with run._lock:
                stuck = run.abandoned = run.in_thread
            if stuck and isinstance(executor, HandlerThreads):
                executor.abandon()
            raise
        return await out if inspect.isawaitable(out) else out

    return run_sync
