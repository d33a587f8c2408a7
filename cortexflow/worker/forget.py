"""Keys a job's runs asked to delete once the job completed (``JobContext.forget_on_completion``:
idempotency markers), deleted off the finisher's path, in bulk, after the completion is recorded.

Not deleted: the keys of a run that failed (its retry still needs them) and those of a batch in
which a run finished after losing its lease (which one is not known, and its job may still run
elsewhere). Those, and the keys of a worker that dies before deleting, expire with their TTL."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from cortexflow.engine.connection import Client
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.worker.job_run import Lease
from cortexflow.worker.leases import Delivery

log = logging.getLogger("cortexflow.worker")

CHUNK = 500  # keys per round trip


class Forgetter:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._keys: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def completed(self, batch: list[Outcome], leases: dict[Delivery, Lease], lost: int) -> None:
        """``batch`` is recorded (``lost`` of its runs had lost their lease): queue the keys
        of its completed runs for deletion."""
        if lost:
            return
        for outcome in batch:
            if outcome.kind is OutcomeKind.COMPLETED:
                lease = leases.get((outcome.job_id, outcome.token))
                if lease is not None and lease.forget:
                    self._keys += lease.forget
        if self._keys and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._drain(), name="deletes idempotency markers")

    async def _drain(self) -> None:
        while self._keys:
            keys, self._keys = self._keys[:CHUNK], self._keys[CHUNK:]
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key in keys:  # one command per key: a Cluster routes each to its slot
                        pipe.delete(key)
                    await pipe.execute()
            except RedisError as exc:  # they expire with their TTL
                log.warning("deleting %d idempotency key(s) failed: %s", len(keys), exc)

    async def close(self, timeout: float = 1.0) -> None:
        """Let a deletion under way finish (up to ``timeout``); what is left expires."""
        if self._task is not None and not self._task.done():
            _, pending = await asyncio.wait({self._task}, timeout=timeout)
            for task in pending:
                task.cancel()
