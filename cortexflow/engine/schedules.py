"""Schedules in Redis: their definitions, their state, and adding one tick's job (schedule.lua).

Definitions live in one HASH (name -> JSON, the queues.yaml form plus ``source`` and
``since``), so a schedule upserted at runtime is seen by every supervisor. Each schedule's state
(last tick handled, last run, last job) lives under its queue's hash tag, beside the jobs it
adds, so the check "was this tick handled?" and the add are one script.

Job ids are deterministic, ``<schedule>@<tick ms>``: two schedulers that race for a tick build
the same job, and the script lets only the first add it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from cortexflow.config.build import build_schedule
from cortexflow.config.dump import schedule_to_dict
from cortexflow.config.model import QueueConfig, ScheduleConfig
from cortexflow.engine.cluster import ClusterClient
from cortexflow.engine.connection import Client
from cortexflow.engine.groups import group_of
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.keys import QueueKeys, schedulers_alive_key, schedules_key
from cortexflow.engine.payload import encode_data, resolve_options
from cortexflow.engine.scripts import Scripts

Source = Literal["file", "api"]
# The fields that decide when a schedule ticks: changing one restarts its ticks from now.
_TIMING = ("queue", "cron", "every", "timezone", "start_at")


@dataclass(frozen=True)
class Stored:
    """A schedule as Redis keeps it: where it came from, and since when its ticks count."""

    schedule: ScheduleConfig
    source: Source
    since_ms: int  # ticks at or before this never run (it was created or re-timed then)


@dataclass(frozen=True)
class State:
    last_tick_ms: int | None
    last_run_ms: int | None
    last_job: str | None


@dataclass(frozen=True)
class FireResult:
    """What schedule.lua said: ``added`` (this call owns the tick; lateness in ms), ``done``
    (handled already; ``value`` is the last tick), ``early`` (wait ``value`` ms)."""

    outcome: Literal["added", "done", "early"]
    value: int


def job_id(schedule: str, tick_ms: int) -> str:
    return f"{schedule}@{tick_ms}"


def tick_of(job_id_text: str) -> int | None:
    """The tick of a scheduled job's id (None for other ids)."""
    _, at, tick = job_id_text.rpartition("@")
    return int(tick) if at and tick.isdigit() else None


def _encode(stored: Stored) -> str:
    return json.dumps(
        {
            **schedule_to_dict(stored.schedule),
            "source": stored.source,
            "since": stored.since_ms,
        },
        separators=(",", ":"),
    )


def _decode(name: str, raw: bytes | str) -> Stored:
    doc = json.loads(raw)
    source = doc.pop("source", "api")
    since = int(doc.pop("since", 0))
    return Stored(build_schedule(name, doc), source, since)


async def server_ms(client: Client) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def mark_alive(client: Client, prefix: str, now_ms: int) -> int | None:
    """Say a scheduler runs at ``now_ms``; returns when one last said so before (None: never)."""
    prev = await client.set(schedulers_alive_key(prefix), now_ms, get=True)
    return int(prev) if prev is not None else None


async def load_all(client: Client, prefix: str) -> dict[str, Stored]:
    raw: dict[Any, Any] = await client.hgetall(schedules_key(prefix))
    out = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        out[name] = _decode(name, value)
    return dict(sorted(out.items()))


async def upsert(
    client: Client,
    prefix: str,
    schedule: ScheduleConfig,
    source: Source,
    *,
    since_ms: int | None = None,
) -> bool:
    """Store ``schedule``; returns False when it was stored already exactly so.

    A new schedule, or one whose timing (queue, rule, timezone, start_at) changed, counts its
    ticks from now (``since_ms``, default the server's clock): no catch-up for ticks it never
    had.
    """
    key = schedules_key(prefix)
    old_raw = await client.hget(key, schedule.name)
    old = _decode(schedule.name, old_raw) if old_raw is not None else None
    new_dict = schedule_to_dict(schedule)
    if old is not None:
        old_dict = schedule_to_dict(old.schedule)
        if old_dict == new_dict and old.source == source:
            return False
        if all(old_dict.get(k) == new_dict.get(k) for k in _TIMING):
            await client.hset(key, schedule.name, _encode(Stored(schedule, source, old.since_ms)))
            return True
    since = await server_ms(client) if since_ms is None else since_ms
    await client.hset(key, schedule.name, _encode(Stored(schedule, source, since)))
    return True


