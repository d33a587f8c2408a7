"""Every Redis client cortexflow makes, async (``connect``) and blocking (``connect_sync``, the
worker's lease thread), from one description of the URL (urls.py) and one rule for the options
of each kind of connection (transport.py).

URL forms (docs/engine.md "Connections"): ``redis://``, ``rediss://`` (TLS), ``unix://``
(``?db=N``), Redis Sentinel ``redis+sentinel://`` / ``rediss+sentinel://`` and Redis Cluster
``redis+cluster://`` / ``rediss+cluster://``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    ResponseError,
    TimeoutError,
)
from redis.sentinel import Sentinel as SyncSentinel

from cortexflow.engine.cluster import ClusterClient, connect_cluster
from cortexflow.engine.transport import (
    SOCKET_TIMEOUT,
    async_options,
    sentinel_options,
    sync_options,
)
from cortexflow.engine.urls import RedisTarget, describe
from cortexflow.errors import RedisAuthError, RedisUnavailableError
from cortexflow.redact import invalid_url_reason, redact_url, scrub_secrets

# What connect() returns: one server's client (plain, TLS, unix socket, Sentinel's master) or a
# Cluster's (docs/cluster.md). Code that batches checks which, once, when it is built.
Client: TypeAlias = "aioredis.Redis | ClusterClient"
# What connect_sync() returns.
SyncClient: TypeAlias = "redis.Redis | SyncRedisCluster"


_redis_py_send = aioredis.connection.AbstractConnection.send_packed_command


async def _send_direct(
    conn: aioredis.connection.AbstractConnection,
    command: bytes | str | Iterable[bytes],
    check_health: bool = True,
) -> None:
    """redis-py bounds every send with ``asyncio.wait_for`` (on Python 3.11 a new task per
    command: 12 of the 86 us of client CPU a serial add took here). A write the transport takes
    whole cannot block, so it needs no bound: it is written directly, and everything else (not
    connected, a health check due, a transport closing or with unsent data, a write left
    partly unsent) goes through redis-py's own path and its timeout."""
    writer = conn._writer
    transport = None if writer is None else writer.transport
    if (
        transport is None
        or transport.is_closing()
        or transport.get_write_buffer_size()
        or (
            check_health
            and conn.health_check_interval
            and asyncio.get_running_loop().time() > conn.next_health_check
        )
    ):
        await _redis_py_send(conn, command, check_health)
        return
    if isinstance(command, str):
        command = command.encode()
    if isinstance(command, bytes):
        command = [command]
    assert writer is not None
    writer.writelines(command)
    if transport.get_write_buffer_size():  # the kernel took part of it: wait, bounded
        await _redis_py_send(conn, [], False)


class _DirectConnection(aioredis.Connection):
    send_packed_command = _send_direct


class _DirectSSLConnection(aioredis.SSLConnection):
    send_packed_command = _send_direct


class _DirectUnixConnection(aioredis.UnixDomainSocketConnection):
    send_packed_command = _send_direct


_DIRECT: dict[type[Any], type[Any]] = {
    aioredis.Connection: _DirectConnection,
    aioredis.SSLConnection: _DirectSSLConnection,
    aioredis.UnixDomainSocketConnection: _DirectUnixConnection,
}


def _direct_sends(client: aioredis.Redis) -> aioredis.Redis:
    """Make the client's connections send without a task per command (``_send_direct``)."""
    pool = client.connection_pool
    pool.connection_class = _DIRECT.get(pool.connection_class, pool.connection_class)
    return client


def connect(
    url: str,
    *,
    retries: int = 8,
    socket_timeout: float = SOCKET_TIMEOUT,
    max_connections: int | None = None,
) -> Client:
    """An async client for ``url`` that retries transient errors.

    ``max_connections`` bounds its pool (per node on a Cluster); None: redis-py's default.

    Retries use exponential backoff (10 ms doubling, capped at 1 s), covering a server restart
    or an AOF reload (BusyLoadingError), and with Sentinel a failover (the client asks the
    sentinels for the master again on every new connection), and with a Cluster MOVED/ASK and a
    replica's promotion (cortexflow.engine.cluster). Raises RedisUnavailableError for a
    malformed URL.
    """
    target = describe(url)
    if target.kind == "cluster":
        return connect_cluster(
            target, retries=retries, socket_timeout=socket_timeout, max_connections=max_connections
        )
    options = async_options(target.kind, retries, socket_timeout)
    if max_connections is not None:
        options["max_connections"] = max_connections
    if target.kind == "sentinel":
        return _connect_sentinel(target, options)
    try:
        return _direct_sends(aioredis.Redis.from_url(url, **options))
    except ValueError as exc:
        raise RedisUnavailableError(redact_url(url), invalid_url_reason(url, exc)) from None


