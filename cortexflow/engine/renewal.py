"""Lease renewal over a blocking connection of its own, for the worker's lease thread.

The worker renews its leases from a thread, not from its event loop (a handler that blocks the
loop must not lose its jobs), so this side of the engine is synchronous: a plain redis-py client
with short timeouts and no retries of its own (the thread retries on its next tick), built by
connection.connect_sync like every other client, running the same ``heartbeat`` script the async
consumer uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from cortexflow.engine.connection import connect_sync
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.scripts import source


class SyncRenewer:
    """Renews (job id, token) leases of one queue; blocking, for a thread."""

    def __init__(self, url: str, prefix: str, queue: str, lease: float, timeout: float) -> None:
        self.client = connect_sync(url, timeout)
        keys = QueueKeys(prefix, queue)
        self._keys = [keys.active, keys.meta]
        self._head: list[Any] = [keys.job_prefix, round(lease * 1000)]
        self._script = self.client.register_script(source("heartbeat"))
        self._flags = True  # the script keeps its `#!lua flags=` line (servers from Redis 7)

    def renew(self, leases: Sequence[tuple[str, str]]) -> set[str]:
        """Extend each lease this worker still holds; returns the ids it no longer holds.

        Raises redis.RedisError (connection lost, timeout): the caller tries again."""
        if not leases:
            return set()
        args = list(self._head)
        for job_id, token in leases:
            args += [job_id, token]
        try:
            lost = self._script(keys=self._keys, args=args)
        except ResponseError as exc:
            if not self._flags or "compil" not in str(exc).lower():
                raise
            # A server older than Redis 7 reads `#!lua` as Lua and fails: renew without the
            # flag there (a full server then refuses renewals: docs/engine.md).
            self._flags = False
            self._script = self.client.register_script(source("heartbeat").split("\n", 1)[1])
            lost = self._script(keys=self._keys, args=args)
        return {x.decode() if isinstance(x, bytes) else str(x) for x in lost}

    def close(self) -> None:
        self.client.close()
