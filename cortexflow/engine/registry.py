"""Who is running: worker heartbeats, supervisor heartbeats, expected worker counts.

Entries expire by deadline (ZSET score, ms), so a process killed with SIGKILL drops out of
every listing after its TTL without anyone cleaning up after it. Deadlines are set and compared
on the server's clock (TIME), so a host whose clock is behind does not look dead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cortexflow.engine.cluster import ClusterClient
from cortexflow.engine.connection import Client
from cortexflow.engine.keys import QueueKeys, supervisor_info_key, supervisors_key
from cortexflow.engine.scripts import Scripts


async def server_now_ms(client: Client) -> int:
    """The server's clock in ms (TIME)."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _publish(
    client: Client, zkey: str, hkey: str, member: str, info: dict[str, Any], ttl: float
) -> None:
    # Also forgets entries that expired (their processes died without saying goodbye).
    await Scripts(client).register(
        keys=[zkey, hkey], args=[member, json.dumps(info), int(ttl * 1000)]
    )


async def _live(client: Client, zkey: str, hkey: str) -> list[dict[str, Any]]:
    now = await server_now_ms(client)
    ids: list[Any] = await client.zrangebyscore(zkey, now, "+inf")
    if not ids:
        return []
    raw = await client.hmget(hkey, ids)
    return [json.loads(r) for r in raw if r]


async def publish_worker(
    client: Client,
    prefix: str,
    queue: str,
    worker_id: str,
    info: dict[str, Any],
    ttl: float,
) -> None:
    k = QueueKeys(prefix, queue)
    await _publish(client, k.workers, k.worker_info, worker_id, {"id": worker_id, **info}, ttl)


async def remove_worker(client: Client, prefix: str, queue: str, worker_id: str) -> None:
    k = QueueKeys(prefix, queue)
    async with client.pipeline(transaction=True) as pipe:
        pipe.zrem(k.workers, worker_id)
        pipe.hdel(k.worker_info, worker_id)
        await pipe.execute()


async def live_workers(client: Client, prefix: str, queue: str) -> list[dict[str, Any]]:
    k = QueueKeys(prefix, queue)
    return await _live(client, k.workers, k.worker_info)


async def live_worker_counts(client: Client, prefix: str, queues: Sequence[str]) -> dict[str, int]:
    now = await server_now_ms(client)
    async with client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.zcount(QueueKeys(prefix, q).workers, now, "+inf")
        counts = await pipe.execute()
    return dict(zip(queues, (int(c) for c in counts), strict=True))


async def publish_supervisor(
    client: Client, prefix: str, supervisor_id: str, info: dict[str, Any], ttl: float
) -> None:
    """``info`` is the supervisor's own view: host, pid, started_at, processes [...]."""
    await _publish(
        client,
        supervisors_key(prefix),
        supervisor_info_key(prefix),
        supervisor_id,
        {"id": supervisor_id, **info},
        ttl,
    )


async def remove_supervisor(client: Client, prefix: str, supervisor_id: str) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.zrem(supervisors_key(prefix), supervisor_id)
        pipe.hdel(supervisor_info_key(prefix), supervisor_id)
        await pipe.execute()


async def live_supervisors(client: Client, prefix: str) -> list[dict[str, Any]]:
    return await _live(client, supervisors_key(prefix), supervisor_info_key(prefix))


async def set_expected(client: Client, prefix: str, queue: str, processes: int, ttl: float) -> None:
    """A supervisor says it should be running ``processes`` workers of ``queue`` (for health)."""
    await client.set(QueueKeys(prefix, queue).expect, processes, px=int(ttl * 1000))


async def expected_counts(client: Client, prefix: str, queues: Sequence[str]) -> dict[str, int]:
    if not queues:
        return {}
    keys = [QueueKeys(prefix, q).expect for q in queues]
    # One key per queue, so one slot per queue: a Cluster refuses a cross-slot MGET.
    raw = await (
        client.mget_nonatomic(keys) if isinstance(client, ClusterClient) else client.mget(keys)
    )
    return {q: int(r) if r else 0 for q, r in zip(queues, raw, strict=True)}


async def clear_expected(client: Client, prefix: str, queues: Sequence[str]) -> None:
    """A supervisor that stops no longer expects workers (other supervisors say so again on
    their next publication, within seconds)."""
    if queues:
        await client.delete(*[QueueKeys(prefix, q).expect for q in queues])
