"""Every key the shipped queues write has a bounded life: a TTL no longer than a stated bound,
or a place in a structure with a cap (a queue's retention, a capped stream). A key per job that
outlives its job by days is a leak at any steady rate: at 300 notifications a second a 7-day
marker per in-app notification is some 180 million keys.

`cortexflow up` runs (a copy of) the shipped queues.yaml against a real SMTP server; the jobs
go through every shipped handler (webhook -> message -> notification -> email, analytics, in-app,
a failure to the dead-letter queue). Then every key of the database is accounted for.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cortexflow.config import load_config
from cortexflow.engine import connect
from cortexflow.engine.keys import STATES, QueueKeys
from cortexflow.engine.queue import QueueEngine
from cortexflow.queues.notifications import INBOX_MAXLEN
from cortexflow.worker.context import MAX_RERUN_WINDOW
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, cortexflow_argv
from tests.helpers.project import write_shipped_project
from tests.helpers.services import smtp_server, telegram_update

pytestmark = pytest.mark.slow

DAY = 86_400
# The bounds this test holds the keys to.
METRICS_TTL = 25 * 3600 + 120  # a queue's per-minute metrics hashes (engine/history.py)
ANALYTICS_TTL = 90 * DAY  # a day's aggregates: a few keys per day and event, not per job
# A queue's own keys, one of each per queue whatever the number of jobs.
QUEUE_SINGLETONS = {
    *("wait", "delayed", "active", "completed", "failed", "meta", "limiter", "marker"),
    *("dlq", "dlq:failed", "workers", "winfo", "expect", "events", "metrics:total"),
}


def jobs() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """What goes through every shipped handler (no secret set: webhooks are not verified)."""
    update = telegram_update(4242, "hello there", update_id=77)
    mailed = telegram_update(4343, "mail me", update_id=78)
    return {
        "webhook-processing": [
            ("webhook", {"webhookId": "wh-1", "channel": "telegram", "payload": update}),
            (
                "webhook",
                {
                    "webhookId": "wh-2",
                    "channel": "telegram",
                    "payload": mailed,
                    "metadata": {"email": "ana@example.com"},
                },
            ),
        ],
        "notifications": [
            ("n", {"userId": "u1", "type": "in-app", "message": "one"}),
            ("n", {"userId": "u1", "type": "in-app", "message": "two"}),
            ("n", {"userId": "u2", "type": "in-app", "message": "three"}),
            ("n", {"userId": "u3", "type": "email", "message": "no address"}),  # dead-letters
            ("n", {"userId": "u4", "type": "email", "message": "hi", "email": "bo@example.com"}),
        ],
        "analytics": [
            ("track-event", {"event": "signup", "userId": "u1", "data": {"cost": 1.5}}),
            ("track-event", {"event": "signup", "userId": "u2"}),
        ],
    }


async def add_all(url: str, config: Path) -> None:
    cfg = load_config(config, check_imports=False)
    client = connect(url)
    try:
        for queue, batch in jobs().items():
            engine = QueueEngine(client, cfg.queues[queue], cfg.redis.prefix)
            await engine.add_bulk([(name, data, None) for name, data in batch])
    finally:
        await client.aclose()


async def keys_and_ttls(url: str) -> dict[str, tuple[str, int]]:
    """Every key of the database: (type, TTL in seconds; -1 none)."""
    client = connect(url)
    try:
        names = [k.decode() async for k in client.scan_iter(count=1000)]
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.type(name)
                pipe.ttl(name)
            raw = await pipe.execute()
    finally:
        await client.aclose()
    return {n: (raw[2 * i].decode(), int(raw[2 * i + 1])) for i, n in enumerate(names)}


async def members(url: str, key: str) -> set[str]:
    client = connect(url)
    try:
        return {m.decode() for m in await client.zrange(key, 0, -1)}
    finally:
        await client.aclose()


async def stream_length(url: str, key: str) -> int:
    client = connect(url)
    try:
        return int(await client.xlen(key))
    finally:
        await client.aclose()


def unbounded(url: str, config: Path, found: dict[str, tuple[str, int]]) -> list[str]:
    """The keys whose life is bounded neither by a TTL within its bound nor by a cap."""
    cfg = load_config(config, check_imports=False)
    capped: dict[str, QueueKeys] = {}
    held: dict[str, set[str]] = {}  # queue -> the ids its state sets hold
    for q, queue in cfg.queues.items():
        k = capped[q] = QueueKeys(cfg.redis.prefix, q)
        rules = (queue.retention.completed, queue.retention.failed)
        # A finished job is kept within its queue's retention: a count (or keep=False) caps it.
        assert all(r.count is not None or not r.keep for r in rules), (q, rules)
        held[q] = set()
        for state in STATES:
            held[q] |= asyncio.run(members(url, k.state_key(state)))
    bad = []
    for name, (kind, ttl) in sorted(found.items()):
        why = verdict(name, kind, ttl, capped, held, url)
        if why:
            bad.append(f"{name} ({kind}, TTL {ttl}): {why}")
    return bad


def verdict(
    name: str,
    kind: str,
    ttl: int,
    queues: dict[str, QueueKeys],
    held: dict[str, set[str]],
    url: str,
) -> str:
    """ "" when ``name``'s life is bounded, else why not."""
    for q, k in queues.items():
        if not name.startswith(k.base + ":"):
            continue
        rest = name[len(k.base) + 1 :]
        if rest.startswith("j:"):  # a job hash (or its log) lives as long as the job's entry
            job_id = rest[2:].removesuffix(":logs")
            return "" if job_id in held[q] else f"a job's key, {job_id!r} in none of {q}'s sets"
        if rest.startswith("metrics:") and rest != "metrics:total":
            return "" if 0 < ttl <= METRICS_TTL else f"a minute's metrics, TTL over {METRICS_TTL}"
        return "" if rest in QUEUE_SINGLETONS else "not one of a queue's own keys"
    if re.fullmatch(r"\{cortexflow\}:[a-z-]+", name):  # supervisors, schedules: one each
        return ""
    if re.fullmatch(r"cortexflow:inbox:\{[^}]+\}", name):
        n = asyncio.run(stream_length(url, name))
        return "" if kind == "stream" and n <= INBOX_MAXLEN * 2 else "an inbox over its cap"
    if re.fullmatch(r"cortexflow:analytics:\{\d{4}-\d\d-\d\d\}:(events|users|users:\w+|sums:\w+)",
                    name):  # fmt: skip
        return "" if 0 < ttl <= ANALYTICS_TTL else f"a day's aggregate, TTL over {ANALYTICS_TTL}"
    # Anything else a handler keeps per job (an idempotency marker): its job's re-run window.
    if 0 < ttl <= MAX_RERUN_WINDOW:
        return ""
    return f"TTL over the bound of {MAX_RERUN_WINDOW:g} s"


