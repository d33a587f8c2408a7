"""Outbound HTTP for the shipped handlers: a POST that cannot be pointed at the inside.

Whoever can enqueue a notification chooses its webhook URL, so the POST is treated as
untrusted:

- the host is resolved once, every address it resolves to is checked, and the connection goes
  to those checked addresses only (a second lookup could answer differently: DNS rebinding);
- loopback, private (RFC 1918, ULA), link-local, shared (CGNAT), multicast, reserved and
  unspecified addresses are refused, and so are cloud metadata endpoints, unless the queue's
  settings allow them: ``webhook_allow: [hooks.internal.example, "*.corp.example",
  10.1.2.0/24]`` lists host names (``*.`` for subdomains) and networks. With the list set,
  *only* what it names is reached;
- redirects are not followed (a 3xx is an answer, and fails the job);
- one deadline covers everything (lookup, connect, TLS, request, reading the answer), and at
  most ``MAX_RESPONSE`` bytes of the answer are read;
- failures say "refused by policy" or "could not deliver" without telling a closed port from
  a filtered one or a timeout, so the handler is no port scanner.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from cortexflow.errors import UnrecoverableError

MAX_RESPONSE = 64 * 1024
USER_AGENT = "cortexflow-notifications"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not covered by is_private & co. on every Python version, or worth naming on their own.
_ALWAYS_REFUSED = [
    ipaddress.ip_network("169.254.169.254/32"),  # AWS, GCP, Azure, OpenStack metadata
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (CGNAT)
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64: an IPv4 address in disguise
]


class PolicyError(UnrecoverableError):
    """The destination is not allowed; nothing was sent."""


class DeliveryError(ConnectionError):
    """The POST could not be delivered (retried by the queue's backoff)."""


@dataclass(frozen=True)
class Allowlist:
    """``webhook_allow`` of a queue's settings: host names and networks."""

    names: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    present: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Allowlist:
        raw = settings.get("webhook_allow")
        if raw is None:
            return cls()
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise PolicyError("settings.webhook_allow must be a list of host names or networks")
        names, networks = [], []
        for entry in raw:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.append(entry.strip().lower().rstrip("."))
        return cls(tuple(names), tuple(networks), True)

    def names_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for name in self.names:
            if name.startswith("*.") and host.endswith(name[1:]):
                return True
            if host == name:
                return True
        return False

    def covers(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)


def internal(address: IPAddress) -> bool:
    """Is ``address`` one a webhook must not reach by default?"""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return internal(mapped)
    if any(address in net for net in _ALWAYS_REFUSED if net.version == address.version):
        return True
    return bool(
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


async def resolve_checked(host: str, port: int, allow: Allowlist) -> list[IPAddress]:
    """The addresses of ``host`` that policy lets us connect to; PolicyError otherwise.

    Every address the name resolves to must pass: a name that resolves to one public and one
    internal address is refused (which one a client connects to is not ours to choose)."""
    named = allow.names_host(host)
    if allow.present and not named:
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is None or not allow.covers(literal):
            raise PolicyError(f"webhook host {host!r} refused by policy (not in webhook_allow)")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError:
        raise DeliveryError(f"could not deliver to {host!r}: the name did not resolve") from None
    found = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    addresses = sorted(found, key=str)
    for address in addresses:
        if internal(address) and not (named or allow.covers(address)):
            raise PolicyError(
                f"webhook host {host!r} refused by policy: it resolves to an internal address "
                "(list it in the queue's settings.webhook_allow if you mean it)"
            )
    if not addresses:
        raise DeliveryError(f"could not deliver to {host!r}: the name did not resolve")
    return addresses


class _PinnedResolver(AbstractResolver):
    """Answers aiohttp's lookup with the addresses already checked, and nothing else."""

    def __init__(self, host: str, addresses: Sequence[IPAddress]) -> None:
        self._host = host
        self._addresses = list(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:  # never happens without redirects; refuse rather than look up
            raise OSError(f"unexpected host {host!r}")
        return [
            ResolveResult(
                hostname=host,
                host=str(a),
                port=port,
                family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self._addresses
        ]

    async def close(self) -> None:
        return None


async def _drain(response: aiohttp.ClientResponse, limit: int) -> None:
    """Read the answer to its end or to ``limit`` bytes, whichever comes first (then hang up)."""
    got = 0
    while got < limit:
        chunk = await response.content.read(limit - got)
        if not chunk:
            return
        got += len(chunk)


async def post_json(
    url: str,
    body: Mapping[str, Any],
    *,
    timeout: float,
    allow: Allowlist | None = None,
    max_response: int = MAX_RESPONSE,
) -> int:
    """POST ``body`` as JSON to ``url`` under the policy above; the status of a 2xx answer.

    PolicyError (refused, nothing sent) or UnrecoverableError (a 3xx or 4xx answer) fail the
    job; DeliveryError (no connection, timeout, 5xx, 408, 429) is retried."""
    allow = allow or Allowlist()
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise PolicyError("a webhook notification needs an http(s) `url` with a host")
    if parts.username or parts.password:
        raise PolicyError("a webhook `url` must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise PolicyError("the webhook `url` has a bad port") from None
    shown = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    try:
        async with asyncio.timeout(timeout):
            addresses = await resolve_checked(host, port, allow)
            connector = aiohttp.TCPConnector(
                resolver=_PinnedResolver(host, addresses), use_dns_cache=False, limit=1
            )
            async with (
                aiohttp.ClientSession(connector=connector, trust_env=False) as session,
                session.post(
                    url,
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                    allow_redirects=False,
                ) as response,
            ):
                await _drain(response, max_response)
                status = response.status
    except (TimeoutError, aiohttp.ClientError, OSError):
        raise DeliveryError(
            f"POST {shown} could not be delivered (no connection, or no answer within {timeout:g}s)"
        ) from None
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise UnrecoverableError(f"POST {shown} answered {status}: redirects are not followed")
    if status >= 500 or status in (408, 429):
        raise DeliveryError(f"POST {shown} answered {status}")
    raise UnrecoverableError(f"POST {shown} answered {status}")
