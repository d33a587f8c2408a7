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
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from cortexflow.api.manager import QueueManager
from cortexflow.dashboard import state
from cortexflow.dashboard.guard import api, error
from cortexflow.engine import events
from cortexflow.engine.connection import Client

BLOCK = 1.0  # one blocking read, seconds: how soon a closed connection is noticed
KEEPALIVE = 15.0
MAX_STREAMS = 50


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
    streams: Streams = request.app.state.streams
    if not streams.take():
        return error(
            503,
            f"too many event streams open (at most {streams.limit}: --max-streams); retry later",
        )
    try:
        return await _open(request, streams)
    except BaseException:
        streams.give_back()
        raise


async def _open(request: Request, streams: Streams) -> Response:
    engine = await state.engine(request)
    reader = await streams.client()
    start = request.headers.get("last-event-id") or request.query_params.get("from") or ""
    if not start:
        start = await events.last_id(engine.client, engine.prefix, engine.name)

    async def stream() -> AsyncIterator[str]:
        after = start
        last_sent = time.monotonic()
        yield ": connected\n\n"
        while not await request.is_disconnected():
            got = await events.read(reader, engine.prefix, engine.name, after, BLOCK)
            for event in got:
                yield format_event(event)
                after = event.id
            if got:
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > KEEPALIVE:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return _HeldStream(stream(), streams, media_type="text/event-stream", headers=headers)