def test_every_key_the_shipped_handlers_write_has_a_bounded_life(
    new_db: Callable[[], str], tmp_path: Path
) -> None:
    url = new_db()
    config = write_shipped_project(tmp_path / "shipped")
    with smtp_server() as (mailbox, smtp_url):
        env = {"SMTP_URL": smtp_url, "SMTP_FROM": "bot@cortex.example"}
        up = Proc(cortexflow_argv("up", "--redis-url", url), cwd=config.parent, env=env, name="up")
        try:
            asyncio.run(add_all(url, config))
            mailbox.wait_for("ana@example.com")
            mailbox.wait_for("bo@example.com")

            def settled() -> dict[str, tuple[str, int]] | None:
                found = asyncio.run(keys_and_ttls(url))
                busy = [n for n in found if n.endswith((":wait", ":active", ":delayed"))]
                dead = [n for n in found if n.startswith("{cortexflow:dead-letters}:j:")]
                return None if busy or not dead else found

            wait_for(settled, 60, message=lambda: f"the queues empty\n{up.log()[-3000:]}")

            # The markers the in-app and analytics handlers wrote go with their completed jobs
            # (deleted by the worker right after it recorded the completion).
            def markers() -> list[str]:
                found = asyncio.run(keys_and_ttls(url))
                return [n for n in found if ":sent:" in n or re.search(r"\}:job:", n)]

            wait_for(lambda: not markers(), 15, message=lambda: f"markers left: {markers()}")
        finally:
            up.stop()
    found = asyncio.run(keys_and_ttls(url))
    assert [n for n in found if n.startswith("cortexflow:inbox:")], "no in-app notification ran"
    assert [n for n in found if n.startswith("cortexflow:analytics:")], "analytics never ran"
    assert unbounded(url, config, found) == []
