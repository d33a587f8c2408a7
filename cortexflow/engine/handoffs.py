"""The worker's side of `next:` routes (docs/pipelines.md): turning a run's end into the
hand-offs its outcome carries (``Router``), and, on a Cluster, copying the hand-off outbox
to the target queues (``HandoffCopier``, the dead-letter outbox's pattern).

The copier cannot wedge (engine/outbox.py): an entry that cannot be copied (unreadable, refused
by its target) is set aside to ``{p:q}:next:failed``, counted in stats as ``handoffsNotCopied``;
a copy repeated after a crash adds nothing (the handoff script skips ids that exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import jsonschema
import orjson
from redis.exceptions import RedisError, ResponseError

from cortexflow.config.model import QueueConfig
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.groups import group_of
from cortexflow.engine.jobs import Job
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.outbox import OutboxCopier
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.payload import encode_data, make_validator
from cortexflow.engine.queue import QueueEngine
from cortexflow.engine.routes import RouteError, Target, encode_handoffs, failure_doc, plan
from cortexflow.errors import PayloadError, UsageError

log = logging.getLogger("cortexflow.worker")

PASS_EVERY = 1.0  # seconds between the copier's passes when nothing woke it


class Router:
    """One queue's routes, with what encoding them needs of the target queues."""

    def __init__(
        self,
        queue: QueueConfig,
        config_of: Callable[[str], QueueConfig],
        prefix: str,
        *,
        outbox: bool,
    ) -> None:
        self.queue = queue
        self.routes = queue.routes
        self.outbox = outbox
        self.on_completed = any(r.on == "completed" for r in self.routes)
        self.on_failed = any(r.on == "failed" for r in self.routes)
        self._targets: dict[str, Target] = {}
        self._configs: dict[str, QueueConfig] = {}
        self._validators: dict[str, jsonschema.protocols.Validator | None] = {}
        for route in self.routes:
            for name in (route.to, *([route.join.to] if route.join else [])):
                cfg = self._configs[name] = config_of(name)
                base = QueueKeys(prefix, name).base
                self._targets[name] = Target(base, cfg.priority, cfg.dead_letter is not None)
                self._validators[name] = make_validator(cfg)

    def completed(self, job: Job, value: Any) -> tuple[tuple[Any, ...], str]:
        """The hand-off groups and ``children`` of a completed run; RouteError if a route
        cannot be followed (the run then fails)."""
        return self._encode(plan(self.routes, value, self.queue.name, job.id, "completed"), job)

    def failed(self, job: Job, error: str, run: int) -> tuple[tuple[Any, ...], str]:
        doc = failure_doc(job.id, job.name, job.data, error, run)
        return self._encode(plan(self.routes, doc, self.queue.name, job.id, "failed"), job)

    def _encode(self, handoffs: list[Any], job: Job) -> tuple[tuple[Any, ...], str]:
        if not handoffs:
            return (), ""
        texts, named = [], []
        for h in handoffs:
            data, names = [], []
            target = self._configs[h.to]
            for j in h.jobs:
                try:
                    data.append(encode_data(h.to, j.data, self._validators[h.to]))
                    # A grouped target queue: the job waits in its group (docs/groups.md).
                    names.append(group_of(target, j.data, None) if target.group else "")
                except (PayloadError, UsageError) as exc:
                    raise RouteError(f"next[{h.route}] (to {h.to}), job {j.id}: {exc}") from None
            texts.append(data)
            named.append(names)
        groups, children = encode_handoffs(
            handoffs, texts, self._targets, (self.queue.name, job.id), self.outbox, named
        )
        return tuple(groups), children


def router_for(
    engine: QueueEngine, engine_for: Callable[[str], QueueEngine] | None
) -> Router | None:
    """The router of ``engine``'s queue, or None when it has no routes."""
    if not engine.config.routes or engine_for is None:
        return None
    return Router(
        engine.config,
        lambda name: engine.config if name == engine.name else engine_for(name).config,
        engine.prefix,
        outbox=engine.cluster is not None,
    )


def with_handoffs(outcome: Outcome, router: Router | None, job: Job) -> Outcome:
    """A FAILED outcome with the hand-offs of its `on: failed` routes (a route that cannot be
    followed is logged: the job failed already)."""
    if router is None or not router.on_failed or outcome.kind is not OutcomeKind.FAILED:
        return outcome
    try:
        groups, children = router.failed(job, outcome.error, job.attempts_made + 1)
    except RouteError as exc:
        log.error("job %s failed for good; its on: failed route was not followed: %s", job.id, exc)
        return outcome
    return dataclasses.replace(outcome, handoffs=groups, children=children)


class HandoffCopier(OutboxCopier):
    """Copies one queue's hand-off outbox (a Cluster) to the target queues."""

    what = "a hand-off"

    def __init__(self, source: QueueEngine) -> None:
        super().__init__(source, source.keys.next_outbox, source.keys.next_failed)

    def refused(self, exc: RedisError) -> bool:
        return isinstance(exc, ResponseError) and "handoff:" in str(exc)

    async def _copy_one(self, raw: bytes) -> None:
        group = orjson.loads(raw)
        if not isinstance(group, list) or len(group) < 5 or not isinstance(group[1], str):
            raise ValueError("a hand-off entry is a JSON list [mode, base, parent, jobs, join]")
        await self.source.scripts.handoff(keys=[f"{group[1]}:meta"], args=[raw])


class Pipeline:
    """A worker's part in its queue's pipelines: the router of its `next:` routes (None
    without any), and on a Cluster the copier of its hand-off outbox, woken by ``pending``
    (set when a finish call reports entries; ``consumer.on_handoffs``)."""

    def __init__(
        self,
        engine: QueueEngine,
        engine_for: Callable[[str], QueueEngine] | None,
        consumer: QueueConsumer,
    ) -> None:
        self.engine = engine
        self.router = router_for(engine, engine_for)
        self.pending = asyncio.Event()
        consumer.on_handoffs = self.pending.set

    def tasks(self, closing: Callable[[], bool]) -> list[asyncio.Task[None]]:
        if self.engine.cluster is None:  # one server: the finish call writes hand-offs itself
            return []
        run = copy_handoffs(HandoffCopier(self.engine), self.pending, closing)
        return [asyncio.create_task(run, name="hand-off copier")]


async def copy_handoffs(
    copier: HandoffCopier, pending: asyncio.Event, closing: Callable[[], bool]
) -> None:
    """A worker's copier on a Cluster: a pass when the finish call reports entries, and every
    PASS_EVERY seconds (joins that fire in a stall or a removal push entries too). It outlives
    every error: what it cannot copy it sets aside; Redis being away is tried again."""
    while not closing():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pending.wait(), PASS_EVERY)
        pending.clear()
        if closing():
            return
        try:
            n = await copier.copy()
            if n:
                log.debug("copied %d hand-off(s) of queue %s", n, copier.source.name)
        except Exception as exc:  # the copier must outlive any error
            log.warning("copying hand-offs failed (%r); will retry", exc)
            await asyncio.sleep(1)
