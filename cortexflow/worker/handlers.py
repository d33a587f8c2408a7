"""Turn a queue's ``handler`` import path into one async callable ``run(data, job)``.

A handler is ``f(data)`` or ``f(data, job)``, async or sync (sync ones run in a thread pool), or
a class with an async ``process(self, job)`` (BaseWorker subclasses, docs/api.md).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from cortexflow.config.importer import ImportFromStringError, resolve_handler
from cortexflow.errors import CortexflowError
from cortexflow.worker.context import JobContext

Runner = Callable[[Any, JobContext], Awaitable[Any]]


class HandlerImportError(CortexflowError):
    """The handler could not be imported or is not something cortexflow can call."""


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

        async def run_worker_class(data: Any, job: JobContext) -> Any:
            out = bound(job)
            return await out if inspect.isawaitable(out) else out

        return run_worker_class
    if not callable(obj):
        raise HandlerImportError(f"handler {obj!r} is not callable")
    wants_job = _takes_two(obj)
    if inspect.iscoroutinefunction(obj):
        # Always wrapped: taskiq reads the type hints of what it runs, and a user's
        # annotations may not resolve outside their module.
        async def run_async(data: Any, job: JobContext) -> Any:
            return await (obj(data, job) if wants_job else obj(data))

        return run_async

    async def run_sync(data: Any, job: JobContext) -> Any:
        call = functools.partial(obj, data, job) if wants_job else functools.partial(obj, data)
        out = await asyncio.get_running_loop().run_in_executor(executor, call)
        return await out if inspect.isawaitable(out) else out

    return run_sync


def _takes_two(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
