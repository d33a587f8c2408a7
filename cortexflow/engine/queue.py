"""Operations on one queue: every state change is one Lua script (see scripts/*.lua).

Used by the worker (fetch / heartbeat / finish), the CLI and the Python API (everything else).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortexflow.config.model import QueueConfig
from cortexflow.engine import events, registry
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.keys import STATES, QueueKeys
from cortexflow.engine.payload import encode_data, make_validator, resolve_options
from cortexflow.engine.scripts import Scripts
from cortexflow.errors import CortexflowError, JobNotFoundError, PayloadError, UsageError


@dataclass(frozen=True)
class Fetched:
    """A job handed to a worker: its lease token must accompany finish/heartbeat calls."""

    job: Job
    token: str


@dataclass(frozen=True)
class FetchResult:
    jobs: list[Fetched]
    # Seconds until there may be work again (next delayed job due, rate window reopening,
    # a lease expiring); None when only a new enqueue can bring work.
    wait: float | None


class QueueEngine:
    """One queue's operations. Cheap to build; holds no connection of its own."""

    def __init__(self, client: aioredis.Redis, queue: QueueConfig, prefix: str) -> None:
        self.client = client
        self.config = queue
        self.name = queue.name
        self.prefix = prefix
        self.keys = QueueKeys(prefix, queue.name)
        self.scripts = Scripts(client)
        self._validator = make_validator(queue)

    # -- producers -------------------------------------------------------------------------

    async def add(self, name: str, data: Any, opts: JobOptions | None = None) -> str:
        """Add one job; returns its id. An id that still exists adds nothing and returns that id.

        Raises PayloadError (nothing written) when ``data`` is not a JSON object or fails the
        queue's payload_schema, UsageError for out-of-range options.
        """
        return (await self.add_bulk([(name, data, opts)]))[0]

    async def add_bulk(
        self, jobs: Sequence[tuple[str, Any, JobOptions | None]], *, validate: bool = True
    ) -> list[str]:
        """Add all jobs atomically (all or none); returns their ids in order.

        ``validate=False`` skips the payload schema (dead-letter copies carry an envelope)."""
        args: list[Any] = [self.keys.job_prefix, len(jobs)]
        ids: list[str] = []
        for index, (name, data, opts) in enumerate(jobs):
            try:
                text = encode_data(self.name, data, self._validator if validate else None)
            except PayloadError as exc:
                if len(jobs) > 1:
                    exc.violations = [(f"/{index}{p}", m) for p, m in exc.violations]
                raise
            if not isinstance(name, str) or not name:
                raise UsageError(f"job name must be a non-empty string, got {name!r}")
            job_id, priority, delay_ms, options = resolve_options(self.config, opts)
            ids.append(job_id)
            args += [job_id, name, text, options, priority, delay_ms]
        if jobs:
            k = self.keys
            await self.scripts.add(keys=[k.wait, k.delayed, k.meta, k.marker, k.events], args=args)
        return ids

    # -- inspection ------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """{queueName, waiting, active, completed, failed, delayed, paused}: one atomic read."""
        k = self.keys
        raw = await self.scripts.stats(
            keys=[k.wait, k.active, k.completed, k.failed, k.delayed, k.meta]
        )
        return _stats_from(self.name, raw)

    async def get_job(self, job_id: str) -> Job | None:
        h = await self.client.hgetall(self.keys.job(job_id))
        return Job.from_hash(self.name, h) if h else None

    async def list_jobs(self, state: str, start: int = 0, limit: int = 50) -> list[Job]:
        """Jobs in ``state`` (waiting in run order, delayed by due time, finished newest first)."""
        if state not in STATES:
            raise UsageError(f"unknown state {state!r}; states: {', '.join(STATES)}")
        key = self.keys.state_key(state)
        end = start + limit - 1
        if state in ("completed", "failed"):
            ids = await self.client.zrevrange(key, start, end)
        else:
            ids = await self.client.zrange(key, start, end)
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self.keys.job_prefix + _text(i))
            hashes = await pipe.execute()
        return [Job.from_hash(self.name, h) for h in hashes if h]

    async def get_logs(self, job_id: str) -> list[str]:
        return [_text(x) for x in await self.client.lrange(self.keys.job(job_id) + ":logs", 0, -1)]

    async def wait_finished(self, job_id: str, timeout: float) -> Job | None:
        """Block until the job is completed or failed for good (or timeout: returns None).

        Woken by the queue's event stream: each event re-reads the job's state (and at least
        once a second, so a trimmed stream or a server restart costs a second at most)."""
        deadline = time.monotonic() + timeout
        after = await events.last_id(self.client, self.prefix, self.name)
        seen = False
        while True:
            state = await self.client.hget(self.keys.job(job_id), "state")
            if state is None:
                if seen:
                    raise JobNotFoundError(
                        f"job {job_id!r} of queue {self.name!r} finished and was removed at once "
                        "(remove_on_complete / remove_on_fail, or retention: false), so its "
                        "result is gone"
                    )
                raise JobNotFoundError(f"no job {job_id!r} in queue {self.name!r}")
            seen = True
            if state in (b"completed", b"failed"):
                return await self.get_job(job_id)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = await events.read(self.client, self.prefix, self.name, after, min(left, 1.0))
            if got:
                after = got[-1].id

    # -- operations ------------------------------------------------------------------------

    async def pause(self) -> None:
        k = self.keys
        await self.scripts.pause(keys=[k.meta, k.marker, k.events], args=["1"])

    async def resume(self) -> None:
        k = self.keys
        await self.scripts.pause(keys=[k.meta, k.marker, k.events], args=["0"])

    async def clean(self, grace: float, limit: int = 0, state: str = "completed") -> list[str]:
        """Remove up to ``limit`` (0: all) jobs of ``state`` older than ``grace`` seconds.

        state: completed, failed, waiting or delayed. Returns the removed ids.
        """
        if state not in ("completed", "failed", "waiting", "delayed"):
            raise UsageError(
                f"clean takes state completed, failed, waiting or delayed, not {state!r}"
            )
        removed: list[str] = []
        while True:
            batch = 1000 if limit <= 0 else min(1000, limit - len(removed))
            ids = await self.scripts.clean(
                keys=[self.keys.state_key(state), self.keys.events],
                args=[self.keys.job_prefix, round(grace * 1000), batch, state],
            )
            removed += [_text(i) for i in ids]
            if len(ids) < batch or (limit > 0 and len(removed) >= limit):
                return removed

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting job (and delayed ones too if asked); returns how many."""
        total = 0
        while True:
            n = int(
                await self.scripts.drain(
                    keys=[self.keys.wait, self.keys.delayed, self.keys.events],
                    args=[self.keys.job_prefix, "1" if delayed else "0", 1000],
                )
            )
            total += n
            if n == 0:
                return total

    async def obliterate(self, force: bool = False) -> int:
        """Remove the queue and all its jobs; refused (CortexflowError) while jobs are active
        unless ``force``. Returns the number of jobs removed."""
        k = self.keys
        keys = [
            k.wait,
            k.delayed,
            k.active,
            k.completed,
            k.failed,
            k.meta,
            k.limiter,
            k.marker,
            k.dlq_outbox,
            k.events,
            k.metrics_total,
        ]
        total = 0
        while True:
            n = int(
                await self.scripts.obliterate(
                    keys=keys, args=[k.job_prefix, "1" if force else "0", 1000]
                )
            )
            if n < 0:
                raise CortexflowError(
                    f"queue {self.name!r} has active jobs; stop its workers first or force it "
                    "(obliterate --force)"
                )
            total += n
            if n == 0:
                return total

    async def retry(self, job_ids: Sequence[str] | None = None) -> list[str]:
        """Move failed jobs (those ids, or all when None) back to waiting, attempts reset."""
        k = self.keys
        keys = [k.failed, k.wait, k.marker, k.events]
        if job_ids is not None:
            moved = await self.scripts.retry(keys=keys, args=[k.job_prefix, "ids", *job_ids])
            return [_text(m) for m in moved]
        out: list[str] = []
        while True:
            moved = await self.scripts.retry(keys=keys, args=[k.job_prefix, "all", 1000])
            out += [_text(m) for m in moved]
            if len(moved) < 1000:
                return out

    async def promote(self, job_id: str) -> bool:
        """Make a delayed job waiting now; False if it is not delayed."""
        k = self.keys
        n = await self.scripts.promote(
            keys=[k.delayed, k.wait, k.marker, k.events], args=[k.job_prefix, job_id]
        )
        return bool(n)

    async def remove(self, job_id: str) -> bool:
        """Remove a job that is not active; False if there is no such job.

        Raises CortexflowError for an active job (its worker holds it)."""
        k = self.keys
        n = int(
            await self.scripts.remove(
                keys=[k.wait, k.delayed, k.active, k.completed, k.failed, k.events],
                args=[k.job_prefix, job_id],
            )
        )
        if n < 0:
            raise CortexflowError(
                f"job {job_id!r} of queue {self.name!r} is active: a worker is running it; "
                "remove it once it has finished"
            )
        return n == 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stats_from(name: str, raw: Sequence[int]) -> dict[str, Any]:
    counts = dict(
        zip(("waiting", "active", "completed", "failed", "delayed"), map(int, raw[:5]), strict=True)
    )
    return stats_dict(name, counts, bool(int(raw[5])))


async def all_stats(
    client: aioredis.Redis, prefix: str, queues: Sequence[str]
) -> list[dict[str, Any]]:
    """Stats of several queues in one round trip."""
    script = Scripts(client).stats
    async with client.pipeline(transaction=False) as pipe:
        for q in queues:
            k = QueueKeys(prefix, q)
            await script(
                keys=[k.wait, k.active, k.completed, k.failed, k.delayed, k.meta], client=pipe
            )
        raw = await pipe.execute()
    return [_stats_from(q, r) for q, r in zip(queues, raw, strict=True)]


async def health(
    client: aioredis.Redis, prefix: str, queues: Sequence[str], require_workers: bool = False
) -> dict[str, Any]:
    """{healthy, queues: {name: bool}}: a queue is unhealthy when a supervisor expects workers
    for it and none is alive (with ``require_workers``: whenever none is alive); everything is
    unhealthy when Redis does not answer."""
    try:
        await client.ping()
        expected = await registry.expected_counts(client, prefix, queues)
        live = await registry.live_worker_counts(client, prefix, queues)
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return {"healthy": False, "queues": dict.fromkeys(queues, False)}
    status = {q: live[q] > 0 or (expected[q] == 0 and not require_workers) for q in queues}
    return {"healthy": all(status.values()), "queues": status}


def stats_dict(name: str, counts: Mapping[str, int], paused: bool) -> dict[str, Any]:
    return {
        "queueName": name,
        "waiting": counts["waiting"],
        "active": counts["active"],
        "completed": counts["completed"],
        "failed": counts["failed"],
        "delayed": counts["delayed"],
        "paused": paused,
    }
