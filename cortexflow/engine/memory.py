"""The server's memory: how full it is, and what it does when full (docs/engine.md "Redis under
pressure").

- ``read_memory``: INFO memory's used_memory, maxmemory and maxmemory_policy (INFO answers even
  when the server refuses writes), for `health`, /healthz and the dashboard's banner.
- ``full_error``: the ServerFullError that replaces redis-py's OutOfMemoryError ("OOM command
  not allowed when used memory > 'maxmemory'"), saying how full the server is.
- ``check_eviction``: at start, refuse a server whose maxmemory-policy deletes keys when it is
  full (jobs would be lost without an error), unless queues.yaml allows it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from cortexflow.engine.connection import Client
from cortexflow.errors import EvictionPolicyError, ServerFullError
from cortexflow.redact import redact_url

log = logging.getLogger("cortexflow")

NOEVICTION = "noeviction"
# used_memory / maxmemory at or above this: memory pressure (`health` unhealthy, the banner).
PRESSURE_THRESHOLD = 0.9


@dataclass(frozen=True)
class Memory:
    """One reading of INFO memory. ``maxmemory`` 0: no limit (the server never refuses)."""

    used: int
    maxmemory: int
    policy: str | None

    @property
    def ratio(self) -> float | None:
        return self.used / self.maxmemory if self.maxmemory else None

    @property
    def pressure(self) -> bool:
        ratio = self.ratio
        return ratio is not None and ratio >= PRESSURE_THRESHOLD

    def report(self) -> dict[str, Any]:
        """The ``memory`` object of the health report."""
        ratio = self.ratio
        return {
            "usedMemory": self.used,
            "maxmemory": self.maxmemory,
            "percent": None if ratio is None else round(100 * ratio, 1),
            "policy": self.policy,
            "pressure": self.pressure,
        }


def _nodes(reply: Any) -> list[Mapping[str, Any]]:
    """A reply's per-server mappings: a Cluster client answers with one per node."""
    if not isinstance(reply, Mapping):
        return []
    if any(not isinstance(v, Mapping) for v in reply.values()):
        return [reply]
    return [v for v in reply.values() if isinstance(v, Mapping)]


async def read_memory(client: Client) -> Memory | None:
    """The server's memory (on a Cluster: the fullest node), or None when INFO is refused (an
    ACL without it, a managed server that renames it)."""
    try:
        nodes = _nodes(await client.info("memory"))
    except (RedisError, OSError):
        return None
    readings = [
        Memory(
            int(n.get("used_memory", 0)),
            int(n.get("maxmemory", 0)),
            str(n["maxmemory_policy"]) if "maxmemory_policy" in n else None,
        )
        for n in nodes
    ]
    if not readings:
        return None
    return max(readings, key=lambda m: m.ratio or 0.0)


async def full_error(client: Client) -> ServerFullError:
    """The error for a write the server refused as out of memory, with how full it is."""
    memory = await read_memory(client)
    if memory is None:
        return ServerFullError(None, None)
    return ServerFullError(memory.used, memory.maxmemory or None)


async def eviction_policy(client: Client) -> str | None:
    """The server's maxmemory-policy: CONFIG GET, else INFO memory's maxmemory_policy (managed
    servers often refuse CONFIG); None when neither answers."""
    try:
        nodes = _nodes(await client.config_get("maxmemory-policy"))
    except (RedisError, OSError):
        nodes = []
    policies = [str(n["maxmemory-policy"]) for n in nodes if n.get("maxmemory-policy")]
    if policies:
        return _worst(policies)
    memory = await read_memory(client)
    return None if memory is None else memory.policy


def _worst(policies: list[str]) -> str:
    evicting = [p for p in policies if p != NOEVICTION]
    return evicting[0] if evicting else NOEVICTION


_warned_unreadable = False


async def check_eviction(client: Client, url: str, allow: bool) -> str | None:
    """Raise EvictionPolicyError when the server may delete keys when full and ``allow`` is
    False. Returns a warning to show (once per process) when the policy cannot be read, or
    when an evicting one is allowed; None otherwise."""
    global _warned_unreadable
    policy = await eviction_policy(client)
    if policy is None:
        if _warned_unreadable:
            return None
        _warned_unreadable = True
        return (
            f"warning: cannot read the maxmemory-policy of Redis at {redact_url(url)} (CONFIG "
            "GET and INFO refused): make sure it is noeviction, or jobs may be lost when the "
            "server fills up"
        )
    if policy == NOEVICTION:
        return None
    if not allow:
        raise EvictionPolicyError(redact_url(url), policy)
    return (
        f"warning: Redis at {redact_url(url)} has maxmemory-policy {policy} (allowed by "
        "redis.allow_eviction): when it fills up it deletes keys, and jobs with them"
    )
