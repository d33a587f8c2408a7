"""A queue's event stream: what the scripts append, decoded for readers.

Every script that changes a job's state appends an entry to the queue's ``events`` stream in
the same call (so an event exists exactly when its change happened), trimmed to about
``EVENTS_MAXLEN`` entries (``XADD MAXLEN ~``). An entry's fields: ``e`` (the event name), ``id``
(the job, for job events) and a few event-specific ones (``name``/``state`` for added,
``attempt`` for active, ``data`` for progress, ``count`` for cleaned/drained, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cortexflow.engine.connection import Client
from cortexflow.engine.keys import QueueKeys

# scripts/include/events.lua, which every script's XADD goes through, names the same number.
EVENTS_MAXLEN = 5000


@dataclass(frozen=True)
class Event:
    """One entry: ``id`` is the stream id (resume after it), ``timestamp`` epoch seconds."""

    id: str
    queue: str
    event: str
    job_id: str | None
    timestamp: float
    fields: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (`cortexflow events --json`, the dashboard's SSE data)."""
        return {
            "eventId": self.id,
            "queue": self.queue,
            "event": self.event,
            "jobId": self.job_id,
            "timestamp": self.timestamp,
            **dict(self.fields),
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(queue: str, entry_id: Any, raw: Mapping[Any, Any]) -> Event:
    sid = _text(entry_id)
    fields = {_text(k): _text(v) for k, v in raw.items()}
    name = fields.pop("e", "unknown")
    job_id = fields.pop("id", None)
    return Event(sid, queue, name, job_id, int(sid.split("-", 1)[0]) / 1000.0, fields)


async def read(
    client: Client,
    prefix: str,
    queue: str,
    after: str = "$",
    block: float | None = None,
    count: int = 500,
) -> list[Event]:
    """Events after stream id ``after`` ("0": from the oldest kept, "$": only new ones), waiting
    up to ``block`` seconds for one (None: do not wait). "$" needs ``block`` to see anything."""
    key = QueueKeys(prefix, queue).events
    ms = None if block is None else max(int(block * 1000), 1)
    reply: Any = await client.xread({key: after}, count=count, block=ms) or []
    out: list[Event] = []
    for _stream, entries in reply:
        out += [decode(queue, eid, fields) for eid, fields in entries]
    return out


async def last_id(client: Client, prefix: str, queue: str) -> str:
    """The id of the newest entry ("0-0" when the stream is empty): resume from here to get
    only what happens next without a blocking read."""
    newest: Any = await client.xrevrange(QueueKeys(prefix, queue).events, count=1)
    return _text(newest[0][0]) if newest else "0-0"


async def recent(client: Client, prefix: str, queue: str, count: int = 50) -> list[Event]:
    """The newest ``count`` events, newest first."""
    entries: Any = await client.xrevrange(QueueKeys(prefix, queue).events, count=count)
    return [decode(queue, eid, fields) for eid, fields in entries]
