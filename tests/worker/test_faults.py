"""Fault injection in the spirit of Jepsen's total-queue checker (slow; < 2 minutes).

A stream of jobs runs through three worker processes while random faults hit them: kill -9 of a
worker (restarted), SIGSTOP of a worker for longer than the lease then SIGCONT, kill -9 of
Valkey (AOF everysec) and a restart; handlers block the event loop, hang past their timeout, or
fail with odd text. At the end:

- every acknowledged add ended completed or failed (none lost, none stuck), except adds
  acknowledged within the last 2.5 s before a Valkey kill -9 (with appendfsync everysec the
  server holds its AOF writes back for up to 2 s while a background fsync runs, so a kill -9
  may lose them; counted and printed);
- duplicate runs are counted and printed (allowed: a process died or froze past its lease);
- no worker leaked a concurrency slot (each live worker reports 0 active);
- every job that failed for good is in its dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.embedded import ServerProcess
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import engine_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

# The lease promise holds on the embedded default (unix socket) and over TCP.
pytestmark = pytest.mark.transports

HANDLER = r"""
import asyncio, json, os, time


RUNS = os.environ["TEST_RUNS_FILE"]

def _record(job):
    line = json.dumps({"id": job.id, "pid": os.getpid(), "t": time.time()}) + "\n"
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

async def handle(data, job):
    _record(job)
    kind = data["kind"]
    if kind == "block":
        time.sleep(0.8)  # blocks the event loop
    elif kind == "hang":
        await asyncio.sleep(30)  # past the 2 s timeout
    elif kind == "fail":
        raise ValueError('odd "text"\n\ttab, ünïcödé ✓, \U0001d518, \\backslash, ' + "x" * 3000)
    else:
        await asyncio.sleep(0.01)
    return {"ok": True}

async def sink(data, job):
    return None
