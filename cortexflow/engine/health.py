"""Is every queue served? ``health``: Redis answers, each queue a running `up` expects workers
for has a live one, no live worker's lease renewals are failing, and the server is not nearly
full (memory pressure); dead letters and hand-offs set aside are reported too. The CLI's
`health`, the API's ``health_check`` and the dashboard's /healthz."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortexflow.engine import registry
from cortexflow.engine.connection import Client
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.memory import read_memory


async def health(
    client: Client, prefix: str, queues: Sequence[str], require_workers: bool = False
) -> dict[str, Any]:
    """{healthy, queues: {name: bool}}: a queue is unhealthy when a supervisor expects workers
    for it and none is alive (with ``require_workers``: whenever none is alive); everything is
    unhealthy when Redis does not answer.

    Queues with dead letters that could not be copied (set aside) are listed under
    ``deadLettersNotCopied: {name: count}``, and with `next:` hand-offs set aside (a Cluster's
    outbox, docs/pipelines.md) under ``handoffsNotCopied``, each present only when there are
    some (neither makes the report unhealthy: the queues still run); queues with
    live workers whose lease renewals fail now are unhealthy and listed under
    ``leaseRenewalFailing: {name: workers}``. ``memory`` (when INFO answers and the server has
    a maxmemory: without one it never refuses a write, and the report keeps its contract's
    shape) is the server's ``{usedMemory, maxmemory, percent, policy, pressure}``; at or above
    PRESSURE_THRESHOLD of
    its maxmemory (adds will soon be refused) the report is unhealthy and says
    ``memoryPressure: true``."""
    try:
        await client.ping()
        expected = await registry.expected_counts(client, prefix, queues)
        live = await registry.live_worker_counts(client, prefix, queues)
        async with client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.llen(QueueKeys(prefix, q).dlq_failed)
                pipe.llen(QueueKeys(prefix, q).next_failed)
            counts = list(map(int, await pipe.execute()))
        stuck = dict(zip(queues, counts[0::2], strict=True))
        handoffs = dict(zip(queues, counts[1::2], strict=True))
        failing = {q: await _renewals_failing(client, prefix, q) for q, n in live.items() if n}
        memory = await read_memory(client)
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return {"healthy": False, "queues": dict.fromkeys(queues, False)}
    status = {
        q: (live[q] > 0 or (expected[q] == 0 and not require_workers)) and not failing.get(q)
        for q in queues
    }
    pressure = memory is not None and memory.pressure
    report: dict[str, Any] = {"healthy": all(status.values()) and not pressure, "queues": status}
    if memory is not None and memory.maxmemory:
        report["memory"] = memory.report()
    if pressure:
        report["memoryPressure"] = True
    if any(stuck.values()):
        report["deadLettersNotCopied"] = {q: n for q, n in stuck.items() if n}
    if any(handoffs.values()):
        report["handoffsNotCopied"] = {q: n for q, n in handoffs.items() if n}
    if any(failing.values()):
        report["leaseRenewalFailing"] = {q: n for q, n in failing.items() if n}
    return report


async def _renewals_failing(client: Client, prefix: str, queue: str) -> int:
    """How many live workers of ``queue`` report that renewing their leases fails: their
    running jobs may be run again elsewhere, so the queue is not healthy."""
    workers = await registry.live_workers(client, prefix, queue)
    return sum(1 for w in workers if w.get("leases_failing_since"))
