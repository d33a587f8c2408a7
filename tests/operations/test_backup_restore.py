"""docs/operations.md's backup and restore, followed step by step: an RDB taken with BGSAVE while
jobs run, everything killed, a new server started from that file (then switched back to AOF, as
the embedded server runs), new workers: the jobs that were running come back through their
leases and run again, the waiting and delayed ones run, nothing is stuck and nothing acknowledged
before the backup is lost; what was added after the backup is not in it."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.embedded import ServerProcess
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import Jobs, wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, cortexflow_argv
from tests.helpers.project import write_project

pytestmark = pytest.mark.slow

# Default lease (30s) and stalls: the settings a user runs with.
QUEUES_YAML = """\
queues:
  work:
    handler: backup_jobs:handle
    concurrency: 4
"""

# Appends each run to a file (outside Redis, so a restore does not roll it back); sleeps
# data.sleep seconds unless a file named `fast` exists beside it.
HANDLER = """\
import asyncio, json, os, time
from pathlib import Path

HERE = Path(__file__).parent

async def handle(data, job):
    with open(HERE / "runs.jsonl", "a") as f:
        f.write(json.dumps({"id": job.id, "t": time.time(), "pid": os.getpid()}) + "\\n")
    deadline = time.monotonic() + data.get("sleep", 0)
    while time.monotonic() < deadline and not (HERE / "fast").exists():
        await asyncio.sleep(0.05)
    return {"pid": os.getpid()}
"""

DELAY = 20.0  # the delayed jobs fall due after the restore


def _bgsave(client: redis.Redis) -> None:
    """BGSAVE and wait until the server has written it (docs/operations.md, Backups).

    Counts saves (`rdb_saves`) rather than comparing LASTSAVE: LASTSAVE has one-second
    resolution and starts at the server's start time, so a save finished in the second the
    server started leaves it unchanged.
    """
    before = client.info("persistence")["rdb_saves"]
    client.bgsave()
    wait_for(
        lambda: (
            (info := client.info("persistence"))["rdb_bgsave_in_progress"] == 0
            and info["rdb_saves"] > before
        ),
        30,
        message="BGSAVE never finished",
    )
    assert client.info("persistence")["rdb_last_bgsave_status"] == "ok"


def _counts(jobs: Jobs) -> dict[str, int]:
    stats = jobs.stats("work")
    return {state: stats[state] for state in ("active", "waiting", "delayed")}


def _runs(folder: Path) -> Counter[str]:
    path = folder / "runs.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["id"] for line in lines)


def test_a_backup_taken_while_jobs_run_restores_with_nothing_lost_or_stuck(
    tmp_path: Path, private_server: Callable[..., ServerProcess]
) -> None:
    project = write_project(tmp_path / "app", QUEUES_YAML, {"backup_jobs.py": HANDLER})
    app = project.parent
    source = private_server(tmp_path / "source", appendonly=True)  # as the embedded server
    source.start()
    procs: list[Proc] = []
    restored: ServerProcess | None = None

    def worker(url: str) -> Proc:
        argv = cortexflow_argv("worker", "work", "-f", str(project), "--redis-url", url)
        proc = Proc(argv, cwd=app, name="worker")
        procs.append(proc)
        return proc

    try:
        url = source.url
        client = redis.Redis.from_url(url)
        jobs = Jobs(project, url)

        def add(specs: list[tuple[str, dict[str, Any], JobOptions]]) -> None:
            batch = [("job", data, opts) for _, data, opts in specs]
            jobs.run("work", lambda e: e.add_bulk(batch))

        # 4 long jobs (priority first, so the worker's 4 slots take them), 6 waiting behind
        # them, 5 delayed.
        add([(f"a{i}", {"sleep": 600}, JobOptions(job_id=f"a{i}", priority=9)) for i in range(4)])
        worker(url)
        wait_for(lambda: sum(_runs(app).values()) == 4, 30, message=procs[0].log)
        add([(f"w{i}", {}, JobOptions(job_id=f"w{i}")) for i in range(6)])
        add([(f"d{i}", {}, JobOptions(job_id=f"d{i}", delay=DELAY)) for i in range(5)])
        assert _counts(jobs) == {"active": 4, "waiting": 6, "delayed": 5}

        _bgsave(client)
        backup = tmp_path / "backup"
        backup.mkdir()
        shutil.copy2(source.data_dir / "dump.rdb", backup / "dump.rdb")

        add([("late", {}, JobOptions(job_id="late"))])  # after the backup: not in it
        for proc in procs:
            proc.kill()
        source.kill()  # SIGKILL: the source server is gone for good
        client.close()

        # Restore: the RDB into a new data folder, loaded with appendonly off, then AOF turned
        # on (the server writes the AOF from what it loaded) and the server restarted with it.
        target = tmp_path / "target"
        target.mkdir(mode=0o700)
        shutil.copy2(backup / "dump.rdb", target / "dump.rdb")
        restored = private_server(target, appendonly=False)
        restored.start()
        client = redis.Redis.from_url(restored.url)
        assert client.zcard("{cortexflow:work}:active") == 4
        client.config_set("appendonly", "yes")
        wait_for(
            lambda: (
                (p := client.info("persistence"))["aof_rewrite_in_progress"] == 0
                and p["aof_rewrite_scheduled"] == 0
                and p["aof_enabled"] == 1
            ),
            30,
            message="the AOF was never written",
        )
        client.close()
        restored.stop()
        restored = private_server(target, appendonly=True)
        restored.start()
        url = restored.url
        client = redis.Redis.from_url(url)
        jobs = Jobs(project, url)
        assert _counts(jobs) == {"active": 4, "waiting": 6, "delayed": 5}

        (app / "fast").touch()  # the long jobs' second runs end at once
        restarted_at = time.time()
        worker(url)
        worker(url)
        wait_workers_ready(client, "work", 2)
        ids = (
            [f"a{i}" for i in range(4)] + [f"w{i}" for i in range(6)] + [f"d{i}" for i in range(5)]
        )
        wait_for(
            lambda: jobs.stats("work")["completed"] == len(ids),
            DELAY + 60,
            message=lambda: f"{jobs.stats('work')}\n{procs[-1].log()}",
        )
        stats = jobs.stats("work")
        assert (stats["waiting"], stats["active"], stats["delayed"], stats["failed"]) == (0,) * 4

        async def read(e: QueueEngine) -> dict[str, Job | None]:
            return {i: await e.get_job(i) for i in [*ids, "late"]}

        found = jobs.run("work", read)
        assert found.pop("late") is None  # added after the backup: lost with the restore
        assert all(j is not None and j.state == "completed" for j in found.values()), found
        runs = _runs(app)
        # The jobs running at the backup ran again (once each, after their lease), the others
        # once; every run of a restored job after the restart started on a new worker.
        assert runs == Counter({**{f"a{i}": 2 for i in range(4)}, **{i: 1 for i in ids[4:]}})
        assert all(found[f"a{i}"].started == 2 for i in range(4))  # type: ignore[union-attr]
        assert all(found[f"a{i}"].stalls == 1 for i in range(4))  # type: ignore[union-attr]
        for i in range(5):
            job = found[f"d{i}"]
            assert job is not None and job.processed_at is not None
            assert job.processed_at >= job.created_at + DELAY - 0.002  # never early
        assert all(
            (found[i].processed_at or 0) >= restarted_at - 1  # type: ignore[union-attr]
            for i in ids[4:]
        )
    finally:
        for proc in procs:
            proc.kill()
        source.kill()
        if restored is not None:
            restored.kill()
