"""One SyncQueueManager shared by the threads of a WSGI-style app (once 39 of 40 adds failed
with "This event loop is already running")."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from cortexflow import SyncQueueManager
from cortexflow.errors import UsageError

QUEUES_YAML = "version: 1\nqueues:\n  emails:\n    handler: builtins:print\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES_YAML)
    return path


def test_8_threads_x_50_adds_through_one_manager_make_400_jobs(
    project: Path, redis_url: str
) -> None:
    failures: Counter[str] = Counter()
    ids: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    before = set(threading.enumerate())
    with SyncQueueManager(project, redis_url) as manager:

        def request_thread(t: int) -> None:
            start.wait()
            for i in range(50):
                try:
                    job_id = manager.add_job("emails", "send", {"t": t, "i": i})
                except Exception as exc:  # counted, so the assert shows every kind of failure
                    with lock:
                        failures[f"{type(exc).__name__}: {exc}"] += 1
                else:
                    with lock:
                        ids.append(job_id)

        threads = [threading.Thread(target=request_thread, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not any(th.is_alive() for th in threads), "a thread is still adding after 60 s"
        assert not failures, failures
        assert len(set(ids)) == 400
        assert manager.get_queue_stats("emails")["waiting"] == 400
        # every thread's calls share the manager's one loop thread: no thread per call
        loop_threads = [t for t in set(threading.enumerate()) - before if "sync" in t.name]
        assert [t.name for t in loop_threads] == ["cortexflow-sync-manager"]


def test_stats_and_engine_calls_from_threads_while_adding(project: Path, redis_url: str) -> None:
    with SyncQueueManager(project, redis_url) as manager:
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(30):
                    manager.get_all_queue_stats()
                    manager.run(manager.get_queue("emails").list_jobs("waiting", 0, 5))
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(4)]
        for th in readers:
            th.start()
        manager.add_bulk("emails", [{"name": "n", "data": {"i": i}} for i in range(100)])
        for th in readers:
            th.join(60)
        assert not errors, errors
        assert manager.get_queue_stats("emails")["waiting"] == 100


def test_get_queue_inside_a_coroutine_that_run_runs(project: Path, redis_url: str) -> None:
    with SyncQueueManager(project, redis_url) as manager:
        job_id = manager.add_job("emails", "one", {})

        async def read() -> str:
            job = await manager.get_queue("emails").get_job(job_id)
            assert job is not None
            return job.state

        assert manager.run(read()) == "waiting"


def test_close_stops_the_loop_thread_and_later_calls_say_so(project: Path, redis_url: str) -> None:
    before = set(threading.enumerate())
    manager = SyncQueueManager(project, redis_url)
    manager.add_job("emails", "one", {})
    [loop_thread] = [t for t in set(threading.enumerate()) - before if "sync" in t.name]
    manager.close()
    loop_thread.join(10)
    assert not loop_thread.is_alive()
    with pytest.raises(UsageError, match="closed"):
        manager.add_job("emails", "two", {})
    manager.close()  # twice is fine


@pytest.mark.slow
def test_a_forked_child_uses_the_parents_manager_with_its_own_loop_and_connections(
    project: Path, redis_url: str
) -> None:
    """gunicorn --preload / uWSGI: the app (and its manager) is made, maybe used, then forked."""
    manager = SyncQueueManager(project, redis_url)
    manager.add_job("emails", "parent", {})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        code = 1
        try:
            os.close(read)
            ids = [manager.add_job("emails", "child", {"i": i}) for i in range(20)]
            os.write(write, str(len(set(ids))).encode())
            manager.close()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        got = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and got == "20"
    manager.add_job("emails", "parent-again", {})  # the parent's manager is intact
    assert manager.get_queue_stats("emails")["waiting"] == 22
    manager.close()
