"""Fan-outs and joins under faults, in the spirit of the Jepsen-style suite of the worker
(tests/worker/test_faults.py), on real worker processes and a private Valkey with AOF
(everysec). A stream of batches fans out 0-6 items each (some fail for good), joined by one
summary per batch, while workers are killed with -9 (and replaced) and Valkey is killed with
-9 and restarted. At the end, for every acknowledged batch (but those acknowledged in the last
2.5 s before a Valkey kill, which everysec may lose):

- the batch completed and every one of its items exists and ended (none lost, none stuck);
- exactly one summary exists (its id is derived: a second one cannot hide), it ran, and it
  counts every item once: total, completed + failed, one result or omitted id per item;
- runs beyond the attempts recorded are counted and printed (real re-runs after a fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.embedded import ServerProcess
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import engine_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

HANDLERS = r"""
import asyncio, json, os, time
from cortexflow import UnrecoverableError

def _record(queue, job):
    line = json.dumps({"q": queue, "id": job.id}) + "\n"
    fd = os.open(os.environ["TEST_RUNS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

async def fan(data, job):
    _record("batches", job)
    await asyncio.sleep(0.01)
    return {"items": [{"k": str(i), "fail": i in data["fail"]} for i in range(data["n"])]}

async def item(data, job):
    _record("items", job)
    if data["fail"]:
        raise UnrecoverableError("item " + data["k"] + " cannot be done")
    await asyncio.sleep(0.05)
    return {"k": data["k"]}

async def summary(data, job):
    _record("summaries", job)
    return {"seen": data["total"]}
"""

CONFIG = """
stop_timeout: 3s
defaults:
  lease: 2s
  max_stalls: 5
  attempts: 3
  backoff: {type: fixed, delay: 100ms}
  retention: {completed: {count: 100000}, failed: {count: 100000}}
queues:
  batches:
    handler: pipe:fan
    concurrency: 4
    next:
      - to: items
        name: item
        for_each: /items
        id: [$id, /k]
        join: {to: summaries, name: summarise, on_child_failure: collect}
  items:
    handler: pipe:item
    concurrency: 8
  summaries:
    handler: pipe:summary
    concurrency: 4
"""
QUEUES = ["batches", "items", "items", "summaries"]


@pytest.mark.slow
def test_fan_outs_and_joins_survive_kill_9_of_workers_and_valkey(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
    private_server: Callable[..., ServerProcess],
) -> None:
    server = private_server(tmp_path / "data", appendonly=True)
    server.start()
    monkeypatch.setenv("TEST_RUNS_FILE", str(tmp_path / "runs.jsonl"))
    try:
        run_faults(tmp_path, server.url, workers, [server], redis.Redis.from_url(server.url))
    finally:
        server.kill()


def run_faults(
    tmp_path: Path,
    url: str,
    workers: Callable[..., Proc],
    servers: list[ServerProcess],
    client: Any,
) -> None:
    """The stream, the faults and the checks (the Cluster variant passes its primaries as
    ``servers``, one of which each server fault kills, and a Cluster ``client``)."""
    runs_file = Path(os.environ["TEST_RUNS_FILE"])
    procs: list[Proc] = []
    try:
        cfg = write_project(tmp_path, CONFIG, {"pipe.py": HANDLERS})
        config = load_config(cfg)
        procs = [workers(cfg, q, url) for q in QUEUES]
        rng = random.Random()
        acked: dict[str, tuple[float, dict[str, object]]] = {}
        server_kills: list[float] = []
        faults: Counter[str] = Counter()

        async def produce(stop_at: float) -> None:
            n = 0
            while time.monotonic() < stop_at:
                with contextlib.suppress(Exception):
                    async with engine_for(url, config.queues["batches"]) as e:
                        while time.monotonic() < stop_at:
                            size = rng.choice([0, 1, 3, 6])
                            data = {
                                "n": size,
                                "fail": [i for i in range(size) if rng.random() < 0.2],
                            }
                            await e.add("b", data, JobOptions(job_id=f"b{n}"))
                            acked[f"b{n}"] = (time.monotonic(), data)
                            n += 1
                            await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)

        def revive() -> None:
            for i, p in enumerate(procs):
                if not p.alive():
                    p.kill()
                    procs[i] = workers(cfg, QUEUES[i], url)

        async def inject(stop_at: float) -> None:
            await asyncio.sleep(2)
            while time.monotonic() < stop_at:
                revive()
                fault = "server" if faults["kill"] >= 3 and faults["server"] < 2 else "kill"
                if rng.random() < 0.3 and faults["server"] < 2:
                    fault = "server"
                if fault == "kill":
                    victim = rng.randrange(len(procs))
                    procs[victim].kill()
                    procs[victim] = workers(cfg, QUEUES[victim], url)
                else:
                    server = rng.choice(servers)
                    server_kills.append(time.monotonic())
                    server.kill()
                    await asyncio.sleep(rng.uniform(1, 2))
                    await asyncio.to_thread(server.start)
                faults[fault] += 1
                await asyncio.sleep(rng.uniform(1, 2))

        async def stream() -> None:
            stop_at = time.monotonic() + 20
            await asyncio.gather(produce(stop_at), inject(stop_at))

        asyncio.run(stream())

        def job(queue: str, jid: str) -> dict[bytes, bytes]:
            return client.hgetall(f"{{cortexflow:{queue}}}:j:{jid}")  # type: ignore[return-value]

        # A batch acknowledged in the last 2.5 s before a Valkey kill may be lost with the
        # writes the server held back (appendfsync everysec postpones AOF writes up to 2 s
        # while a background fsync runs): checked only if it is there.
        batches = [b for b, (t, _) in acked.items()
                   if job("batches", b) or not any(0 <= k - t <= 2.5 for k in server_kills)]  # fmt: skip

        def unsettled() -> list[str]:
            out = []
            for b in batches:
                n = int(acked[b][1]["n"])  # type: ignore[call-overload]
                if job("batches", b).get(b"state") != b"completed":  # lost, or stuck
                    out.append(f"batches/{b}")
                    continue
                for i in range(n):
                    if job("items", f"{b}-{i}").get(b"state") not in (b"completed", b"failed"):
                        out.append(f"items/{b}-{i}")
                if job("summaries", f"summarise-{b}").get(b"state") != b"completed":
                    out.append(f"summaries/summarise-{b}")
            return out

        deadline = time.monotonic() + 90
        while (left := unsettled()) and time.monotonic() < deadline:
            revive()
            time.sleep(1)
        assert not left, f"{len(left)} not settled: {left[:20]}"

        runs = Counter(
            (r["q"], r["id"]) for r in map(json.loads, runs_file.read_text().splitlines())
        )
        duplicates = 0
        for b in batches:
            n = int(acked[b][1]["n"])  # type: ignore[call-overload]
            fail = set(acked[b][1]["fail"])  # type: ignore[call-overload]
            s = job("summaries", f"summarise-{b}")
            d = json.loads(s[b"data"])
            assert (d["total"], d["completed"], d["failed"], d["removed"]) == (
                n,
                n - len(fail),
                len(fail),
                0,
            ), (b, d)
            counted = [r["id"] for r in d["results"]] + d["omitted"]
            assert sorted(counted) == sorted(f"{b}-{i}" for i in range(n)), (b, counted)
            assert json.loads(s[b"parent"]) == ["batches", b]
            assert runs[("summaries", f"summarise-{b}")] >= 1
            for queue, jid in [("batches", b), ("summaries", f"summarise-{b}")] + [
                ("items", f"{b}-{i}") for i in range(n)
            ]:
                made = int(job(queue, jid).get(b"attempts_made") or 0)
                duplicates += max(runs[(queue, jid)] - made, 0)
        # No summary exists for a batch beyond those: ids are derived, one per batch.
        summaries = client.zcard("{cortexflow:summaries}:completed")
        print(
            f"\npipelines: {len(acked)} acknowledged batches ({len(batches)} checked), "
            f"faults {dict(faults)}, {summaries} summaries, {duplicates} re-runs after faults"
        )
        assert summaries <= len(acked)
        assert duplicates <= 16 * faults["kill"] + 32 * faults["server"]
    finally:
        client.close()
        for p in procs:
            p.kill()
