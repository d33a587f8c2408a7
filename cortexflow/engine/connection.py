"""Redis connections with timeouts and retries that fit a long-running worker.

URL forms (docs/engine.md): ``redis://``, ``rediss://`` (TLS), ``unix://``, and Redis Sentinel:
``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``
(``rediss+sentinel://`` for TLS to the master).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    NoPermissionError,
    ResponseError,
    TimeoutError,
)

from cortexflow.errors import RedisAuthError, RedisUnavailableError
from cortexflow.redact import invalid_url_reason, redact_url, scrub_secrets

if TYPE_CHECKING:
    from cortexflow.engine.cluster import ClusterClient

# What connect() returns: one server's client (plain, TLS, unix socket, Sentinel's master) or a
# Cluster's (docs/cluster.md). Code that batches checks which, once, when it is built.
Client: TypeAlias = "aioredis.Redis | ClusterClient"

# Blocking reads wait at most BLOCK_MAX seconds per call; the socket timeout is well above it
# (redis-py 8's default of 5 s breaks longer blocking reads: taskiq-redis #127).
BLOCK_MAX = 5.0
SOCKET_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
# Sentinels answer small queries only; a dead one should cost little before the next is asked.
SENTINEL_SOCKET_TIMEOUT = 5.0
SENTINEL_CONNECT_TIMEOUT = 2.0
SENTINEL_PORT = 26379

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
SENTINEL_FORM = (
    "redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db] "
    "(rediss+sentinel:// for TLS to the master)"
)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# Query options of a Sentinel URL. sentinel_*: how to reach the sentinels themselves (by default
# without credentials or TLS); ssl_*: the master's TLS settings, as for rediss://.
SENTINEL_OPTIONS = (
    "sentinel_username",
    "sentinel_password",
    "sentinel_ssl",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    options: dict[str, str] = field(default_factory=dict)


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``.

    Raises ValueError saying what is wrong (the caller adds the expected form).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"scheme {parts.scheme!r} is not redis+sentinel or rediss+sentinel")
    if parts.fragment:
        raise ValueError("a fragment (#...) is not allowed")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hostlist:
        raise ValueError("no sentinel host:port given")
    sentinels = [_host_port(item) for item in hostlist.split(",")]
    segments = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    if not segments or not segments[0]:
        raise ValueError("no service name given (the path's first part, e.g. /mymaster)")
    if len(segments) > 2:
        raise ValueError(f"path {parts.path!r} has more than /service_name/db")
    service_name = unquote(segments[0])
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"database {segments[1]!r} is not a number")
        db = int(segments[1])
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in SENTINEL_OPTIONS:
            raise ValueError(f"unknown option {name!r} (known: {', '.join(SENTINEL_OPTIONS)})")
        options[name] = value
    if "sentinel_ssl" in options and options["sentinel_ssl"].lower() not in _TRUE + _FALSE:
        raise ValueError(f"sentinel_ssl={options['sentinel_ssl']!r} is not true or false")
    return SentinelURL(
        sentinels=sentinels,
        service_name=service_name,
        db=db,
        username=username,
        password=password,
        ssl=SENTINEL_SCHEMES[scheme],
        options=options,
    )


def _host_port(
    item: str, default_port: int = SENTINEL_PORT, role: str = "sentinel"
) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6addr]:port`` of a ``role`` (sentinel, cluster node)."""
    if not item:
        raise ValueError(f"empty {role} address (two commas, or a trailing comma)")
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad {role} address {item!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"{role} address {item!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{role} address {item!r} has a bad port")
    return host, int(port_text)


def _retry(retries: int, kind: type[Retry] = Retry) -> Retry:
    return kind(ExponentialBackoff(cap=1.0, base=0.01), retries)


def _client_options(retries: int, socket_timeout: float = SOCKET_TIMEOUT) -> dict[str, Any]:
    return {
        "decode_responses": False,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": _retry(retries),
        "retry_on_error": [ConnectionError, TimeoutError, BusyLoadingError],
    }


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


def _has_cluster_option(url: str) -> bool:
    return any(name.lower() == "cluster" for name, _ in parse_qsl(urlsplit(url).query))


def connect(url: str, *, retries: int = 8, socket_timeout: float = SOCKET_TIMEOUT) -> Client:
    """A client for ``url`` (redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://,
    redis+cluster://, rediss+cluster://) that retries transient errors.

    Retries use exponential backoff (10 ms doubling, capped at 1 s), covering a server restart
    or an AOF reload (BusyLoadingError), and with Sentinel a failover (the client asks the
    sentinels for the master again on every new connection), and with a Cluster MOVED/ASK and a
    replica's promotion (cortexflow.engine.cluster). Raises RedisUnavailableError for a
    malformed URL.
    """
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        return _connect_sentinel(url, retries, socket_timeout)
    if scheme in CLUSTER_SCHEMES:
        from cortexflow.engine.cluster import connect_cluster  # cluster.py imports this module

        return connect_cluster(url, retries=retries, socket_timeout=socket_timeout)
    try:
        cluster_option = _has_cluster_option(url)
    except ValueError as exc:
        raise RedisUnavailableError(redact_url(url), invalid_url_reason(url, exc)) from None
    if cluster_option:
        raise RedisUnavailableError(
            redact_url(url),
            "a cluster=... option is not how cortexflow connects to a Redis Cluster; use "
            "redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS)",
        )
    options = _client_options(retries, socket_timeout)
    if scheme == "unix":
        del options["socket_keepalive"]  # a unix socket has no keepalive (redis-py refuses it)
    try:
        return _direct_sends(aioredis.Redis.from_url(url, **options))
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


def _connect_sentinel(url: str, retries: int, socket_timeout: float) -> aioredis.Redis:
    try:
        parsed = parse_sentinel_url(url)
    except ValueError as exc:
        reason = scrub_secrets(str(exc), url)
        raise RedisUnavailableError(
            redact_url(url), f"invalid Sentinel URL: {reason}; expected {SENTINEL_FORM}"
        ) from None
    opts = parsed.options
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
        "socket_connect_timeout": SENTINEL_CONNECT_TIMEOUT,
        "socket_keepalive": True,
        # One try per sentinel: discovery moves on to the next sentinel, and the master
        # client's own retries (with backoff) repeat the whole discovery.
        "retry": Retry(NoBackoff(), 0),
        "username": opts.get("sentinel_username") or None,
        "password": opts.get("sentinel_password") or None,
    }
    tls = {k: v for k, v in opts.items() if k.startswith("ssl_")}
    if opts.get("sentinel_ssl", "").lower() in _TRUE:
        sentinel_kwargs.update(ssl=True, **tls)
    master_kwargs = _client_options(retries, socket_timeout)
    master_kwargs.update(db=parsed.db, username=parsed.username, password=parsed.password)
    if parsed.ssl:
        master_kwargs.update(ssl=True, **tls)
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        parsed.service_name, redis_class=SentinelMaster, **master_kwargs
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
