"""Operations on one queue: every state change is one Lua script (see scripts/*.lua).

Used by the worker (fetch / heartbeat / finish), the CLI and the Python API (everything else).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from cortexflow.config.model import QueueConfig
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.keys import QueueKeys


@dataclass(frozen=True)
class Fetched:
    """A job handed to a worker: its lease token must accompany finish/heartbeat calls."""

    job: Job
    token: str


@dataclass(frozen=True)
class FetchResult:
    jobs: list[Fetched]
    # Seconds until there may be work again (next delayed job due, rate window reopening,
    # a lease expiring); None when only a new enqueue can bring work.
    wait: float | None


class QueueEngine:
    """One queue's operations. Cheap to build; holds no connection of its own."""

    def __init__(self, client: aioredis.Redis, queue: QueueConfig, prefix: str) -> None:
        self.client = client
        self.config = queue
        self.name = queue.name
        self.keys = QueueKeys(prefix, queue.name)

    # -- producers -------------------------------------------------------------------------

    async def add(self, name: str, data: Any, opts: JobOptions | None = None) -> str:
        """Add one job; returns its id. An id that still exists adds nothing and returns that id.

        Raises PayloadError (nothing written) when ``data`` is not JSON-serialisable or fails
        the queue's payload_schema, UsageError for out-of-range options.
        """
        raise NotImplementedError

    async def add_bulk(self, jobs: Sequence[tuple[str, Any, JobOptions | None]]) -> list[str]:
        """Add all jobs atomically (all or none); returns their ids in order."""
        raise NotImplementedError

    # -- inspection ------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """{queueName, waiting, active, completed, failed, delayed, paused}: one atomic read."""
        raise NotImplementedError

    async def get_job(self, job_id: str) -> Job | None:
        raise NotImplementedError

    async def list_jobs(self, state: str, start: int = 0, limit: int = 50) -> list[Job]:
        """Jobs in ``state`` (waiting in run order, delayed by due time, finished newest first)."""
        raise NotImplementedError

    async def get_logs(self, job_id: str) -> list[str]:
        raise NotImplementedError

    async def wait_finished(self, job_id: str, timeout: float) -> Job | None:
        """Block until the job is completed or failed for good (or timeout: returns None)."""
        raise NotImplementedError

    # -- operations ------------------------------------------------------------------------

    async def pause(self) -> None:
        raise NotImplementedError

    async def resume(self) -> None:
        raise NotImplementedError

    async def clean(self, grace: float, limit: int = 0, state: str = "completed") -> list[str]:
        """Remove up to ``limit`` (0: all) jobs of ``state`` older than ``grace`` seconds.

        state: completed, failed, waiting or delayed. Returns the removed ids.
        """
        raise NotImplementedError

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting job (and delayed ones too if asked); returns how many."""
        raise NotImplementedError

    async def obliterate(self, force: bool = False) -> int:
        """Remove the queue and all its jobs; refused (CortexflowError) while jobs are active
        unless ``force``. Returns the number of jobs removed."""
        raise NotImplementedError

    async def retry(self, job_ids: Sequence[str] | None = None) -> list[str]:
        """Move failed jobs (those ids, or all when None) back to waiting, attempts reset."""
        raise NotImplementedError

    async def promote(self, job_id: str) -> bool:
        """Make a delayed job waiting now; False if it is not delayed."""
        raise NotImplementedError

    async def remove(self, job_id: str) -> bool:
        """Remove a job that is not active; False if there is no such job.

        Raises CortexflowError for an active job (its worker holds it)."""
        raise NotImplementedError


async def all_stats(
    client: aioredis.Redis, prefix: str, queues: Sequence[str]
) -> list[dict[str, Any]]:
    """Stats of several queues in one round trip."""
    raise NotImplementedError


async def health(
    client: aioredis.Redis, prefix: str, queues: Sequence[str]
) -> dict[str, Any]:
    """{healthy, queues: {name: bool}}: a queue is unhealthy when a supervisor expects workers
    for it and none is alive; everything is unhealthy when Redis does not answer."""
    raise NotImplementedError


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
