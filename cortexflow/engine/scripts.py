"""The Lua scripts, each loaded once per client and called by SHA (EVALSHA).

redis-py's Script objects reload a script by itself after a server restart (NOSCRIPT).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

NAMES = (
    "add",
    "fetch",
    "heartbeat",
    "finish",
    "release",
    "pause",
    "stats",
    "promote",
    "retry",
    "remove",
    "clean",
    "drain",
    "obliterate",
    "schedule",
)


@cache
def source(name: str) -> str:
    return (resources.files("cortexflow.engine") / "scripts" / f"{name}.lua").read_text()


class Scripts:
    """The scripts registered on one client: ``Scripts(client).fetch(keys=..., args=...)``."""

    def __init__(self, client: aioredis.Redis) -> None:
        for name in NAMES:
            setattr(self, name, client.register_script(source(name)))

    add: AsyncScript
    fetch: AsyncScript
    heartbeat: AsyncScript
    finish: AsyncScript
    release: AsyncScript
    pause: AsyncScript
    stats: AsyncScript
    promote: AsyncScript
    retry: AsyncScript
    remove: AsyncScript
    clean: AsyncScript
    drain: AsyncScript
    obliterate: AsyncScript
    schedule: AsyncScript
