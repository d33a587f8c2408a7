"""The Lua scripts, each loaded once per client and called by SHA (EVALSHA).

redis-py's Script objects reload a script by itself after a server restart (NOSCRIPT).
A line ``--@include NAME`` in a script is replaced by ``scripts/include/NAME.lua`` (functions
several scripts share), so the server sees one self-contained script.

``finish_fetch`` is composed here from ``finish.lua`` and ``fetch.lua`` unchanged (see
``scripts/finish_fetch.lua``): the worker records its outcomes and leases its next jobs in one
script call, one round trip, no pipeline (a Cluster routes it like any single-slot call).
"""

from __future__ import annotations

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
)
# Scripts made of others: each part's body becomes a function taking its own KEYS and ARGV.
COMPOSED = {"finish_fetch": ("finish", "fetch")}


@cache
def source(name: str) -> str:
    folder = resources.files("cortexflow.engine") / "scripts"
    parts = COMPOSED.get(name, ())
    lines = [f"local function {part}(KEYS, ARGV)\n{source(part)}end" for part in parts]
    for line in (folder / f"{name}.lua").read_text().splitlines():
        if line.startswith("--@include "):
            lines.append((folder / "include" / f"{line.split()[1]}.lua").read_text().rstrip("\n"))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


class Scripts:
    """The scripts registered on one client: ``Scripts(client).fetch(keys=..., args=...)``."""

    def __init__(self, client: Client) -> None:
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
    progress: AsyncScript
    register: AsyncScript
    finish_fetch: AsyncScript
