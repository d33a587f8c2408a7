"""Several hosts running `cortexflow up` against one server (CORTEXFLOW_HOST stands for the
host name): work is shared, the rate limit holds across all of them on the server's clock,
`status` shows every host, and a host killed with SIGKILL has its jobs finished by the others."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from cortexflow.api.sync import SyncQueueManager
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, run_cli, wait_gone

HANDLERS = textwrap.dedent(
    """
    import asyncio
    import os


    async def work(data):
        await asyncio.sleep(data.get("seconds", 0))
        return {"host": os.environ["CORTEXFLOW_HOST"], "pid": os.getpid()}
    """
)

QUEUES_YAML = """\
version: 1
queues:
  work:
    handler: hosthandlers:work
    concurrency: 5
    attempts: 1
    lease: 2s
    rate_limit: {max: %(rate)d, duration: 1s}
"""


def _project(folder: Path, rate: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "hosthandlers.py").write_text(HANDLERS)
    path = folder / "queues.yaml"
    path.write_text(QUEUES_YAML % {"rate": rate})
    return path


def _hosts(
    tmp_path: Path, start_up: Callable[..., Proc], redis_url: str, rate: int, names: list[str]
) -> tuple[Path, dict[str, Proc]]:
    ups = {}
    config = None
    for name in names:
        config = _project(tmp_path / name, rate)
        ups[name] = start_up(config.parent, "--redis-url", redis_url, env={"CORTEXFLOW_HOST": name})
    for up in ups.values():
        up.wait_for(r"work\.0 \(pid \d+\) ready", 60)
    assert config is not None
    return config, ups


def _status(config: Path, redis_url: str) -> tuple[int, list[dict]]:
    result = run_cli("status", "--json", "-f", str(config), "--redis-url", redis_url)
    return result.returncode, json.loads(result.stdout or "null") or []


def _finished(manager: SyncQueueManager, ids: list[str]) -> list[dict]:
    async def read() -> list[dict]:
        engine = manager.get_queue("work")
        jobs = [await engine.get_job(i) for i in ids]
        return [j.to_dict() for j in jobs if j is not None]

    return manager.run(read())


@pytest.mark.slow
def test_two_hosts_share_the_work_under_one_rate_limit(
    tmp_path: Path, start_up: Callable[..., Proc], redis_url: str
) -> None:
    config, _ = _hosts(tmp_path, start_up, redis_url, rate=10, names=["host-a", "host-b"])
    with SyncQueueManager(config, redis_url) as manager:
        ids = manager.add_bulk(
            "work", [{"name": "w", "data": {"seconds": 0.05}} for _ in range(50)]
        )
        wait_for(lambda: manager.get_queue_stats("work")["completed"] == 50, timeout=60)
        jobs = _finished(manager, ids)
    assert {j["state"] for j in jobs} == {"completed"}
    by_host = Counter(j["result"]["host"] for j in jobs)
    assert set(by_host) == {"host-a", "host-b"}, by_host
    # the server's clock stamped each start: no 1 s window holds more than 10 of them
    starts = sorted(round(j["processedAt"] * 1000) for j in jobs)
    crowded = [
        (starts[i], starts[i + 10])
        for i in range(len(starts) - 10)
        if starts[i + 10] - starts[i] < 1000
    ]
    assert not crowded, f"11 starts within 1 s across both hosts: {crowded[:3]}"
    # 50 jobs at 10/s cannot finish in much under 4 s, whatever the hosts' concurrency
    assert starts[-1] - starts[0] >= 4000

    code, rows = _status(config, redis_url)
    assert code == 0
    assert {r["host"] for r in rows} == {"host-a", "host-b"}, rows


@pytest.mark.slow
def test_a_host_killed_with_sigkill_has_its_jobs_finished_by_the_other(
    tmp_path: Path, start_up: Callable[..., Proc], redis_url: str
) -> None:
    config, ups = _hosts(tmp_path, start_up, redis_url, rate=1000, names=["host-a", "host-b"])
    with SyncQueueManager(config, redis_url) as manager:
        ids = manager.add_bulk("work", [{"name": "w", "data": {"seconds": 4}} for _ in range(10)])
        wait_for(lambda: manager.get_queue_stats("work")["active"] == 10, timeout=30)
        doomed = ups["host-a"]
        pids = [doomed.pid, doomed.child_pid("work.0")]
        killed_at = time.monotonic()
        for pid in pids:  # the whole host at once: supervisor and worker
            os.kill(pid, signal.SIGKILL)
        assert not wait_gone(pids, 10)
        wait_for(lambda: manager.get_queue_stats("work")["completed"] == 10, timeout=60)
        recovered_in = time.monotonic() - killed_at
        jobs = _finished(manager, ids)
    assert [j["state"] for j in jobs] == ["completed"] * 10
    assert {j["result"]["host"] for j in jobs} == {"host-b"}, "host-a died before any job ended"
    # host-a's five jobs went back after its 2 s lease and then ran 4 s on host-b
    assert sum(j["stalls"] for j in jobs) == 5
    assert recovered_in < 2 + 4 + 15, recovered_in


@pytest.mark.parametrize("hosts", [3])
def test_status_lists_every_host(
    tmp_path: Path, start_up: Callable[..., Proc], redis_url: str, hosts: int
) -> None:
    names = [f"node-{i}" for i in range(hosts)]
    config, _ = _hosts(tmp_path, start_up, redis_url, rate=100, names=names)

    def every_host() -> list[dict] | None:
        code, rows = _status(config, redis_url)
        return rows if code == 0 and {r["host"] for r in rows} == set(names) else None

    rows = wait_for(every_host, timeout=20)
    assert all(r["state"] in ("ready", "stable") for r in rows), rows
