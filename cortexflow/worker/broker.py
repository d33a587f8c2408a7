"""cortexflow's taskiq broker: the engine's scripts move jobs, JobReceiver (receiver.py) runs them.

Why a broker of our own (docs/engine.md): taskiq-redis's brokers are FIFO only, ignore delays,
lose or re-run jobs on crashes. How it works:
- ``feed()`` leases as many jobs as there are free slots, in one script call, and hands them to
  the receiver, which starts them at once: the worker never holds jobs it cannot start. It blocks
  on the queue's wake-up list when idle.
- A finished run is acked with its value or error (``ack()``): the outcome is decided at once,
  the slot freed, and the finisher writes outcomes in batches through one script call that also
  leases jobs for the freed slots.
- Leases are keyed by delivery token (a job leased twice by this worker is two leases) and renewed
  by the worker's lease thread (worker/leases.py), not by this event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import Any, NoReturn

from redis.exceptions import RedisError
from taskiq import AsyncBroker
from taskiq.message import BrokerMessage

from cortexflow.backoff import outage_pause
from cortexflow.engine import orphans
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.options import AddOptions, job_options
from cortexflow.engine.outcomes import (
    Outcome,
    OutcomeKind,
)
from cortexflow.engine.queue import Fetched, FetchResult, QueueEngine
from cortexflow.worker.context import JobContext
from cortexflow.worker.forget import Forgetter
from cortexflow.worker.job_run import (
    Formatter,
    JobResultBackend,
    Lease,
    Outcomes,
    job_context,
    log_failure,
)
from cortexflow.worker.leases import Delivery, LeaseKeeper

log = logging.getLogger("cortexflow.worker")

# Loop turns the finisher waits for more outcomes before its call, stopping early once half the
# slots are free (the other half runs while the call leases jobs for the freed half). A round
# trip costs the worker far more CPU than a turn of its loop (on the 2-core VM of
# docs/performance.md, ~60 us of kernel time to send one), and a job's run takes several turns
# from delivery to ack: with one turn, short jobs were written 1.4 per call, a call per job.
GATHER_TURNS = 32
DLQ_PASS_EVERY = 15.0  # seconds between the dead-letter copier's passes when nothing woke it


class CortexBroker(AsyncBroker):
    """One queue's broker inside one worker process."""

    def __init__(
        self,
        engine: QueueEngine,
        consumer: QueueConsumer,
        *,
        keeper: LeaseKeeper,
        dead_letter: QueueEngine | None = None,
        engine_for: Callable[[str], QueueEngine] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.consumer = consumer
        self.config = engine.config
        self.dead_letter = dead_letter
        self.keeper = keeper
        self._engine_for = engine_for
        self.result_backend = JobResultBackend(engine)
        self.formatter = Formatter()
        self.leases: dict[Delivery, Lease] = {}
        self.buffer: deque[Fetched] = deque()
        self.jobs_done = 0
        self.jobs_failed = 0
        self.ready = asyncio.Event()
        self._finish_queue: asyncio.Queue[Outcome] = asyncio.Queue()
        self.running = 0  # started and not acked yet
        # Starts the runs of fetched jobs (JobReceiver.start, set before the first fetch). Jobs
        # a fetch brings back once the worker is stopping wait in ``buffer``: the stop gives
        # them back.
        self.start_runs: Callable[[list[Fetched]], None] | None = None
        self._slot_freed = asyncio.Event()
        # The finisher writes and refills once this few runs are left (see GATHER_TURNS).
        self._refill_at = self.config.concurrency // 2
        self.fetch_enabled = True  # False once stopping: lease nothing more
        self._finisher_idle = asyncio.Event()
        self._finisher_idle.set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._fetching: asyncio.Task[FetchResult] | None = None
        self._dlq_pending = asyncio.Event()
        consumer.on_dead_letters = self._dlq_pending.set  # failed and stalled jobs alike
        self.outcomes = Outcomes(engine, engine_for, consumer)  # with its next: routes
        self._closing = False
        # A call failed: before the next fetch, wait until the lease thread renewed this
        # worker's leases, so the fetch cannot recover its own live jobs as stalled.
        self._outage = False
        # Fetch calls whose reply was lost: (name they leased under, when to look again).
        self._suspects: list[tuple[str, float]] = []
        self._forget = Forgetter(engine.client)

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        await super().startup()
        if self.is_worker_process:
            # Named by what they do: the watchdog (worker/vitals.py) says which one died.
            finisher = asyncio.create_task(self._finisher(), name="finisher (records outcomes)")
            self._tasks = [finisher, *self.outcomes.pipeline.tasks(lambda: self._closing)]
            if self.dead_letter is not None:
                self._dlq_pending.set()
                copier = asyncio.create_task(self._dead_letters(), name="dead-letter copier")
                self._tasks.append(copier)

    def background(self) -> dict[str, asyncio.Task[Any]]:
        """The tasks this broker needs until it shuts down, by name (worker/vitals.py watches
        them)."""
        return {t.get_name(): t for t in self._tasks}

    async def stop_runs(self, wait: float = 1.0) -> None:
        """Cancel the runs that can be stopped (async handlers, and sync ones whose thread has
        not started), and wait up to ``wait`` seconds for them to end. Their jobs go back to
        waiting with release_all(); a run that finished meanwhile keeps its outcome."""
        stopping = []
        for lease in self.leases.values():
            task = lease.task
            if lease.acked or task is None or task.done():
                continue
            if lease.run.withdraw():
                lease.cancelled = True
                task.cancel()
                stopping.append(task)
        if stopping:
            await asyncio.wait(stopping, timeout=wait)

    def in_threads(self) -> int:
        """Runs whose sync handler is still executing in a thread, outcome not yet recorded."""
        return sum(1 for ls in self.leases.values() if ls.run.in_thread and not ls.acked)

    async def wait_threads(self) -> None:
        """Wait until every run in a sync handler thread has ended and recorded its outcome."""
        while tasks := [
            ls.task
            for ls in self.leases.values()
            if ls.run.in_thread and not ls.acked and ls.task is not None
        ]:
            await asyncio.wait(tasks)

    async def release_all(self) -> int:
        """Give back every job this worker holds and whose handler is not running (stop /
        abort). A job whose sync handler still runs in a thread is kept (its lease renewed):
        giving it back would run it twice; it ends when its thread does, or stalls."""
        if self._fetching is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._fetching), 5)
        # Acked runs are not given back: their outcome is queued and flush() writes it.
        held = [
            key
            for key, ls in self.leases.items()
            if not ls.acked and (ls.task is None or ls.task.done() or ls.run.withdraw())
        ]
        held += [(f.job.id, f.token) for f in self.buffer]
        self.buffer.clear()
        if not held:
            return 0
        n = await self.consumer.release(held)
        for key in held:
            self.keeper.drop(key)
            if (lease := self.leases.pop(key, None)) is not None and not lease.acked:
                self.running -= 1
        return n

    async def flush(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until every recorded outcome has been written."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finish_queue.join(), timeout)

    async def shutdown(self) -> None:
        # The background loops also stop on the flag: on Python 3.11 a cancellation that lands
        # as a redis-py read completes can be swallowed inside the client (its timeout context),
        # and the loop would go back to waiting. The flag, a wake-up and a bounded wait make
        # shutdown finish regardless.
        self._closing = True
        self._dlq_pending.set()
        await self.consumer.close()
        await self._forget.close()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=2.0)
            for t in stuck:
                log.warning("background task %s did not stop; abandoning it", t.get_name())
        await super().shutdown()

    async def kick(self, message: BrokerMessage) -> None:
        """No kiq() here: cortexflow.taskiq's broker (broker_from_config) adds tasks."""
        raise NotImplementedError("add taskiq tasks with cortexflow.taskiq.broker_from_config()")

    # -- consuming ---------------------------------------------------------------------------

    async def listen(self) -> AsyncGenerator[bytes, None]:
        """Not used: JobReceiver takes its jobs from ``feed()``, not from a message stream."""
        raise NotImplementedError("cortexflow's worker runs jobs with JobReceiver")
        yield b""  # pragma: no cover - makes this an async generator, as taskiq declares it

    async def feed(self) -> NoReturn:
        """Lease jobs for the free slots whenever the finisher is not doing it already (it
        leases for the slots its outcomes free), and wait for work when there is none."""
        failures = 0
        while True:
            if not self._finisher_idle.is_set():
                # Outcomes are being written together with a fetch for the freed slots.
                await self._finisher_idle.wait()
                continue
            free = self.config.concurrency - self.running - len(self.buffer)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if self._outage:
                await self._after_outage()
            if self._suspects:
                await self._reclaim()
            self._fetching = asyncio.create_task(self._fetch(free))
            try:
                fetched = await asyncio.shield(self._fetching)
                failures = 0
            except RedisError as exc:
                self._outage = True
                self._suspect(self.consumer.last_owner)
                failures += 1
                pause = outage_pause(failures)
                log.warning("fetch failed (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                continue
            finally:
                if self._fetching.done():
                    self._fetching = None
            self.ready.set()
            if not fetched.jobs:
                try:
                    await self.consumer.wait_for_work(fetched.wait)
                except RedisError as exc:
                    log.warning("waiting for work failed (%s); retrying", exc)
                    await asyncio.sleep(0.5)

    def _suspect(self, owner: str) -> None:
        if owner and all(o != owner for o, _ in self._suspects):
            self._suspects.append((owner, 0.0))

    async def _reclaim(self) -> None:
        """Give back what fetch calls whose reply was lost leased: those jobs reached no one.
        Each is looked at twice (now, and again lease/3 later, in case the call only ran on
        the server after the first look)."""
        now = time.monotonic()
        keep: list[tuple[str, float]] = []
        for owner, due in self._suspects:
            if due > now:
                keep.append((owner, due))
                continue
            try:
                found = await orphans.leased_by(self.consumer.engine, owner)
                known = set(self.leases) | {(f.job.id, f.token) for f in self.buffer}
                lost = [pair for pair in found if pair not in known]
                if lost and (n := await self.consumer.release(lost)):
                    log.warning("gave back %d job(s) leased by a fetch whose reply was lost", n)
            except RedisError:
                keep.append((owner, due))
                continue
            if due == 0.0:  # first look done; one more later
                keep.append((owner, now + self.keeper.interval))
        self._suspects = keep

    async def _after_outage(self) -> None:
        """Renew before fetching: wait for the lease thread's next successful renewal."""
        if not self.keeper.held():
            self._outage = False
            return
        if await self.keeper.renewed(timeout=self.config.lease):
            self._outage = False
        else:
            log.warning("leases not renewed within %gs; fetching anyway", self.config.lease)
            self._outage = False

    async def _fetch(self, n: int) -> FetchResult:
        """Lease up to ``n`` jobs and start them."""
        result = await self.consumer.fetch(n)
        self._start(result.jobs)
        return result

    def _start(self, jobs: list[Fetched]) -> None:
        for f in jobs:
            self.keeper.hold((f.job.id, f.token))
        if self.fetch_enabled and self.start_runs is not None:
            self.start_runs(jobs)
        else:
            self.buffer.extend(jobs)

    def deliver(self, fetched: Fetched) -> tuple[Lease, JobContext]:
        """The lease and the handler's JobContext of a job about to run."""
        job = fetched.job
        key = (job.id, fetched.token)
        lease = self.leases[key] = Lease(fetched, key, job.opts.get("timeout", self.config.timeout))
        self.running += 1
        return lease, job_context(self.engine, lease, self.config, self._add_job)

    async def _add_job(self, queue: str, name: str, data: Any, options: AddOptions) -> str:
        engine = self.engine if queue == self.engine.name else None
        if engine is None:
            if self._engine_for is None:
                raise RuntimeError("no other queues are known to this worker")
            engine = self._engine_for(queue)
        return await engine.add(name, data, job_options(engine.config, **options))

    def ack(self, lease: Lease, value: Any, error: BaseException | None) -> None:
        """A run ended: queue its outcome and free the slot at once. The finisher writes it
        (with others) in one script call; a crash before that write leaves the job active, its
        lease expires and it runs again, as for a crash during the run itself."""
        if lease.acked or self.leases.get(lease.key) is not lease:
            return  # given back while it ran (stop): nothing to record
        lease.acked = True
        self.running -= 1
        self.keeper.hold(lease.key)  # the run is over: still renewed, no timeout to watch
        self._finish_queue.put_nowait(self._outcome(lease, value, error))
        # The finisher leases for this slot when it writes the outcome: the feed must not
        # fetch for it too (a round trip for one job) before the finisher has even run.
        self._finisher_idle.clear()
        self._slot_freed.set()

    async def give_back(self, lease: Lease) -> None:
        """The run asked for its job to go back to waiting (a taskiq task's
        ``Context.requeue()``): released at once, no attempt counted, the slot freed."""
        if lease.acked or self.leases.get(lease.key) is not lease:
            return
        lease.acked = True
        self.running -= 1
        try:
            await self.consumer.release([lease.key])
        except RedisError as exc:
            log.warning(
                "could not give job %s back (%s); it runs again once its lease runs out",
                lease.key[0],
                exc,
            )
        finally:
            self.leases.pop(lease.key, None)
            self.keeper.drop(lease.key)
            self._slot_freed.set()

    def _outcome(self, lease: Lease, value: Any, error: BaseException | None) -> Outcome:
        """The run's outcome (``outcome_of``), counted and, for a failure, logged."""
        outcome, decision = self.outcomes(lease.fetched, value, error)
        if decision.kind is OutcomeKind.COMPLETED:
            self.jobs_done += 1
            return outcome
        if decision.kind is not OutcomeKind.RETRY:
            self.jobs_failed += 1
        log_failure(lease.fetched.job, decision, outcome.error)
        return outcome

    async def _finisher(self) -> None:
        """Write outcomes in batches: whatever piled up while the previous call ran."""
        while not self._closing:
            batch = [await self._finish_queue.get()]
            self._finisher_idle.clear()
            # A few turns of the loop let the runs that are about to end ack too, so they share
            # this round trip instead of each paying their own (see GATHER_TURNS).
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
                if self.running + len(self.buffer) <= self._refill_at:
                    break  # lease for the freed half now: the rest runs during the round trip
            while not self._finish_queue.empty() and len(batch) < 500:
                batch.append(self._finish_queue.get_nowait())
            (_, lost, dead), fetched = await self._record(batch)
            self._forget.completed(batch, self.leases, lost)
            if lost:
                log.warning(
                    "%d job(s) finished after their lease was lost; another run owns them", lost
                )
            if dead:
                self._dlq_pending.set()
            if fetched is not None:
                self._start(fetched.jobs)
            for outcome in batch:
                key = (outcome.job_id, outcome.token)
                self.leases.pop(key, None)
                self.keeper.drop(key)
                self._finish_queue.task_done()
            if self._finish_queue.empty():
                self._finisher_idle.set()

    async def _record(
        self, batch: list[Outcome]
    ) -> tuple[tuple[int, int, int], FetchResult | None]:
        """One finish_fetch call for ``batch``, retried until Redis takes it (an outcome is
        never dropped); it also leases jobs for the freed slots, unless feed() is fetching
        already or the worker is stopping."""
        failures = 0
        while True:
            fetching = self._fetching is not None and not self._fetching.done()
            n = 0
            if self.fetch_enabled and not fetching and not self._outage:
                n = self.config.concurrency - self.running - len(self.buffer)
            try:
                return await self.consumer.finish_and_fetch(batch, n)
            except RedisError as exc:
                self._outage = True
                if n > 0:
                    self._suspect(self.consumer.last_owner)
                failures += 1
                pause = outage_pause(failures)
                log.warning("recording %d outcomes failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(pause)

    async def _dead_letters(self) -> None:
        assert self.dead_letter is not None
        while not self._closing:
            # A pass when a finish or fetch of this queue reports a dead letter, and every
            # DLQ_PASS_EVERY seconds for those written by other queues' calls (a join failed
            # by a child of a fan-out: docs/pipelines.md).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dlq_pending.wait(), DLQ_PASS_EVERY)
            self._dlq_pending.clear()
            if self._closing:
                return
            try:
                n = await self.consumer.copy_dead_letters(self.dead_letter)
                if n:
                    log.info("copied %d job(s) to dead-letter queue %s", n, self.dead_letter.name)
            except Exception as exc:  # the copier must outlive any error
                # Entries that cannot be copied are set aside by the copier; what reaches here
                # is Redis being away (or a bug): log it and try again.
                log.warning("copying dead letters failed (%r); will retry", exc)
                await asyncio.sleep(1)
                self._dlq_pending.set()
