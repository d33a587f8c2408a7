"""The original service's Python API, in-process, against a real server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from cortexflow import (
    BaseWorker,
    QueueManager,
    QueueName,
    SyncQueueManager,
    UnrecoverableError,
    WorkerManager,
    get_queue_manager,
)
from cortexflow.config.model import Backoff
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import ConfigError, PayloadError, RedisUnavailableError, UsageError
from tests.helpers.poll import wait_for_async
from tests.helpers.project import SECRET_URL


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_public_names_import_without_taskiq() -> None:
    code = (
        "import sys\n"
        "import cortexflow\n"
        "assert 'taskiq' not in sys.modules and 'redis' not in sys.modules, 'eager import'\n"
        "from cortexflow import (get_queue_manager, QueueManager, QueueName, WorkerManager,\n"
        "    BaseWorker, UnrecoverableError, SyncQueueManager, __version__)\n"
        "assert not any(m.startswith('taskiq') for m in sys.modules), 'taskiq imported'\n"
        "print(QueueName.MESSAGE_PROCESSING, __version__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("message-processing ")


def test_queue_names_are_the_original_five() -> None:
    assert [q.value for q in QueueName] == [
        "message-processing",
        "webhook-processing",
        "email-sending",
        "analytics",
        "notifications",
    ]
    assert QueueName.EMAIL_SENDING == "email-sending"


def test_add_job_options_in_the_originals_units(project: Path, redis_url: str) -> None:
    async def main() -> None:
        async with get_queue_manager(project, redis_url) as qm:
            jid = await qm.add_job(
                "analytics",
                "track-event",
                {"event": "e"},
                priority=3,
                delay=5000,
                attempts=5,
                backoff={"type": "fixed", "delay": 250},
                job_id="a-1",
                remove_on_complete=True,
                remove_on_fail=10,
            )
            assert jid == "a-1"
            # The same id again adds nothing and returns that id.
            assert await qm.add_job("analytics", "other", {}, job_id="a-1") == "a-1"
            job = await qm.get_queue("analytics").get_job(jid)
            assert job is not None
            assert (job.state, job.name, job.priority, job.delay, job.attempts) == (
                "delayed",
                "track-event",
                3,
                5.0,
                5,
            )
            assert job.opts["backoff"] == {
                "type": "fixed",
                "delay": 0.25,
                "max": 600.0,
                "jitter": 0.0,
            }
            assert (job.opts["remove_on_complete"], job.opts["remove_on_fail"]) == (True, 10)

            other = await qm.add_job(
                QueueName.ANALYTICS, "x", {"n": 1}, backoff=Backoff("fixed", 2.0)
            )
            assert len(other) == 22
            stats = await qm.get_queue_stats("analytics")
            assert stats == {
                "queueName": "analytics",
                "waiting": 1,
                "active": 0,
                "completed": 0,
                "failed": 0,
                "delayed": 1,
                "paused": False,
            }

            with pytest.raises(UsageError, match="milliseconds"):
                await qm.add_job("analytics", "x", {}, delay="5s")  # type: ignore[arg-type]
            with pytest.raises(UsageError, match="priority"):
                await qm.add_job("analytics", "x", {}, priority=-1)
            with pytest.raises(UsageError, match=r"backoff\.type"):
                await qm.add_job("analytics", "x", {}, backoff={"type": "linear", "delay": 5})
            with pytest.raises(
                UsageError, match=r"unknown queue 'nope'.*analytics, echo, notifications"
            ):
                await qm.add_job("nope", "x", {})
            with pytest.raises(PayloadError) as info:
                await qm.add_job("notifications", "n", {"userId": 1, "type": "fax"})
            assert sorted(p for p, _ in info.value.violations) == ["/type", "/userId"]
            assert (await qm.get_queue_stats("notifications"))["waiting"] == 0

    run(main())


def test_add_bulk_is_atomic_and_takes_the_originals_opts(project: Path, redis_url: str) -> None:
    async def main() -> None:
        qm = get_queue_manager(project, redis_url)
        try:
            ids = await qm.add_bulk(
                "notifications",
                [
                    {"name": "send-notification", "data": {"userId": "u1", "type": "sms"}},
                    {
                        "name": "send-notification",
                        "data": {"userId": "u2", "type": "push"},
                        "opts": {
                            "priority": 9,
                            "delay": 60_000,
                            "jobId": "b-2",
                            "removeOnComplete": 5,
                            "backoff": {"type": "exponential", "delay": 100},
                        },
                    },
                ],
            )
            assert ids[1] == "b-2" and len(ids) == 2
            job = await qm.get_queue("notifications").get_job("b-2")
            assert job is not None and (job.priority, job.delay, job.state) == (9, 60.0, "delayed")
            assert job.opts["remove_on_complete"] == 5

            with pytest.raises(PayloadError) as info:
                await qm.add_bulk(
                    "notifications",
                    [
                        {"name": "ok", "data": {"userId": "u3", "type": "sms"}},
                        {"name": "bad", "data": {"userId": "u4"}},
                    ],
                )
            assert info.value.violations[0][0].startswith("/1")
            with pytest.raises(UsageError, match="unknown job option 'lifo'"):
                await qm.add_bulk(
                    "notifications", [{"name": "x", "data": {}, "opts": {"lifo": True}}]
                )
            with pytest.raises(UsageError, match="'name' and 'data'"):
                await qm.add_bulk("notifications", [{"data": {}}])
            assert await qm.add_bulk("notifications", []) == []
            stats = await qm.get_queue_stats("notifications")
            assert (stats["waiting"], stats["delayed"]) == (1, 1)  # the refused batch wrote nothing
        finally:
            await qm.close()

    run(main())


def test_queue_management_and_health(project: Path, redis_url: str) -> None:
    async def main() -> None:
        async with QueueManager(project, redis_url=redis_url) as qm:
            await qm.add_bulk("analytics", [{"name": "e", "data": {"i": i}} for i in range(5)])
            await qm.add_job("analytics", "later", {}, delay=3_600_000)
            await qm.pause_queue("analytics")
            assert (await qm.get_queue_stats("analytics"))["paused"] is True
            await qm.resume_queue("analytics")
            assert (await qm.get_queue_stats("analytics"))["paused"] is False

            all_stats = await qm.get_all_queue_stats()
            assert [s["queueName"] for s in all_stats] == ["notifications", "analytics", "echo"]
            assert all_stats[1]["waiting"] == 5 and all_stats[1]["delayed"] == 1

            assert await qm.clean_queue("analytics", 3_600_000, 100, "waiting") == []
            removed = await qm.clean_queue("analytics", 0, 2, "waiting")
            assert len(removed) == 2
            with pytest.raises(UsageError, match="state"):
                await qm.clean_queue("analytics", 0, 10, "active")
            assert await qm.drain_queue("analytics") == 3
            assert (await qm.get_queue_stats("analytics"))["delayed"] == 1
            assert await qm.drain_queue("analytics", delayed=True) == 1

            assert await qm.health_check() == {
                "healthy": True,
                "queues": {"notifications": True, "analytics": True, "echo": True},
            }
            assert isinstance(qm.get_queue("echo"), QueueEngine)

        down = get_queue_manager(project, SECRET_URL)
        assert await down.health_check() == {
            "healthy": False,
            "queues": {"notifications": False, "analytics": False, "echo": False},
        }
        with pytest.raises(RedisUnavailableError) as info:
            await down.get_queue_stats("analytics")
        assert "user:***@127.0.0.1:1" in str(info.value) and "s3cret" not in str(info.value)
        await down.close()

    run(main())


def test_config_from_env_and_missing_file(
    project: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORTEXFLOW_FILE", str(project))
    monkeypatch.setenv("REDIS_URL", redis_url)

    async def main() -> None:
        async with get_queue_manager() as qm:
            assert qm.queue_names == ["notifications", "analytics", "echo"]
            await qm.add_job("echo", "hello", {"x": 1})
            assert (await qm.get_queue_stats("echo"))["waiting"] == 1

    run(main())
    monkeypatch.setenv("CORTEXFLOW_FILE", str(project.parent / "missing.yaml"))
    with pytest.raises(ConfigError) as info:
        run(get_queue_manager().get_queue_stats("echo"))
    assert info.value.exit_code == 2


def test_sync_facade(project: Path, redis_url: str) -> None:
    with SyncQueueManager(project, redis_url) as qm:
        jid = qm.add_job("notifications", "n", {"userId": "u", "type": "sms"}, delay=10_000)
        ids = qm.add_bulk("analytics", [{"name": "e", "data": {}}, {"name": "e", "data": {}}])
        assert len(ids) == 2
        assert qm.get_queue_stats("notifications")["delayed"] == 1
        assert [s["waiting"] for s in qm.get_all_queue_stats(["analytics", "echo"])] == [2, 0]
        qm.pause_queue("analytics")
        assert qm.get_queue_stats("analytics")["paused"] is True
        qm.resume_queue("analytics")
        job = qm.run(qm.get_queue("notifications").get_job(jid))
        assert job.state == "delayed"
        assert qm.clean_queue("notifications", 0, 0, "delayed") == [jid]
        assert qm.drain_queue("analytics") == 2
        assert qm.health_check()["healthy"] is True


class Greeter(BaseWorker):
    def __init__(self) -> None:
        super().__init__(QueueName.NOTIFICATIONS, 5)

    async def process(self, job: Any) -> Any:
        return {"hello": job.data["userId"]}


def test_base_worker_is_the_originals_custom_worker() -> None:
    worker = Greeter()
    assert (worker.queue, worker.concurrency) == ("notifications", 5)
    with pytest.raises(TypeError):
        BaseWorker()  # type: ignore[abstract]


def test_worker_manager_embedded_in_an_asyncio_app(project: Path, redis_url: str) -> None:
    """An app starts the workers beside its own tasks, jobs run, and stop_all ends them cleanly
    (a job still running past the stop timeout goes back to waiting)."""

    async def app() -> None:
        workers = WorkerManager(project, redis_url=redis_url, queues=["notifications", "echo"])
        async with get_queue_manager(project, redis_url) as qm:
            await workers.start_all()
            assert workers.queues == ["notifications", "echo"]
            heartbeat = asyncio.create_task(asyncio.sleep(3600))  # the app's own work goes on
            ids = [await qm.add_job("echo", "e", {"i": i}) for i in range(20)]
            failing = await qm.add_job(
                "notifications", "n", {"userId": "u", "type": "sms", "fail": True}
            )
            ok = await qm.add_job("notifications", "n", {"userId": "u7", "type": "sms"})
            echo = qm.get_queue("echo")
            notif = qm.get_queue("notifications")
            jobs = [await echo.wait_finished(i, 10) for i in ids]
            assert [j.result["echo"]["i"] for j in jobs if j] == list(range(20))
            assert all(j and j.state == "completed" and j.progress == 100 for j in jobs)
            bad = await notif.wait_finished(failing, 10)
            assert bad is not None and bad.state == "failed" and "told to fail" in (bad.error or "")
            good = await notif.wait_finished(ok, 10)
            assert good is not None and good.result == {"sent": "u7"}
            assert await notif.get_logs(ok) == ["notifying u7"]

            slow = await qm.add_job(
                "notifications", "n", {"userId": "u", "type": "sms", "sleep": 30}
            )

            async def running() -> bool:
                return (await qm.get_queue_stats("notifications"))["active"] == 1

            await wait_for_async(running, 10, 0.02)
            started = time.monotonic()
            await workers.stop_all(timeout=1.0)
            assert time.monotonic() - started < 8
            assert workers.queues == []
            job = await notif.get_job(slow)
            assert job is not None and job.state == "waiting"
            assert not heartbeat.done()
            heartbeat.cancel()
            # The queue is still usable by producers after the workers stopped.
            assert (await qm.get_queue_stats("notifications"))["active"] == 0

    run(app())


def test_worker_manager_reports_bad_queues(project: Path, redis_url: str) -> None:
    with pytest.raises(UsageError, match="unknown queue 'nope'"):
        run(WorkerManager(project, redis_url, queues=["nope"]).start_all())
    with pytest.raises(RedisUnavailableError):
        run(WorkerManager(project, SECRET_URL).start_all())


def test_unrecoverable_error_is_exported() -> None:
    from cortexflow.errors import UnrecoverableError as Original

    assert UnrecoverableError is Original
