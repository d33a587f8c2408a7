"""The supervisor's heartbeat: what `up` runs, for `cortexflow status` and `health`.

`up` publishes what it runs every ~2 s (TTL 10 s, so a SIGKILLed supervisor drops out on its
own) and says how many workers of each queue it expects (so `health` can tell a queue with no
live worker). The reading side is api/status.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from cortexflow.engine import registry
from cortexflow.engine.connection import Client, connect
from cortexflow.redact import redact_url
from cortexflow.supervisor.logmux import LogSink
from cortexflow.worker.env import host_name

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
        self.id = f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
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

    async def publish_once(self, client: Client, url: str) -> None:
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

    async def _publish(self, client: Client) -> None:
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