async def remove(client: Client, prefix: str, name: str) -> bool:
    """Remove a schedule and its state; False if there was none."""
    key = schedules_key(prefix)
    raw = await client.hget(key, name)
    if raw is None:
        return False
    stored = _decode(name, raw)
    state = QueueKeys(prefix, stored.schedule.queue).schedule(name)
    if isinstance(client, ClusterClient):
        # Two slots ({prefix} and {prefix:queue}): no MULTI across them on a Cluster. The
        # definition goes first; a state left behind by a crash in between is never read (a
        # schedule declared again under that name starts from its own `since`).
        await client.hdel(key, name)
        await client.delete(state)
        return True
    async with client.pipeline(transaction=True) as pipe:
        pipe.hdel(key, name)
        pipe.delete(state)
        await pipe.execute()
    return True


async def reconcile(
    client: Client, prefix: str, declared: dict[str, ScheduleConfig]
) -> tuple[list[str], list[str]]:
    """Make the stored schedules from queues.yaml match ``declared``: upsert each, remove
    those from the file that it no longer has (runtime ones are left alone; a declared one
    takes over a runtime one of the same name). Returns (changed, removed) names."""
    stored = await load_all(client, prefix)
    changed = [
        name for name, sched in declared.items() if await upsert(client, prefix, sched, "file")
    ]
    removed = []
    for name, entry in stored.items():
        if entry.source == "file" and name not in declared:
            await remove(client, prefix, name)
            removed.append(name)
    return changed, removed


async def states(client: Client, prefix: str, schedules: dict[str, Stored]) -> dict[str, State]:
    """Every schedule's state in one round trip."""
    names = list(schedules)
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(
                QueueKeys(prefix, schedules[name].schedule.queue).schedule(name),
                ["last_tick", "last_run", "last_job"],
            )
        raw = await pipe.execute()

    def num(v: Any) -> int | None:
        return int(v) if v is not None else None

    return {
        name: State(num(r[0]), num(r[1]), r[2].decode() if r[2] is not None else None)
        for name, r in zip(names, raw, strict=True)
    }


def job_options(
    schedule: ScheduleConfig, queue: QueueConfig, job_id_text: str | None
) -> JobOptions:
    o = schedule.opts
    return JobOptions(
        job_id=job_id_text,
        priority=o.priority,
        attempts=o.attempts,
        timeout=o.timeout,
        remove_on_complete=o.remove_on_complete,
        remove_on_fail=o.remove_on_fail,
    )


async def fire(
    client: Client,
    prefix: str,
    stored: Stored,
    queue: QueueConfig,
    tick_ms: int,
    *,
    skip: bool = False,
    scripts: Scripts | None = None,
) -> FireResult:
    """Add the job of ``tick_ms`` unless that tick was handled already (``skip``: only record
    the tick as passed). The data was checked against the payload schema when the schedule
    was declared or upserted."""
    sched = stored.schedule
    jid, priority, _, options = resolve_options(
        queue, job_options(sched, queue, job_id(sched.name, tick_ms))
    )
    data = encode_data(queue.name, sched.data, None)
    keys = QueueKeys(prefix, queue.name)
    code, value = await (scripts or Scripts(client)).schedule(
        keys=[keys.schedule(sched.name), keys.wait, keys.meta, keys.marker],
        args=[
            keys.job_prefix,
            tick_ms,
            stored.since_ms,
            "skip" if skip else "fire",
            jid,
            sched.job_name,
            data,
            options,
            priority,
            group_of(queue, sched.data, None),
        ],
    )
    outcome: Literal["added", "done", "early"] = (
        "added" if int(code) == 1 else "done" if int(code) == 0 else "early"
    )
    return FireResult(outcome, int(value))
