"""Run a taskiq broker's tasks as a queue's jobs (``tasks:`` in queues.yaml, cortexflow.taskiq).

A job of such a queue is named after its task and carries what ``kiq()`` sent: ``{"args",
"kwargs"[, "labels", "labels_types"]}``. ``TaskRunner`` is the queue's Runner (handlers.py):
cortexflow leases, times out, retries and records the job as for any handler; the runner does
the part of taskiq's ``Receiver.callback`` that a task needs, in taskiq's order:

    pre_execute middlewares -> arguments parsed by their annotations (pydantic models) ->
    dependencies resolved (TaskiqDepends, Context, TaskiqState, the broker's overrides) ->
    the call -> dependencies closed -> on_error (failure) -> post_execute -> post_save

A task with no middleware, no dependency and arguments of plain JSON types takes a shorter path
(a dict lookup and the call), so a queue of plain tasks costs about what a handler costs.

What cortexflow does itself is refused where a broker asks for it (``refusals``): taskiq's retry
middlewares re-kick the task, where cortexflow retries with the queue's attempts and backoff.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import TypeAdapter, ValidationError
from taskiq import AsyncBroker, Context, TaskiqMiddleware
from taskiq_dependencies import DependencyGraph

from cortexflow.config.importer import ImportFromStringError
from cortexflow.config.model import QueueConfig
from cortexflow.config.tasks_check import import_broker
from cortexflow.worker.context import JobContext
from cortexflow.worker.handlers import HandlerImportError, Requeue, Runner, sync_runner

log = logging.getLogger("cortexflow.worker")

# The running job of this asyncio task: where ProgressTracker's progress goes (cortexflow.taskiq).
current_job: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "cortexflow_current_job", default=None
)

RETRY_MIDDLEWARES = ("SmartRetryMiddleware", "SimpleRetryMiddleware")
_JSON_TYPES = (int, float, str, bool, list, dict)


class JobTaskContext(Context):
    """taskiq's Context for a task run by cortexflow: ``requeue()`` gives the job back to its
    queue (the engine's release) instead of sending a copy of it."""

    async def requeue(self) -> None:
        raise Requeue


def refusals(broker: AsyncBroker) -> list[str]:
    """What cortexflow cannot honour on this broker, one sentence each (empty: none)."""
    found = []
    for middleware in broker.middlewares:
        kind = type(middleware).__name__
        if kind in RETRY_MIDDLEWARES:
            found.append(
                f"{kind} re-kicks failed tasks: use attempts/backoff in queues.yaml instead "
                "(cortexflow retries a failed task itself, with the queue's backoff)"
            )
    formatter = type(broker.formatter).__name__
    serializer = type(getattr(broker, "serializer", None)).__name__
    json_serializer = serializer in ("JSONSerializer", "ORJSONSerializer")
    if formatter not in ("TaskFormatter", "JSONFormatter", "ProxyFormatter") or not json_serializer:
        found.append(
            f"the broker's formatter ({formatter}, serializer {serializer}) is not JSON: "
            "cortexflow stores jobs as JSON only; remove with_formatter()/with_serializer()"
        )
    return found


def load_task_broker(queue: QueueConfig, base_dir: Path | None) -> AsyncBroker:
    """Import the queue's ``tasks:`` broker and check it; HandlerImportError if it cannot run."""
    assert queue.tasks is not None
    try:
        broker = import_broker(queue.tasks, base_dir)
    except ImportFromStringError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        raise HandlerImportError(f"tasks {queue.tasks!r}: {exc}{hint}") from exc
    if not isinstance(broker, AsyncBroker):
        raise HandlerImportError(f"tasks {queue.tasks!r} is not a taskiq AsyncBroker")
    if problems := refusals(broker):
        raise HandlerImportError(f"tasks {queue.tasks!r}: " + "; ".join(problems))
    return broker


_started: dict[int, int] = {}  # id(broker) -> workers of this process that started it


async def start_broker(broker: AsyncBroker) -> None:
    """The broker's worker startup (WORKER_STARTUP handlers, middlewares' startup), once per
    process however many of its queues this process runs."""
    if _started.get(id(broker), 0) == 0:
        broker.is_worker_process = True
        await broker.startup()
    _started[id(broker)] = _started.get(id(broker), 0) + 1


async def stop_broker(broker: AsyncBroker) -> None:
    """The broker's worker shutdown, when the last of this process's queues using it stops."""
    left = _started.get(id(broker), 0) - 1
    if left > 0:
        _started[id(broker)] = left
        return
    _started.pop(id(broker), None)
    await broker.shutdown()


def hooked(middleware: TaskiqMiddleware, hook: str) -> bool:
    """Whether the middleware has its own ``hook`` (taskiq calls only those)."""
    return getattr(type(middleware), hook) is not getattr(TaskiqMiddleware, hook)


@dataclass
class Prepared:
    """One task, looked at once: how to call it and what its runs need."""

    func: Callable[..., Any]
    sync: Runner | None  # a sync task runs in the queue's threads (handlers.py)
    graph: DependencyGraph | None  # None: no dependency
    positions: list[tuple[int, Any]] = field(default_factory=list)  # (index, adapter)
    names: dict[str, Any] = field(default_factory=dict)  # kwarg -> adapter
    simple: bool = True  # no dependency and nothing to parse: the short path
    context: bool = False  # a dependency asks for taskiq's Context (built only then)


def _call(call: tuple[Callable[..., Any], list[Any], dict[str, Any]]) -> Any:
    func, args, kwargs = call
    return func(*args, **kwargs)


def prepare(func: Callable[..., Any], executor: Executor, overrides: dict[Any, Any]) -> Prepared:
    """The task's call, dependency graph (with the broker's overrides) and argument parsers."""
    sync = None if inspect.iscoroutinefunction(func) else sync_runner(_call, False, executor)
    graph = DependencyGraph(func, overrides or None)
    task = Prepared(func, sync, None if graph.is_empty() else graph)
    hints = _hints(func)
    deps = {d.param_name for d in graph.ordered_deps if getattr(d, "param_name", None)}
    index = -1
    for name, param in inspect.signature(func).parameters.items():
        positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
        index += positional
        annot = hints.get(name)
        if name in deps or annot is None or annot is Any or annot in _JSON_TYPES:
            continue
        adapter = (annot, TypeAdapter(annot))
        if positional:
            task.positions.append((index, adapter))
        task.names[name] = adapter
    task.simple = task.graph is None and not task.positions and not task.names
    task.context = any(d.dependency is Context for d in graph.ordered_deps)
    return task


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(func)
    except Exception:  # annotations that do not resolve: taken as they are, unparsed
        return {}


def parse_argument(value: Any, adapter: tuple[Any, TypeAdapter[Any]], what: str, task: str) -> Any:
    annot, parser = adapter
    if value is None or (isinstance(annot, type) and isinstance(value, annot)):
        return value
    try:
        return parser.validate_python(value)
    except (ValidationError, ValueError) as exc:  # as taskiq: the value is passed unparsed
        log.warning("task %s: argument %s does not parse as %r: %s", task, what, annot, exc)
        return value
