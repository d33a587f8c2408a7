"""Job groups (docs/groups.md): a job's group key, and the operations on a queue's groups.

The scripts keep the groups (scripts/include/groups.lua names their keys); this module reads
them for `cortexflow groups` and the API, pauses and resumes one group, and walks the groups for
the operations that empty a queue (clean of waiting jobs, drain, obliterate).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cortexflow.config.model import QueueConfig
from cortexflow.engine.batches import clean_set, drain_set
from cortexflow.engine.jobs import Job
from cortexflow.engine.keys import STATES
from cortexflow.errors import CortexflowError, UsageError
from cortexflow.termsafe import UNSAFE_CHARS

if TYPE_CHECKING:
    from cortexflow.engine.queue import QueueEngine

MAX_GROUP = 256  # characters of a group key
_UNSAFE = re.compile(f"[{UNSAFE_CHARS}]")
GROUP_RULE = (
    f"a group key is 1-{MAX_GROUP} characters without control characters or bidirectional overrides"
)
SCAN_LIMIT = 10_000  # active jobs looked at for the active count per group
SCAN_CHUNK = 500  # jobs of a state read per round trip when listing one group's jobs
# Jobs of a state read at most for one listing (200 round trips, ~100 ms of server time): the
# dashboard's read-only API can ask for it, so one request must not read a million hashes.
SCAN_MAX = 100_000


def check_group(group: Any) -> str:
    """An explicit group key, checked; UsageError naming the rule otherwise."""
    if not isinstance(group, str) or not 1 <= len(group) <= MAX_GROUP or _UNSAFE.search(group):
        raise UsageError(f"{GROUP_RULE}; got {group!r}")
    return group


def _pointer(data: Any, pointer: str) -> Any:
    """The value at JSON pointer ``pointer`` in ``data``, or None when there is none."""
    node = data
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def group_of(queue: QueueConfig, data: Any, explicit: str | None) -> str:
    """The group of a job about to be added ('' for none): ``explicit`` when given, else the
    values at the queue's ``group.key`` pointers joined with ':' (none when one is missing)."""
    g = queue.group
    if explicit is not None:
        if g is None:
            raise UsageError(
                f"queue {queue.name!r} has no groups: add `group:` to it in queues.yaml (e.g. "
                "`group: {}` for groups named only when added) to add a job with a group"
            )
        return check_group(explicit)
    if g is None or not g.key:
        return ""
    parts = []
    for pointer in g.key:
        value = _pointer(data, pointer)
        if value is None:
            return ""
        parts.append(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
    key = ":".join(parts)
    if not key:
        return ""
    if len(key) > MAX_GROUP or _UNSAFE.search(key):
        raise UsageError(
            f"the group key of this job ({key[:80]!r}, from {', '.join(g.key)} in its data) "
            f"is not valid: {GROUP_RULE}"
        )
    return key


@dataclass(frozen=True)
class GroupStats:
    group: str
    waiting: int
    active: int
    paused: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "waiting": self.waiting,
            "active": self.active,
            "paused": self.paused,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Groups:
    """The groups of one queue."""

    def __init__(self, engine: QueueEngine) -> None:
        self.engine = engine
        base = engine.keys.base + ":"
        self.base = base
        self.rotation = base + "groups"
        self.waiting = base + "gwaiting"
        self.paused = base + "gpaused"
        self.sleep = base + "gsleep"

    def wait_key(self, group: str) -> str:
        return f"{self.base}gw:{group}"

    async def active_counts(self) -> dict[str, int]:
        """Jobs active per group, read from the active jobs (at most SCAN_LIMIT of them)."""
        c, k = self.engine.client, self.engine.keys
        ids = await c.zrange(k.active, 0, SCAN_LIMIT - 1)
        counts: dict[str, int] = {}
        async with c.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(k.job(_text(i)), "group")
            for g in await pipe.execute() if ids else []:
                if g is not None:
                    counts[_text(g)] = counts.get(_text(g), 0) + 1
        return counts

    async def pause(self, group: str, paused: bool = True) -> bool:
        """Pause (or resume) one group; True when that changed it."""
        k = self.engine.keys
        n = await self.engine.scripts.group_pause(
            keys=[k.marker, k.events],
            args=[k.job_prefix, check_group(group), "1" if paused else "0"],
        )
        return bool(int(n))

    async def stats(self, limit: int = 20) -> dict[str, Any]:
        """The groups with the most waiting jobs (up to ``limit``), every group with a job
        active, and every paused group: {groups, waiting, active, paused, total}."""
        c = self.engine.client
        async with c.pipeline(transaction=False) as pipe:
            pipe.zrevrange(self.waiting, 0, limit - 1, withscores=True)
            pipe.smembers(self.paused)
            pipe.zcard(self.waiting)
            pipe.hget(self.engine.keys.meta, "gwait")
            top, paused, groups_waiting, gwait = await pipe.execute()
        act = await self.active_counts()
        stopped = {_text(g) for g in paused}
        waiting = {_text(g): int(n) for g, n in top}
        rest = [g for g in [*act, *stopped] if g not in waiting]
        if rest:
            async with c.pipeline(transaction=False) as pipe:
                for g in rest:
                    pipe.zscore(self.waiting, g)
                for g, n in zip(rest, await pipe.execute(), strict=True):
                    waiting[g] = int(n or 0)
        rows = [GroupStats(g, n, act.get(g, 0), g in stopped) for g, n in waiting.items()]
        rows.sort(key=lambda r: (-r.waiting, -r.active, r.group))
        return {
            "queue": self.engine.name,
            "groupsWaiting": int(groups_waiting),
            "jobsWaitingInGroups": max(int(gwait or 0), 0),
            "groupsActive": len(act),
            "groups": [r.to_dict() for r in rows],
        }

    async def waiting_ids(self, start: int, want: int) -> list[str]:
        """Ids of jobs waiting in groups, for list_jobs's window from ``start`` (which counts
        the queue's ungrouped waiting jobs first): group by group, the most waiting first."""
        c = self.engine.client
        skip = max(start - int(await c.zcard(self.engine.keys.wait)), 0)
        out: list[str] = []
        rank = 0
        while len(out) < want:
            batch: list[Any] = await c.zrevrange(self.waiting, rank, rank + 99, withscores=True)
            for g, n in batch:
                if skip >= n:
                    skip -= int(n)
                    continue
                key = self.wait_key(_text(g))
                got = await c.zrange(key, skip, skip + want - len(out) - 1)
                out += [_text(i) for i in got]
                skip = 0
                if len(out) >= want:
                    return out
            if len(batch) < 100:
                return out
            rank += 100
        return out

    async def names(self) -> list[str]:
        """Every group with waiting jobs (a snapshot, walked in batches)."""
        out: list[str] = []
        start = 0
        while True:
            got = await self.engine.client.zrange(self.waiting, start, start + 999)
            out += [_text(g) for g in got]
            if len(got) < 1000:
                return out
            start += 1000

    async def clean(self, grace: float, limit: int) -> list[str]:
        """Clean waiting jobs of every group (QueueEngine.clean for state waiting)."""
        removed: list[str] = []
        for group in await self.names():
            want = 0 if limit <= 0 else limit - len(removed)
            if limit > 0 and want <= 0:
                break
            removed += await clean_set(
                self.engine, self.wait_key(group), "waiting", grace, want, group
            )
        return removed

    async def drain(self) -> int:
        """Remove every job waiting in a group; returns how many."""
        total = 0
        for group in await self.names():
            total += await drain_set(self.engine, self.wait_key(group), False, group)
        return total

    async def obliterate(self, force: bool) -> int:
        """QueueEngine.obliterate's first step: refused (CortexflowError) while jobs are
        active unless ``force``; pauses the queue, then removes every group's jobs and keys."""
        c, k = self.engine.client, self.engine.keys
        if not force and await c.zcard(k.active):
            raise CortexflowError(
                f"queue {self.engine.name!r} has active jobs; stop its workers first or force "
                "it (obliterate --force)"
            )
        await c.hset(k.meta, "paused", "1")
        running = [f"{self.base}ga:{g}" for g in await self.active_counts()]
        total = await self.drain()
        await self.engine.client.delete(
            self.rotation, self.waiting, self.paused, self.sleep, *running
        )
        return total

    async def jobs(self, group: str, state: str = "waiting", limit: int = 50) -> list[Job]:
        """Jobs of one group in ``state``: its waiting jobs in run order (read from the group's
        own set); of another state, in that state's order (completed and failed newest first),
        found by reading the group of every job of the state until ``limit`` match."""
        if state not in STATES:
            raise UsageError(f"unknown state {state!r}; states: {', '.join(STATES)}")
        c, k = self.engine.client, self.engine.keys
        if state == "waiting":
            ids = [_text(i) for i in await c.zrange(self.wait_key(group), 0, limit - 1)]
        else:
            ids = await self._members(group, state, limit)
        out: list[Job] = []
        for start in range(0, len(ids), SCAN_CHUNK):
            chunk = ids[start : start + SCAN_CHUNK]
            async with c.pipeline(transaction=False) as pipe:
                for i in chunk:
                    pipe.hgetall(k.job(i))
                hashes = await pipe.execute()
            for i, h in zip(chunk, hashes, strict=True):
                if h and h.get(b"group") == group.encode():
                    out.append(Job.from_hash(self.engine.config, i, h))
        return out[:limit]

    async def _members(self, group: str, state: str, limit: int) -> list[str]:
        """Ids of up to ``limit`` jobs of ``group`` in ``state``, among its first SCAN_MAX: the
        state's jobs are read SCAN_CHUNK at a time (their group field only, one pipelined round
        trip a chunk). Jobs that move while it reads may be missed or seen twice (listed once):
        a listing, not a snapshot."""
        c, k = self.engine.client, self.engine.keys
        read = c.zrevrange if state in ("completed", "failed") else c.zrange
        key, want = k.state_key(state), group.encode()
        found: dict[str, None] = {}
        start = 0
        while len(found) < limit and start < SCAN_MAX:
            chunk = [_text(i) for i in await read(key, start, start + SCAN_CHUNK - 1)]
            if not chunk:
                break
            async with c.pipeline(transaction=False) as pipe:
                for i in chunk:
                    pipe.hget(k.job(i), "group")
                groups = await pipe.execute()
            found.update((i, None) for i, g in zip(chunk, groups, strict=True) if g == want)
            start += SCAN_CHUNK
        return list(found)[:limit]
