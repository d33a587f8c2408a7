"""Pipelines' tests: queues with next: routes, driven through the engine's real scripts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from cortexflow.config.model import Join, QueueConfig, Route
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.handoffs import Router
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import Fetched, QueueEngine
from tests.engine.conftest import workers
from tests.helpers.jobs import PREFIX

__all__ = ["Join", "Route", "complete", "lease_one", "queues", "router", "workers"]


def queues(*names: str, routes: dict[str, Sequence[Route]] | None = None) -> dict[str, QueueConfig]:
    routes = routes or {}
    return {
        n: QueueConfig(name=n, handler="x:y", lease=30.0, routes=tuple(routes.get(n, ())))
        for n in names
    }


def router(configs: dict[str, QueueConfig], name: str, *, outbox: bool = False) -> Router:
    return Router(configs[name], configs.__getitem__, PREFIX, outbox=outbox)


async def lease_one(engine: QueueEngine, job_id: str | None = None, data: Any = None) -> Fetched:
    """Add a job (when ``job_id`` is given) and lease it."""
    if job_id is not None:
        await engine.add_bulk([("n", data or {}, JobOptions(job_id=job_id))])
    fetched = (await QueueConsumer(engine, "w", engine.client).fetch(1)).jobs
    assert len(fetched) == 1
    return fetched[0]


def complete(fetched: Fetched, result: Any, r: Router | None) -> Outcome:
    import json

    done = Outcome(OutcomeKind.COMPLETED, fetched.job.id, fetched.token, result=json.dumps(result))
    if r is None:
        return done
    groups, children = r.completed(fetched.job, result)
    return dataclasses.replace(done, handoffs=groups, children=children)
