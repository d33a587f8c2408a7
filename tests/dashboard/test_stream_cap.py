"""Issue 23, item 4: SSE streams are capped (the one past the cap gets 503 with a JSON error)
and block on a Redis client of their own, so 200 open streams leave `/healthz` and the API
answering. A real `cortexflow dashboard` process; the clients are raw sockets from the test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    READ_TOKEN,
    start_dashboard,
    wait_until,
)
from tests.helpers.procs import Proc

CLIENTS = 200


@pytest.fixture
def running(project: Path, redis_url: str) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for p in procs:
        p.kill()


class Stream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


async def open_stream(port: int, queue: str = "work") -> Stream:
    """GET the queue's event stream with the read token; the status and headers read."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 20)
    writer.write(
        (
            f"GET /api/queues/{queue}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {READ_TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    s = Stream(reader, writer)
    status = await asyncio.wait_for(reader.readline(), 30)
    s.status = int(status.split()[1])
    while True:
        line = (await asyncio.wait_for(reader.readline(), 30)).decode().strip()
        if not line:
            break
        name, _, value = line.partition(":")
        s.headers[name.lower()] = value.strip()
    return s


async def body(s: Stream) -> bytes:
    return await asyncio.wait_for(s.reader.readexactly(int(s.headers["content-length"])), 10)


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[int, float]:
    t0 = time.monotonic()
    r = await client.get(path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
    return r.status_code, time.monotonic() - t0


def test_200_streams_past_the_cap_get_503_and_the_rest_keeps_answering(
    project: Path, redis_url: str, running: list[Proc]
) -> None:
    proc, base = start_dashboard(project, redis_url)  # the default cap: 50
    running.append(proc)
    port = int(base.rsplit(":", 1)[1])

    async def scenario() -> None:
        streams = await asyncio.gather(*(open_stream(port) for _ in range(CLIENTS)))
        try:
            statuses = sorted(s.status for s in streams)
            assert statuses.count(200) == 50 and statuses.count(503) == CLIENTS - 50, statuses
            refused = next(s for s in streams if s.status == 503)
            assert refused.headers["content-type"].startswith("application/json")
            assert "too many event streams" in json.loads(await body(refused))["error"]
            # The 50 streams block in XREAD all along; every other route still answers, fast
            # (a typical answer well under the streams' 1 s XREAD block, so a starved pool
            # shows; one slow answer on a loaded machine is not a failure).
            took_all: list[float] = []
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                for _ in range(5):
                    for path in ("/healthz", "/api/queues"):
                        status, took = await timed_get(client, path)
                        assert status == 200 and took < 5.0, (path, status, took)
                        took_all.append(took)
                    await asyncio.sleep(0.3)
            assert statistics.median(took_all) < 0.25, took_all
            # The open streams are live ones: an event reaches them.
            with httpx.Client(base_url=base, timeout=10) as admin:
                r = admin.post(
                    "/api/queues/work/jobs",
                    json={"name": "x", "data": {}},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                assert r.status_code == 201, r.text
            live = next(s for s in streams if s.status == 200)
            seen = b""
            while b"event: added" not in seen:
                seen += await asyncio.wait_for(live.reader.read(4096), 10)
        finally:
            await asyncio.gather(*(s.close() for s in streams))

    asyncio.run(scenario())

    # Closed streams give their places back.
    async def one_more() -> int:
        s = await open_stream(port)
        await s.close()
        return s.status

    wait_until(lambda: asyncio.run(one_more()) == 200, timeout=20, what="a place freed")
    assert "Traceback" not in proc.log()


def test_max_streams_option(project: Path, redis_url: str, running: list[Proc]) -> None:
    proc, base = start_dashboard(project, redis_url, "--max-streams", "2")
    running.append(proc)
    port = int(base.rsplit(":", 1)[1])

    async def scenario() -> list[int]:
        streams = [await open_stream(port) for _ in range(3)]
        await asyncio.gather(*(s.close() for s in streams))
        return [s.status for s in streams]

    assert asyncio.run(scenario()) == [200, 200, 503]
