"""The Lua scripts, each loaded once per client and called by SHA (EVALSHA).

redis-py's Script objects reload a script by itself after a server restart (NOSCRIPT).
A line ``--@include NAME`` in a script (or in an include) is replaced by
``scripts/include/NAME.lua`` (functions several scripts share), the first time it appears in
that script only, so the server sees one self-contained script with each function once. The
bodies of ``fetch`` and ``finish`` are such functions, so that ``finish_fetch`` runs both: the
worker records its outcomes and leases its next jobs in one script call, one round trip, no
pipeline (a Cluster routes it like any single-slot call).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from redis.commands.core import AsyncScript

from cortexflow.engine.connection import Client

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
    "progress",
    "register",
    "finish_fetch",
    "handoff",
    "group_pause",
)


@cache
def source(name: str) -> str:
    """Script ``name`` as the server runs it: its includes pasted in, each once."""
    folder = resources.files("cortexflow.engine") / "scripts"
    lines: list[str] = []
    included: set[str] = set()

    def paste(text: str) -> None:
        for line in text.splitlines():
            if not line.startswith("--@include "):
                lines.append(line)
            elif (part := line.split()[1]) not in included:
                included.add(part)
                paste((folder / "include" / f"{part}.lua").read_text())

    paste((folder / f"{name}.lua").read_text())
    return "\n".join(lines) + "\n"


@cache
def sha1(name: str) -> str:
    """The SHA1 the server knows script ``name`` by (computed once per process)."""
    return hashlib.sha1(source(name).encode("utf-8"), usedforsecurity=False).hexdigest()


class _Script(AsyncScript):
    """redis-py's AsyncScript (EVALSHA, and SCRIPT LOAD after NOSCRIPT) without hashing the
    source again for every client: engines are made per queue and per connection."""

    def __init__(self, client: Client, name: str) -> None:
        self.registered_client = client
        self.script = source(name)
        self.sha = sha1(name)


class Scripts:
    """The scripts of one client: ``Scripts(client).fetch(keys=..., args=...)``. Each is made
    on first use (building all of them for every QueueEngine cost 17 SHA1s of 1-20 KB)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> AsyncScript:
        if name not in NAMES:
            raise AttributeError(name)
        script = _Script(self._client, name)
        setattr(self, name, script)
        return script

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
    progress: AsyncScript
    register: AsyncScript
    finish_fetch: AsyncScript
    handoff: AsyncScript
    group_pause: AsyncScript
