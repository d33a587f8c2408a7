"""Lease renewal over a blocking connection of its own, for the worker's lease thread.

The worker renews its leases from a thread, not from its event loop (a handler that blocks the
loop must not lose its jobs), so this side of the engine is synchronous: a plain redis-py client
with short timeouts and no retries of its own (the thread retries on its next tick), running the
same ``heartbeat`` script the async consumer uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from cortexflow.engine.cluster import CLUSTER_SCHEMES, parse_cluster_url
from cortexflow.engine.connection import SENTINEL_SCHEMES, parse_sentinel_url
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.scripts import source


def connect_sync(url: str, timeout: float) -> redis.Redis | RedisCluster:
    """A blocking client for ``url`` whose every call fails after ``timeout`` seconds (on a
    Cluster, a cluster client: the heartbeat script touches one queue's slot, routed by key)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        cluster = parse_cluster_url(url)
        if cluster.ssl:
            options.update(ssl=True, **cluster.options)
        # One retry: a connection error reloads the slot map (a failed-over primary).
        options["retry"] = Retry(NoBackoff(), 1)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],  # type: ignore[no-untyped-call]
            username=cluster.username,
            password=cluster.password,
            **options,
        )
    if scheme in SENTINEL_SCHEMES:
        parsed = parse_sentinel_url(url)
        opts = parsed.options
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            parsed.sentinels,
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "username": opts.get("sentinel_username") or None,
                "password": opts.get("sentinel_password") or None,
            },
        )
        tls = {k: v for k, v in opts.items() if k.startswith("ssl_")}
        options.update(db=parsed.db, username=parsed.username, password=parsed.password)
        if parsed.ssl:
            options.update(ssl=True, **tls)
        client: redis.Redis = sentinel.master_for(parsed.service_name, **options)  # type: ignore[no-untyped-call]
        return client
    return redis.Redis.from_url(url, **options)


class SyncRenewer:
    """Renews (job id, token) leases of one queue; blocking, for a thread."""

    def __init__(self, url: str, prefix: str, queue: str, lease: float, timeout: float) -> None:
        self.client = connect_sync(url, timeout)
        keys = QueueKeys(prefix, queue)
        self._keys = [keys.active]
        self._head: list[Any] = [keys.job_prefix, round(lease * 1000)]
        self._script = self.client.register_script(source("heartbeat"))

    def renew(self, leases: Sequence[tuple[str, str]]) -> set[str]:
        """Extend each lease this worker still holds; returns the ids it no longer holds.

        Raises redis.RedisError (connection lost, timeout): the caller tries again."""
        if not leases:
            return set()
        args = list(self._head)
        for job_id, token in leases:
            args += [job_id, token]
        lost = self._script(keys=self._keys, args=args)
        return {x.decode() if isinstance(x, bytes) else str(x) for x in lost}

    def close(self) -> None:
        self.client.close()