def connect_sync(url: str, timeout: float) -> SyncClient:
    """A blocking client for ``url`` whose every call fails after ``timeout`` seconds, not
    retried by redis-py (the worker's lease thread retries on its next tick). On a Cluster, a
    cluster client (the heartbeat script touches one queue's slot, routed by key) with one
    retry: a connection error reloads the slot map (a failed-over primary)."""
    target = describe(url)
    if target.kind == "cluster":
        assert target.cluster is not None
        return SyncRedisCluster(
            startup_nodes=[SyncClusterNode(h, p) for h, p in target.cluster.nodes],  # type: ignore[no-untyped-call]
            **{**sync_options("tcp", timeout, retries=1), **target.cluster.node_options()},
        )
    options = sync_options(target.kind, timeout)
    if target.kind == "sentinel":
        parsed = target.sentinel
        assert parsed is not None
        sentinel = SyncSentinel(
            parsed.sentinels,
            sentinel_kwargs={
                **sentinel_options(sync=True, timeout=timeout, connect_timeout=timeout),
                **parsed.sentinel_auth(),
            },
        )
        options.update(db=parsed.db, username=parsed.username, password=parsed.password)
        options.update(parsed.master_tls())
        client: redis.Redis = sentinel.master_for(parsed.service_name, **options)
        return client
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise RedisUnavailableError(redact_url(url), invalid_url_reason(url, exc)) from None


class SentinelMaster(aioredis.Redis):
    """The master of a Sentinel service; closing it also closes the sentinel connections."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        try:
            await super().aclose(close_connection_pool)
        finally:
            for sentinel in getattr(manager, "sentinels", ()):
                await sentinel.aclose()


def _connect_sentinel(target: RedisTarget, options: dict[str, Any]) -> aioredis.Redis:
    parsed = target.sentinel
    assert parsed is not None
    sentinel_kwargs = {**sentinel_options(), **parsed.sentinel_auth()}
    options.update(db=parsed.db, username=parsed.username, password=parsed.password)
    options.update(parsed.master_tls())
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs)
    client: aioredis.Redis = sentinel.master_for(
        parsed.service_name, redis_class=SentinelMaster, **options
    )
    return client


async def ping(client: Client, url: str) -> None:
    """Raise RedisUnavailableError (URL redacted) unless the server answers; RedisAuthError when
    it answers but refuses the credentials, the database or the permission."""
    try:
        await client.ping()
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise unusable(url, exc) from None
    except ResponseError as exc:  # NOPERM, a wrong database: refused, not unreachable
        error = unusable(url, exc)
        if isinstance(error, RedisAuthError):
            raise error from None
        raise


_PERCENT_ENCODE = (
    "A password with characters such as @ : / % # ? must be percent-encoded in the URL "
    "(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=\"\"))' "
    "'PASSWORD'). Set the URL in REDIS_URL (or --redis-url, or redis.url in queues.yaml)."
)


def unusable(url: str, exc: BaseException) -> RedisUnavailableError:
    """The error that says what ``exc``, raised by a call to ``url``, means for the user:
    RedisAuthError when the server refused the credentials, the database or the permission,
    else RedisUnavailableError."""
    shown = redact_url(url)
    reason = scrub_secrets(str(exc), url) or type(exc).__name__
    user = _username(url)
    who = f"user {user!r}" if user else "the default user (no user in the URL)"
    if isinstance(exc, AuthenticationError) or "NOAUTH" in reason or "HELLO must be" in reason:
        if "HELLO must be" in reason or "NOAUTH" in reason or "Authentication required" in reason:
            problem = "authentication required: the server needs a password and the URL has none"
            fix = "Put the user and password in the URL: redis://USER:PASSWORD@HOST:PORT/DB."
        else:
            problem = f"authentication failed for {who}"
            fix = "Check the user and password in the URL (redis://USER:PASSWORD@HOST:PORT/DB)."
        return RedisAuthError(shown, reason, problem, f"{fix} {_PERCENT_ENCODE}")
    if isinstance(exc, NoPermissionError):
        return RedisAuthError(
            shown,
            reason,
            f"permission denied (NOPERM) for {who}",
            "The server's ACL must let this user use cortexflow's keys (e.g. "
            "`~{cortexflow:* ~{cortexflow}:*` for the default prefix) and the commands of "
            "@read @write @scripting @list @sortedset @hash @string @connection.",
        )
    if isinstance(exc, ResponseError) and "DB index is out of range" in reason:
        return RedisAuthError(
            shown,
            reason,
            "no such database",
            "The number after the port in the URL (redis://HOST:PORT/DB) must be below the "
            "server's `databases` setting (16 by default).",
        )
    return RedisUnavailableError(shown, reason)


def _username(url: str) -> str | None:
    try:
        user = urlsplit(url).username
    except ValueError:
        return None
    return unquote(user) if user else None
