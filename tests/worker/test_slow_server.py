"""A server that stalls (DEBUG SLEEP, CLIENT PAUSE: what a fork of a big dataset or a noisy
neighbour does to every client) under a running `cortexflow up` with two workers, one busy and
one idle that takes over any job whose lease ran out.

When the server answers again every lease has run out by its clock, and the first fetch it
serves would take the busy worker's jobs, though that worker is alive. The queue's lease clock
(engine/scripts/include/lease_clock.lua) sees that no renewal was served for more than lease/2
and recovers nothing for lease/3, long enough for the live worker's renewal to get through: no
job runs twice, whether the stall lasts 2x the lease or 5x. A worker that died during the stall
does not renew: its jobs are recovered lease/3 after the server came back and run once more,
none is lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cortexflow import QueueManager
from cortexflow.embedded import ServerProcess
from tests.helpers.jobs import wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project
from tests.worker.test_full_server import runs

HANDLER = """
import asyncio, os
from pathlib import Path

HERE = Path(__file__).parent


async def run(data, job):
    runs = HERE / "runs"
    runs.mkdir(exist_ok=True)
    with open(runs / job.id, "a") as f:
        f.write(f"{os.getpid()}\\n")
    await asyncio.sleep(data["seconds"])
"""

LEASE = 2.0
QUEUES = f"""
queues:
  work:
    handler: files:run
    processes: 2
    concurrency: 4
    lease: {LEASE:g}s
    max_stalls: 5
"""


def stall(url: str, how: str, seconds: float) -> None:
    """Stall the server for ``seconds`` from a client of its own."""
    client = redis.Redis.from_url(url, socket_timeout=seconds + 30)
    try:
        if how == "sleep":
            client.execute_command("DEBUG", "SLEEP", seconds)
        else:
            client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")
            threading.Event().wait(seconds)
    finally:
        client.close()


def start(
    tmp_path: Path, start_up: Callable[..., Proc], server: ServerProcess, seconds: float
) -> tuple[redis.Redis, Path]:
    client = redis.Redis.from_url(server.url)
    cfg = write_project(tmp_path / "app", QUEUES, {"files.py": HANDLER})
    start_up(cfg.parent, "--redis-url", server.url)
    wait_workers_ready(client, "work", 2, timeout=90)

    async def add() -> None:
        async with QueueManager(cfg, server.url) as m:
            jobs = [
                {"name": "w", "data": {"seconds": seconds}, "opts": {"job_id": f"j{i}"}}
                for i in range(4)
            ]
            await m.add_bulk("work", jobs)

    asyncio.run(add())
    wait_for(lambda: len(runs(cfg.parent)) == 4, 30, message="the 4 jobs did not start")
    # The queue's lease clock starts at its first renewal (lease/3 after the lease).
    wait_for(lambda: client.hexists("{cortexflow:work}:meta", "renewed_at"), 10)
    return client, cfg.parent


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "leases"),
    [("sleep", 2), ("pause", 2), ("sleep", 5)],
    ids=["sleep-2-leases", "pause-2-leases", "sleep-5-leases"],
)
def test_a_server_stalled_for_leases_runs_no_job_twice(
    tmp_path: Path,
    start_up: Callable[..., Proc],
    private_server: Callable[..., ServerProcess],
    how: str,
    leases: int,
) -> None:
    """Twice the lease, by DEBUG SLEEP and CLIENT PAUSE, and five leases: the lease clock
    makes a stall of any length cost no double run while the jobs' worker lives."""
    server = private_server(
        tmp_path / "data", appendonly=False, extra={"enable-debug-command": "yes"}
    )
    server.start()
    try:
        client, folder = start(tmp_path, start_up, server, seconds=3 * LEASE)
        stall(server.url, how, leases * LEASE)
        wait_for(
            lambda: client.zcard("{cortexflow:work}:completed") == 4,
            60,
            message="the jobs did not complete after the stall",
        )
        assert runs(folder) == dict.fromkeys(["j0", "j1", "j2", "j3"], 1), "a job ran twice"
    finally:
        server.stop()


@pytest.mark.slow
def test_the_jobs_of_a_worker_that_died_during_the_stall_run_again_and_none_is_lost(
    tmp_path: Path, start_up: Callable[..., Proc], private_server: Callable[..., ServerProcess]
) -> None:
    server = private_server(
        tmp_path / "data", appendonly=False, extra={"enable-debug-command": "yes"}
    )
    server.start()
    try:
        client, folder = start(tmp_path, start_up, server, seconds=3 * LEASE)
        [busy] = {int(p.read_text()) for p in (folder / "runs").iterdir()}
        sleeper = threading.Thread(target=stall, args=(server.url, "sleep", 2 * LEASE))
        sleeper.start()
        time.sleep(0.5)
        os.kill(busy, signal.SIGKILL)  # dies while the server sleeps
        sleeper.join()
        wait_for(
            lambda: client.zcard("{cortexflow:work}:completed") == 4,
            60,
            message="a job of the dead worker was lost",
        )
        counts = runs(folder)
        assert counts == dict.fromkeys(["j0", "j1", "j2", "j3"], 2), counts
        assert client.zcard("{cortexflow:work}:active") == 0
        assert client.zcard("{cortexflow:work}:wait") == 0
    finally:
        server.stop()
