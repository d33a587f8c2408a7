"""Redis Cluster: ``redis+cluster://`` URLs, the client, and pipelines pinned to one node.

Every key of a queue shares the hash tag ``{prefix:queue}``, so a queue lives in one slot, and
one node owns it. Single commands and single script calls go through the cluster client, which
routes them by key and follows MOVED/ASK and failovers itself. redis-py's cluster pipeline
refuses EVALSHA, so batches use a plain (non-cluster) pipeline on the node that owns the
keys' slot instead: ``node_pipeline`` for one queue, ``run_by_node`` for several queues (one
pipeline per node, never a cross-slot command). docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from cortexflow.engine.transport import SOCKET_TIMEOUT, async_options, backoff_retry
from cortexflow.engine.urls import RedisTarget, describe

# What a pinned node's pipeline raises when the node died (a failover moves its slots): refresh
# the topology and run the batch once more (as run_pinned does for a MOVED or TRYAGAIN reply,
# the slot no longer or not yet served there: a multi-key call during a slot migration).
NODE_FAILURES = (ConnectionError, TimeoutError, OSError)
# redis-py's async cluster retries these (reloading the topology each time) but without any
# pause, so its attempts are spent in well under a second, before a failover (node timeout +
# election: 3-5 s with a 2 s node timeout) has promoted a replica. A few quick attempts each
# time, and transport.py's backoff between them.
CLUSTER_ERRORS = (
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
)
INNER_RETRIES = 2
# After a node failed, how long to keep reloading the topology for another owner of its slots
# before running the batch again (a restarting node without replicas keeps its slots: then
# retried with backoff, a topology reload before each attempt, within the client's retries).
FAILOVER_WAIT = 5.0
# Set while a pinned batch runs: a node client then gives up at the first refused connection
# (a dead node: retrying it cannot help while a replica is promoted) instead of spending its
# whole retry budget on it; run_pinned reloads the topology from the other nodes and runs the
# batch on whichever node owns the slots then.
_REFUSED_IS_FINAL = contextvars.ContextVar("refused_is_final", default=False)


@contextlib.contextmanager
def unreachable_is_connection_error() -> Iterator[None]:
    """redis-py's cluster errors for "no node answers" (RedisClusterUnreachableError,
    SlotNotCoveredError) are not RedisErrors, so every ``except RedisError`` that rides out an
    outage would miss them: they are raised as the ConnectionError they mean."""
    try:
        yield
    except (RedisClusterUnreachableError, SlotNotCoveredError) as exc:
        raise ConnectionError(f"Redis Cluster unreachable: {exc}") from exc


def refused(error: BaseException) -> bool:
    """Whether ``error`` is (or was raised while handling) a refused TCP connection."""
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class NodeRetry(Retry):
    """connection.py's retry for the plain node clients, except that inside a pinned batch a
    refused connection is not retried (see _REFUSED_IS_FINAL)."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[Any]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Any:
        if _REFUSED_IS_FINAL.get():
            outer = is_retryable

            def is_retryable(error: Exception) -> bool:
                return not refused(error) and (outer is None or outer(error))

        return await super().call_with_retry(do, fail, is_retryable, with_failure_count)


class ClusterClient(RedisCluster):
    """A RedisCluster that also keeps one plain client per node for pinned pipelines.

    Closing it closes those too. Build it with connect_cluster().
    """

    def __init__(self, *, node_kwargs: dict[str, Any], retries: int, **kwargs: Any) -> None:
        # retries=0 (the worker's fetch/finish client): no silent re-send of a call whose
        # reply was lost, here either; redirects (MOVED/ASK: not run) are still followed.
        inner = min(INNER_RETRIES, retries)
        super().__init__(retry=Retry(ExponentialBackoff(), inner), **kwargs)
        self.node_kwargs = node_kwargs
        self.node_clients: dict[str, aioredis.Redis] = {}
        self.backoff = backoff_retry(retries, errors=CLUSTER_ERRORS)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py's routing and redirects, retried with backoff (see CLUSTER_ERRORS)."""
        call = super().execute_command
        with unreachable_is_connection_error():
            return await self.backoff.call_with_retry(
                lambda: call(*args, **kwargs), lambda _error: asyncio.sleep(0)
            )

    def client_for(self, name: str) -> aioredis.Redis:
        """The plain (non-cluster) client of the node ``host:port``, made on first use."""
        client = self.node_clients.get(name)
        if client is None:
            host, _, port = name.rpartition(":")
            client = aioredis.Redis(host=host, port=int(port), **self.node_kwargs)
            self.node_clients[name] = client
        return client

    async def aclose(self) -> None:
        clients, self.node_clients = list(self.node_clients.values()), {}
        try:
            await super().aclose()
        finally:
            for client in clients:
                await client.aclose()


