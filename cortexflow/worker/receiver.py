"""``JobReceiver``: taskiq's Receiver, extended to start one task per leased job.

The stock Receiver pulls messages one at a time from ``broker.listen()``: per message its
prefetcher makes two tasks and two ``asyncio.wait`` calls, passes it through a queue and a
semaphore, and ``run_task`` builds a pydantic message, resolves dependencies, runs the task under
anyio's ``fail_after`` and a TaskiqResult. That was most of a no-op job's worker CPU (the numbers:
docs/performance.md, "Why the worker is built the way it is"). None of it is needed: the broker
leases exactly as many jobs as there are free slots, in batches, so there is nothing to prefetch
or gate, and the outcome is decided by cortexflow, not by a result backend. So this subclass
keeps the Receiver's interface (``listen(finish_event)``, ``max_async_tasks``,
``wait_tasks_timeout``, the executor for sync handlers) and replaces the message pipeline with
``start()``: the jobs a fetch returns start at once, one task each, its value or error handed to
``broker.ack()``.

Timeouts take one timer for all runs (``RunTimeouts``), not one per run: ``asyncio.timeout``
schedules and cancels a timer handle for every job (its cost: docs/performance.md, same
section), although runs almost never time out.
"""

from __future__ import annotations

import asyncio
import functools
import math
from concurrent.futures import Executor

from taskiq.receiver import Receiver

from cortexflow.engine.queue import Fetched
from cortexflow.logs import set_job
from cortexflow.worker.broker import CortexBroker
from cortexflow.worker.context import JobContext
from cortexflow.worker.handlers import Requeue, Runner, starts_clock
from cortexflow.worker.job_run import Lease, RunTimeout
from cortexflow.worker.leases import Delivery


class JobReceiver(Receiver):
    """Runs the jobs ``broker.feed()`` and the finisher lease, until ``finish_event``."""

    def __init__(
        self,
        broker: CortexBroker,
        runner: Runner,
        *,
        executor: Executor,
        wait_tasks_timeout: float | None = None,
    ) -> None:
        super().__init__(
            broker,
            executor=executor,
            validate_params=False,
            max_async_tasks=broker.config.concurrency,
            propagate_exceptions=False,
            run_startup=False,
            wait_tasks_timeout=wait_tasks_timeout,
        )
        self._broker = broker
        self._runner = runner
        self._runner_starts_clock = starts_clock(runner)
        self._runs: set[asyncio.Task[None]] = set()
        self._timeouts = RunTimeouts(broker.leases)

    async def listen(self, finish_event: asyncio.Event) -> None:
        """Run jobs until ``finish_event``; then stop leasing and wait up to
        ``wait_tasks_timeout`` for the runs in progress (what is left is the stop's to handle).
        Raises what stopped the feed if it failed on its own."""
        broker = self._broker
        broker.start_runs = self.start
        feed = asyncio.create_task(broker.feed(), name=f"cf-{broker.config.name}-feed")
        finish = asyncio.create_task(finish_event.wait())
        try:
            await asyncio.wait({feed, finish}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finish.cancel()
            feed.cancel()
            # The feed's fetch is shielded: the jobs it leases land in broker.buffer.
            await asyncio.wait({feed})
        if self._runs:
            await asyncio.wait(self._runs, timeout=self.wait_tasks_timeout)
        if not feed.cancelled() and (error := feed.exception()) is not None:
            raise error

    def start(self, jobs: list[Fetched]) -> None:
        """Start a run for each leased job (the broker leased no more than the free slots)."""
        broker = self._broker
        runs = self._runs
        create = asyncio.get_running_loop().create_task
        for fetched in jobs:
            lease, ctx = broker.deliver(fetched)
            task = lease.task = create(self._run(lease, ctx))
            runs.add(task)
            task.add_done_callback(runs.discard)

    async def _run(self, lease: Lease, ctx: JobContext) -> None:
        set_job(ctx.id, ctx.attempt)  # log lines of this run (this task's context) carry them
        broker = self._broker
        timeout = lease.timeout
        broker.keeper.hold(lease.key, timeout)  # the lease thread watches the run's timeout
        if timeout is None:
            pass
        elif self._runner_starts_clock:
            lease.run.start_clock = functools.partial(self._timeouts.watch, lease, timeout)
        else:
            self._timeouts.watch(lease, timeout)
        try:
            value = await self._runner(ctx.data, ctx, lease.run)
        except asyncio.CancelledError as exc:
            if lease.timed_out:
                error = RunTimeout(timeout or 0.0)
                error.__cause__ = exc  # its traceback shows where the handler was
                broker.ack(lease, None, error)
            elif lease.cancelled:  # stopped by the worker's stop: the job goes back to waiting
                raise
            else:  # the handler's own CancelledError: a failed attempt
                broker.ack(lease, None, exc)
        except Requeue:  # a taskiq task's Context.requeue(): back to waiting, no attempt
            await broker.give_back(lease)
        except BaseException as exc:  # any error of the handler fails the attempt
            broker.ack(lease, None, exc)
        else:
            broker.ack(lease, value, None)


class RunTimeouts:
    """One timer, set for the earliest deadline of the runs in progress. When it fires, runs
    past their deadline are cancelled (``timed_out``) and it is set for the next deadline. A
    run that ends leaves nothing behind: its lease drops out of ``leases`` (the broker's)."""

    def __init__(self, leases: dict[Delivery, Lease]) -> None:
        self._leases = leases
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf

    def watch(self, lease: Lease, timeout: float) -> None:
        lease.deadline = deadline = self._loop.time() + timeout
        if deadline < self._at:
            self._set(deadline)

    def _set(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._at = None, math.inf
        now = self._loop.time()
        following = math.inf
        for lease in self._leases.values():
            if lease.acked or lease.timed_out or lease.task is None or lease.task.done():
                continue
            if lease.deadline <= now:
                lease.timed_out = True
                lease.task.cancel()
            elif lease.deadline < following:
                following = lease.deadline
        if following < math.inf:
            self._set(following)
