"""What a `next:` hand-off costs, against an add of the same job in the same batch.

    .venv/bin/python bench/handoffs.py                # 20,000 jobs, batches of 50, 3 rounds
    .venv/bin/python bench/handoffs.py --jobs 5000 --rounds 1

One private valkey-server (appendonly off). Each round leases N parent jobs (not measured),
then records their completions in batches of B with one of three shapes, and measures the
server's CPU (INFO cpu) and this process's CPU per job:

- plain:   the finish call alone (a queue without next:);
- route:   the finish call carrying one hand-off per outcome (a route's job, written by it);
- add:     the plain finish call, then an add of the same B jobs in one call (what a handler's
           add_job did, at best: batched).

"hand-off" is route - plain, "add" is add - plain, per job: the claim is hand-off <= add.
The client's CPU includes evaluating the route (engine/routes.py) and encoding its data.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import private_server
from cortexflow.config.model import QueueConfig, Route
from cortexflow.engine import connect
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.handoffs import Router
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import QueueEngine

PREFIX = "bench"
RESULT = {"next": {"userId": "u-1", "message": "hello", "n": 1}}


async def server_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def one_round(url: str, jobs: int, batch: int, shape: str) -> tuple[float, float]:
    route = Route(to="child", name="next", data="/next", id=("c", "$id"))
    parent_cfg = QueueConfig(
        name="parent", handler="x:y", routes=(route,) if shape == "route" else ()
    )
    child_cfg = QueueConfig(name="child", handler="x:y")
    client = connect(url)
    try:
        await client.flushall()
        parent = QueueEngine(client, parent_cfg, PREFIX)
        child = QueueEngine(client, child_cfg, PREFIX)
        for i in range(0, jobs, 1000):
            await parent.add_bulk(
                [("p", {}, JobOptions(job_id=f"p{j}")) for j in range(i, min(i + 1000, jobs))]
            )
        consumer = QueueConsumer(parent, "w", client)
        leased = []
        while len(leased) < jobs:
            leased += (await consumer.fetch(500)).jobs
        router = Router(
            parent_cfg, {"parent": parent_cfg, "child": child_cfg}.__getitem__, PREFIX, outbox=False
        )
        s0, c0 = await server_cpu(client), time.process_time()
        for i in range(0, jobs, batch):
            chunk = leased[i : i + batch]
            outcomes = []
            for f in chunk:
                o = Outcome(OutcomeKind.COMPLETED, f.job.id, f.token, result=json.dumps(RESULT))
                if shape == "route":
                    groups, children = router.completed(f.job, RESULT)
                    o = dataclasses.replace(o, handoffs=groups, children=children)
                outcomes.append(o)
            await consumer.finish(outcomes)
            if shape == "add":
                await child.add_bulk(
                    [("next", RESULT["next"], JobOptions(job_id=f"c-{f.job.id}")) for f in chunk]
                )
        s1, c1 = await server_cpu(client), time.process_time()
        if shape != "plain":
            assert await client.zcard(child.keys.wait) == jobs
        return (s1 - s0) / jobs * 1e6, (c1 - c0) / jobs * 1e6
    finally:
        await client.aclose()


async def main(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        private_server(Path(tmp), appendonly=False) as server,
    ):
        samples: dict[str, list[tuple[float, float]]] = {"plain": [], "route": [], "add": []}
        for _ in range(args.rounds):
            for shape, got in samples.items():  # interleaved
                got.append(await one_round(server.url, args.jobs, args.batch, shape))
    med = {
        k: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v))
        for k, v in samples.items()
    }
    print(
        f"{args.jobs:,} jobs, batches of {args.batch}, {args.rounds} round(s); medians, us per job"
    )
    print(f"{'shape':<8} {'server':>8} {'client':>8}")
    for k, (s, c) in med.items():
        print(f"{k:<8} {s:8.1f} {c:8.1f}")
    for k in ("route", "add"):
        label = "hand-off" if k == "route" else "add"
        s, c = med[k][0] - med["plain"][0], med[k][1] - med["plain"][1]
        print(f"{label} (over plain): server {s:.1f} us, client {c:.1f} us, total {s + c:.1f} us")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(p.parse_args()))
