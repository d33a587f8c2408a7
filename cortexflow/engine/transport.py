"""The options of a Redis connection, by kind of connection, for async and blocking clients.

One rule for every client cortexflow makes (connection.py, cluster.py): timeouts that fit a
long-running worker, retries with backoff, and each socket option given only to the kinds that
take it (a unix socket has no TCP keepalive: redis-py raises TypeError on the first command of
a unix connection given ``socket_keepalive``, which once killed the worker's lease thread).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError
from redis.retry import Retry as SyncRetry

from cortexflow.engine.urls import Kind

# Blocking reads wait at most BLOCK_MAX seconds per call; the socket timeout is well above it
# (redis-py 8's default of 5 s breaks longer blocking reads: taskiq-redis #127).
BLOCK_MAX = 5.0
SOCKET_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 15
# Sentinels answer small queries only; a dead one should cost little before the next is asked.
SENTINEL_SOCKET_TIMEOUT = 5.0
SENTINEL_CONNECT_TIMEOUT = 2.0


def socket_options(kind: Kind, *, timeout: float, connect_timeout: float) -> dict[str, Any]:
    """Socket options for one connection of ``kind``: each only where that kind takes it."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
    }
    if kind != "unix":  # Sentinel masters, Cluster nodes, redis://, rediss:// are TCP
        options["socket_keepalive"] = True
    return options


def backoff_retry(
    retries: int,
    kind: type[AsyncRetry] = AsyncRetry,
    errors: tuple[type[Exception], ...] | None = None,
) -> AsyncRetry:
    """redis-py's retries of one call, on ``errors`` (None: redis-py's connection errors and
    timeouts): exponential backoff, 10 ms doubling, capped at 1 s: spans a restart or a failover.
    """
    backoff = ExponentialBackoff(cap=1.0, base=0.01)
    return kind(backoff, retries) if errors is None else kind(backoff, retries, errors)


def async_options(
    kind: Kind, retries: int, socket_timeout: float = SOCKET_TIMEOUT
) -> dict[str, Any]:
    """An async client's options: bytes replies, timeouts, health checks, retried errors."""
    return {
        "decode_responses": False,
        **socket_options(kind, timeout=socket_timeout, connect_timeout=CONNECT_TIMEOUT),
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": backoff_retry(retries),
        "retry_on_error": [ConnectionError, TimeoutError, BusyLoadingError],
    }


def sync_options(kind: Kind, timeout: float, retries: int = 0) -> dict[str, Any]:
    """A blocking client's options (the lease thread): every call fails after ``timeout``
    seconds and is not retried by redis-py (the caller retries on its next tick)."""
    return {
        "decode_responses": False,
        **socket_options(kind, timeout=timeout, connect_timeout=timeout),
        "retry": SyncRetry(NoBackoff(), retries),
    }


def sentinel_options(
    *,
    sync: bool = False,
    timeout: float = SENTINEL_SOCKET_TIMEOUT,
    connect_timeout: float = SENTINEL_CONNECT_TIMEOUT,
) -> dict[str, Any]:
    """How the sentinels themselves are asked (over TCP): short timeouts, one try each
    (discovery moves on to the next sentinel; the master client's own retries repeat the whole
    discovery)."""
    return {
        **socket_options("tcp", timeout=timeout, connect_timeout=connect_timeout),
        "retry": (SyncRetry if sync else AsyncRetry)(NoBackoff(), 0),
    }
