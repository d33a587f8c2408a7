"""Job options as callers give them -> the engine's JobOptions.

The Python API (QueueManager, SyncQueueManager and a handler's ``job.add_job``) speaks BullMQ's
units and names: ``delay`` and ``backoff.delay`` in milliseconds, and (in ``add_bulk`` opts)
camelCase keys such as ``removeOnComplete``. The engine works in seconds; this module is the one
place that converts, and ``AddOptions`` is the one list of keyword options every ``add_job`` takes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from cortexflow.config.model import Backoff, QueueConfig
from cortexflow.engine.jobs import JobOptions
from cortexflow.errors import UsageError


class AddOptions(TypedDict, total=False):
    """The keyword options of every ``add_job`` (all optional; unset: the queue's setting)."""

    priority: int  # 0..1,000,000, higher runs first
    delay: float  # milliseconds
    attempts: int  # total runs, the first included
    backoff: Backoff | Mapping[str, Any]  # {type, delay (ms), max (ms), jitter}
    job_id: str  # an id that still exists: nothing is added, that id is returned
    remove_on_complete: bool | int  # True: at once; N: keep the newest N
    remove_on_fail: bool | int
    group: str  # the job's group (the queue needs `group:`), over the key in its data


# Keys accepted in add_bulk's "opts" (BullMQ's JobOptions names, plus snake_case twins).
_OPT_KEYS = {
    "priority": "priority",
    "delay": "delay",
    "attempts": "attempts",
    "backoff": "backoff",
    "jobId": "job_id",
    "job_id": "job_id",
    "removeOnComplete": "remove_on_complete",
    "remove_on_complete": "remove_on_complete",
    "removeOnFail": "remove_on_fail",
    "remove_on_fail": "remove_on_fail",
    "group": "group",
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ms(value: object, what: str) -> float:
    if not _is_number(value) or not 0 <= float(value) < math.inf:  # type: ignore[arg-type]
        raise UsageError(f"{what} is a number of milliseconds >= 0 (BullMQ's unit); got {value!r}")
    return float(value) / 1000.0  # type: ignore[arg-type]


def _backoff(queue: QueueConfig, value: Backoff | Mapping[str, Any]) -> Backoff:
    """``{type, delay(ms)[, max(ms), jitter]}`` or a Backoff; unspecified fields: the queue's."""
    if isinstance(value, Backoff):
        return value
    if not isinstance(value, Mapping):
        raise UsageError(
            f"backoff is {{'type': 'fixed'|'exponential', 'delay': ms}}; got {value!r}"
        )
    unknown = set(value) - {"type", "delay", "max", "jitter"}
    if unknown:
        raise UsageError(f"backoff: unknown key(s) {sorted(unknown)}; use type, delay, max, jitter")
    kind = value.get("type", queue.backoff.type)
    if kind not in ("fixed", "exponential"):
        raise UsageError(f"backoff.type is 'fixed' or 'exponential'; got {kind!r}")
    changes: dict[str, Any] = {"type": kind}
    if "delay" in value:
        changes["delay"] = _ms(value["delay"], "backoff.delay")
    if "max" in value:
        changes["max"] = _ms(value["max"], "backoff.max")
    if "jitter" in value:
        jitter = value["jitter"]
        if not _is_number(jitter) or not 0 <= jitter <= 1:
            raise UsageError(f"backoff.jitter is a number from 0 to 1; got {jitter!r}")
        changes["jitter"] = float(jitter)
    return dataclasses.replace(queue.backoff, **changes)


def job_options(queue: QueueConfig, **options: Unpack[AddOptions]) -> JobOptions | None:
    """Build the engine's options from the API's (``delay`` in ms); None when all are unset.

    Ranges (priority 0..1000000, attempts >= 1, ...) are checked by the engine, once.
    """
    if not options:
        return None
    delay = options.get("delay")
    backoff = options.get("backoff")
    opts = JobOptions(
        priority=options.get("priority"),
        delay=None if delay is None else _ms(delay, "delay"),
        attempts=options.get("attempts"),
        backoff=None if backoff is None else _backoff(queue, backoff),
        job_id=options.get("job_id"),
        remove_on_complete=options.get("remove_on_complete"),
        remove_on_fail=options.get("remove_on_fail"),
        group=options.get("group"),
    )
    return None if opts == JobOptions() else opts


def bulk_options(queue: QueueConfig, opts: Mapping[str, Any] | None) -> JobOptions | None:
    """add_bulk's per-job ``opts`` mapping (camelCase or snake_case keys) -> JobOptions."""
    if not opts:
        return None
    if not isinstance(opts, Mapping):
        raise UsageError(f"opts is a mapping of job options; got {opts!r}")
    kwargs: dict[str, Any] = {}
    for key, value in opts.items():
        try:
            kwargs[_OPT_KEYS[key]] = value
        except KeyError:
            known = ", ".join(k for k in _OPT_KEYS if "_" not in k)
            raise UsageError(f"unknown job option {key!r}; known options: {known}") from None
    return job_options(queue, **kwargs)
