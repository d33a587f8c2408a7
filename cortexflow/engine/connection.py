"""Redis connections with timeouts and retries that fit a long-running worker."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from cortexflow.errors import RedisUnavailableError

# Blocking reads wait at most BLOCK_MAX seconds per call; the socket timeout is well above it
# (redis-py 8's default of 5 s breaks longer blocking reads: taskiq-redis #127).
BLOCK_MAX = 5.0
SOCKET_TIMEOUT = 30.0


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host`` (passwords never reach logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:***@{hostinfo}" if user else f":***@{hostinfo}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def connect(url: str, *, retries: int = 8) -> aioredis.Redis:
    """A client for ``url`` (redis://, rediss://, unix://) that retries transient errors.

    Retries use exponential backoff (10 ms doubling, capped at 1 s), covering a server restart
    or an AOF reload (BusyLoadingError). Raises RedisUnavailableError for a malformed URL.
    """
    try:
        return aioredis.Redis.from_url(
            url,
            decode_responses=False,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=15,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.01), retries),
            retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError],
        )
    except ValueError as exc:
        raise RedisUnavailableError(redact_url(url), f"invalid URL ({exc})") from None


async def ping(client: aioredis.Redis, url: str) -> None:
    """Raise RedisUnavailableError (URL redacted) unless the server answers."""
    try:
        await client.ping()
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise RedisUnavailableError(redact_url(url), str(exc) or type(exc).__name__) from None
