"""``python -m bench.e2e``: the shipped queues.yaml under ``cortexflow up`` on a private Valkey
(appendonly everysec, as the embedded server runs), replies by email to a local SMTP server.

- **burst**: N webhooks added with add_bulk; webhooks/s from the first add to the last email, and
  jobs/s from the first add until every queue is empty (each webhook makes 5 jobs: webhook,
  message, notification, email, analytics);
- **steady**: M webhooks added one at a time at a fixed rate; p50/p99 of enqueue -> email.

    python -m bench.e2e                              # 2,000 burst, 600 steady at 30/s
    python -m bench.e2e --jobs 500 --steady 200 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.e2e.mailbox import Mailbox, smtp_server
from bench.e2e.webhooks import APP_SECRET, address, webhook_job
from bench.measure import BenchError
from bench.procs import Children, private_server, tail
from bench.session import session
from cortexflow import get_queue_manager
from cortexflow.api.manager import QueueManager

REPO = Path(__file__).resolve().parents[2]
QUEUE = "webhook-processing"
JOBS_PER_WEBHOOK = 5  # webhook, message, notification (email), email, analytics
BULK = 100


@dataclass(frozen=True)
class Stack:
    folder: Path
    url: str
    mailbox: Mailbox
    deadline: float


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=2000, help="webhooks in the burst (2,000)")
    p.add_argument("--steady", type=int, default=600, help="webhooks in the steady phase (600)")
    p.add_argument("--rate", type=float, default=30.0, help="steady webhooks per second (30)")
    p.add_argument("--max-seconds", type=float, default=900.0, help="limit in all (900)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    return p.parse_args(argv)


def project(folder: Path) -> Path:
    """A copy of the shipped queues.yaml and its payload schemas."""
    shutil.copy(REPO / "queues.yaml", folder / "queues.yaml")
    shutil.copytree(REPO / "schemas", folder / "schemas")
    return folder / "queues.yaml"


async def wait_emails(stack: Stack, addresses: set[str], what: str) -> None:
    while stack.mailbox.count(addresses) < len(addresses):
        if time.monotonic() > stack.deadline:
            got = stack.mailbox.count(addresses)
            raise BenchError(f"{what}: {got} of {len(addresses)} emails arrived in time")
        await asyncio.sleep(0.01)


async def burst(stack: Stack, manager: QueueManager, n: int) -> dict[str, float]:
    jobs = [{"name": "webhook", "data": webhook_job("burst", i)} for i in range(n)]
    addresses = {address("burst", i) for i in range(n)}
    start = time.time()
    for first in range(0, n, BULK):
        await manager.add_bulk(QUEUE, jobs[first : first + BULK])
    added = time.time()
    await wait_emails(stack, addresses, "burst")
    last = max(stack.mailbox.arrived[a] for a in addresses)
    idle = await wait_idle(stack, manager)
    return {
        "add_s": added - start,
        "webhooks_s": n / (last - start),
        "jobs_s": n * JOBS_PER_WEBHOOK / (idle - start),
    }


async def wait_idle(stack: Stack, manager: QueueManager) -> float:
    """The time when no queue has a waiting, active or delayed job (analytics lags the email)."""
    while True:
        now = time.time()
        stats = await manager.get_all_queue_stats()
        if not any(s["waiting"] or s["active"] or s["delayed"] for s in stats):
            return now
        if time.monotonic() > stack.deadline:
            raise BenchError("the queues did not empty in time")
        await asyncio.sleep(0.02)


async def steady(stack: Stack, manager: QueueManager, n: int, rate: float) -> list[float]:
    """Open loop: webhook k is added at start + k / rate (or as soon as possible after)."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for k in range(n):
        await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
        sent[address("steady", k)] = time.time()
        await manager.add_job(QUEUE, "webhook", webhook_job("steady", k))
    await wait_emails(stack, set(sent), "steady")
    return sorted(stack.mailbox.times(sent))


def quantile(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def measure(stack: Stack, config: Path, args: argparse.Namespace) -> dict[str, Any]:
    async with get_queue_manager(config=config, redis_url=stack.url) as manager:
        warm = webhook_job("warm", 0)  # every worker up and its scripts loaded
        await manager.add_job(QUEUE, "webhook", warm)
        await wait_emails(stack, {address("warm", 0)}, "warm-up")
        out: dict[str, Any] = await burst(stack, manager, args.jobs)
        latencies = await steady(stack, manager, args.steady, args.rate)
        out["p50_ms"] = quantile(latencies, 0.50) * 1000
        out["p99_ms"] = quantile(latencies, 0.99) * 1000
        out["max_ms"] = (latencies[-1] if latencies else float("nan")) * 1000
        stats = await manager.get_all_queue_stats()
        out["failed"] = sum(int(s.get("failed", 0)) for s in stats)
    return out


def run(args: argparse.Namespace, folder: Path, children: Children) -> dict[str, Any]:
    config = project(folder)
    with contextlib.ExitStack() as stack_:
        server = stack_.enter_context(private_server(folder / "valkey", appendonly=True))
        mailbox, smtp_url = stack_.enter_context(smtp_server())
        env = {
            **{k: v for k, v in os.environ.items() if k != "CORTEXFLOW_PARENT_PID"},
            "SMTP_URL": smtp_url,
            "SMTP_FROM": "bot@cortex.example",
            "WHATSAPP_APP_SECRET": APP_SECRET,
        }
        argv = [sys.executable, "-m", "cortexflow", "up", "-f", str(config)]
        log = folder / "up.log"
        up = children.spawn([*argv, "--redis-url", server.url], env=env, cwd=folder, log=log)
        stack = Stack(folder, server.url, mailbox, time.monotonic() + args.max_seconds)
        try:
            return asyncio.run(measure(stack, config, args))
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- cortexflow up ---\n{tail(log)}") from None
        finally:
            children.stop(up, grace=15.0)


def render(args: argparse.Namespace, r: dict[str, Any], info: dict[str, Any]) -> str:
    fmt = report.fmt
    return "\n".join(
        [
            "| case | webhooks/s | jobs/s | enqueue -> email p50 / p99 (max) | failed jobs |",
            "|---|---|---|---|---|",
            f"| burst: {args.jobs:,} webhooks by add_bulk x{BULK} (added in {r['add_s']:.2f} s) "
            f"| {fmt(r['webhooks_s'])} | {fmt(r['jobs_s'])} | - | {r['failed']} |",
            f"| steady: {args.steady:,} webhooks at {args.rate:g}/s, one add_job each "
            f"| {args.rate:g} | {fmt(args.rate * JOBS_PER_WEBHOOK)} | {fmt(r['p50_ms'], 1)} / "
            f"{fmt(r['p99_ms'], 1)} ({fmt(r['max_ms'], 1)}) ms | |",
            "",
            report.machine_line(info).replace("machine: ", "Machine: "),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="cortexflow-e2e-"))
    info = report.machine(("redis", "aiosmtpd"))
    with session(folder, keep=args.keep) as s:
        result = run(args, folder, s.children)
        print(render(args, result, info))
    return s.code