def connect_cluster(
    url: str | RedisTarget,
    *,
    retries: int = 8,
    socket_timeout: float = SOCKET_TIMEOUT,
    max_connections: int | None = None,
) -> ClusterClient:
    """A cluster client for ``url`` with transport.py's timeouts and retries.

    redis-py follows MOVED/ASK (updating its slot map) and, on a connection error, timeout or
    CLUSTERDOWN, reloads the topology and tries again (INNER_RETRIES times, at once); around
    that, ``retries`` more rounds with the usual backoff (10 ms doubling to 1 s), which spans a
    replica's promotion. Raises RedisUnavailableError (URL redacted, expected form named) for
    a malformed URL. Nothing connects until the first command (or ``await
    client.initialize()``) reads the topology from the first startup node that answers.
    """
    target = describe(url) if isinstance(url, str) else url
    parsed = target.cluster
    if parsed is None:
        raise ValueError(f"not a Cluster URL: {target.shown}")
    common = parsed.node_options()
    options = async_options("tcp", retries, socket_timeout)
    node_kwargs = {**options, **common, "retry": backoff_retry(retries, NodeRetry)}
    if max_connections is not None:
        node_kwargs["max_connections"] = max_connections
    del options["retry"]  # the cluster's own: ClusterClient
    return ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        node_kwargs=node_kwargs,
        retries=retries,
        **options,
        **common,
    )


async def owner(cluster: ClusterClient, key: str) -> str:
    """``host:port`` of the primary that serves ``key``'s slot (the client's slot map)."""
    await cluster.initialize()
    node = cluster.get_node_from_key(key)
    assert node is not None  # the primary; get_node_from_key raises when the slot is uncovered
    return str(node.name)


