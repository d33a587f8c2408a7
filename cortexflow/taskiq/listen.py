"""``CortexflowBroker.listen()``: the compatible path for ``taskiq worker module:broker``.

taskiq's Receiver asks for one message whenever it has a free slot, runs it (its middlewares,
dependencies, ``timeout`` label), calls the result backend's ``set_result`` and then acks. Here
each message is a job leased from one of the broker's task queues (taken in turn, one per ask):
``set_result`` keeps the run's result, and the ack records it as cortexflow's worker would
(completed, or retried with the queue's backoff, or failed for good and dead-lettered). A run
that saved no result (``Context.requeue()``) gives its job back. The leases are renewed every
third of the lease while the runs go on.

It is slower than `cortexflow up` (one fetch and one finish call per job, where the worker
batches them) and has none of its supervision: it is there so that a deployment can switch
brokers before it switches runners (docs/taskiq.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import uuid
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from taskiq import AckableMessage, TaskiqMessage, TaskiqResult

from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.queue import Fetched
from cortexflow.worker.env import host_name
from cortexflow.worker.job_run import outcome_of

if TYPE_CHECKING:
    from cortexflow.taskiq.broker import CortexflowBroker

log = logging.getLogger("cortexflow.taskiq")

IDLE_WAIT = 0.5  # seconds each queue's wake-up list is waited on when every queue is empty


class Listener:
    """The leases of one ``taskiq worker`` process over the broker's task queues."""

    def __init__(self, broker: CortexflowBroker) -> None:
        self.broker = broker
        self.worker_id = f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:taskiq"
        self.consumers: dict[str, QueueConsumer] = {}
        self.held: dict[str, Fetched] = {}  # task id -> its leased job
        self.results: dict[str, TaskiqResult[Any]] = {}

    async def start(self) -> None:
        manager = self.broker.manager
        await manager.connect()
        for name in self.broker.task_queues:
            block = await manager.new_client()
            self.consumers[name] = QueueConsumer(manager.get_queue(name), self.worker_id, block)

    async def next(self) -> Fetched:
        """Lease one job, trying the queues in turn; wait on them when all are empty."""
        while True:
            for consumer in self.consumers.values():
                fetched = await consumer.fetch(1)
                if fetched.jobs:
                    job = fetched.jobs[0]
                    self.held[job.job.id] = job
                    return job
            for consumer in self.consumers.values():
                if await consumer.wait_for_work(IDLE_WAIT / len(self.consumers)):
                    break

    def message(self, fetched: Fetched) -> AckableMessage:
        job = fetched.job
        data = job.data if isinstance(job.data, dict) else {}
        msg = TaskiqMessage(
            task_id=job.id,
            task_name=job.name,
            labels=data.get("labels") or {},
            labels_types=data.get("labels_types"),
            args=data.get("args") or [],
            kwargs=data.get("kwargs") or {},
        )
        return AckableMessage(data=msg.model_dump_json().encode(), ack=lambda: self.ack(job.id))

    async def ack(self, task_id: str) -> None:
        """Record the run: its saved result, or give the job back when none was saved."""
        fetched = self.held.pop(task_id, None)
        if fetched is None:
            return
        consumer = self.consumers[fetched.job.queue]
        result = self.results.pop(task_id, None)
        if result is None:  # Context.requeue(): no result, no attempt
            await consumer.release([(fetched.job.id, fetched.token)])
            return
        error = result.error if result.is_err else None
        if result.is_err and error is None:
            error = RuntimeError("the task failed")
        queue = self.broker.config.queue(fetched.job.queue)
        outcome, _ = outcome_of(fetched, result.return_value, error, queue, random.random)
        _, _, dead = await consumer.finish([outcome])
        if dead and queue.dead_letter is not None:
            with contextlib.suppress(RedisError):
                await consumer.copy_dead_letters(self.broker.manager.get_queue(queue.dead_letter))

    async def renew(self) -> None:
        """Renew the held leases every third of the shortest lease."""
        period = min(self.broker.config.queue(q).lease for q in self.consumers) / 3
        while True:
            await asyncio.sleep(period)
            for name, consumer in self.consumers.items():
                leases = [(f.job.id, f.token) for f in self.held.values() if f.job.queue == name]
                try:
                    await consumer.heartbeat(leases)
                except RedisError as exc:
                    log.warning("renewing leases on %s failed (%s)", name, exc)

    async def close(self) -> None:
        held = list(self.held.values())
        self.held.clear()
        for fetched in held:  # not run: back to waiting
            with contextlib.suppress(RedisError):
                await self.consumers[fetched.job.queue].release([(fetched.job.id, fetched.token)])
        for consumer in self.consumers.values():
            await consumer.close()
            await consumer.block_client.aclose()


async def listen(broker: CortexflowBroker) -> AsyncGenerator[AckableMessage, None]:
    """Jobs of the broker's task queues as taskiq messages, acked once their result is saved."""
    listener = Listener(broker)
    broker.backend.listener = listener
    await listener.start()
    renewing = asyncio.create_task(listener.renew())
    try:
        while True:
            try:
                fetched = await listener.next()
            except RedisError as exc:
                log.warning("fetching a job failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            yield listener.message(fetched)
    finally:
        renewing.cancel()
        broker.backend.listener = None
        await listener.close()
