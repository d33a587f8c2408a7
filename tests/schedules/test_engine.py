"""Schedules on a real server: one job per tick whoever races for it, never early, catch_up
after downtime (a scheduler driven by a clock the test sets), reconciling queues.yaml, and the
Python API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from cortexflow import QueueManager
from cortexflow.config import load_config
from cortexflow.config.model import Config, ScheduleConfig
from cortexflow.engine import connect
from cortexflow.engine import schedules as store
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.engine.scripts import Scripts
from cortexflow.errors import PayloadError, UsageError
from cortexflow.supervisor.scheduler import Scheduler
from cortexflow.ticks import MISSED_SLACK_MS
from tests.helpers.procs import CliResult, run_cli

PREFIX = "cortexflow"

QUEUES_YAML = """\
version: 1
queues:
  ticks:
    handler: handlers:tick
  reports:
    handler: handlers:tick
    payload_schema: report.json
schedules:
  every-second:
    queue: ticks
    every: 1s
    data: {n: 1}
    opts: {priority: 7, attempts: 2}
  nightly:
    queue: reports
    cron: "0 6 * * *"
    timezone: Europe/Berlin
    name: daily-report
    data: {event: daily_report}
"""


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text("def tick(data):\n    return data\n")
    (tmp_path / "report.json").write_text(
        '{"type": "object", "required": ["event"], "properties": {"event": {"type": "string"}}}'
    )
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES_YAML)
    return path


@pytest.fixture
def config(project: Path) -> Config:
    return load_config(project)


def job_ids(redis_client: Any, queue: str) -> list[str]:
    keys = redis_client.keys(f"{{{PREFIX}:{queue}}}:j:*")
    return sorted(k.decode().rsplit(":", 1)[1] for k in keys if not k.endswith(b":logs"))


def ticks_of(ids: list[str]) -> list[int]:
    return sorted(t for t in (store.tick_of(i) for i in ids) if t is not None)


# -- schedule.lua ------------------------------------------------------------------------------


def test_a_tick_is_added_once_however_many_schedulers_race(
    config: Config, redis_url: str, redis_client: Any
) -> None:
    sched = config.schedules["every-second"]
    queue = config.queues["ticks"]

    async def race() -> list[store.FireResult]:
        clients = [connect(redis_url) for _ in range(8)]
        try:
            await store.upsert(clients[0], PREFIX, sched, "file", since_ms=0)
            stored = (await store.load_all(clients[0], PREFIX))["every-second"]
            tick = (await store.server_ms(clients[0])) // 1000 * 1000
            return list(
                await asyncio.gather(*(store.fire(c, PREFIX, stored, queue, tick) for c in clients))
            )
        finally:
            for c in clients:
                await c.aclose()

    results = run(race())
    assert sorted(r.outcome for r in results) == ["added"] + ["done"] * 7
    ids = job_ids(redis_client, "ticks")
    assert len(ids) == 1 and ids[0].startswith("every-second@")
    job = redis_client.hgetall(f"{{{PREFIX}:ticks}}:j:{ids[0]}")
    assert job[b"state"] == b"waiting" and job[b"priority"] == b"7"
    assert b'"attempts":2' in job[b"opts"] and job[b"data"] == b'{"n":1}'


def test_never_early_never_backwards_never_before_since(
    config: Config, redis_url: str, redis_client: Any
) -> None:
    sched = config.schedules["every-second"]
    queue = config.queues["ticks"]

    async def go() -> tuple[Any, ...]:
        client = connect(redis_url)
        try:
            now = await store.server_ms(client)
            await store.upsert(client, PREFIX, sched, "file", since_ms=now - 10_000)
            stored = (await store.load_all(client, PREFIX))["every-second"]
            future = await store.fire(client, PREFIX, stored, queue, now + 5_000)
            newer = await store.fire(client, PREFIX, stored, queue, now - 2_000)
            older = await store.fire(client, PREFIX, stored, queue, now - 3_000)
            before_since = await store.fire(client, PREFIX, stored, queue, now - 20_000)
            return future, newer, older, before_since, now
        finally:
            await client.aclose()

    future, newer, older, before_since, now = run(go())
    assert future.outcome == "early" and 4_000 < future.value <= 5_000
    assert newer.outcome == "added" and newer.value >= 2_000
    assert older.outcome == "done" and older.value == now - 2_000
    assert before_since.outcome == "done"
    assert job_ids(redis_client, "ticks") == [f"every-second@{now - 2_000}"]


def test_a_scheduled_job_is_stored_as_add_stores_one(
    config: Config, redis_url: str, redis_client: Any
) -> None:
    queue = config.queues["ticks"]

    async def go() -> tuple[str, str]:
        client = connect(redis_url)
        try:
            # the schedule's opts: {priority: 7, attempts: 2}
            opts = JobOptions(priority=7, attempts=2)
            added = await QueueEngine(client, queue, PREFIX).add("x", {"n": 1}, opts)
            await store.upsert(client, PREFIX, config.schedules["every-second"], "file", since_ms=0)
            stored = (await store.load_all(client, PREFIX))["every-second"]
            tick = (await store.server_ms(client)) - 1
            await store.fire(client, PREFIX, stored, queue, tick)
            return added, store.job_id("every-second", tick)
        finally:
            await client.aclose()

    added, scheduled = run(go())
    a = redis_client.hgetall(f"{{{PREFIX}:ticks}}:j:{added}")
    s = redis_client.hgetall(f"{{{PREFIX}:ticks}}:j:{scheduled}")
    assert set(a) == set(s)
    for field in (b"state", b"delay", b"attempts_made", b"stalls", b"deliveries", b"opts"):
        assert a.get(field) == s.get(field), field
    assert redis_client.zscore(f"{{{PREFIX}:ticks}}:wait", scheduled) is not None


# -- the scheduler, on a clock the test sets -----------------------------------------------------


async def _catch_up_run(url: str, config: Config, mode: str) -> list[int]:
    """Ticks every 1 s from B; a scheduler runs at B, B+1 s, B+2 s and then every supervisor is
    down. Ticks within MISSED_SLACK_MS (3 s) of the last sign of life cannot be told from a
    slow scheduler's and run as usual; the 5 after them (B+6 s .. B+10 s) are missed. A fresh
    scheduler (a restarted `up`) looks at B+10.1 s and B+11.1 s."""
    assert MISSED_SLACK_MS == 3_000
    sched = dataclasses.replace(config.schedules["every-second"], catch_up=mode)  # type: ignore[arg-type]
    cfg = dataclasses.replace(config, schedules={"every-second": sched})
    client = connect(url)
    scripts = Scripts(client)
    try:
        base = ((await store.server_ms(client)) - 60_000) // 1000 * 1000
        await store.upsert(client, PREFIX, sched, "file", since_ms=base - 500)

        async def scheduler_at(times: list[int], alive: int | None) -> Scheduler:
            s = Scheduler(lambda: cfg, lambda _m: None)
            await s.refresh(client)
            s.alive_ms = alive
            for t in times:
                await s.step(client, t, scripts)
                s.alive_ms = t
            return s

        first = await scheduler_at([base + 100, base + 1100, base + 2100], alive=base)
        assert first.added == 3
        await scheduler_at([base + 10_100, base + 11_100], alive=base + 2100)
        ids = [i.decode() for i in await client.zrange(f"{{{PREFIX}:ticks}}:wait", 0, -1)]
        return [(t - base) // 1000 for t in ticks_of(ids)]
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", [0, 1, 2, 3, 4, 5, 11]),  # the 5 missed ticks (6-10) skipped
        ("one", [0, 1, 2, 3, 4, 5, 10, 11]),  # one run (10) for the 5 missed ones
        ("all", list(range(12))),  # each missed tick
    ],
)
def test_catch_up_after_every_supervisor_stopped_for_5_ticks(
    config: Config, redis_url: str, mode: str, expected: list[int]
) -> None:
    assert run(_catch_up_run(redis_url, config, mode)) == expected


# -- reconciling queues.yaml ------------------------------------------------------------------


def test_reconcile_upserts_the_file_removes_what_it_dropped_and_keeps_runtime_ones(
    config: Config, redis_url: str
) -> None:
    async def go() -> None:
        client = connect(redis_url)
        try:
            changed, removed = await store.reconcile(client, PREFIX, dict(config.schedules))
            assert sorted(changed) == ["every-second", "nightly"] and removed == []
            assert await store.reconcile(client, PREFIX, dict(config.schedules)) == ([], [])
            runtime = ScheduleConfig(name="adhoc", queue="ticks", every=60.0, job_name="adhoc")
            await store.upsert(client, PREFIX, runtime, "api")
            before = await store.load_all(client, PREFIX)
            # The file drops "nightly" and changes the data (not the timing) of "every-second".
            kept = dataclasses.replace(config.schedules["every-second"], data={"n": 2})
            changed, removed = await store.reconcile(client, PREFIX, {"every-second": kept})
            assert changed == ["every-second"] and removed == ["nightly"]
            after = await store.load_all(client, PREFIX)
            assert sorted(after) == ["adhoc", "every-second"]
            assert after["every-second"].schedule.data == {"n": 2}
            assert after["every-second"].since_ms == before["every-second"].since_ms
            # A new timing counts its ticks from now.
            retimed = dataclasses.replace(kept, every=2.0)
            await asyncio.sleep(0.01)  # the server's ms clock moves past the first since_ms
            mark = await store.server_ms(client)
            assert mark > before["every-second"].since_ms
            await store.reconcile(client, PREFIX, {"every-second": retimed})
            again = await store.load_all(client, PREFIX)
            assert again["every-second"].since_ms >= mark
            assert again["adhoc"].source == "api"
        finally:
            await client.aclose()

    run(go())


# -- the Python API and the CLI ------------------------------------------------------------------


def test_api_upsert_list_trigger_remove(project: Path, redis_url: str) -> None:
    async def go() -> None:
        async with QueueManager(project, redis_url) as qm:
            await qm.upsert_schedule(
                "hourly", queue="reports", cron="0 * * * *", data={"event": "tick"}
            )
            await qm.upsert_schedule("fast", queue="ticks", every=2000, data={"n": 3})
            rows = {r["name"]: r for r in await qm.list_schedules()}
            assert rows["hourly"]["rule"] == "cron 0 * * * *" and rows["hourly"]["source"] == "api"
            assert rows["fast"]["rule"] == "every 2s" and rows["fast"]["lastRun"] is None
            assert rows["fast"]["nextRun"] is not None
            job_id = await qm.trigger_schedule("hourly")
            job = await qm.get_queue("reports").get_job(job_id)
            assert job is not None and job.data == {"event": "tick"} and job.name == "hourly"
            assert await qm.remove_schedule("hourly") is True
            assert await qm.remove_schedule("hourly") is False
            assert [r["name"] for r in await qm.list_schedules()] == ["fast"]
            with pytest.raises(UsageError, match="no schedule named"):
                await qm.trigger_schedule("hourly")

    run(go())


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"queue": "ticks", "cron": "61 * * * *"}, UsageError, "Bad minute"),
        ({"queue": "ticks", "cron": "0 6 * * *", "timezone": "Mars/Olympus"}, UsageError, "zone"),
        ({"queue": "nope", "every": "5m"}, UsageError, "unknown queue"),
        ({"queue": "ticks", "every": "5m", "cron": "0 6 * * *"}, UsageError, "exactly one"),
        ({"queue": "ticks", "every": 500}, UsageError, "at least 1s"),
        ({"queue": "reports", "every": "5m", "data": {"event": 5}}, PayloadError, "payload"),
        ({"queue": "ticks", "every": "5m", "catch_up": "some"}, UsageError, "catch_up"),
    ],
)
def test_api_upsert_refuses_what_validate_refuses(
    project: Path, redis_url: str, kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    async def go() -> None:
        async with QueueManager(project, redis_url) as qm:
            with pytest.raises(error, match=words):
                await qm.upsert_schedule("s", **kwargs)
            assert await qm.list_schedules() == []

    run(go())


def test_cli_lists_and_triggers(project: Path, redis_url: str) -> None:
    async def seed() -> None:
        client = connect(redis_url)
        try:
            await store.reconcile(client, PREFIX, dict(load_config(project).schedules))
        finally:
            await client.aclose()

    run(seed())
    args = ["-f", str(project), "--redis-url", redis_url]
    listed: CliResult = run_cli("schedules", *args)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "SCHEDULE",
        "QUEUE",
        "RULE",
        "TIMEZONE",
        "LAST",
        "RUN",
        "NEXT",
        "RUN",
    ]
    assert "nightly" in lines[2] and "cron 0 6 * * *" in lines[2] and "Europe/Berlin" in lines[2]
    as_json = run_cli("schedules", "--json", *args)

    rows = json.loads(as_json.stdout)
    assert [r["name"] for r in rows] == ["every-second", "nightly"]
    assert rows[1]["nextRun"] % 3600 == 0  # 06:00 Berlin is on the hour in UTC
    triggered = run_cli("schedules", "trigger", "nightly", *args)
    assert triggered.returncode == 0, triggered.stderr
    job = run_cli("job", "reports", triggered.stdout.strip(), "--json", *args)
    assert json.loads(job.stdout)["name"] == "daily-report"
    missing = run_cli("schedules", "trigger", "nope", *args)
    assert missing.returncode == 2 and "no schedule named 'nope'" in missing.stderr