async def group_by_node(cluster: ClusterClient, keys: Sequence[str]) -> dict[str, list[int]]:
    """The positions in ``keys`` grouped by the node (``host:port``) serving each key's slot."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(await owner(cluster, key), []).append(index)
    return groups


async def node_client(cluster: ClusterClient, key: str) -> aioredis.Redis:
    """The plain client of the node serving ``key``'s slot, for what a cluster pipeline gets
    wrong: WATCH/MULTI/EXEC on one slot (redis-py 8's async ClusterPipeline never sends the
    WATCH and returns the pipeline itself from the read after it). No redirect is followed:
    a MovedError or ConnectionError reaches the caller, as a WatchError would.
    """
    return cluster.client_for(await owner(cluster, key))


class NodePipeline(Pipeline):
    """A plain pipeline for commands on ONE slot (one queue's keys), sent to the node that
    serves it. ``execute()`` follows a moved slot or a failed-over node once (see run_pinned).
    """

    def __init__(self, cluster: ClusterClient, key: str, client: aioredis.Redis) -> None:
        super().__init__(
            client.connection_pool, client.response_callbacks, transaction=False, shard_hint=None
        )
        self.cluster_client = cluster
        self.key = key

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, scripts = self.command_stack, self.scripts
        self.command_stack, self.scripts = [], set()  # no connection to release: none is taken
        if not stack:
            return []
        replies = await run_pinned(self.cluster_client, stack, scripts, [self.key] * len(stack))
        if raise_on_error:
            self.raise_first_error(stack, replies)
        return replies


async def node_pipeline(cluster: ClusterClient, key: str) -> NodePipeline:
    """A non-cluster pipeline on the node serving ``key``'s slot, so several EVALSHA calls on
    one queue's keys (one slot) still go in one round trip. Every command must touch that slot.
    """
    return NodePipeline(cluster, key, cluster.client_for(await owner(cluster, key)))


async def run_by_node(
    cluster: ClusterClient,
    keys: Sequence[str],
    add: Callable[[Pipeline, int], Awaitable[Any] | Any],
    *,
    raise_on_error: bool = True,
) -> list[Any]:
    """One command per key, one pipeline per node, all nodes at once; replies in key order.

    ``add(pipe, i)`` queues exactly one command on ``pipe`` that touches only ``keys[i]``'s slot
    (e.g. ``await script(keys=[...], client=pipe)``); it may be async. With
    ``raise_on_error=False`` a failed command's exception is its reply.
    """
    if not keys:
        return []
    recorder = cluster.client_for(await owner(cluster, keys[0])).pipeline(transaction=False)
    for index in range(len(keys)):
        before = len(recorder.command_stack)
        queued = add(recorder, index)
        if inspect.isawaitable(queued):
            await queued
        if len(recorder.command_stack) != before + 1:
            raise ValueError(
                f"add() queued {len(recorder.command_stack) - before} commands for "
                f"key {index}; it must queue exactly one"
            )
    stack, scripts = recorder.command_stack, recorder.scripts
    recorder.command_stack, recorder.scripts = [], set()
    replies = await run_pinned(cluster, stack, scripts, keys)
    if raise_on_error:
        recorder.raise_first_error(stack, replies)
    return replies


Command = tuple[Any, Any]  # (args, options) as a redis-py pipeline records it


async def run_pinned(
    cluster: ClusterClient,
    stack: Sequence[Command],
    scripts: set[Any],
    keys: Sequence[str],
    *,
    retry: bool = True,
) -> list[Any]:
    """Run ``stack[i]`` (touching ``keys[i]``'s slot) with one plain pipeline per serving node.

    A command answered MOVED or TRYAGAIN, or a node that fails (a refused connection at once,
    another connection error or a timeout after its client's own retries), makes the client
    reload the topology, asking the other nodes first; the affected commands then run again on
    their new nodes (see _run_again). An ASK goes to the node named, after ASKING (a slot being
    migrated). Replies in ``stack`` order; errors are replies.
    """
    replies: list[Any] = [None] * len(stack)
    again: list[int] = []
    asked: dict[str, list[int]] = {}
    failed_nodes: list[str] = []

    async def batch(node: str, indices: list[int]) -> None:
        _REFUSED_IS_FINAL.set(True)  # this task's own context: only its node calls see it
        try:
            got = await _execute(cluster, node, [stack[i] for i in indices], scripts, False)
        except NODE_FAILURES as exc:
            if not retry:
                raise
            failed_nodes.append(node)
            again.extend(indices)
            got = [exc] * len(indices)
        for i, reply in zip(indices, got, strict=True):
            replies[i] = reply
            if not retry or i in again:
                continue
            if isinstance(reply, MovedError | TryAgainError):
                again.append(i)
            elif isinstance(reply, AskError):
                asked.setdefault(f"{reply.host}:{reply.port}", []).append(i)

    groups = await group_by_node(cluster, keys)
    await _gather(batch(node, indices) for node, indices in groups.items())
    if again:
        again.sort()
        redo = await _run_again(
            cluster, failed_nodes, [stack[i] for i in again], scripts, [keys[i] for i in again]
        )
        for i, reply in zip(again, redo, strict=True):
            replies[i] = reply
    for node, indices in asked.items():
        got = await _execute(cluster, node, [stack[i] for i in indices], scripts, True)
        for i, reply in zip(indices, got, strict=True):
            replies[i] = reply
    return replies


async def _run_again(
    cluster: ClusterClient,
    failed: list[str],
    stack: Sequence[Command],
    scripts: set[Any],
    keys: Sequence[str],
) -> list[Any]:
    """The commands a moved slot or a failed node left undone, run on the slots' owners after a
    reload. While a node refuses connections and still owns a slot (no replica promoted yet, or
    none to promote), reload and try again with the client's backoff, within its retries."""
    deadline = asyncio.get_running_loop().time() + FAILOVER_WAIT

    async def attempt() -> list[Any]:
        await _reload(cluster, failed, keys, deadline)
        return await run_pinned(cluster, stack, scripts, keys, retry=False)

    return await cluster.backoff.call_with_retry(
        attempt, lambda _error: asyncio.sleep(0), is_retryable=refused
    )


async def _reload(
    cluster: ClusterClient, failed: list[str], keys: Sequence[str], deadline: float
) -> None:
    """Reload the slot map (the failed node asked last); after a node failure, until its keys
    have another owner (a replica promoted) or ``deadline`` passes."""
    loop = asyncio.get_running_loop()
    pause = 0.01
    while True:
        with unreachable_is_connection_error():
            await cluster.nodes_manager.initialize(
                last_failed_node_name=failed[0] if failed else None
            )
        owners = {await owner(cluster, key) for key in keys}
        if not owners & set(failed) or loop.time() >= deadline:
            return
        await asyncio.sleep(min(pause, max(deadline - loop.time(), 0)))
        pause = min(pause * 2, 0.5)


async def _execute(
    cluster: ClusterClient, node: str, stack: Sequence[Command], scripts: set[Any], asking: bool
) -> list[Any]:
    """One pipeline on one node (ASKING before each command when ``asking``)."""
    pipe = cluster.client_for(node).pipeline(transaction=False)
    for args, options in stack:
        if asking:
            pipe.command_stack.append((("ASKING",), {}))
        pipe.command_stack.append((args, options))
    pipe.scripts = set(scripts)
    got: list[Any] = await pipe.execute(raise_on_error=False)
    return got[1::2] if asking else got


async def _gather(calls: Any) -> None:
    """Await every call, then raise the first failure (none is left running unobserved)."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
