"""A full server (maxmemory reached, maxmemory-policy noeviction) under a running `cortexflow up`.

Adds are refused with a clear error (ServerFullError in Python, exit 75 in the CLI), `health`
reports the memory pressure, and the jobs that were running finish: their outcomes wait for
room (retried, never dropped) while the lease thread keeps their leases (the heartbeat script
may run on a full server: `#!lua flags=allow-oom`), so no job runs twice. Once there is room the
outcomes are written and the schedules' jobs run again; `up` and its workers never restarted.

The handler records its runs in files: its own Redis writes would be refused too.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cortexflow import QueueManager, ServerFullError
from cortexflow.embedded import ServerProcess
from tests.helpers.jobs import wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, run_cli
from tests.helpers.project import write_project

FILES_HANDLER = """
import asyncio, os
from pathlib import Path

HERE = Path(__file__).parent


async def run(data, job):
    runs = HERE / "runs"
    runs.mkdir(exist_ok=True)
    with open(runs / job.id, "a") as f:
        f.write(f"{os.getpid()}\\n")
    while not (HERE / "go").exists():
        await asyncio.sleep(0.05)
    return {"pid": os.getpid()}


async def tick(data, job):
    with open(HERE / "ticks", "a") as f:
        f.write(job.id + "\\n")
"""

QUEUES = """
queues:
  work:
    handler: files:run
    processes: 2
    concurrency: 4
    lease: 2s
  ticks:
    handler: files:tick
schedules:
  every-second:
    queue: ticks
    every: 1s
"""


def fill(client: redis.Redis) -> None:
    """Make the server full: its maxmemory below what it uses (with noeviction it deletes
    nothing, so it stays full, whatever frees a few bytes meanwhile, until room is made)."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used // 2)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "x")


def make_room(client: redis.Redis) -> None:
    client.config_set("maxmemory", 0)


def runs(folder: Path) -> dict[str, int]:
    """job id -> how many times its handler started."""
    found = (folder / "runs").glob("*")
    return {p.name: len(p.read_text().splitlines()) for p in found}


@pytest.mark.slow
def test_a_full_server_refuses_adds_and_running_jobs_finish_once_there_is_room(
    tmp_path: Path, start_up: Callable[..., Proc], private_server: Callable[..., ServerProcess]
) -> None:
    server = private_server(tmp_path / "data", appendonly=False)
    server.start()
    try:
        url = server.url
        client = redis.Redis.from_url(url)
        cfg = write_project(tmp_path / "app", QUEUES, {"files.py": FILES_HANDLER})
        folder = cfg.parent
        up = start_up(folder, "--redis-url", url)

        wait_workers_ready(client, "work", 2)

        async def add_four() -> None:
            async with QueueManager(cfg, url) as m:
                jobs = [{"name": "work", "data": {}, "opts": {"job_id": f"j{i}"}} for i in range(4)]
                await m.add_bulk("work", jobs)

        # One add wakes one worker, which leases all four: the other stays idle, and would
        # take over any of them whose lease ran out.
        asyncio.run(add_four())
        wait_for(lambda: len(runs(folder)) == 4, 30, message="the 4 jobs did not start")
        pids = {p.read_text() for p in (folder / "runs").iterdir()}
        assert len(pids) == 1, "the jobs were split between the two workers"
        fill(client)
        # An add is refused, saying why and what to do; nothing is written.
        r = run_cli(
            "enqueue",
            "work",
            "-",
            "--job-id",
            "late",
            "-f",
            str(cfg),
            "--redis-url",
            url,
            input="{}",
        )
        assert r.returncode == 75, (r.returncode, r.stderr)
        assert "full" in r.stderr and "maxmemory" in r.stderr and "Traceback" not in r.stderr
        assert client.exists("{cortexflow:work}:job:late") == 0

        async def add() -> None:
            async with QueueManager(cfg, url) as m:
                with pytest.raises(ServerFullError) as caught:
                    await m.add_job("work", "work", {})
                assert caught.value.maxmemory and caught.value.used
                assert "maxmemory" in str(caught.value)

        asyncio.run(add())
        health = run_cli("health", "--json", "-f", str(cfg), "--redis-url", url)
        assert health.returncode == 1, health.stderr
        report = json.loads(health.stdout)
        assert report["memoryPressure"] is True and report["memory"]["pressure"] is True

        # The jobs end while the server is full: their outcomes wait, for three leases.
        (folder / "go").touch()
        asyncio.run(asyncio.sleep(6))
        assert runs(folder) == dict.fromkeys(["j0", "j1", "j2", "j3"], 1)
        assert client.zcard("{cortexflow:work}:active") == 4

        make_room(client)
        wait_for(
            lambda: client.zcard("{cortexflow:work}:completed") == 4,
            30,
            message="the outcomes were not written once there was room",
        )
        assert runs(folder) == dict.fromkeys(["j0", "j1", "j2", "j3"], 1), "a job ran twice"
        # The schedule goes on adding its jobs once adds work again, and `up` never stopped.
        ticks = (folder / "ticks").read_text().count("\n") if (folder / "ticks").exists() else 0
        wait_for(
            lambda: (
                (folder / "ticks").exists() and (folder / "ticks").read_text().count("\n") > ticks
            ),
            15,
            message="no scheduled job ran after the server had room again",
        )
        assert up.alive()
        log = up.err_path.read_text() + up.out_path.read_text()
        assert len(re.findall(r"started \(pid \d+\)", log)) == 3, log  # no worker restarted
    finally:
        server.stop()
