"""Handler of `analytics`: aggregate ``track-event`` jobs into daily counters in Redis.

Per UTC day ``D`` (the event's ``timestamp``, else when the job was added), under
``{prefix}:analytics:{D}:`` (``prefix``: ``$CORTEXFLOW_DATA_PREFIX``, default ``cortexflow``):

| key | type | holds |
|---|---|---|
| `events` | HASH | event -> how many |
| `users` | HyperLogLog | the day's distinct users (about 0.8% error) |
| `users:<event>` | HyperLogLog | distinct users of one event |
| `sums:<event>` | HASH | field -> sum of that numeric field of ``data`` (e.g. tokens, cost) |
| `job:<id>` | STRING | marks a job as counted, so a job run twice counts once (see below) |

All of one event's writes are one atomic script call; every key of a day shares the tag ``{D}``
(one Redis Cluster slot). The aggregates expire ``$CORTEXFLOW_ANALYTICS_TTL_DAYS`` (default
90) days after the day's last event; a ``job:<id>`` marker once its job completed, or after the
job's re-run window (``JobContext.rerun_window``, at most a day).

Read a day from Python with ``await read_daily(redis, "2024-05-01")``, or from the shell with
``cortexflow analytics 2024-05-01``.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from typing import Any

from cortexflow.engine.connection import Client
from cortexflow.queues.common import data_prefix, write_once
from cortexflow.worker.context import JobContext

DAY = 86_400


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    day = day_of(data.get("timestamp"), job.created_at)
    event = data["event"]
    sums = numeric_fields(data.get("data") or {})
    user = data.get("userId")
    keys = DayKeys(day)
    ttl = int(os.environ.get("CORTEXFLOW_ANALYTICS_TTL_DAYS") or 90) * DAY

    def writes(pipe: Any) -> None:
        pipe.hincrby(keys.events, event, 1)
        touched = [keys.events]
        if user:
            pipe.pfadd(keys.users, user)
            pipe.pfadd(keys.event_users(event), user)
            touched += [keys.users, keys.event_users(event)]
        for name, value in sums.items():
            pipe.hincrbyfloat(keys.sums(event), name, value)
        if sums:
            touched.append(keys.sums(event))
        for key in touched:
            pipe.expire(key, ttl)

    counted = await write_once(job, keys.counted(job.id), writes)
    return {"day": day, "event": event, "counted": counted}


class DayKeys:
    def __init__(self, day: str, prefix: str | None = None) -> None:
        self.base = f"{prefix or data_prefix()}:analytics:{{{day}}}"
        self.events = f"{self.base}:events"
        self.users = f"{self.base}:users"

    def event_users(self, event: str) -> str:
        return f"{self.base}:users:{event}"

    def sums(self, event: str) -> str:
        return f"{self.base}:sums:{event}"

    def counted(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"


def day_of(timestamp: object, fallback: float) -> str:
    """The UTC day of an ISO 8601 timestamp (naive ones are taken as UTC), else of ``fallback``."""
    if isinstance(timestamp, str):
        try:
            when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return when.astimezone(UTC).date().isoformat()
    return datetime.fromtimestamp(fallback, UTC).date().isoformat()


def numeric_fields(data: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of an event's ``data`` (booleans and NaN/inf left out)."""
    return {
        str(k): float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


async def read_daily(client: Client, day: str, prefix: str | None = None) -> dict[str, Any]:
    """One day's aggregates: ``{day, uniqueUsers, events: {event: {count, uniqueUsers, sums}}}``."""
    keys = DayKeys(day, prefix)
    counts = {_text(k): int(v) for k, v in (await client.hgetall(keys.events)).items()}
    names = sorted(counts)
    async with client.pipeline(transaction=False) as pipe:
        pipe.pfcount(keys.users)
        for name in names:
            pipe.pfcount(keys.event_users(name))
            pipe.hgetall(keys.sums(name))
        replies = await pipe.execute()
    events = {}
    for i, name in enumerate(names):
        users, sums = replies[1 + 2 * i], replies[2 + 2 * i]
        events[name] = {
            "count": counts[name],
            "uniqueUsers": int(users),
            "sums": {_text(k): float(v) for k, v in sums.items()},
        }
    return {"day": day, "uniqueUsers": int(replies[0]), "events": events}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
