"""``QueueWorker``: one queue's worker inside any asyncio loop — the broker, the receiver that
runs its jobs (JobReceiver, a taskiq Receiver), the lease thread, a registry heartbeat, the
watchdog over them (worker/vitals.py), a graceful stop.

WorkerManager embeds it; ``run_worker`` (worker/main.py) wraps it in the process the supervisor
spawns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from taskiq import AsyncBroker

from cortexflow.config.model import Config
from cortexflow.engine import registry
from cortexflow.engine.connection import Client, connect, ping
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.dataformat import FORMAT, ensure_format
from cortexflow.engine.memory import check_eviction
from cortexflow.engine.queue import QueueEngine
from cortexflow.engine.renewal import SyncRenewer
from cortexflow.redact import redact_url
from cortexflow.worker.broker import CortexBroker
from cortexflow.worker.env import (
    ENV_PARENT_PID,
    host_name,
    int_from_env,
)
from cortexflow.worker.handlers import Runner, build_runner, load_handler
from cortexflow.worker.leases import EXIT_LOOP_BLOCKED, LeaseKeeper, LeaseThread, call_timeout
from cortexflow.worker.otel import run_telemetry
from cortexflow.worker.processes import ProcessPool, process_runner
from cortexflow.worker.receiver import JobReceiver
from cortexflow.worker.taskrun import start_task_runner
from cortexflow.worker.tasks import stop_broker
from cortexflow.worker.threads import HandlerThreads
from cortexflow.worker.vitals import EXIT_WORKER_FAULT, Vitals

log = logging.getLogger("cortexflow.worker")

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 10.0
STOP_MARGIN = 0.5  # seconds kept from the supervisor's stop_timeout to give jobs back
EXIT_STUCK = 75  # drained and exited: too many sync handler threads stuck past their timeout


@dataclass
class SharedParts:
    """What the queues of one worker process share: the connection pool of their commands
    and the lease thread. Each queue keeps its own fetch connections, slots and leases."""

    client: Client
    leases: LeaseThread


class QueueWorker:
    """Processes one queue in the running event loop until ``stop()``."""

    def __init__(
        self,
        config: Config,
        queue: str,
        redis_url: str,
        *,
        replica: int = 0,
        handler: Any = None,
        exit_on_hang: bool = False,
        shared: SharedParts | None = None,
    ) -> None:
        self.config = config
        self.queue = config.queue(queue)  # UsageError for an unknown queue
        self.redis_url = redis_url
        self.replica = replica
        self.worker_id = f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = time.time()
        self.state = "starting"
        self._handler = handler
        self._shared = shared
        # The queues of this worker's process (status and the dashboard show them).
        self.process_queues: tuple[str, ...] = (self.queue.name,)
        # A worker process gives up when its event loop is blocked past a job's timeout; a
        # worker embedded in an application (WorkerManager) only lets those jobs' leases go.
        self._exit_on_hang = exit_on_hang
        self.keeper: LeaseKeeper | None = None
        # Called once the worker decided to drain and exit (too many stuck handler threads);
        # run_worker's loop turns it into a stop, as for SIGTERM.
        self.on_give_up: Callable[[], None] | None = None
        self.gave_up = False
        self.failed = False  # gave up on a fault of its own: exits non-zero
        self._finish = asyncio.Event()
        self._listen: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._vitals: Vitals | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.fault: str | None = None  # why the watchdog ended this worker
        self.broker: CortexBroker | None = None

    async def _check_server(self) -> None:
        """The server answers, keeps every job (its eviction policy, unless queues.yaml allows
        one that evicts), and holds data this release can work on (or migrates it)."""
        await ping(self.client, redact_url(self.redis_url))
        allowed = self.config.redis.allow_eviction
        if warning := await check_eviction(self.client, self.redis_url, allowed):
            log.warning("%s", warning)
        await ensure_format(self.client, self.config.redis.prefix, list(self.config.queues))

    async def start(self) -> None:
        """Import the handler, connect, and start fetching; returns once the first fetch ran.

        Raises HandlerImportError (bad handler), RedisUnavailableError or EvictionPolicyError."""
        q = self.queue
        runner = await self._runner()
        self.client = self._shared.client if self._shared else connect(self.redis_url)
        self.block_client = connect(self.redis_url)
        await self._check_server()
        prefix = self.config.redis.prefix
        engine = QueueEngine(self.client, q, prefix)
        dlq = None
        if q.dead_letter:
            dlq = QueueEngine(self.client, self.config.queue(q.dead_letter), prefix)
        # Fetch, finish and release go over a connection without redis-py's own retries: a call
        # whose reply is lost must fail here (the broker retries, and gives back what a lost
        # fetch leased), never be sent again silently. Its socket timeout stays inside lease/3.
        self.consumer_client = connect(
            self.redis_url, retries=0, socket_timeout=max(min(q.lease / 3, 30.0), 1.0)
        )
        consumer_engine = QueueEngine(self.consumer_client, q, prefix)
        consumer = QueueConsumer(consumer_engine, self.worker_id, self.block_client)
        engines: dict[str, QueueEngine] = {q.name: engine}

        def engine_for(name: str) -> QueueEngine:
            if name not in engines:
                engines[name] = QueueEngine(self.client, self.config.queue(name), prefix)
            return engines[name]

        renewer = SyncRenewer(self.redis_url, prefix, q.name, q.lease, call_timeout(q.lease))
        self.keeper = LeaseKeeper(
            renewer, q.lease, on_hang=self._on_hang, name=f"cf-{q.name}-leases"
        )
        self.keeper.start(asyncio.get_running_loop(), self._shared.leases if self._shared else None)
        broker = CortexBroker(
            engine, consumer, keeper=self.keeper, dead_letter=dlq, engine_for=engine_for
        )
        broker.is_worker_process = True
        self.broker = broker
        await broker.startup()
        # Spans and metrics per run when telemetry is on (decided here, once): otel.py.
        runner = run_telemetry(runner, broker, own_process=self._exit_on_hang)
        self._receiver = JobReceiver(broker, runner, executor=self._executor)
        self._listen = asyncio.create_task(self._receiver.listen(self._finish), name=f"cf-{q.name}")
        self._listen.add_done_callback(self._listen_ended)
        self.state = "running"
        self._beat = asyncio.create_task(self._publish_loop(), name="cf-registry")
        self._vitals = Vitals(q.lease, self._on_fault)
        self._vitals.keeper(self.keeper)
        for what, task in {**broker.background(), "registry heartbeat": self._beat}.items():
            self._vitals.task(what, task)
        self._watchdog = asyncio.create_task(self._vitals.run(), name="cf-vitals")
        ready = asyncio.create_task(broker.ready.wait())
        done, _ = await asyncio.wait({ready, self._listen}, return_when=asyncio.FIRST_COMPLETED)
        if self._listen in done:
            ready.cancel()
            self._listen.result()  # raises what stopped it

    def _listen_ended(self, task: asyncio.Task[None]) -> None:
        """The receiver stopped on its own (a fault outside Redis errors, which it rides out):
        this worker fetches nothing more, so it stops and a new process takes its place."""
        if task.cancelled() or (error := task.exception()) is None or self.state != "running":
            return
        log.error("the worker stopped fetching jobs: %r; stopping", error, exc_info=error)
        self.gave_up = self.failed = True
        if self.on_give_up is not None:
            self.on_give_up()

    async def _runner(self) -> Runner:
        """What runs a job's handler: in this process (threads for sync handlers), or in the
        pool of child processes of ``isolation: process``."""
        q = self.queue
        # A timed-out sync handler's thread is replaced; more stuck threads than slots: drain.
        self._executor = HandlerThreads(
            f"cf-{q.name}", max_abandoned=q.concurrency, on_too_many=self._too_many_stuck
        )
        self._pool: ProcessPool | None = None
        self._task_broker: AsyncBroker | None = None
        if q.isolation == "process" and self._handler is None:
            # The handler (or the tasks' broker) is imported in the children only
            # (HandlerImportError from start(), with the message of the path below).
            self._pool = ProcessPool(q, self.config.base_dir, q.concurrency, self.redis_url)
            await self._pool.start()
            return process_runner(self._pool)
        if q.tasks is not None:  # a taskiq broker's tasks: started here, in this loop
            base_dir = self.config.base_dir
            self._task_broker, runner = await start_task_runner(q, base_dir, self._executor)
            return runner
        handler = self._handler
        if handler is None:
            handler = load_handler(q.handler, self.config.base_dir)
        return build_runner(handler, self._executor)

    def _too_many_stuck(self, stuck: int) -> None:
        """More sync handler threads stuck past their timeout than the queue has slots: this
        worker drains (running jobs finish, the rest go back) and exits so a fresh process
        replaces it. It leaves the worker registry at once, so health reports the queue."""
        if self.gave_up:
            return
        self.gave_up = True
        self.state = "stuck"
        log.error(
            "%d sync handler threads are stuck past their timeout (more than the queue's "
            "%d slots): draining and exiting so a new worker takes this one's place; use "
            "`isolation: process` to have hung handlers killed",
            stuck,
            self.queue.concurrency,
        )
        if self._beat is not None:
            self._beat.cancel()
        self._withdraw = asyncio.ensure_future(
            registry.remove_worker(
                self.client, self.config.redis.prefix, self.queue.name, self.worker_id
            )
        )
        if self.on_give_up is not None:
            self.on_give_up()

    def _on_hang(self, job_ids: list[str], blocked: float) -> None:
        """Called from the lease thread: the event loop has been blocked past the timeout of
        ``job_ids``, which can therefore never fire."""
        ids = ", ".join(job_ids)
        if self._exit_on_hang:
            log.error(
                "the event loop has been blocked for %.1fs, past the timeout of job(s) %s: "
                "exiting so they are run again elsewhere (after their lease) and a new worker "
                "takes this one's place",
                blocked,
                ids,
            )
            sys.stderr.flush()
            os._exit(EXIT_LOOP_BLOCKED)
        log.error(
            "the event loop has been blocked for %.1fs, past the timeout of job(s) %s: their "
            "leases are no longer renewed, so they are run again elsewhere",
            blocked,
            ids,
        )
        assert self.broker is not None
        keeper = self.keeper
        if keeper is not None:
            for key in list(self.broker.leases):
                if key[0] in job_ids:
                    keeper.drop(key)

    def _on_fault(self, cause: str) -> None:
        """The watchdog found a part this worker cannot run without dead or stalled: stop
        taking jobs and end, without giving the running jobs back (their leases may no longer
        be renewed: they run again elsewhere once the lease ran out, never alongside)."""
        self.fault = cause
        self.failed = self.gave_up = True
        self.state = "failed"
        if self.broker is not None:
            self.broker.fetch_enabled = False
        log.error(
            "%s: this worker stops taking jobs and exits so a new one takes its place; its "
            "running jobs run again after their lease",
            cause,
        )
        if self._exit_on_hang:
            self._ending = asyncio.ensure_future(self._exit_for_fault())
        else:  # embedded in an application: stop this worker, not the process
            self._ending = asyncio.ensure_future(self._end_for_fault())

    async def _end_for_fault(self) -> None:
        broker = self.broker
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.stop_runs(wait=0.5)  # not given back: they stall, then run again
                await broker.flush(timeout=2.0)
        self._finish.set()
        await self._close()
        if self.on_give_up is not None:
            self.on_give_up()

    async def _exit_for_fault(self) -> None:
        """A worker process: keep the outcomes already decided, leave the registry, exit."""
        broker = self.broker
        with contextlib.suppress(Exception):
            if broker is not None:
                await asyncio.wait_for(broker.flush(timeout=2.0), 3.0)
            await asyncio.wait_for(
                registry.remove_worker(
                    self.client, self.config.redis.prefix, self.queue.name, self.worker_id
                ),
                2.0,
            )
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_WORKER_FAULT)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop fetching now; let running jobs finish within ``timeout`` (default: the config's
        stop_timeout); then stop the runs that can be stopped (async handlers) and give their
        jobs back to waiting. A sync handler still running in its thread cannot be stopped: its
        job keeps its lease and the stop waits for the thread (its outcome is recorded then)."""
        if self.broker is None:
            return
        broker = self.broker
        if timeout is None:
            timeout = self.config.stop_timeout
        self.state = "stopping"
        self._receiver.wait_tasks_timeout = max(timeout - STOP_MARGIN, 0.0)
        broker.fetch_enabled = False
        self._finish.set()
        if self._listen is not None:
            with contextlib.suppress(Exception):
                await self._listen
        await broker.stop_runs()
        await broker.flush(timeout=5.0)
        await self._give_back(broker)
        if n := broker.in_threads():
            log.warning(
                "%d job(s) still running in sync handler threads, which cannot be stopped: "
                "their leases are kept until the threads end (signal again to exit now; those "
                "jobs then run again after their lease)",
                n,
            )
            # A worker process waits as long as it takes (`up` SIGKILLs it at stop_timeout; run
            # alone, a second signal ends it). Embedded in an application (WorkerManager), the
            # stop must return: it waits one more stop timeout, then leaves those jobs to stall.
            bound = None if self._exit_on_hang else max(timeout, 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(broker.wait_threads(), bound)
            await broker.flush(timeout=5.0)
        await self._close()

    async def _give_back(self, broker: CortexBroker) -> None:
        try:
            released = await asyncio.wait_for(broker.release_all(), 10)
            if released:
                log.warning("gave %d unfinished job(s) back to waiting", released)
        except (RedisError, TimeoutError) as exc:
            log.error("could not give jobs back (%s); they return after their lease", exc)

    async def abort(self) -> None:
        """Stop at once: stop what can be stopped, give those jobs back to waiting, close.
        Jobs of sync handlers still running in threads are left to stall."""
        if self.broker is None:
            return
        broker = self.broker
        broker.fetch_enabled = False
        self._finish.set()
        await broker.flush(timeout=1.0)  # outcomes already decided are worth writing
        await broker.stop_runs(wait=0.5)
        await self._give_back(broker)
        if self._listen is not None:
            self._listen.cancel()
        await self._close()

    async def _close(self) -> None:
        broker, self.broker = self.broker, None
        if broker is None:  # closed already (a stop and an abort may both get here)
            return
        self.state = "stopped"
        if self._vitals is not None:
            self._vitals.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.wait({self._beat}, timeout=2.0)  # bounded: see broker.shutdown
        with contextlib.suppress(Exception):
            await registry.remove_worker(
                self.client, self.config.redis.prefix, self.queue.name, self.worker_id
            )
        await broker.shutdown()
        if self.keeper is not None:
            self.keeper.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            await self._pool.aclose()  # a tasks queue's children run the broker's shutdown
        if self._task_broker is not None:
            with contextlib.suppress(Exception):  # a user's shutdown hook must not stop the close
                await stop_broker(self._task_broker)
        if self._shared is None:  # a shared pool is closed by the process, once
            await self.client.aclose()
        await self.consumer_client.aclose()
        await self.block_client.aclose()

    def info(self) -> dict[str, Any]:
        b = self.broker
        return {
            "host": host_name(),
            "pid": os.getpid(),
            "queue": self.queue.name,
            "process": self.queue.process_name,
            "process_queues": list(self.process_queues),
            "replica": self.replica,
            "started_at": self.started_at,
            "jobs_done": b.jobs_done if b else 0,
            "jobs_failed": b.jobs_failed if b else 0,
            "active": b.running if b else 0,
            "state": self.state,
            "supervisor_pid": int_from_env(ENV_PARENT_PID),
            # Wall clock of the first of the lease renewals failing now (None: they work):
            # `status` and `health` report it (engine/health.py).
            "leases_failing_since": self.keeper.failing_since if self.keeper else None,
            # The data format this worker's code works on: a migration that older code cannot
            # follow waits until no worker of an older format runs (engine/dataformat.py).
            "format": FORMAT,
        }

    async def _publish_loop(self) -> None:
        while self.state != "stopped":
            try:
                await registry.publish_worker(
                    self.client,
                    self.config.redis.prefix,
                    self.queue.name,
                    self.worker_id,
                    self.info(),
                    HEARTBEAT_TTL,
                )
            except RedisError as exc:
                log.warning("worker heartbeat failed (%s)", exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL)


# -- the process entry ------------------------------------------------------------------------
