"""Queues that share a worker process (``process:`` in queues.yaml): the semantic check.

Queues with the same ``process`` run in one worker process; a queue without one runs in a
process of its own, named after the queue. The replicas of a process are one count for all its
queues, so they must agree on ``processes`` (after ``defaults:``): two values for one process
are an error at the queue that differs, never a silent choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cortexflow.config.yamlmarks import PathT

Report = Callable[[PathT, str, str, str], None]  # (where, code, message, hint)


def _setting(
    name: str, queue: dict[str, Any], defaults: dict[str, Any], key: str, default: Any
) -> tuple[Any, PathT | None]:
    """The queue's value of ``key`` (its own, else defaults', else ``default``), and where it
    is written (None: nowhere, the default)."""
    if key in queue:
        return queue[key], ("queues", name, key)
    if key in defaults:
        return defaults[key], ("defaults", key)
    return default, None


def check_process_groups(report: Report, queues: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Report each queue whose ``processes`` differs from the first queue of its process."""
    first: dict[str, tuple[str, Any, PathT | None]] = {}
    for name, queue in queues.items():
        if not isinstance(queue, dict):
            continue
        process, _ = _setting(name, queue, defaults, "process", None)
        if not isinstance(process, str):
            process = name
        count, where = _setting(name, queue, defaults, "processes", 1)
        if process not in first:
            first[process] = (name, count, where)
            continue
        other, other_count, other_where = first[process]
        if count == other_count:
            continue
        if where is None or where[0] == "defaults":
            where = other_where or ("queues", name)
        report(
            where,
            "process.processes",
            f"queues {json.dumps(other)} and {json.dumps(name)} share the worker process "
            f"{json.dumps(process)} but ask for different processes "
            f"({json.dumps(other_count)} and {json.dumps(count)})",
            f"give every queue of process {json.dumps(process)} the same processes "
            "(or set it once under defaults:)",
        )
