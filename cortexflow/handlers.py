"""Turn a queue's ``handler`` import path into one async callable ``run(data, job)``.

A handler is ``f(data)`` or ``f(data, job)``, async or sync (sync ones run in a thread pool), or
a class with an async ``process(self, job)`` (the original service's BaseWorker subclasses).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from cortexflow.context import JobContext
from cortexflow.errors import CortexflowError

Runner = Callable[[Any, JobContext], Awaitable[Any]]


class HandlerImportError(CortexflowError):
    """The handler could not be imported or is not something cortexflow can call."""


def import_object(spec: str, base_dir: Path | None = None) -> Any:
    """Import ``package.module:attr``; HandlerImportError says which step went wrong."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerImportError(f"handler {spec!r} must look like 'package.module:function'")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise HandlerImportError(
                f"handler {spec!r}: module {exc.name!r} not found (is it on the path, next to "
                "queues.yaml or installed?)"
            ) from None
        raise HandlerImportError(
            f"handler {spec!r}: module {module_name!r} raised while importing: {exc!r}"
        ) from exc
    except BaseException as exc:  # any failure at import is the user's module's
        raise HandlerImportError(
            f"handler {spec!r}: module {module_name!r} raised while importing: {exc!r}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerImportError(
                f"handler {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


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
