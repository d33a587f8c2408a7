"""The worker's side of a queue: lease jobs, renew leases, record outcomes, copy dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from cortexflow.config.model import QueueConfig
from cortexflow.engine.connection import Client
from cortexflow.engine.deadletters import DeadLetterCopier
from cortexflow.engine.jobs import Job, leased_job, merged_options, queue_options
from cortexflow.engine.outcomes import (
    Outcome,
    OutcomeKind,
    encode_outcome,
    keep_rule,
)
from cortexflow.engine.queue import Fetched, FetchResult, QueueEngine, leased
from cortexflow.engine.text import valid_utf8
from cortexflow.engine.transport import BLOCK_MAX

log = logging.getLogger("cortexflow.worker")


class QueueConsumer:
    """One worker's calls on one queue. ``block_client`` is a connection of its own for BLPOP."""

    def __init__(self, engine: QueueEngine, worker_id: str, block_client: Client) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.block_client = block_client
        self._pending: asyncio.Task[Any] | None = None
        self._waiting = False
        self._handoffs: set[asyncio.Future[Any]] = set()
        # Set when finish_and_fetch leased jobs: ends a wait_for_work at once (see there).
        self._leased = asyncio.Event()
        # Called when a fetch or finish put jobs in the dead-letter outbox (wakes the copier).
        self.on_dead_letters: Callable[[], None] | None = None
        self.on_handoffs: Callable[[], None] | None = None  # a finish filled the hand-off outbox
        q = engine.config
        k = engine.keys
        self._fetch_keys, self._finish_keys = _script_keys(k)
        self._finish_fetch_keys = [k.meta]  # the script names the others from it
        rate = q.rate_limit
        # Each fetch call leases under its own name, worker id + call number, so a lease token
        # is never handed out twice, even after a server restart or an AOF rollback reset a
        # job's delivery counter.
        self._fetches = 0
        self.last_owner = ""  # the name the latest fetch call leased under (token prefix)
        self._lease_ms = round(q.lease * 1000)
        # Arguments that never change are encoded once (redis-py passes bytes through as is).
        self._fetch_args_tail: list[Any] = _encoded(
            q.max_stalls,
            rate.max if rate else 0,
            round(rate.duration * 1000) if rate else 0,
            "1" if q.dead_letter else "0",
            *_rule(q.retention.failed),
            "1" if q.retention.failed.keep else "0",
            q.global_concurrency or 0,
            *_group_args(q),
        )
        ret = q.retention
        self._finish_args_head: list[Any] = _encoded(
            k.job_prefix, *_rule(ret.completed), *_rule(ret.failed)
        )
        self._job_prefix = k.job_prefix.encode()

    def _fetch_args(self, n: int) -> list[Any]:
        self._fetches += 1
        owner = self.last_owner = f"{self.worker_id}.{self._fetches}"
        # A new lease runs lease..1.2*lease (renewals then extend it by exactly lease): jobs
        # recovered together do not all fall due at one instant again, and a fault that repeats
        # with the lease's own period (a crash loop) cannot keep catching a recovered job.
        lease = self._lease_ms + random.randrange(self._lease_ms // 5 + 1)
        return [self._job_prefix, n, owner, lease, *self._fetch_args_tail]

    async def fetch(self, n: int) -> FetchResult:
        """Lease up to ``n`` jobs (also promotes due delayed jobs and recovers stalled ones)."""
        raw = await self.engine.scripts.fetch(keys=self._fetch_keys, args=self._fetch_args(n))
        return await self._fetched(raw)

    async def finish_and_fetch(
        self, outcomes: Sequence[Outcome], n: int
    ) -> tuple[tuple[int, int, int], FetchResult | None]:
        """Record outcomes and lease up to ``n`` more jobs in one script call (finish_fetch),
        the worker's steady-state path. ``n == 0`` only records.

        The call is one EVALSHA on the queue's slot: no pipeline, so a Cluster routes it like
        any other call. If it raises, nothing is known: the caller records the outcomes again
        (a second record of a run is counted as lost, never written twice) and looks for what
        a lost reply may have leased (``last_owner``)."""
        if n <= 0:
            return await self.finish(outcomes), None
        finish_args = self._finish_argv(outcomes)
        finished, fetched = await self.engine.scripts.finish_fetch(
            keys=self._finish_fetch_keys,
            args=[len(finish_args), *finish_args, *self._fetch_args(n)],
        )
        done = (int(finished[0]), int(finished[1]), int(finished[2]))
        if done[2]:
            self._dead_letters_added()
        if len(finished) > 3 and int(finished[3]) and self.on_handoffs is not None:
            self.on_handoffs()
        if isinstance(fetched, BaseException):
            # The outcomes are written; the next plain fetch leases (and reports the error).
            log.warning("fetch after finish failed: %s", fetched)
            return done, None
        leased = await self._fetched(fetched)
        if leased.jobs:
            self._leased.set()
        return done, leased

    def _dead_letters_added(self) -> None:
        if self.on_dead_letters is not None:
            self.on_dead_letters()

    async def _fetched(self, raw: Any) -> FetchResult:
        """Parse a fetch reply; jobs whose hash was malformed are failed for good at once."""
        result, malformed = self._parse_fetch(raw)
        if int(raw[1]) > 0:
            self._dead_letters_added()  # jobs failed by stalling: dead letters too
        if malformed:
            await self.finish(malformed)
        return result

    def _parse_fetch(self, raw: Any) -> tuple[FetchResult, list[Outcome]]:
        wait_ms = int(raw[0])
        jobs: list[Fetched] = []
        malformed: list[Outcome] = []
        q = self.engine.name
        defaults = queue_options(self.engine.config)  # shared by every job without opts
        for text in raw[2:]:
            try:
                # started: the job's `deliveries` counter as fetch.lua just wrote it (this lease
                # included), sent in the reply rather than parsed back out of the token, whose
                # layout is the lease's business.
                (jid, token, name, data, opts, prio, made, created, delay, stalls, started) = (
                    _loads(text)
                )
                # Fields a job hash leaves out come back null: 0, and the queue's options.
                opts = merged_options(opts, defaults)
                job = leased_job(
                    {
                        "id": jid,
                        "queue": q,
                        "name": name,
                        "data": data,
                        "state": "active",
                        "priority": 0 if prio is None else prio,
                        "delay": (delay or 0) / 1000.0,
                        "attempts": opts["attempts"],
                        "attempts_made": 0 if made is None else made,
                        "stalls": 0 if stalls is None else stalls,
                        "created_at": created / 1000.0,
                        "processed_at": None,
                        "finished_at": None,
                        "opts": opts,
                        "started": started,
                    }
                )
                _check_shape(job)
            except Exception as exc:  # any malformed job fails alone
                bad = self._malformed(text, exc)
                if bad is not None:
                    malformed.append(bad)
                continue
            jobs.append(leased(job, token))
        return FetchResult(jobs=jobs, wait=None if wait_ms < 0 else wait_ms / 1000.0), malformed

    def _malformed(self, text: Any, exc: Exception) -> Outcome | None:
        """The failure of a leased job whose stored fields cannot be read (another client
        wrote its hash): its id and token lead the reply element, written by the script."""
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        try:
            decoder = json.JSONDecoder()
            jid, end = decoder.raw_decode(raw, 1)
            token, _ = decoder.raw_decode(raw, end + 1)
        except ValueError:
            log.error("fetch returned an unreadable job (%r); skipping it", raw[:200])
            return None
        if not isinstance(jid, str) or not isinstance(token, str):
            return None
        message = valid_utf8(
            f"MalformedJobError: the stored job cannot be read ({type(exc).__name__}: {exc}); "
            "was its hash written by another client?"
        )
        log.error("job %s of queue %s failed: %s", jid, self.engine.name, message)
        failed = self.engine.config.retention.failed
        return Outcome(
            OutcomeKind.FAILED,
            jid,
            token,
            error=message,
            keep=keep_rule(None, failed.keep),
            dead_letter=self.engine.config.dead_letter is not None,
        )

    async def wait_for_work(self, timeout: float | None) -> bool:
        """Wait until a wake-up token arrives, ``finish_and_fetch`` leases jobs, or ``timeout``
        seconds pass; True if woken.

        One BLPOP is kept outstanding and never cancelled (cancelling a blocked call can lose
        the token it was being handed). The timeout is kept here, not by the server: servers
        expire blocking calls on their cron tick (100 ms at the default hz 10), too coarse for a
        delayed job's due time. A token that arrives after this worker stopped waiting is
        passed on to the next idle worker.

        Jobs leased by ``finish_and_fetch`` while the caller waits here must start now: left
        waiting until the timeout (up to a lease), they are held without running, and a
        worker killed meanwhile stalls them again. Stalled jobs go back to the head of the
        queue, so the same jobs were parked and stalled over and over until they failed
        "stalled N times" with 0 attempts made.
        """
        if self._pending is None:
            self._pending = asyncio.create_task(self._blpop())
            self._pending.add_done_callback(self._on_token)
        pending = self._pending
        self._waiting = True
        self._leased.clear()  # no await since the caller looked at what it holds
        leased = asyncio.ensure_future(self._leased.wait())
        try:
            done, _ = await asyncio.wait(
                {pending, leased},
                timeout=None if timeout is None else max(timeout, 0.001),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            self._waiting = False
            leased.cancel()
        if pending not in done:
            return bool(done)
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
        keys = [self.engine.keys.active, self.engine.keys.meta]
        lost = await self.engine.scripts.heartbeat(keys=keys, args=args)
        return [x.decode() for x in lost]

    def _finish_argv(self, outcomes: Sequence[Outcome]) -> list[Any]:
        # One argument per run: packing 9 short values each cost more than one json.dumps.
        return [*self._finish_args_head, *map(encode_outcome, outcomes)]

    async def finish(self, outcomes: Sequence[Outcome]) -> tuple[int, int, int]:
        """Record outcomes in one script call; returns (recorded, lost lease, dead-lettered)."""
        done, lost, dead, handed = await self.engine.scripts.finish(
            keys=self._finish_keys, args=self._finish_argv(outcomes)
        )
        if int(dead):
            self._dead_letters_added()
        if int(handed) and self.on_handoffs is not None:
            self.on_handoffs()
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
        """Copy jobs that failed for good to the dead-letter queue (see DeadLetterCopier)."""
        return await DeadLetterCopier(self.engine, target).copy(batch)


def _loads(text: bytes) -> Any:
    """A fetched job's JSON: orjson (2.5x json.loads here), or json where orjson would not
    give the same value: it reads an integer past 64 bits as a float, so text with a run of
    19 digits goes to json (exact integers of any size, as the payload was added)."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _encoded(*values: Any) -> list[bytes]:
    return [str(v).encode() for v in values]


def _rule(r: Any) -> list[int]:
    """A retention rule as the scripts take it: [age ms, count], -1 for no limit."""
    if not r.keep:
        return [-1, -1]
    return [-1 if r.age is None else round(r.age * 1000), -1 if r.count is None else r.count]


def _check_shape(job: Job) -> None:
    if not isinstance(job.id, str) or not isinstance(job.name, str):
        raise TypeError("id and name must be strings")
    if not isinstance(job.data, dict) or not isinstance(job.opts, dict):
        raise TypeError("data and opts must be JSON objects")
    for value in (job.priority, job.attempts, job.attempts_made, job.stalls):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("priority, attempts and counters must be integers")


def _script_keys(k: Any) -> tuple[list[str], list[str]]:
    """The KEYS of the fetch and of the finish script of the queue of QueueKeys ``k``."""
    fetch = [k.wait, k.delayed, k.active, k.meta, k.limiter, k.marker, k.failed, k.dlq_outbox]
    finish = [k.active, k.wait, k.delayed, k.completed, k.failed, k.meta, k.marker, k.dlq_outbox]
    return [*fetch, k.events], [*finish, k.events, k.metrics]


def _group_args(q: QueueConfig) -> tuple[Any, ...]:
    """fetch's ARGV[13..16]: group concurrency (0: no groups), rate max, window ms, order."""
    g = q.group
    if g is None:
        return (0, 0, 0, "")
    rate = g.rate_limit
    return (
        g.concurrency,
        rate.max if rate else 0,
        round(rate.duration * 1000) if rate else 0,
        g.order,
    )
