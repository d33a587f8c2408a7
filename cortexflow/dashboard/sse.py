"""GET /api/queues/{queue}/events: the queue's event stream as Server-Sent Events.

Each event is sent as ``id: <stream id>``, ``event: <name>``, ``data: <JSON>``. A client that
reconnects with ``Last-Event-ID`` (browsers do it by themselves), or asks ``?from=<id>``,
gets what it missed (as far as the capped stream still holds it); otherwise it starts with
what happens next. A comment line every 15 s keeps proxies from closing an idle stream.

Streams are capped (``Streams``: ``--max-streams``, default 50; the one past it gets 503) and
block on a Redis client of their own, whose pool is bounded by that cap: however many streams
are open, `/healthz`, the pages and the API keep the manager's pool to themselves. (One shared
reader per queue fanning out would hold fewer connections, but resuming each client from its
own Last-Event-ID makes it a second delivery path; with the cap, a connection per open stream
stays small and is as simple as one XREAD per client.)

GET /api/events?queues=a,b (``all`` or no ``queues``: every queue of queues.yaml) is the same
for several queues at once, one stream against the cap (the dashboard's pages use it: the
overview follows every queue through one connection). One XREAD reads every queue's stream; the
events go out in stream-id order (ids are the Redis server's clock, shared by every queue), and
``Last-Event-ID``/``from`` resumes every queue after that id. On Redis Cluster, where one XREAD
cannot span the queues' slots, each queue is read in turn without blocking, every CLUSTER_POLL s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from cortexflow.api.manager import QueueManager
from cortexflow.dashboard import state
from cortexflow.dashboard.guard import HTTPError, api, error
from cortexflow.engine import events
from cortexflow.engine.cluster import ClusterClient
from cortexflow.engine.connection import Client
from cortexflow.engine.keys import QueueKeys

BLOCK = 1.0  # one blocking read, seconds: how soon a closed connection is noticed
KEEPALIVE = 15.0
MAX_STREAMS = 50
COUNT = 500  # entries one read takes per queue
CLUSTER_POLL = 0.1  # seconds between reads of several queues on Redis Cluster


class Streams:
    """At most ``limit`` streams open at once, reading through a client of their own."""

    def __init__(self, manager: QueueManager, limit: int = MAX_STREAMS) -> None:
        self.manager = manager
        self.limit = limit
        self.open = 0
        self._client: Client | None = None

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1

    async def client(self) -> Client:
        if self._client is None:
            self._client = await self.manager.new_client(max_connections=self.limit)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class _HeldStream(StreamingResponse):
    """A streaming response that gives its slot back however it ends."""

    def __init__(self, content: AsyncIterator[str], streams: Streams, **kw: Any) -> None:
        super().__init__(content, **kw)
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.streams.give_back()


def format_event(event: events.Event) -> str:
    data = json.dumps(event.to_dict(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"


@api(write=False)
async def events_route(request: Request) -> Response:
    """One queue's stream: GET /api/queues/{queue}/events."""
    return await _held(request, [str(request.path_params["queue"])])


@api(write=False)
async def multi_events_route(request: Request) -> Response:
    """Several queues' streams as one: GET /api/events?queues=a,b (or all)."""
    raw = (request.query_params.get("queues") or "all").strip()
    names = state.manager(request).queue_names
    if raw != "all":
        names = list(dict.fromkeys(q.strip() for q in raw.split(",") if q.strip()))
        if not names:
            raise HTTPError(422, "queues must name one queue or more (a,b) or be all")
    return await _held(request, names)


async def _held(request: Request, queues: list[str]) -> Response:
    streams: Streams = request.app.state.streams
    if not streams.take():
        return error(
            503,
            f"too many event streams open (at most {streams.limit}: --max-streams); retry later",
        )
    try:
        return await _open(request, streams, queues)
    except BaseException:
        streams.give_back()
        raise


async def _open(request: Request, streams: Streams, queues: list[str]) -> Response:
    engines = [await state.engine(request, q) for q in queues]  # 404 for an unknown queue
    reader = await streams.client()
    start = request.headers.get("last-event-id") or request.query_params.get("from") or ""
    after = {e.name: start or await events.last_id(e.client, e.prefix, e.name) for e in engines}
    prefix = engines[0].prefix

    async def stream() -> AsyncIterator[str]:
        last_sent = time.monotonic()
        yield ": connected\n\n"
        while not await request.is_disconnected():
            got = await _read(reader, prefix, after)
            for event in got:
                yield format_event(event)
                after[event.queue] = event.id
            if got:
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > KEEPALIVE:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return _HeldStream(stream(), streams, media_type="text/event-stream", headers=headers)


async def _read(reader: Client, prefix: str, after: dict[str, str]) -> list[events.Event]:
    """The next events of the queues in ``after`` (queue -> the id read up to), in id order,
    waiting up to BLOCK s for one."""
    if len(after) == 1:
        ((queue, since),) = after.items()
        return await events.read(reader, prefix, queue, since, BLOCK, COUNT)
    per_queue: dict[str, list[events.Event]] = {}
    if isinstance(reader, ClusterClient):  # one XREAD may not span slots: each in turn
        for queue, since in after.items():
            per_queue[queue] = await events.read(reader, prefix, queue, since, None, COUNT)
        if not any(per_queue.values()):
            await asyncio.sleep(CLUSTER_POLL)
    else:
        keys = {QueueKeys(prefix, q).events: q for q in after}
        ms = int(BLOCK * 1000)
        positions: Any = {k: after[q] for k, q in keys.items()}
        reply: Any = await reader.xread(positions, count=COUNT, block=ms) or []
        for key, entries in reply:
            queue = keys[key.decode() if isinstance(key, bytes) else str(key)]
            per_queue[queue] = [events.decode(queue, eid, f) for eid, f in entries]
    return merged(per_queue, COUNT)


def _order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def merged(per_queue: dict[str, list[events.Event]], count: int) -> list[events.Event]:
    """Each queue's events (each list in id order) as one list in id order. A queue that
    returned ``count`` events may have more not read yet: events past its last one wait for the
    next read, so a client resuming from the last id it got misses none."""
    full = [_order(got[-1].id) for got in per_queue.values() if len(got) >= count]
    cutoff = min(full) if full else None
    out = [e for got in per_queue.values() for e in got]
    if cutoff is not None:
        out = [e for e in out if _order(e.id) <= cutoff]
    return sorted(out, key=lambda e: _order(e.id))
