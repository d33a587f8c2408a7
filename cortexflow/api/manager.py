"""QueueManager: the producer and admin API (the BullMQ service's, in snake_case), on the engine.

One manager holds one Redis client (and, when no URL is configured, keeps the folder's
embedded server up until ``close()``). Everything is async; ``SyncQueueManager`` wraps it
for code without an event loop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Unpack

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortexflow.api.resolve import ConfigSource, Pin, current_pin, load, open_endpoint
from cortexflow.api.schedules import describe, make_schedule
from cortexflow.config.model import Config
from cortexflow.engine import schedules as schedule_store
from cortexflow.engine.connection import Client, connect, ping, unusable
from cortexflow.engine.dataformat import ensure_format
from cortexflow.engine.health import health
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.memory import check_eviction
from cortexflow.engine.options import AddOptions, bulk_options, job_options
from cortexflow.engine.queue import QueueEngine, all_stats
from cortexflow.errors import RedisUnavailableError, UsageError
from cortexflow.redact import redact_url

log = logging.getLogger("cortexflow")


class QueueManager:
    """Add jobs to the queues of one queues.yaml, read their stats, operate them.

    ``config``: a path (default ``$CORTEXFLOW_FILE`` or ``./queues.yaml``) or a loaded Config.
    ``redis_url`` overrides ``redis.url`` / ``$REDIS_URL``. Nothing connects until first use.
    Inside a test using the ``cortexflow`` fixture, the defaults are the fixture's server and
    queues.yaml (never the folder's embedded server).
    """

    def __init__(self, config: ConfigSource = None, redis_url: str | None = None) -> None:
        self._source = config
        self._override = redis_url
        self._config: Config | None = config if isinstance(config, Config) else None
        self._stack = contextlib.ExitStack()
        self._client: Client | None = None
        self._url = ""
        self._pin: Pin | None = None  # the test fixture whose server it uses (resolve.pinned)
        self._pinged = False
        # Engines are kept: building one registers the scripts and the payload validator,
        # which cost more than the add itself (add_job made one per call).
        self._engines: dict[str, QueueEngine] = {}

    # -- connection ------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(self._source)
        return self._config

    @property
    def queue_names(self) -> list[str]:
        return list(self.config.queues)

    @property
    def url(self) -> str:
        """The Redis URL in use, password redacted ("" before the first connection)."""
        return redact_url(self._url) if self._url else ""

    def _redis(self) -> Client:
        if self._client is None:
            self._pin = None if self._override else current_pin()
            self._url = open_endpoint(self._stack, self.config, self._override)
            self._client = connect(self._url)
        elif self._pin is not None and current_pin() is not self._pin:
            # Its database belonged to a test that has ended: its jobs would reach no worker.
            raise UsageError(
                "this QueueManager was connected during an earlier test, to that test's "
                "database of the `cortexflow` fixture: make the manager within each test (e.g. "
                "in your app's lifespan; see docs/testing.md)"
            )
        return self._client

    async def connect(self) -> None:
        """Resolve the server and check that it answers (RedisUnavailableError otherwise) and
        that its data is in a format this release works on (DataFormatError otherwise; older
        data is migrated: engine/dataformat.py).

        The check uses a client that barely retries, so a wrong URL fails in milliseconds;
        the manager's own client retries transient errors (a restart, an AOF reload). It also
        refuses, with EvictionPolicyError, a server whose maxmemory-policy may delete jobs when
        it is full, unless queues.yaml sets ``redis.allow_eviction: true``.
        """
        self._redis()
        if not self._pinged:
            probe = connect(self._url, retries=2)
            try:
                await ping(probe, self._url)
                allowed = self.config.redis.allow_eviction
                if warning := await check_eviction(probe, self._url, allowed):
                    log.warning("%s", warning)
            finally:
                await probe.aclose()
            with self._errors():  # refuses data of a format this release cannot work on
                await ensure_format(self._redis(), self.config.redis.prefix, self.queue_names)
            self._pinged = True

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Connection trouble after the first ping still surfaces as RedisUnavailableError."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise unusable(self._url, exc) from None

    async def close(self) -> None:
        """Close the connection (and release the embedded server if this manager started it)."""
        client, self._client, self._pinged = self._client, None, False
        self._engines.clear()
        try:
            if client is not None:
                await client.aclose()
        finally:
            self._stack.close()

    async def __aenter__(self) -> QueueManager:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def redis_client(self) -> Client:
        """The connected client, for data handlers keep in Redis (e.g. analytics, inboxes)."""
        await self.connect()
        return self._redis()

    async def new_client(self, *, max_connections: int | None = None) -> Client:
        """A client of its own (its own connection pool, at most ``max_connections``) to the
        server this manager uses; the caller closes it. The dashboard's event streams block on
        one, so they never hold the connections every other request needs."""
        await self.connect()
        return connect(self._url, max_connections=max_connections)

    def get_queue(self, queue: str) -> QueueEngine:
        """The queue's engine, for job-level operations (get_job, list_jobs, retry, promote, ...).

        UsageError naming the declared queues when ``queue`` is not one of them.
        """
        cfg = self.config.queue(str(queue))
        client = self._redis()
        engine = self._engines.get(cfg.name)
        if engine is None or engine.client is not client:  # one per queue and connection
            redis_cfg = self.config.redis
            engine = QueueEngine(client, cfg, redis_cfg.prefix, durable_adds=redis_cfg.durable_adds)
            self._engines[cfg.name] = engine
        return engine

    async def _engine(self, queue: str) -> QueueEngine:
        engine = self.get_queue(queue)
        await self.connect()
        return engine

    # -- producers -------------------------------------------------------------------------

    async def add_job(
        self,
        queue: str,
        name: str,
        data: Any,
        **options: Unpack[AddOptions],
    ) -> str:
        """Add one job; returns its id. ``delay`` and ``backoff["delay"]`` are milliseconds.

        PayloadError (nothing written) when ``data`` fails the queue's payload_schema.
        """
        engine = await self._engine(queue)
        opts = job_options(engine.config, **options)
        with self._errors():
            return await engine.add(name, data, opts)

    async def add_bulk(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Add ``[{"name", "data", "opts"}, ...]`` atomically (all or none); returns the ids."""
        engine = await self._engine(queue)
        batch: list[tuple[str, Any, JobOptions | None]] = []
        for i, job in enumerate(jobs):
            if not isinstance(job, Mapping) or "name" not in job or "data" not in job:
                raise UsageError(f"jobs[{i}] must be a mapping with 'name' and 'data' (and 'opts')")
            extra = set(job) - {"name", "data", "opts"}
            if extra:
                raise UsageError(f"jobs[{i}]: unknown key(s) {sorted(extra)}; use name, data, opts")
            batch.append(
                (str(job["name"]), job["data"], bulk_options(engine.config, job.get("opts")))
            )
        if not batch:
            return []
        with self._errors():
            return await engine.add_bulk(batch)

    # -- monitoring ------------------------------------------------------------------------

    async def get_queue_stats(self, queue: str) -> dict[str, Any]:
        """``{queueName, waiting, active, completed, failed, delayed, paused}``."""
        engine = await self._engine(queue)
        with self._errors():
            return await engine.stats()

    async def get_all_queue_stats(
        self, queues: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Stats of every declared queue (or of ``queues``), read in one round trip."""
        names = [self.config.queue(str(q)).name for q in queues] if queues else self.queue_names
        await self.connect()
        with self._errors():
            return await all_stats(self._redis(), self.config.redis.prefix, names)

    async def health_check(self, require_workers: bool = False) -> dict[str, Any]:
        """``{healthy, queues: {name: bool}}``; never raises for an unreachable Redis.

        A queue is unhealthy when a running ``cortexflow up`` expects workers for it and none
        is alive; with ``require_workers=True`` also whenever it has no live worker at all
        (nothing runs it: no supervisor, or one that stopped).
        """
        names = self.queue_names
        try:
            await self.connect()
            with self._errors():
                return await health(self._redis(), self.config.redis.prefix, names, require_workers)
        except RedisUnavailableError:
            return {"healthy": False, "queues": dict.fromkeys(names, False)}

    # -- operations ------------------------------------------------------------------------

    async def pause_queue(self, queue: str) -> None:
        """No new job starts in the queue, on any host; running jobs finish; adding still works."""
        engine = await self._engine(queue)
        with self._errors():
            await engine.pause()

    async def resume_queue(self, queue: str) -> None:
        engine = await self._engine(queue)
        with self._errors():
            await engine.resume()

    async def pause_group(self, queue: str, group: str, paused: bool = True) -> bool:
        """No new job of ``group`` starts (``paused=False``: resume it); True if that changed it."""
        engine = await self._engine(queue)
        with self._errors():
            return await engine.groups.pause(group, paused)

    async def resume_group(self, queue: str, group: str) -> bool:
        return await self.pause_group(queue, group, paused=False)

    async def get_group_stats(self, queue: str, limit: int = 20) -> dict[str, Any]:
        """The groups with the most waiting jobs, active per group (docs/groups.md)."""
        engine = await self._engine(queue)
        with self._errors():
            return await engine.groups.stats(limit)

    async def clean_queue(
        self, queue: str, grace_ms: float = 3_600_000, limit: int = 100, state: str = "completed"
    ) -> list[str]:
        """Remove up to ``limit`` (0: no limit) jobs of ``state`` older than ``grace_ms``.

        ``state``: completed, failed, waiting or delayed. Returns the removed ids.
        """
        if state not in ("completed", "failed", "waiting", "delayed"):
            raise UsageError(f"state is completed, failed, waiting or delayed; got {state!r}")
        if not isinstance(limit, int) or limit < 0:
            raise UsageError(f"limit is an integer >= 0 (0: no limit); got {limit!r}")
        grace = _seconds(grace_ms, "grace_ms")
        engine = await self._engine(queue)
        with self._errors():
            return await engine.clean(grace, limit, state)

    async def drain_queue(self, queue: str, delayed: bool = False) -> int:
        """Remove every waiting job (and delayed ones if ``delayed``); returns how many."""
        engine = await self._engine(queue)
        with self._errors():
            return await engine.drain(delayed)

    # -- schedules -------------------------------------------------------------------------

    async def upsert_schedule(
        self,
        name: str,
        *,
        queue: str,
        cron: str | None = None,
        every: str | float | None = None,
        timezone: str = "UTC",
        data: Mapping[str, Any] | None = None,
        job_name: str | None = None,
        opts: Mapping[str, Any] | None = None,
        start_at: str | datetime | None = None,
        catch_up: str = "one",
    ) -> None:
        """Create or replace a schedule, stored in Redis: every running `cortexflow up` adds
        its jobs from its next tick on (within a second). ``every``: "5m" or milliseconds.

        Checked as queues.yaml's ``schedules:`` are: UsageError, or PayloadError for ``data``.
        A schedule declared in queues.yaml of the same name replaces this one at the next
        `up` or SIGHUP.
        """
        schedule = make_schedule(
            self.config,
            name,
            queue=str(queue),
            cron=cron,
            every=every,
            timezone=timezone,
            data=data,
            job_name=job_name,
            opts=opts,
            start_at=start_at,
            catch_up=catch_up,
        )
        await self.connect()
        with self._errors():
            await schedule_store.upsert(self._redis(), self.config.redis.prefix, schedule, "api")

    async def remove_schedule(self, name: str) -> bool:
        """Remove a schedule (no more jobs from it); False if there was none. One declared in
        queues.yaml comes back at the next `up` or SIGHUP unless removed from the file too."""
        await self.connect()
        with self._errors():
            return await schedule_store.remove(self._redis(), self.config.redis.prefix, name)

    async def list_schedules(self) -> list[dict[str, Any]]:
        """Every stored schedule: ``{name, queue, rule, timezone, jobName, catchUp, source,
        lastRun, lastJob, nextRun}`` (times in epoch seconds, None when unknown)."""
        await self.connect()
        client, prefix = self._redis(), self.config.redis.prefix
        with self._errors():
            stored = await schedule_store.load_all(client, prefix)
            states = await schedule_store.states(client, prefix, stored)
            now = await schedule_store.server_ms(client)
        return [describe(stored[n], states[n], now) for n in stored]

    async def trigger_schedule(self, name: str) -> str:
        """Add one run of a schedule now (outside its ticks); returns the job id."""
        await self.connect()
        client, prefix = self._redis(), self.config.redis.prefix
        with self._errors():
            stored = (await schedule_store.load_all(client, prefix)).get(name)
        if stored is None:
            raise UsageError(f"no schedule named {name!r} (`cortexflow schedules` lists them)")
        s = stored.schedule
        engine = await self._engine(s.queue)
        opts = schedule_store.job_options(s, engine.config, None)
        with self._errors():
            return await engine.add(s.job_name, dict(s.data), opts)


def _seconds(ms: object, what: str) -> float:
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
        raise UsageError(f"{what} is a number of milliseconds >= 0; got {ms!r}")
    return float(ms) / 1000.0


def get_queue_manager(config: ConfigSource = None, redis_url: str | None = None) -> QueueManager:
    """A QueueManager for ``config`` (default ``$CORTEXFLOW_FILE`` or ``./queues.yaml``).

    Unlike the BullMQ service's singleton, each call returns a new manager: keep the one you need
    (e.g. for the life of your app) and ``await manager.close()`` at the end.
    """
    return QueueManager(config, redis_url)
