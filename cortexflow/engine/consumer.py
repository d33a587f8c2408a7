"""The worker's side of a queue: lease jobs, renew leases, record outcomes, copy dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from cortexflow.engine.connection import BLOCK_MAX
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.queue import Fetched, FetchResult, QueueEngine


@dataclass(frozen=True)
class Outcome:
    """How one run ended, as finish.lua takes it.

    kind: 'c' completed, 'r' failed and retried after ``extra`` ms, 'f' failed for good.
    payload: result JSON ('c') or error JSON {message, stacktrace}.
    extra: for 'c'/'f' the keep rule ('1' keep, '0' remove now, 'N' keep newest N), for 'f'
    optionally followed by '|' and the dead-letter envelope JSON.
    """

    kind: str
    job_id: str
    token: str
    payload: str
    extra: str


class QueueConsumer:
    """One worker's calls on one queue. ``block_client`` is a connection of its own for BLPOP."""

    def __init__(self, engine: QueueEngine, worker_id: str, block_client: aioredis.Redis) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.block_client = block_client
        self._pending: asyncio.Task[Any] | None = None
        self._waiting = False
        self._handoffs: set[asyncio.Future[Any]] = set()
        q = engine.config
        k = engine.keys
        self._fetch_keys = [
            k.wait,
            k.delayed,
            k.active,
            k.meta,
            k.limiter,
            k.marker,
            k.failed,
            k.dlq_outbox,
        ]
        self._finish_keys = [
            k.active,
            k.wait,
            k.delayed,
            k.completed,
            k.failed,
            k.meta,
            k.marker,
            k.dlq_outbox,
        ]
        rate = q.rate_limit
        # Each fetch call leases under its own name, worker id + call number, so a lease token
        # is never handed out twice, even after a server restart or an AOF rollback reset a
        # job's delivery counter.
        self._fetches = 0
        self.last_owner = ""  # the name the latest fetch call leased under (token prefix)
        self._lease_ms = round(q.lease * 1000)
        self._fetch_args_tail: list[Any] = [
            q.max_stalls,
            rate.max if rate else 0,
            round(rate.duration * 1000) if rate else 0,
            "1" if q.dead_letter else "0",
        ]
        ret = q.retention

        def rule(r: Any) -> list[int]:
            if not r.keep:
                return [-1, -1]
            return [
                -1 if r.age is None else round(r.age * 1000),
                -1 if r.count is None else r.count,
            ]

        self._finish_args_head: list[Any] = [k.job_prefix, *rule(ret.completed), *rule(ret.failed)]

    def _fetch_args(self, n: int) -> list[Any]:
        self._fetches += 1
        owner = self.last_owner = f"{self.worker_id}.{self._fetches}"
        # A new lease runs lease..1.2*lease (renewals then extend it by exactly lease): jobs
        # recovered together do not all fall due at one instant again, and a fault that repeats
        # with the lease's own period (a crash loop) cannot keep catching a recovered job.
        lease = self._lease_ms + random.randrange(self._lease_ms // 5 + 1)
        return [self.engine.keys.job_prefix, n, owner, lease, *self._fetch_args_tail]

    def _fetch_argv(self, n: int) -> list[Any]:
        return [*self._fetch_keys, *self._fetch_args(n)]

    async def fetch(self, n: int) -> FetchResult:
        """Lease up to ``n`` jobs (also promotes due delayed jobs and recovers stalled ones)."""
        raw = await self.engine.scripts.fetch(keys=self._fetch_keys, args=self._fetch_args(n))
        return self._parse_fetch(raw)

    async def finish_and_fetch(
        self, outcomes: Sequence[Outcome], n: int
    ) -> tuple[tuple[int, int, int], FetchResult | None]:
        """Record outcomes and lease up to ``n`` more jobs in one round trip (two scripts in a
        pipeline), the worker's steady-state path. ``n == 0`` only records."""
        if n <= 0:
            return await self.finish(outcomes), None
        s = self.engine.scripts
        finish_argv = [*self._finish_keys, *self._finish_argv(outcomes)]
        # Plain EVALSHA in the pipeline: redis-py's Script objects would add a SCRIPT EXISTS
        # round trip to every pipeline. After a server restart (NOSCRIPT) fall back to the
        # Script calls, which load the scripts again.
        async with self.engine.client.pipeline(transaction=False) as pipe:
            pipe.evalsha(s.finish.sha, len(self._finish_keys), *finish_argv)
            pipe.evalsha(s.fetch.sha, len(self._fetch_keys), *self._fetch_argv(n))
            finished, fetched = await pipe.execute(raise_on_error=False)
        if isinstance(finished, NoScriptError):
            done = await self.finish(outcomes)
        elif isinstance(finished, BaseException):
            raise finished
        else:
            done = (int(finished[0]), int(finished[1]), int(finished[2]))
        if isinstance(fetched, NoScriptError):
            return done, await self.fetch(n)
        if isinstance(fetched, BaseException):
            # The outcomes are written; the jobs are leased by the next plain fetch instead.
            return done, None
        return done, self._parse_fetch(fetched)

    def _parse_fetch(self, raw: Any) -> FetchResult:
        wait_ms = int(raw[0])
        jobs: list[Fetched] = []
        q = self.engine.name
        for text in raw[2:]:
            (jid, token, name, data, opts, prio, made, created, delay, stalls) = json.loads(text)
            jobs.append(
                Fetched(
                    job=Job(
                        id=jid,
                        queue=q,
                        name=name,
                        data=data,
                        state="active",
                        priority=prio,
                        delay=delay / 1000.0,
                        attempts=opts["attempts"],
                        attempts_made=made,
                        stalls=stalls,
                        created_at=created / 1000.0,
                        processed_at=None,
                        finished_at=None,
                        opts=opts,
                    ),
                    token=token,
                )
            )
        return FetchResult(jobs=jobs, wait=None if wait_ms < 0 else wait_ms / 1000.0)

    async def wait_for_work(self, timeout: float | None) -> bool:
        """Wait until a wake-up token arrives or ``timeout`` seconds pass; True if woken.

        One BLPOP is kept outstanding and never cancelled (cancelling a blocked call can lose
        the token it was being handed). The timeout is kept here, not by the server: servers
        expire blocking calls on their cron tick (100 ms at the default hz 10), too coarse for a
        delayed job's due time. A token that arrives after this worker stopped waiting is
        passed on to the next idle worker.
        """
        if self._pending is None:
            self._pending = asyncio.create_task(self._blpop())
            self._pending.add_done_callback(self._on_token)
        pending = self._pending
        self._waiting = True
        try:
            done, _ = await asyncio.wait(
                {pending}, timeout=None if timeout is None else max(timeout, 0.001)
            )
        finally:
            self._waiting = False
        if not done:
            return False
        self._pending = None
        return pending.result() is not None

    async def _blpop(self) -> Any:
        return await self.block_client.blpop([self.engine.keys.marker], timeout=BLOCK_MAX)

    def _on_token(self, task: asyncio.Task[Any]) -> None:
        if self._waiting or task.cancelled():
            return  # the waiter takes it
        self._pending = None
        if task.exception() is None and task.result() is not None:
            handoff = asyncio.ensure_future(self.engine.client.rpush(self.engine.keys.marker, "1"))
            self._handoffs.add(handoff)
            handoff.add_done_callback(self._handoffs.discard)

    async def close(self) -> None:
        """Cancel the outstanding BLPOP and wait for it, so no task outlives the worker."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        for handoff in list(self._handoffs):
            with contextlib.suppress(Exception):
                await handoff

    async def heartbeat(self, leases: Sequence[tuple[str, str]]) -> list[str]:
        """Renew leases; returns the ids this worker no longer holds."""
        if not leases:
            return []
        args: list[Any] = [self.engine.keys.job_prefix, round(self.engine.config.lease * 1000)]
        for jid, token in leases:
            args += [jid, token]
        lost = await self.engine.scripts.heartbeat(keys=[self.engine.keys.active], args=args)
        return [x.decode() for x in lost]

    def _finish_argv(self, outcomes: Sequence[Outcome]) -> list[Any]:
        # One argument per run: packing 5 short strings each cost more than one json.dumps.
        dumps = json.dumps
        return [
            *self._finish_args_head,
            *(dumps((o.kind, o.job_id, o.token, o.payload, o.extra)) for o in outcomes),
        ]

    async def finish(self, outcomes: Sequence[Outcome]) -> tuple[int, int, int]:
        """Record outcomes in one script call; returns (recorded, lost lease, dead-lettered)."""
        done, lost, dead = await self.engine.scripts.finish(
            keys=self._finish_keys, args=self._finish_argv(outcomes)
        )
        return int(done), int(lost), int(dead)

    async def release(self, leases: Sequence[tuple[str, str]]) -> int:
        """Give jobs back to waiting without counting an attempt (the worker is stopping)."""
        if not leases:
            return 0
        k = self.engine.keys
        args: list[Any] = [k.job_prefix]
        for jid, token in leases:
            args += [jid, token]
        return int(await self.engine.scripts.release(keys=[k.active, k.wait, k.marker], args=args))

    async def copy_dead_letters(self, target: QueueEngine, batch: int = 100) -> int:
        """Copy jobs that failed for good to the dead-letter queue, then drop them from the
        outbox. The copy keeps the job id, so doing it twice (a crash in between) adds nothing."""
        outbox = self.engine.keys.dlq_outbox
        client = self.engine.client
        copied = 0
        while True:
            entries: list[Any] = await client.lrange(outbox, 0, batch - 1)
            if not entries:
                return copied
            for raw in entries:
                envelope = json.loads(raw)
                if envelope.get("stalled"):
                    envelope = await self._stalled_envelope(envelope["id"])
                await target.add_bulk(
                    [(envelope["name"], envelope, JobOptions(job_id=envelope["id"]))],
                    validate=False,
                )
                await client.lrem(outbox, 1, raw)
                copied += 1

    async def _stalled_envelope(self, job_id: str) -> dict[str, Any]:
        job = await self.engine.get_job(job_id)
        if job is None:
            return dead_letter_envelope(self.engine.name, job_id, "unknown", None, "stalled", "", 0)
        return dead_letter_envelope(
            job.queue, job.id, job.name, job.data, job.error or "stalled", "", job.attempts_made
        )


def dead_letter_envelope(
    queue: str,
    job_id: str,
    name: str,
    data: Any,
    error: str,
    stacktrace: str,
    attempts_made: int,
) -> dict[str, Any]:
    """The payload of a job copied to a dead-letter queue: where it came from and why it failed."""
    return {
        "queue": queue,
        "id": job_id,
        "name": name,
        "data": data,
        "error": error,
        "stacktrace": stacktrace,
        "attemptsMade": attempts_made,
    }
