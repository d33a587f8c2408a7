"""Draining an outbox: a list in a queue's Cluster slot holding writes that belong to other
slots (dead letters, ``next:`` hand-offs), put there by the same script call that finished the
job, and copied to their targets by a worker of the queue.

A copier cannot wedge: an entry that cannot be copied (unreadable, refused by its target) is
logged and set aside to the outbox's ``failed`` list (the newest MAX_SET_ASIDE are kept, and
stats count them), and the next entries are copied. Only Redis errors stop a pass; the caller
tries again later. An entry leaves the outbox only after its copy: a crash in between copies it
again, so each target write must add nothing the second time (a job id that exists already).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from redis.exceptions import RedisError

from cortexflow.engine.queue import QueueEngine

log = logging.getLogger("cortexflow.worker")

MAX_SET_ASIDE = 10_000


class OutboxCopier(ABC):
    """Copies the entries of one outbox of ``source``'s queue, oldest first."""

    what = "an entry"  # how the log names an entry

    def __init__(self, source: QueueEngine, outbox: str, failed: str) -> None:
        self.source = source
        self.outbox = outbox
        self.failed = failed

    @abstractmethod
    async def _copy_one(self, raw: bytes) -> None:
        """Write one entry to its target; raise to set it aside (RedisError: try again)."""

    def refused(self, exc: RedisError) -> bool:
        """True when this Redis error is the target refusing the entry (set it aside), not
        Redis being away (try again later)."""
        return False

    def where(self) -> str:
        """Where entries go, for the log ('' when each names its own target)."""
        return ""

    async def copy(self, batch: int = 100) -> int:
        """Copy every entry; returns how many were copied. Raises RedisError only (the entry
        stays in the outbox for the next pass); anything else sets the entry aside."""
        client = self.source.client
        copied = 0
        while True:
            entries: list[Any] = await client.lrange(self.outbox, 0, batch - 1)
            if not entries:
                return copied
            for raw in entries:
                try:
                    await self._copy_one(raw)
                except RedisError as exc:
                    if not self.refused(exc):
                        raise
                    await self._set_aside(raw, exc)
                    continue
                except Exception as exc:  # every other failure sets it aside
                    await self._set_aside(raw, exc)
                    continue
                await client.lrem(self.outbox, 1, raw)
                copied += 1

    async def _set_aside(self, raw: Any, exc: BaseException) -> None:
        where = self.where()
        log.error(
            "%s of queue %s could not be copied%s (%s: %s); set aside in %s",
            self.what,
            self.source.name,
            f" to {where}" if where else "",
            type(exc).__name__,
            exc,
            self.failed,
        )
        async with self.source.client.pipeline(transaction=True) as pipe:
            pipe.rpush(self.failed, raw)
            pipe.ltrim(self.failed, -MAX_SET_ASIDE, -1)
            pipe.lrem(self.outbox, 1, raw)
            await pipe.execute()
