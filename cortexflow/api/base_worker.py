"""BaseWorker: a handler written as a class (the BullMQ service's custom-worker API).

A subclass named as a queue's ``handler`` in queues.yaml is instantiated with no arguments by
the worker, which calls ``await instance.process(job)`` for each job; the return value is the
job's result. ``job.data`` is the payload; the job also has ``id, name, queue, attempt,
priority, created_at`` and ``update_progress()`` / ``log()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cortexflow.worker.context import JobContext


class BaseWorker(ABC):
    """Subclass it and implement ``process``::

        class MyCustomWorker(BaseWorker):
            def __init__(self) -> None:
                super().__init__(QueueName.MESSAGE_PROCESSING, 5)

            async def process(self, job):
                return {"status": "completed"}

    ``queue`` and ``concurrency`` are informational, as in the BullMQ service; queues.yaml says
    which queue runs which handler and how many jobs run at once.
    """

    queue: str | None = None
    concurrency: int | None = None

    def __init__(self, queue: str | None = None, concurrency: int | None = None) -> None:
        if queue is not None:
            self.queue = str(queue)
        if concurrency is not None:
            self.concurrency = concurrency

    @abstractmethod
    async def process(self, job: JobContext) -> Any:
        """Process one job (``job.data`` is its payload); the return value is its result."""
