"""Leases nobody knows about: what a fetch call leased when its reply was lost.

A fetch whose reply never arrived (a timeout, a dropped connection) may still have run on the
server and leased jobs to a worker that never saw them; left alone they would stall and count a
stall. Every fetch call leases under its own name (worker id + call number, the token's prefix),
so the worker can find those jobs and give them back at once.
"""

from __future__ import annotations

from typing import Any

from cortexflow.engine.queue import QueueEngine

SCAN_BATCH = 1000


async def leased_by(engine: QueueEngine, owner: str) -> list[tuple[str, str]]:
    """(job id, token) of every active job whose lease token was issued by fetch call ``owner``."""
    prefix = (owner + ":").encode()
    found: list[tuple[str, str]] = []
    start = 0
    while True:
        ids: list[Any] = await engine.client.zrange(
            engine.keys.active, start, start + SCAN_BATCH - 1
        )
        if not ids:
            return found
        async with engine.client.pipeline(transaction=False) as pipe:
            for raw in ids:
                pipe.hget(engine.keys.job_prefix + _text(raw), "token")
            tokens = await pipe.execute()
        for raw, token in zip(ids, tokens, strict=True):
            if token is not None and token.startswith(prefix):
                found.append((_text(raw), token.decode()))
        start += SCAN_BATCH


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
