"""cortexflow's taskiq broker: taskiq's Receiver runs handlers, the engine's scripts move jobs.

Why a broker of our own (docs/engine.md): taskiq-redis's brokers are FIFO only, ignore delays,
lose or re-run jobs on crashes. Why the extension points used here:
- ``listen()`` leases as many jobs as the Receiver has free slots, in one script call, so the
  worker never holds jobs it cannot start; it blocks on the queue's wake-up list when idle.
- The Receiver has no nack, so the outcome is recorded at ack time: a middleware keeps the
  TaskiqResult of each run (``post_execute``) and the ack turns it into complete / retry / fail,
  sent in batches through one finish script call.
- Messages are built in-process from the leased job (``model_construct``): nothing is serialised
  twice and the handler gets its JobContext object directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import traceback
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from redis.exceptions import RedisError
from taskiq import AckableMessage, AsyncBroker, AsyncResultBackend, TaskiqMiddleware, TaskiqResult
from taskiq.abc.formatter import TaskiqFormatter
from taskiq.message import BrokerMessage, TaskiqMessage

from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.options import AddOptions, job_options
from cortexflow.engine.outcomes import (
    Decision,
    Outcome,
    OutcomeKind,
    completed,
    decide,
    failed,
    result_json,
)
from cortexflow.engine.queue import Fetched, QueueEngine
from cortexflow.errors import UnrecoverableError
from cortexflow.worker.context import JobContext
from cortexflow.worker.handlers import Runner

log = logging.getLogger("cortexflow.worker")

TASK_NAME = "cortexflow.run"


@dataclass
class Lease:
    fetched: Fetched
    result: TaskiqResult[Any] | None = None
    # Acked: the run is over and its outcome queued for the finish script. The job still holds
    # its lease (renewed by heartbeats) until that write lands.
    acked: bool = False


class _Formatter(TaskiqFormatter):
    """Our messages arrive already built; anything else is JSON from taskiq's own kick()."""

    def dumps(self, message: TaskiqMessage) -> BrokerMessage:
        return BrokerMessage(
            task_id=message.task_id,
            task_name=message.task_name,
            message=json.dumps(message.model_dump(mode="json")).encode(),
            labels=message.labels,
        )

    def loads(self, message: Any) -> TaskiqMessage:
        if isinstance(message, TaskiqMessage):
            return message
        return TaskiqMessage.model_validate_json(message)


class _KeepResult(TaskiqMiddleware):
    def __init__(self, broker: CortexBroker) -> None:
        super().__init__()
        self._broker = broker

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        lease = self._broker.leases.get(message.task_id)
        if lease is not None:
            lease.result = result


class _JobResultBackend(AsyncResultBackend[Any]):
    """Results live in the job hash (written by the finish script); this reads them back so
    taskiq's ``wait_result()`` works on jobs added through ``kiq()``."""

    def __init__(self, engine: QueueEngine) -> None:
        self._engine = engine

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        return None  # recorded at ack time by the finish script

    async def is_result_ready(self, task_id: str) -> bool:
        job = await self._engine.get_job(task_id)
        return job is not None and job.state in ("completed", "failed")

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
        job = await self._engine.get_job(task_id)
        if job is None:
            raise KeyError(task_id)
        return TaskiqResult(
            is_err=job.state == "failed",
            return_value=job.result,
            execution_time=0.0,
            error=None if job.error is None else RuntimeError(job.error),
        )


