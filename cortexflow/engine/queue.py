"""Operations on one queue: every state change is one Lua script (see scripts/*.lua).

Used by the CLI, the API and the dashboard; the worker's fetch/heartbeat/finish are consumer.py's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import OutOfMemoryError, ResponseError

from cortexflow.config.model import QueueConfig
from cortexflow.engine import events, tracing
from cortexflow.engine.batches import REMOVE_BATCH, clean_set, drain_set
from cortexflow.engine.cluster import ClusterClient, node_pipeline, run_by_node
from cortexflow.engine.connection import Client
from cortexflow.engine.groups import Groups, group_of
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.keys import STATES, QueueKeys
from cortexflow.engine.memory import full_error
from cortexflow.engine.payload import check_name, encode_data, make_validator, resolve_options
from cortexflow.engine.scripts import Scripts
from cortexflow.engine.text import MAX_LOG_LINE_BYTES, bounded, replace_surrogates
from cortexflow.errors import (
    CortexflowError,
    JobNotFoundError,
    LeaseLostError,
    PayloadError,
    UsageError,
)

MAX_LOG_LINES = 1000  # a job's log keeps its newest lines
DURABLE_TIMEOUT_MS = 5000  # redis.durable_adds: longest wait for the server's fsync


@dataclass(frozen=True)
class Fetched:
    """A job handed to a worker: its lease token must accompany finish/heartbeat calls."""

    job: Job
    token: str


def leased(job: Job, token: str) -> Fetched:
    """``Fetched(job, token)`` on the worker's hot path, without the frozen dataclass's
    per-field ``object.__setattr__`` (engine/jobs.py leased_job says why)."""
    fetched = object.__new__(Fetched)
    fetched.__dict__.update(job=job, token=token)
    return fetched


@dataclass(frozen=True)
class FetchResult:
    jobs: list[Fetched]
    # Seconds until there may be work again (next delayed job due, rate window reopening,
    # a lease expiring); None when only a new enqueue can bring work.
    wait: float | None


class QueueEngine:
    """One queue's operations. Cheap to build; holds no connection of its own."""

    def __init__(
        self,
        client: Client,
        queue: QueueConfig,
        prefix: str,
        *,
        durable_adds: bool = False,
    ) -> None:
        self.client = client
        # The Cluster client when there is one: batches of this queue's scripts then go through
        # a pipeline pinned to the node serving its slot (decided here, not on every call).
        self.cluster: ClusterClient | None = client if isinstance(client, ClusterClient) else None
        self.durable_adds = durable_adds
        self.config = queue
        self.name = queue.name
        self.prefix = prefix
        self.keys = QueueKeys(prefix, queue.name)
        self.scripts = Scripts(client)
        self._validator = make_validator(queue)
        self.groups = Groups(self)

    # -- producers -------------------------------------------------------------------------

    async def add(self, name: str, data: Any, opts: JobOptions | None = None) -> str:
        """Add one job; returns its id. An id that still exists adds nothing and returns that id.

        Raises PayloadError (nothing written) when ``data`` is not a JSON object or fails the
        queue's payload_schema, UsageError for out-of-range options.
        """
        return (await self.add_bulk([(name, data, opts)]))[0]

    async def add_bulk(
        self,
        jobs: Sequence[tuple[str, Any, JobOptions | None]],
        *,
        validate: bool = True,
        added: list[int] | None = None,
    ) -> list[str]:
        """Add all jobs atomically (all or none); returns their ids in order.

        ``validate=False`` skips the payload schema (dead-letter copies carry an envelope).
        ``added``, when given, gets the number of jobs really added appended (an id that still
        exists adds nothing). With a TracerProvider set, the add is a span whose context the
        jobs carry (tracing). ServerFullError (nothing written) when the server is out of
        memory and refuses writes."""
        count = added if added is not None else []
        try:
            if (tracer := tracing.tracer()) is not None and jobs:
                return await tracing.traced_add(
                    tracer, self.name, jobs, lambda ctx: self._add_bulk(jobs, validate, ctx, count)
                )
            return await self._add_bulk(jobs, validate, "", count)
        except OutOfMemoryError:
            raise await full_error(self.client) from None

    async def _add_bulk(
        self,
        jobs: Sequence[tuple[str, Any, JobOptions | None]],
        validate: bool,
        trace_ctx: str,
        added: list[int],
    ) -> list[str]:
        args: list[Any] = [self.keys.job_prefix, len(jobs)]
        ids: list[str] = []
        for index, (name, data, opts) in enumerate(jobs):
            try:
                text = encode_data(self.name, data, self._validator if validate else None)
            except PayloadError as exc:
                if len(jobs) > 1:
                    exc.violations = [(f"/{index}{p}", m) for p, m in exc.violations]
                raise
            check_name(name)
            job_id, priority, delay_ms, options = resolve_options(self.config, opts)
            group = group_of(self.config, data, opts.group if opts else None)
            if trace_ctx:
                options = tracing.with_context(options, trace_ctx)
            ids.append(job_id)
            args += [job_id, name, text, options, priority, delay_ms, group]
        if not jobs:
            return ids
        k = self.keys
        add_keys = [k.wait, k.delayed, k.meta, k.marker, k.events]
        if not self.durable_adds:
            added.append(int(await self.scripts.add(keys=add_keys, args=args)))
            return ids
        # WAITAOF waits for the writes of its own connection: one pipeline, one connection.
        pipe = (
            self.client.pipeline(transaction=False)
            if self.cluster is None
            else await node_pipeline(self.cluster, k.meta)
        )
        async with pipe:
            await self.scripts.add(keys=add_keys, args=args, client=pipe)  # type: ignore[arg-type]
            pipe.execute_command("WAITAOF", 1, 0, DURABLE_TIMEOUT_MS)
            count, fsynced = await pipe.execute(raise_on_error=False)
        if isinstance(count, BaseException):
            raise count
        _check_fsynced(fsynced)
        added.append(int(count))
        return ids

    # -- inspection ------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """{queueName, waiting, active, completed, failed, delayed, paused}: one atomic read."""
        k = self.keys
        raw = await self.scripts.stats(keys=_stats_keys(k))
        return _stats_from(self.name, raw)

    async def get_job(self, job_id: str) -> Job | None:
        h = await self.client.hgetall(self.keys.job(job_id))
        return Job.from_hash(self.config, job_id, h) if h else None

    async def list_jobs(self, state: str, start: int = 0, limit: int = 50) -> list[Job]:
        """Jobs in ``state`` (waiting in run order, then those of groups; delayed by due time,
        finished newest first)."""
        if state not in STATES:
            raise UsageError(f"unknown state {state!r}; states: {', '.join(STATES)}")
        key = self.keys.state_key(state)
        end = start + limit - 1
        read = self.client.zrevrange if state in ("completed", "failed") else self.client.zrange
        ids = [_text(i) for i in await read(key, start, end)]
        if state == "waiting" and self.config.group is not None and len(ids) < limit:
            ids += await self.groups.waiting_ids(start, limit - len(ids))
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self.keys.job_prefix + i)
            hashes = await pipe.execute()
        return [Job.from_hash(self.config, i, h) for i, h in zip(ids, hashes, strict=True) if h]

    async def get_logs(self, job_id: str) -> list[str]:
        return [_text(x) for x in await self.client.lrange(self.keys.logs(job_id), 0, -1)]

    # -- a running job's own writes (the handler's job.update_progress() / job.log()) -------

    async def update_progress(self, job_id: str, token: str, progress: Any) -> None:
        """Store a JSON-serialisable progress value on a job this run (``token``) holds.

        Raises LeaseLostError (nothing written) when the run no longer owns the job."""
        text = json.dumps(progress, allow_nan=False, ensure_ascii=False)
        if len(text) * 4 > MAX_LOG_LINE_BYTES and len(text.encode("utf-8", "replace")) > (
            MAX_LOG_LINE_BYTES
        ):
            raise UsageError(
                f"progress is at most {MAX_LOG_LINE_BYTES:,} bytes of JSON; use the job's result "
                "or your own storage for more"
            )
        await self._own_write(job_id, token, "progress", replace_surrogates(text))

    async def log(self, job_id: str, token: str, line: str) -> None:
        """Append a line to a job's log (the newest MAX_LOG_LINES are kept; a line is cut to
        MAX_LOG_LINE_BYTES with a marker). Raises LeaseLostError like update_progress."""
        await self._own_write(job_id, token, "log", bounded(str(line), MAX_LOG_LINE_BYTES))

    async def _own_write(self, job_id: str, token: str, kind: str, value: str) -> None:
        k = self.keys
        ok = await self.scripts.progress(
            keys=[k.active, k.job(job_id), k.logs(job_id), k.events],
            args=[job_id, token, kind, value, MAX_LOG_LINES],
        )
        if not ok:
            raise LeaseLostError(
                f"job {job_id!r} of queue {self.name!r} is no longer held by this run (its "
                f"lease was lost, or the job was removed): its {kind} was not written"
            )

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

        state: completed, failed, waiting or delayed. Returns the removed ids. Each script call
        looks at SCAN_BATCH jobs and removes REMOVE_BATCH at most, so the server is never
        blocked for long; waiting and
        delayed jobs are walked with a cursor (jobs added or leased meanwhile may be missed or
        looked at twice, never removed twice).
        """
        if state not in ("completed", "failed", "waiting", "delayed"):
            raise UsageError(
                f"clean takes state completed, failed, waiting or delayed, not {state!r}"
            )
        removed = await clean_set(self, self.keys.state_key(state), state, grace, limit)
        if state == "waiting" and (limit <= 0 or len(removed) < limit):
            removed += await self.groups.clean(grace, limit - len(removed) if limit > 0 else 0)
        return removed

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting job (and delayed ones too if asked); returns how many."""
        return await drain_set(self, self.keys.wait, delayed) + await self.groups.drain()

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
            k.dlq_failed,
        ]
        total = await self.groups.obliterate(force)  # refused while jobs run, unless forced
        while True:
            n = int(
                await self.scripts.obliterate(
                    keys=keys, args=[k.job_prefix, "1" if force else "0", REMOVE_BATCH]
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
            moved = await self.scripts.retry(keys=keys, args=[k.job_prefix, "all", REMOVE_BATCH])
            out += [_text(m) for m in moved]
            if len(moved) < REMOVE_BATCH:
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


def _check_fsynced(reply: Any) -> None:
    """redis.durable_adds: the add was made; say so if the server did not fsync it (the caller
    may add it again: with its job id, that adds nothing twice)."""
    if isinstance(reply, ResponseError):
        raise CortexflowError(
            "redis.durable_adds needs WAITAOF (Valkey >= 8, Redis >= 7.2) with appendonly yes; "
            f"the server said: {reply}. The job was added, but not confirmed on disk."
        )
    if isinstance(reply, BaseException):
        raise reply
    if int(reply[0]) < 1:
        raise CortexflowError(
            "the server did not write the add to its append-only file within "
            f"{DURABLE_TIMEOUT_MS / 1000:g}s; the job was added but may not survive a crash"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stats_keys(k: QueueKeys) -> list[str]:
    return [k.wait, k.active, k.completed, k.failed, k.delayed, k.meta, k.dlq_failed, k.next_failed]


def _stats_from(name: str, raw: Sequence[int]) -> dict[str, Any]:
    counts = dict(
        zip(("waiting", "active", "completed", "failed", "delayed"), map(int, raw[:5]), strict=True)
    )
    stats = stats_dict(name, counts, bool(int(raw[5])))
    for i, key in ((6, "deadLettersNotCopied"), (7, "handoffsNotCopied")):
        if len(raw) > i and int(raw[i]):  # only when some: the usual stats keep seven keys
            stats[key] = int(raw[i])
    return stats


async def all_stats(client: Client, prefix: str, queues: Sequence[str]) -> list[dict[str, Any]]:
    """Stats of several queues in one round trip (on a Cluster, one per primary, at once)."""
    script = Scripts(client).stats
    if isinstance(client, ClusterClient):
        keys = [QueueKeys(prefix, q) for q in queues]
        raw = await run_by_node(
            client,
            [k.meta for k in keys],
            lambda pipe, i: script(keys=_stats_keys(keys[i]), client=pipe),
        )
        return [_stats_from(q, r) for q, r in zip(queues, raw, strict=True)]
    async with client.pipeline(transaction=False) as pipe:
        for q in queues:
            k = QueueKeys(prefix, q)
            await script(keys=_stats_keys(k), client=pipe)
        raw = await pipe.execute()
    return [_stats_from(q, r) for q, r in zip(queues, raw, strict=True)]


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
