"""The checks of a queue's ``tasks:`` (a taskiq broker, cortexflow.taskiq) that a JSON Schema
cannot make: not beside ``handler:``, importable, a broker, and its tasks' queue labels naming
queues of this file that run tasks.

The broker is looked at through taskiq's public interface only (``get_all_tasks()`` and each
task's ``labels``), so this module imports no taskiq.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cortexflow.config.importer import ImportFromStringError, import_from_string

# Which labels name a task's queue: cortexflow's own, and taskiq-redis's.
QUEUE_LABELS = ("queue", "queue_name")

# (path below the queue, code, message, hint)
Problem = tuple[tuple[str, ...], str, str, str | None]


def queue_of(labels: Mapping[str, Any]) -> str | None:
    """The queue a task's labels name (``queue``, else taskiq-redis's ``queue_name``)."""
    for key in QUEUE_LABELS:
        value = labels.get(key)
        if value is not None:
            return str(value)
    return None


def import_broker(ref: str, search_path: Path | None) -> Any:
    """Import the object ``tasks:`` names; ImportFromStringError unless it is a taskiq broker."""
    obj = import_from_string(ref, search_path=search_path)
    if not callable(getattr(obj, "get_all_tasks", None)) or not hasattr(obj, "middlewares"):
        raise ImportFromStringError(
            "not-callable",
            ref,
            f"{ref} is {type(obj).__name__!r}, not a taskiq broker",
            "point tasks at the broker of cortexflow.taskiq.broker_from_config(), e.g. "
            '"myapp.tasks:broker"',
        )
    return obj


def check_tasks(
    name: str,
    queue: Mapping[str, Any],
    queues: Mapping[str, Any],
    base_dir: Path,
    imported: dict[str, Any] | None,
) -> list[Problem]:
    """What is wrong with queue ``name``'s ``tasks:``. ``imported`` (ref -> broker or error)
    holds the imports tried so far; None: import nothing (``check_imports=False``)."""
    ref = queue.get("tasks")
    if not isinstance(ref, str):
        return []
    problems: list[Problem] = []
    if "handler" in queue:
        problems.append(
            (
                ("tasks",),
                "tasks.with_handler",
                f"queue {_q(name)} has both handler and tasks",
                "a queue runs either a handler or a taskiq broker's tasks: remove one",
            )
        )
    if imported is None:
        return problems
    first = ref not in imported  # a broker's labels are reported once, at its first queue
    if first:
        try:
            imported[ref] = import_broker(ref, base_dir)
        except ImportFromStringError as exc:
            imported[ref] = exc
    broker = imported[ref]
    if isinstance(broker, ImportFromStringError):
        problems.append((("tasks",), f"tasks.{broker.kind}", str(broker), broker.hint))
        return problems
    return problems + _labels(ref, broker, queues) if first else problems


def _labels(ref: str, broker: Any, queues: Mapping[str, Any]) -> list[Problem]:
    """Each task of the broker must name a queue of this file that runs tasks."""
    problems: list[Problem] = []

    def runs_tasks(q: str) -> bool:
        return isinstance(queues.get(q), dict) and bool(queues[q].get("tasks"))

    known = ", ".join(q for q in queues if runs_tasks(q)) or "(none)"
    try:
        tasks = dict(broker.get_all_tasks())
    except Exception as exc:  # a user's broker: whatever it raises is a finding
        return [(("tasks",), "tasks.broken", f"{ref}.get_all_tasks() raised {exc!r}", None)]
    for task_name, task in sorted(tasks.items()):
        target = queue_of(getattr(task, "labels", {}) or {})
        if target is None or runs_tasks(target):
            continue
        why = "is not declared" if target not in queues else "runs a handler, not tasks"
        problems.append(
            (
                ("tasks",),
                "tasks.unknown_queue",
                f"task {_q(task_name)} of {ref} is labelled queue {_q(target)}, which {why}",
                f"queues that run tasks: {known}",
            )
        )
    return problems


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