class CortexBroker(AsyncBroker):
    """One queue's broker inside one worker process."""

    def __init__(
        self,
        engine: QueueEngine,
        consumer: QueueConsumer,
        runner: Runner,
        *,
        dead_letter: QueueEngine | None = None,
        engine_for: Callable[[str], QueueEngine] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.consumer = consumer
        self.config = engine.config
        self.dead_letter = dead_letter
        self._engine_for = engine_for
        self.result_backend = _JobResultBackend(engine)
        self.formatter = _Formatter()
        self.add_middlewares(_KeepResult(self))
        self.leases: dict[str, Lease] = {}
        self.buffer: deque[Fetched] = deque()
        self.jobs_done = 0
        self.jobs_failed = 0
        self.ready = asyncio.Event()
        self._finish_queue: asyncio.Queue[Outcome] = asyncio.Queue()
        self.running = 0  # delivered to the Receiver and not acked yet
        self.fetch_enabled = True  # False once stopping: lease nothing more
        self._finisher_idle = asyncio.Event()
        self._finisher_idle.set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._fetching: asyncio.Task[float | None] | None = None
        self._dlq_pending = asyncio.Event()
        consumer.on_dead_letters = self._dlq_pending.set  # failed and stalled jobs alike
        self._closing = False
        self.register_task(runner, task_name=TASK_NAME)

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        await super().startup()
        if self.is_worker_process:
            self._tasks = [
                asyncio.create_task(self._finisher(), name="cortexflow-finisher"),
                asyncio.create_task(self._heartbeats(), name="cortexflow-heartbeat"),
            ]
            if self.dead_letter is not None:
                self._dlq_pending.set()
                self._tasks.append(asyncio.create_task(self._dead_letters(), name="cortexflow-dlq"))

    async def release_all(self) -> int:
        """Give back every job this worker holds and has not finished (stop / abort)."""
        if self._fetching is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._fetching), 5)
        # Acked runs are not given back: their outcome is queued and flush() writes it.
        held = [(jid, ls.fetched.token) for jid, ls in self.leases.items() if not ls.acked]
        held += [(f.job.id, f.token) for f in self.buffer]
        self.buffer.clear()
        if not held:
            return 0
        n = await self.consumer.release(held)
        for jid, _ in held:
            if (lease := self.leases.pop(jid, None)) is not None and not lease.acked:
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
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=2.0)
            for t in stuck:
                log.warning("background task %s did not stop; abandoning it", t.get_name())
        await super().shutdown()

    # -- producing through taskiq (task.kiq()) -----------------------------------------------

    async def kick(self, message: BrokerMessage) -> None:
        msg = TaskiqMessage.model_validate_json(message.message)
        data = (
            msg.args[0]
            if len(msg.args) == 1 and not msg.kwargs
            else {"args": msg.args, "kwargs": msg.kwargs}
        )
        labels = message.labels
        opts = JobOptions(
            job_id=message.task_id,
            priority=labels.get("priority"),
            delay=float(labels["delay"]) if labels.get("delay") is not None else None,
        )
        await self.engine.add(message.task_name, data, opts)

    # -- consuming ---------------------------------------------------------------------------

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        failures = 0
        while True:
            if self.buffer:
                yield self._deliver(self.buffer.popleft())
                continue
            if not self._finisher_idle.is_set():
                # Outcomes are being written together with a fetch for the freed slots.
                await self._finisher_idle.wait()
                continue
            free = self.config.concurrency - self.running
            self._fetching = asyncio.create_task(self._fetch(max(free, 1)))
            try:
                wait = await asyncio.shield(self._fetching)
                failures = 0
            except RedisError as exc:
                failures += 1
                pause = min(0.1 * 2 ** min(failures, 5), 2.0)
                log.warning("fetch failed (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                continue
            finally:
                if self._fetching.done():
                    self._fetching = None
            self.ready.set()
            if not self.buffer:
                try:
                    await self.consumer.wait_for_work(wait)
                except RedisError as exc:
                    log.warning("waiting for work failed (%s); retrying", exc)
                    await asyncio.sleep(0.5)

    async def _fetch(self, n: int) -> float | None:
        result = await self.consumer.fetch(n)
        self.buffer.extend(result.jobs)
        return result.wait

    def _deliver(self, fetched: Fetched) -> AckableMessage:
        job = fetched.job
        self.leases[job.id] = Lease(fetched)
        self.running += 1
        ctx = JobContext(
            self.engine,
            fetched.token,
            id=job.id,
            name=job.name,
            queue=job.queue,
            attempt=job.attempts_made + 1,
            priority=job.priority,
            created_at=job.created_at,
            data=job.data,
            enqueue=self._add_job,
            settings=self.config.settings,
        )
        message = TaskiqMessage.model_construct(
            task_id=job.id,
            task_name=TASK_NAME,
            labels={"timeout": job.opts.get("timeout", self.config.timeout)},
            labels_types=None,
            args=[job.data, ctx],
            kwargs={},
        )
        return AckableMessage.model_construct(data=message, ack=self._acker(job.id))

    async def _add_job(self, queue: str, name: str, data: Any, options: AddOptions) -> str:
        engine = self.engine if queue == self.engine.name else None
        if engine is None:
            if self._engine_for is None:
                raise RuntimeError("no other queues are known to this worker")
            engine = self._engine_for(queue)
        return await engine.add(name, data, job_options(engine.config, **options))

    def _acker(self, job_id: str) -> Callable[[], Any]:
        def ack() -> None:
            """Queue the outcome and free the slot at once: the Receiver starts the next job
            while the finisher writes this one (with others) in one script call. A crash before
            that write leaves the job active; its lease expires and it runs again, as for a
            crash during the run itself."""
            lease = self.leases.get(job_id)
            if lease is None or lease.acked:  # released while running (stop): nothing to record
                return
            lease.acked = True
            self.running -= 1
            self._finish_queue.put_nowait(self._outcome(lease))

        return ack

    def _outcome(self, lease: Lease) -> Outcome:
        """The run's outcome: its result, or its error and what happens next (``decide``)."""
        job = lease.fetched.job
        token = lease.fetched.token
        result = lease.result
        error: BaseException | None = None
        if result is not None and not result.is_err:
            try:
                payload = result_json(result.return_value)
            except (TypeError, ValueError) as exc:
                error = UnrecoverableError(
                    f"the handler returned a value that is not JSON-serialisable: {exc}"
                )
            else:
                decision = decide(job, None, self.config, random.random)
                self.jobs_done += 1
                return completed(job.id, token, payload, decision)
        else:
            error = result.error if result is not None and result.error else None
            error = error or RuntimeError("no result")
        decision = decide(job, error, self.config, random.random)
        message = _error_message(error, job.opts.get("timeout"))
        stack = "".join(traceback.format_exception(error))
        outcome = failed(job.id, token, message, stack, decision)
        self._log_failure(job, decision, outcome.error)  # the cleaned, bounded text
        return outcome

    def _log_failure(self, job: Job, decision: Decision, message: str) -> None:
        if decision.kind is OutcomeKind.RETRY:
            log.warning(
                "job %s failed (run %d of %d): %s; retrying in %.3gs",
                job.id,
                decision.run,
                job.attempts,
                message,
                decision.delay,
            )
            return
        self.jobs_failed += 1
        log.warning(
            "job %s failed for good (run %d of %d): %s", job.id, decision.run, job.attempts, message
        )

    async def _finisher(self) -> None:
        """Write outcomes in batches: whatever piled up while the previous call ran."""
        while not self._closing:
            batch = [await self._finish_queue.get()]
            self._finisher_idle.clear()
            # One turn of the loop lets the runs that finished in the same tick ack too, so
            # they share this round trip instead of each paying their own.
            await asyncio.sleep(0)
            while not self._finish_queue.empty() and len(batch) < 500:
                batch.append(self._finish_queue.get_nowait())
            failures = 0
            while True:
                # Lease jobs for the slots these runs freed in the same round trip, unless
                # listen() is fetching already or the worker is stopping.
                fetching = self._fetching is not None and not self._fetching.done()
                n = 0
                if self.fetch_enabled and not fetching:
                    n = self.config.concurrency - self.running - len(self.buffer)
                try:
                    (_, lost, dead), fetched = await self.consumer.finish_and_fetch(batch, n)
                    break
                except RedisError as exc:  # never drop an outcome: retry until Redis is back
                    failures += 1
                    pause = min(0.1 * 2 ** min(failures, 5), 2.0)
                    log.warning("recording %d outcomes failed (%s); retrying", len(batch), exc)
                    await asyncio.sleep(pause)
            if lost:
                log.warning(
                    "%d job(s) finished after their lease was lost; another run owns them", lost
                )
            if dead:
                self._dlq_pending.set()
            if fetched is not None:
                self.buffer.extend(fetched.jobs)
            for outcome in batch:
                self.leases.pop(outcome.job_id, None)
                self._finish_queue.task_done()
            if self._finish_queue.empty():
                self._finisher_idle.set()

    async def _heartbeats(self) -> None:
        interval = max(self.config.lease / 3.0, 0.1)
        while not self._closing:
            await asyncio.sleep(interval)
            held = [(jid, lease.fetched.token) for jid, lease in self.leases.items()]
            held += [(f.job.id, f.token) for f in self.buffer]
            try:
                lost = await self.consumer.heartbeat(held)
            except RedisError as exc:
                log.warning("lease renewal failed (%s)", exc)
                continue
            for jid in lost:
                log.warning("lease of job %s lost: it ran past its lease without renewal", jid)

    async def _dead_letters(self) -> None:
        assert self.dead_letter is not None
        while not self._closing:
            await self._dlq_pending.wait()
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


def _error_message(error: BaseException, timeout: Any) -> str:
    if isinstance(error, TimeoutError | anyio.get_cancelled_exc_class()) and timeout is not None:
        return f"TimeoutError: the run took longer than its timeout of {float(timeout):g}s"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