"""

KINDS = ["ok"] * 16 + ["block", "hang", "fail"]


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["own-process", "shared-process"])
def test_random_faults_lose_no_acknowledged_job(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
    private_server: Callable[..., ServerProcess],
    shared: bool,
) -> None:
    server = private_server(tmp_path / "data", appendonly=True)
    server.start()
    runs_file = tmp_path / "runs.jsonl"
    monkeypatch.setenv("TEST_RUNS_FILE", str(runs_file))  # the workers inherit it
    procs: list[Proc] = []
    try:
        url = server.url
        cfg = write_project(
            tmp_path,
            """
            stop_timeout: 5s
            defaults:
              process: {process}
            queues:
              jepsen:
                handler: faulty:handle
                concurrency: 8
                lease: 2s
                timeout: 2s
                attempts: 2
                max_stalls: 5
                backoff: {type: fixed, delay: 100ms}
                dead_letter: dlq
                retention: {completed: {count: 100000}, failed: {count: 100000}}
              dlq:
                handler: faulty:sink
                retention: {completed: {count: 100000}}
            """,
            {"faulty.py": HANDLER},
        )
        # Shared: the three jepsen workers run dlq in the same processes too (and the fourth
        # runs dlq alone); else each queue has processes of its own.
        cfg.write_text(cfg.read_text().replace("{process}", "both" if shared else "null"))
        jepsen_args = ("--process", "both") if shared else ()
        config = load_config(cfg)

        def start(i: int) -> Proc:
            if i < 3:
                return workers(cfg, "jepsen", url, *jepsen_args)
            return workers(cfg, "dlq", url)

        procs = [start(i) for i in range(4)]
        rng = random.Random()
        acked: dict[str, float] = {}
        server_kills: list[float] = []
        faults: Counter[str] = Counter()

        async def produce(stop_at: float) -> None:
            n = 0
            while time.monotonic() < stop_at:
                with contextlib.suppress(Exception):
                    async with engine_for(url, config.queues["jepsen"]) as e:
                        while time.monotonic() < stop_at:
                            jid = f"f{n}"
                            data = {"kind": rng.choice(KINDS)}
                            await e.add("n", data, JobOptions(job_id=jid))
                            acked[jid] = time.monotonic()
                            n += 1
                            await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)

        def revive() -> None:
            """What a supervisor does: replace a worker that exited."""
            for i, p in enumerate(procs):
                if not p.alive():
                    p.kill()
                    procs[i] = start(i)

        async def inject(stop_at: float) -> None:
            await asyncio.sleep(3)
            while time.monotonic() < stop_at:
                revive()
                fault = rng.choice(["kill", "kill", "stop", "server"])
                if fault == "server" and faults["server"] >= 2:
                    fault = "stop"
                running = [p for p in procs[:3] if p.alive()]
                victim = rng.choice(running)
                if fault == "kill":
                    victim.kill()
                    procs[procs.index(victim)] = start(procs.index(victim))
                elif fault == "stop":
                    os.killpg(victim.pid, signal.SIGSTOP)
                    await asyncio.sleep(2.0 * 1.2 + 1)  # longer than the (jittered) lease
                    os.killpg(victim.pid, signal.SIGCONT)
                else:
                    server_kills.append(time.monotonic())
                    server.kill()
                    await asyncio.sleep(rng.uniform(1, 3))
                    await asyncio.to_thread(server.start)
                faults[fault] += 1
                await asyncio.sleep(rng.uniform(1, 2.5))

        async def stream() -> None:
            stop_at = time.monotonic() + 30
            await asyncio.gather(produce(stop_at), inject(stop_at))

        asyncio.run(stream())
        client = redis.Redis.from_url(url)
        ids = list(acked)

        def states() -> list[bytes | None]:
            with client.pipeline(transaction=False) as pipe:
                for jid in ids:
                    pipe.hget(f"{{cortexflow:jepsen}}:j:{jid}", "state")
                return list(pipe.execute())

        deadline = time.monotonic() + 60
        while True:
            st = states()
            pending = [s for s in st if s not in (b"completed", b"failed", None)]
            if not pending or time.monotonic() > deadline:
                break
            revive()
            time.sleep(0.5)
        missing = [jid for jid, s in zip(ids, st, strict=True) if s is None]
        window = [j for j in missing if any(0 <= k - acked[j] <= 2.5 for k in server_kills)]
        lost = sorted(set(missing) - set(window))
        stuck = Counter(s for s in st if s not in (b"completed", b"failed", None))
        failed = [jid for jid, s in zip(ids, st, strict=True) if s == b"failed"]
        runs = Counter(
            json.loads(line)["id"] for line in runs_file.read_text().splitlines() if line
        )
        with client.pipeline(transaction=False) as pipe:
            for jid in ids:
                pipe.hget(f"{{cortexflow:jepsen}}:j:{jid}", "attempts_made")
            made = [int(m or 0) for m in pipe.execute()]
        # Runs beyond the attempts recorded: a run whose process died or froze past its lease
        # (or whose outcome was lost with the server) and that ran again.
        extra = {j: runs[j] - m for j, m in zip(ids, made, strict=True) if runs[j] > m}
        duplicates = sum(extra.values())
        print(
            f"\njepsen: {len(ids)} acknowledged adds, faults {dict(faults)}, "
            f"{len(failed)} failed for good, {duplicates} duplicate runs over {len(extra)} "
            f"jobs, {len(window)} adds lost in the AOF everysec window, {len(lost)} lost "
            "otherwise"
        )
        assert not lost, lost[:20]
        assert not stuck, stuck
        # Only faults duplicate: at most the jobs in flight where a process died or froze
        # (8 per worker), or in every worker when the server went.
        assert duplicates <= 8 * (faults["kill"] + faults["stop"]) + 24 * faults["server"]
        # Dead letters: every job that failed for good has its envelope in the dlq queue.
        deadline = time.monotonic() + 20
        while True:
            with client.pipeline(transaction=False) as pipe:
                for jid in failed:
                    pipe.exists(f"{{cortexflow:dlq}}:j:{jid}")
                in_dlq = pipe.execute()
            if all(in_dlq) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert all(in_dlq), [j for j, ok in zip(failed, in_dlq, strict=True) if not ok][:20]
        # No leaked slot: every live worker reports 0 active once the queue is idle.
        deadline = time.monotonic() + 15
        while True:
            infos = [json.loads(v) for v in client.hvals("{cortexflow:jepsen}:winfo")]
            live = [i for i in infos if any(p.pid == i["pid"] and p.alive() for p in procs)]
            if live and all(i["active"] == 0 for i in live):
                break
            assert time.monotonic() < deadline, infos
            time.sleep(0.5)
        client.close()
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                os.killpg(p.pid, signal.SIGCONT)
            p.kill()
        server.kill()
