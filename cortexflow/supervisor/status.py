"""The supervisor's Redis side: its heartbeat for `cortexflow status`, and `status` itself.

`up` publishes what it runs every ~2 s (TTL 10 s, so a SIGKILLed supervisor drops out on its
own) and says how many workers of each queue it expects (so `health` can tell a queue with no
live worker). `status` reads every live supervisor and joins in the workers' own heartbeats
for the jobs they did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cortexflow.engine import registry
from cortexflow.engine.connection import connect, ping
from cortexflow.redact import redact_url
from cortexflow.supervisor.logmux import LogSink

PUBLISH_EVERY = 2.0
PUBLISH_TTL = 10.0
_CALL_TIMEOUT = 5.0

Snapshot = Callable[[], dict[str, Any]]


class StatusPublisher:
    """Publishes ``snapshot()`` and the expected worker counts until cancelled."""

    def __init__(
        self,
        snapshot: Snapshot,
        expected: Callable[[], Mapping[str, int]],
        prefix: Callable[[], str],
        sink: LogSink,
        every: float = PUBLISH_EVERY,
    ) -> None:
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._snapshot = snapshot
        self._expected = expected
        self._prefix = prefix
        self._sink = sink
        self._every = every
        self._failing = False
        self._changed: asyncio.Event | None = None
        self._closing = False

    def poke(self) -> None:
        """Something changed: publish now rather than at the next period."""
        if self._changed is not None:
            self._changed.set()

    def close(self) -> None:
        """End ``run`` after its current publication (a flag, not a cancel: Python 3.11's
        ``wait_for`` can swallow a cancellation that races with its result)."""
        self._closing = True
        self.poke()

    async def run(self, url: str) -> None:
        self._changed = asyncio.Event()
        client = connect(url, retries=1)
        try:
            while not self._closing:
                self._changed.clear()
                await self.publish_once(client, url)
                if self._closing:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self._every)
                await asyncio.sleep(0.05)  # a burst of changes makes one publication
        finally:
            await client.aclose()

    async def publish_once(self, client: aioredis.Redis, url: str) -> None:
        try:
            await asyncio.wait_for(self._publish(client), _CALL_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:
                self._sink.event(
                    f"cannot publish status to {redact_url(url)}: {exc or type(exc).__name__} "
                    "(the workers keep running; retrying)"
                )
            self._failing = True
        else:
            if self._failing:
                self._sink.event("status publishing resumed")
            self._failing = False

    async def _publish(self, client: aioredis.Redis) -> None:
        prefix = self._prefix()
        for queue, count in self._expected().items():
            await registry.set_expected(client, prefix, queue, count, PUBLISH_TTL)
        await registry.publish_supervisor(client, prefix, self.id, self._snapshot(), PUBLISH_TTL)

    async def withdraw(self, url: str) -> None:
        """Leave the listing when `up` stops, and withdraw the expected worker counts, so
        `health` right after a stop does not report queues as missing their workers (best
        effort: the TTL covers the rest)."""
        client = connect(url, retries=1)
        try:
            prefix = self._prefix()
            await asyncio.wait_for(
                registry.remove_supervisor(client, prefix, self.id), _CALL_TIMEOUT
            )
            await asyncio.wait_for(
                registry.clear_expected(client, prefix, list(self._expected())), _CALL_TIMEOUT
            )
        except (RedisError, OSError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


async def check_server(url: str, sink: LogSink, embedded: bool) -> None:
    """RedisUnavailableError unless the server answers; warn when it may evict jobs."""
    client = connect(url, retries=3)
    try:
        await ping(client, url)
        if embedded:
            return
        try:
            info = await client.info("memory")
        except RedisError:
            return  # INFO refused (a restricted ACL): nothing to check
        policy = str(info.get("maxmemory_policy", "noeviction"))
        if policy != "noeviction":
            sink.event(
                f"warning: {redact_url(url)} has maxmemory-policy {policy}: under memory "
                "pressure it may silently delete jobs. Set `maxmemory-policy noeviction` on "
                "that server."
            )
    finally:
        await client.aclose()


# -- `cortexflow status` ---------------------------------------------------------------------


async def collect_status(url: str, prefix: str) -> list[dict[str, Any]]:
    """One row per process of every live supervisor, with the jobs its worker reports."""
    client = connect(url, retries=3)
    try:
        await ping(client, url)
        supervisors = await registry.live_supervisors(client, prefix)
        queues = sorted({p["queue"] for s in supervisors for p in s.get("processes", [])})
        workers: dict[tuple[str, int], dict[str, Any]] = {}
        for queue in queues:
            for w in await registry.live_workers(client, prefix, queue):
                workers[(str(w.get("host")), int(w.get("pid") or 0))] = w
    finally:
        await client.aclose()
    now = time.time()
    rows = []
    for sup in sorted(supervisors, key=lambda s: (s.get("host", ""), s.get("pid", 0))):
        for proc in sup.get("processes", []):
            worker = workers.get((str(sup.get("host")), int(proc.get("pid") or 0)), {})
            started = proc.get("started_at")
            rows.append(
                {
                    "host": sup.get("host"),
                    "supervisor_pid": sup.get("pid"),
                    "queue": proc["queue"],
                    "replica": proc["replica"],
                    "pid": proc.get("pid"),
                    "state": proc["state"],
                    "restarts": proc.get("restarts", 0),
                    "uptime": round(now - started, 1) if started else None,
                    "jobs_done": worker.get("jobs_done"),
                    "jobs_failed": worker.get("jobs_failed"),
                    "reason": proc.get("reason"),
                }
            )
    return rows


def any_fatal(rows: list[dict[str, Any]]) -> bool:
    return any(r["state"] == "fatal" for r in rows)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def render_status(rows: list[dict[str, Any]]) -> str:
    """A plain table, one process per line."""
    header = ("HOST", "QUEUE", "REPLICA", "PID", "STATE", "RESTARTS", "UPTIME", "JOBS DONE")
    table = [header] + [
        (
            str(r["host"]),
            str(r["queue"]),
            str(r["replica"]),
            str(r["pid"] or "-"),
            str(r["state"]),
            str(r["restarts"]),
            _uptime(r["uptime"]),
            "-" if r["jobs_done"] is None else str(r["jobs_done"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    fatal = [r for r in rows if r["state"] == "fatal" and r.get("reason")]
    seen: set[str] = set()
    for r in fatal:
        if r["queue"] not in seen:
            seen.add(r["queue"])
            lines.append(f"queue {r['queue']} is FATAL: {r['reason']}")
    return "\n".join(lines)
