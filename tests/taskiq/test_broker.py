"""The broker as taskiq's own broker tests use one (a kick reaches exactly one listener,
``kiq("foo")`` then ``wait_result() == "foo"``), and the labels a task sends (priority, delay,
timeout, job_id, queue_name, pydantic arguments)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from taskiq.kicker import AsyncKicker

from cortexflow.api.manager import QueueManager
from cortexflow.errors import UsageError
from tests.helpers.poll import wait_for_async
from tests.taskiq.conftest import App

TASKS = """
import asyncio, time
from pydantic import BaseModel

runs = []  # (task id, started at)

class User(BaseModel):
    name: str
    age: int

@broker.task(queue="emails")
async def echo(value):
    return value

@broker.task(queue="emails")
async def record(i: int) -> int:
    runs.append((i, time.time()))
    return i

@broker.task(queue="reports")
async def ordered(i: int) -> int:
    runs.append((i, time.time()))
    return i

@broker.task(queue_name="reports")
async def where() -> str:
    return "reports"

@broker.task(queue="emails")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"

@broker.task(queue="emails")
def greet(user: User, *, greeting: str = "hi") -> str:
    assert isinstance(user, User)
    return f"{greeting} {user.name} ({user.age})"
"""


def test_kiq_then_wait_result_is_the_value(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("emails"):
            task = await app.module.echo.kiq("foo")
            result = await task.wait_result(timeout=10)
            assert result.return_value == "foo"
            assert not result.is_err
            task = await app.module.echo.kiq({"a": [1, 2]})
            assert (await task.wait_result(timeout=10)).return_value == {"a": [1, 2]}

    asyncio.run(main())


def test_two_listeners_one_kick_exactly_one_receives(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("emails", replicas=2):
            tasks = [await app.module.record.kiq(i) for i in range(40)]
            for task in tasks:
                await task.wait_result(timeout=10)
            await asyncio.sleep(0.3)  # a run twice would have shown by now
        assert sorted(i for i, _ in app.module.runs) == list(range(40))

    asyncio.run(main())


def test_priority_label_sent_as_text_runs_in_strict_order(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        engine = app.broker.manager.get_queue("reports")
        await app.broker.manager.connect()
        await engine.pause()
        async with app.workers("reports"):  # concurrency 1
            sent = [(i, p) for i, p in enumerate([0, 5, 1, 9, 5, 3, 0, 7])]
            tasks = []
            for i, priority in sent:
                kicker = app.module.ordered.kicker().with_labels(priority=priority)
                tasks.append(await kicker.kiq(i))
            await engine.resume()
            for task in tasks:
                await task.wait_result(timeout=10)
        order = [i for i, _ in app.module.runs]
        expected = [i for i, _ in sorted(sent, key=lambda s: (-s[1], s[0]))]
        assert order == expected

    asyncio.run(main())


def test_delay_label_never_runs_early(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("emails"):
            sent = time.time()
            task = await app.module.record.kicker().with_labels(delay=1.5).kiq(1)
            await task.wait_result(timeout=10)
        [(_, started)] = app.module.runs
        assert started - sent >= 1.5 - 0.01  # the server's clock and ours: same host

    asyncio.run(main())


def test_timeout_label_fails_the_run(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("emails"):
            kicker = app.module.slow.kicker().with_labels(timeout=0.3, attempts=1)
            begun = time.monotonic()
            result = await (await kicker.kiq(30)).wait_result(timeout=20)
            assert result.is_err
            assert "timeout" in str(result.error)
            assert time.monotonic() - begun < 15  # not the task's 30 s

    asyncio.run(main())


def test_job_id_is_idempotent(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("emails"):
            first = await app.module.record.kicker().with_task_id("same").kiq(1)
            assert (await first.wait_result(timeout=10)).return_value == 1
            again = await app.module.record.kicker().with_task_id("same").kiq(2)
            assert (await again.wait_result(timeout=10)).return_value == 1
            labelled = await app.module.record.kicker().with_labels(job_id="by-label").kiq(3)
            assert labelled.task_id == "by-label"
            assert (await labelled.wait_result(timeout=10)).return_value == 3
            await asyncio.sleep(0.3)
        assert sorted(i for i, _ in app.module.runs) == [1, 3]  # the re-kick added nothing

    asyncio.run(main())
    assert "exist already" in caplog.text  # and said so


def test_pydantic_arguments_arrive_as_models(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("emails"):
            user = app.module.User(name="Bo", age=7)
            task = await app.module.greet.kiq(user, greeting="hello")
            assert (await task.wait_result(timeout=10)).return_value == "hello Bo (7)"

    asyncio.run(main())


def test_queue_name_label_routes_to_that_queue(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("reports"):
            task = await app.module.where.kiq()
            assert (await task.wait_result(timeout=10)).return_value == "reports"
            job = await app.broker.manager.get_queue("reports").get_job(task.task_id)
            assert job is not None and job.name.endswith(":where")

    asyncio.run(main())


def test_bulk_adds_many_kiqs_in_one_call(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        engine = app.broker.manager.get_queue("emails")
        async with app.workers("emails"):
            async with app.broker.bulk():
                tasks = [await app.module.echo.kiq(i) for i in range(20)]
                assert (await engine.stats())["waiting"] == 0  # nothing sent yet
            assert [(await t.wait_result(timeout=10)).return_value for t in tasks] == list(
                range(20)
            )

    asyncio.run(main())


def test_bulk_over_two_queues_adds_each_queues_jobs_to_it(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        emails = app.broker.manager.get_queue("emails")
        reports = app.broker.manager.get_queue("reports")
        try:
            async with app.broker.bulk():
                mails = [await app.module.echo.kiq(i) for i in range(5)]
                made = [await app.module.ordered.kiq(i) for i in range(3)]
            assert (await emails.stats())["waiting"] == 5
            assert (await reports.stats())["waiting"] == 3
            assert all([await emails.get_job(t.task_id) for t in mails])
            assert all([await reports.get_job(t.task_id) for t in made])
        finally:
            await app.broker.manager.close()

    asyncio.run(main())


def test_a_task_name_no_worker_knows_fails_for_good_into_the_dead_letter_queue(
    make_app: Callable[..., App],
) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        async with app.workers("emails"):
            kicker = AsyncKicker(
                task_name="app:gone", broker=app.broker, labels={"queue": "emails"}
            )
            result = await (await kicker.kiq(1)).wait_result(timeout=10)
            assert result.is_err
            assert "no task 'app:gone'" in str(result.error)
            dead = app.broker.manager.get_queue("dead")
            await wait_for_async(lambda: _has_jobs(dead), 10, message="dead-lettered")

    asyncio.run(main())


async def _has_jobs(engine: object) -> bool:
    stats = await engine.stats()  # type: ignore[attr-defined]
    return bool(stats["waiting"] + stats["completed"] + stats["failed"] + stats["active"])


def test_unknown_queue_fails_at_decoration_listing_the_queues(
    make_app: Callable[..., App],
) -> None:
    app = make_app(TASKS)
    with pytest.raises(UsageError, match=r"no queue 'emials'.*emails, reports"):
        app.broker.task(queue="emials")(lambda: None)
    with pytest.raises(UsageError, match="runs a handler, not taskiq tasks"):
        app.broker.task(queue="plain")(lambda: None)
    with pytest.raises(UsageError, match="schedules:"):
        app.broker.task(queue="emails", schedule=[{"cron": "* * * * *"}])(lambda: None)


RESTART = """
import asyncio

@broker.task(queue="emails")
async def slow_echo(value, seconds: float):
    await asyncio.sleep(seconds)
    return value
"""


@pytest.mark.slow
def test_wait_result_rides_out_a_server_restart(
    make_app: Callable[..., App], tmp_path: Path, private_server: Callable[..., Any]
) -> None:
    """The server stops while the task runs and wait_result() polls; it comes back (its AOF
    kept the job): the worker records the result and wait_result() returns it, no error."""
    server = private_server(tmp_path / "data", appendonly=True)
    server.start()
    try:
        app = make_app(RESTART)
        app.url = server.url
        app.broker.manager = QueueManager(app.config, server.url)

        async def main() -> None:
            async with app.workers("emails"):
                task = await app.module.slow_echo.kiq("back", 3.0)
                waiting = asyncio.ensure_future(task.wait_result(timeout=60))
                await asyncio.sleep(1.0)  # running, and wait_result() polling
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(8.0)  # the outage: longer than the client's own retries
                await asyncio.to_thread(server.start)
                result = await waiting
                assert not result.is_err, result.error
                assert result.return_value == "back"

        asyncio.run(main())
    finally:
        server.stop()
