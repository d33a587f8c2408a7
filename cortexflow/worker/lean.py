"""A worker process imports what it needs: taskiq without aiohttp; and once started, the
garbage collector no longer walks what start-up made (``freeze_startup_objects``).

``import taskiq`` imports ``taskiq.middlewares.taskiq_admin_middleware``, a middleware that
reports to taskiq's admin web API over aiohttp; cortexflow never uses it, yet aiohttp costs each
worker process ~9 MiB and a third of its import time. ``defer_admin_middleware()`` (called
before taskiq is first imported) puts a stand-in for that module in ``sys.modules``: its
``TaskiqAdminMiddleware`` imports the real module the first time anything uses it (calling it,
subclassing it, isinstance, any attribute), so code that does use it works as before.
"""

from __future__ import annotations

import gc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

NAME = "taskiq.middlewares.taskiq_admin_middleware"


def _real_module() -> types.ModuleType:
    """The real module, executed on first use (its parent package is imported by then)."""
    stub = sys.modules.get(NAME)
    cached: types.ModuleType | None = getattr(stub, "_real", None)
    if cached is not None:
        return cached
    parent = importlib.import_module("taskiq.middlewares")
    spec = importlib.machinery.PathFinder.find_spec(NAME, list(parent.__path__))
    if spec is None or spec.loader is None:  # pragma: no cover - taskiq is pinned
        raise ImportError(f"cannot find {NAME}")
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    if stub is not None:
        object.__setattr__(stub, "_real", real)
    return real


class _DeferredClass:
    """Stands for TaskiqAdminMiddleware until something uses it; then is it, in effect."""

    def _cls(self) -> Any:
        return _real_module().TaskiqAdminMiddleware

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._cls()(*args, **kwargs)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self._cls(),)  # `class Mine(TaskiqAdminMiddleware)` subclasses the real one

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self._cls())

    def __subclasscheck__(self, cls: Any) -> bool:
        return issubclass(cls, self._cls())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name not in ("__name__", "__qualname__"):
            raise AttributeError(name)  # copy, pickle and inspect probe the stand-in itself
        return getattr(self._cls(), name)

    def __repr__(self) -> str:
        return f"<deferred {NAME}.TaskiqAdminMiddleware>"


class _DeferredModule(types.ModuleType):
    _real: types.ModuleType | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # what the import system probes (__path__: a package?)
            raise AttributeError(name)
        return getattr(_real_module(), name)


def defer_admin_middleware() -> None:
    """Install the stand-in, unless taskiq (or the module) is imported already."""
    if "taskiq" in sys.modules or NAME in sys.modules:
        return
    stub = _DeferredModule(NAME)
    stub.TaskiqAdminMiddleware = _DeferredClass()  # type: ignore[attr-defined]
    stub.__all__ = ["TaskiqAdminMiddleware"]  # type: ignore[attr-defined]
    sys.modules[NAME] = stub


def freeze_startup_objects() -> None:
    """Move what start-up made (modules, classes, the handler's imports: hundreds of thousands
    of objects) out of the cyclic garbage collector's sight (``gc.freeze``), once, when the
    worker is ready. Each full collection would otherwise walk them all: with jobs running,
    that is a pause of the event loop of some 25 ms every few seconds, which a queue sharing the
    process saw as its pickup p99 (bench/shared_pickup.py: 29 ms beside a flooded queue, 5.5 ms
    with this). What runs afterwards is collected as usual."""
    gc.collect()
    gc.freeze()
