"""One description of a Redis URL: what kind of connection it names, parsed once.

Every Redis client cortexflow makes, sync or async (engine, lease thread, registry, schedules,
dashboard, the embedded server's clients, Sentinel, Cluster), is built from a ``RedisTarget``
(connection.py), with the options its kind takes (transport.py). docs/engine.md "Connections".

URL forms: ``redis://``, ``rediss://`` (TLS), ``unix://`` (``?db=N``), Redis Sentinel
``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``
(``rediss+sentinel://`` for TLS to the master) and Redis Cluster
``redis+cluster://[user:password@]host:port[,host:port...][/0]`` (``rediss+cluster://``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from cortexflow.errors import RedisUnavailableError
from cortexflow.redact import invalid_url_reason, redact_url, scrub_secrets

Kind = Literal["tcp", "tls", "unix", "sentinel", "cluster"]

SENTINEL_PORT = 26379
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
SENTINEL_FORM = (
    "redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db] "
    "(rediss+sentinel:// for TLS to the master)"
)
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
CLUSTER_PORT = 6379
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
CLUSTER_FORM = (
    "redis+cluster://[user:password@]host:port[,host:port...][/0] "
    "(rediss+cluster:// for TLS; a cluster has database 0 only)"
)
# TLS options, as for rediss:// (and the master of a rediss+sentinel:// URL).
CLUSTER_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
CERT_REQS = ("none", "optional", "required")
PLAIN_SCHEMES: dict[str, Kind] = {"redis": "tcp", "rediss": "tls", "unix": "unix"}
TRUE = ("1", "true", "yes", "on")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,30}")
FALSE = ("0", "false", "no", "off")


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

    def master_tls(self) -> dict[str, Any]:
        """The master connection's TLS options (empty without rediss+sentinel://)."""
        if not self.ssl:
            return {}
        return {"ssl": True, **{k: v for k, v in self.options.items() if k.startswith("ssl_")}}

    def sentinel_auth(self) -> dict[str, Any]:
        """Credentials and TLS for the sentinels themselves (sentinel_* options)."""
        opts = self.options
        auth: dict[str, Any] = {
            "username": opts.get("sentinel_username") or None,
            "password": opts.get("sentinel_password") or None,
        }
        if opts.get("sentinel_ssl", "").lower() in TRUE:
            auth.update(ssl=True, **{k: v for k, v in opts.items() if k.startswith("ssl_")})
        return auth


@dataclass(frozen=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL: the startup nodes and the credentials of all nodes."""

    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def node_options(self) -> dict[str, Any]:
        """What every node connection takes besides the transport: credentials and TLS."""
        common: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.ssl:
            common.update(ssl=True, **self.options)
        return common


@dataclass(frozen=True)
class RedisTarget:
    """What a URL names: its kind, and for Sentinel and Cluster the parsed parts."""

    url: str
    kind: Kind
    sentinel: SentinelURL | None = None
    cluster: ClusterURL | None = None

    @property
    def shown(self) -> str:
        """The URL with its password masked, for messages."""
        return redact_url(self.url)


def describe(url: str) -> RedisTarget:
    """The target ``url`` names. Raises RedisUnavailableError (URL redacted, what is wrong and
    the expected form) for a URL cortexflow cannot use."""
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        try:
            return RedisTarget(url, "sentinel", sentinel=parse_sentinel_url(url))
        except ValueError as exc:
            reason = scrub_secrets(str(exc), url)
            raise RedisUnavailableError(
                redact_url(url), f"invalid Sentinel URL: {reason}; expected {SENTINEL_FORM}"
            ) from None
    if scheme in CLUSTER_SCHEMES:
        try:
            return RedisTarget(url, "cluster", cluster=parse_cluster_url(url))
        except ValueError as exc:
            raise RedisUnavailableError(
                redact_url(url), f"invalid Cluster URL: {exc}; expected {CLUSTER_FORM}"
            ) from None
    kind = PLAIN_SCHEMES.get(scheme)
    if kind is None:
        known = ", ".join(f"{s}://" for s in (*PLAIN_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES))
        what = f"unknown scheme {scheme!r}" if _SCHEME.fullmatch(scheme) else "no scheme"
        raise RedisUnavailableError(
            redact_url(url), f"{what}: a Redis URL starts with one of {known}"
        )
    try:
        cluster_option = any(n.lower() == "cluster" for n, _ in parse_qsl(urlsplit(url).query))
    except ValueError as exc:
        raise RedisUnavailableError(redact_url(url), invalid_url_reason(url, exc)) from None
    if cluster_option:
        raise RedisUnavailableError(
            redact_url(url),
            "a cluster=... option is not how cortexflow connects to a Redis Cluster; use "
            "redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS)",
        )
    return RedisTarget(url, kind)


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
    sentinels = [host_port(item) for item in hostlist.split(",")]
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
    if "sentinel_ssl" in options and options["sentinel_ssl"].lower() not in TRUE + FALSE:
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


def parse_cluster_url(url: str) -> ClusterURL:
    """Parse ``redis+cluster://[user:password@]host:port[,host:port...][/0][?ssl_*=...]``.

    Raises ValueError saying what is wrong, never quoting the password (the caller adds the
    expected form). The userinfo ends at the URL's last ``@``, as redact_url reads it, so a
    password holding ``/``, ``?`` or ``#`` cannot spill into the host list or the path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not redis+cluster or rediss+cluster")
    tls = CLUSTER_SCHEMES[scheme.lower()]
    userinfo, at, hostpart = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    parts = urlsplit(f"{scheme}://{hostpart}")
    if parts.fragment:
        raise ValueError("a fragment (#...) is not allowed")
    if not parts.netloc:
        raise ValueError("no node host:port given")
    nodes = [host_port(item, CLUSTER_PORT, "node") for item in parts.netloc.split(",")]
    path = parts.path.strip("/")
    if path and path != "0":
        raise ValueError(f"database {path!r}: a cluster has database 0 only (use /0 or nothing)")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in CLUSTER_OPTIONS:
            raise ValueError(f"unknown option {name!r} (known: {', '.join(CLUSTER_OPTIONS)})")
        options[name] = value
    if options and not tls:
        raise ValueError(f"{', '.join(options)}: TLS options need rediss+cluster://")
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs.lower() not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={reqs!r} is not one of {', '.join(CERT_REQS)}")
    return ClusterURL(nodes, username, password, tls, options)


def host_port(
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
