"""Jobs with a history, made through the engine as a worker would (lease, then record an
outcome) without running a worker: a job that failed once and waits for its retry, one that
completed after a failed attempt, one running."""

from __future__ import annotations

import dataclasses

from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import QueueEngine

ERROR = "ValueError: smtp timed out"
TRACE = f'Traceback (most recent call last):\n  File "h.py", line 2, in work\n{ERROR}'


async def lease(e: QueueEngine, job_id: str, lease: float | None = None) -> str:
    """Lease ``job_id`` (the next waiting job) as a worker would, for ``lease`` seconds if
    given; returns its token."""
    if lease is not None:
        e = QueueEngine(e.client, dataclasses.replace(e.config, lease=lease), e.prefix)
    (leased,) = (await QueueConsumer(e, "w", e.client).fetch(1)).jobs
    assert leased.job.id == job_id
    return leased.token


async def finish(e: QueueEngine, outcome: Outcome) -> None:
    assert (await QueueConsumer(e, "w", e.client).finish([outcome]))[0] == 1


async def failed_once(e: QueueEngine, job_id: str) -> None:
    """A new job ``job_id`` ran once and failed with ERROR; it waits for its retry."""
    await e.add("n", {"to": "ada"}, JobOptions(job_id=job_id))
    token = await lease(e, job_id)
    await finish(e, Outcome(OutcomeKind.RETRY, job_id, token, error=ERROR, stacktrace=TRACE))


async def completed_after_a_failure(e: QueueEngine, job_id: str) -> None:
    """A new job ``job_id`` failed once (ERROR), then completed with ``{"sent": true}``."""
    await failed_once(e, job_id)
    token = await lease(e, job_id)
    await finish(e, Outcome(OutcomeKind.COMPLETED, job_id, token, result='{"sent": true}'))
