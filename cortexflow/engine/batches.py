"""Operations that walk one set of a queue in bounded batches (clean, drain), for the queue's
own sets and for each group's waiting set alike (engine/queue.py, engine/groups.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cortexflow.engine.queue import QueueEngine

# Jobs one script call looks at (clean walking waiting/delayed jobs) or removes (clean, drain,
# obliterate, retry all): bounded so that no call holds the server long (docs/engine.md has the
# SLOWLOG numbers at a million jobs).
SCAN_BATCH = 500
REMOVE_BATCH = 200


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def clean_set(
    engine: QueueEngine, key: str, state: str, grace: float, limit: int, group: str = ""
) -> list[str]:
    """clean() of one set: a state's, or a group's waiting set (``group`` names it)."""
    removed: list[str] = []
    cursor, score, ms = "", "0", round(grace * 1000)
    while True:
        want = REMOVE_BATCH if limit <= 0 else min(REMOVE_BATCH, limit - len(removed))
        raw = await engine.scripts.clean(
            keys=[key, engine.keys.events],
            args=[engine.keys.job_prefix, ms, want, state, cursor, score, SCAN_BATCH, group],
        )
        removed += [_text(i) for i in raw[3:]]
        if not int(raw[0]) or (limit > 0 and len(removed) >= limit):
            return removed
        cursor, score = _text(raw[1]), _text(raw[2])


async def drain_set(engine: QueueEngine, key: str, delayed: bool, group: str = "") -> int:
    """drain() of one waiting set: the queue's, or a group's (``group`` names it)."""
    total = 0
    while True:
        n = int(
            await engine.scripts.drain(
                keys=[key, engine.keys.delayed, engine.keys.events],
                args=[engine.keys.job_prefix, "1" if delayed else "0", REMOVE_BATCH, group],
            )
        )
        total += n
        if n == 0:
            return total
