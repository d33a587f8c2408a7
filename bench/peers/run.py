"""``python -m bench.peers`` (``make bench-peers``): every installed system, same server, same N,
interleaved runs; a Markdown table of medians (min..max) and the machine on stdout.

    python -m bench.peers                          # 20,000 jobs, 3 runs, every system installed
    python -m bench.peers --jobs 2000 --runs 1     # a quick look
    python -m bench.peers --systems cortexflow,bullmq --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis

from bench import report as engine_report
from bench.measure import BenchError
from bench.peers import measure, report
from bench.peers.adapters import NAMES, load
from bench.procs import private_server
from bench.session import session

DISTS = ("taskiq", "taskiq-redis", "dramatiq", "saq", "rq", "celery", "redis")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per pass (default 20,000)")
    p.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3)")
    p.add_argument("--systems", default=",".join(NAMES), help="comma-separated subset")
    p.add_argument("--pass-seconds", type=float, default=600.0, help="limit per step (600)")
    p.add_argument("--max-seconds", type=float, default=5400.0, help="limit in all (5,400)")
    p.add_argument("--json", type=Path, help="also write every pass and the machine here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in args.systems:
        if s not in NAMES:
            p.error(f"unknown system {s!r}; choose from {', '.join(NAMES)}")
    if args.jobs < 100:
        p.error("--jobs must be at least 100")
    return args


def available(names: Sequence[str]) -> list[str]:
    ready = []
    for name in names:
        why = load(name).missing()
        if why:
            print(f"skipping {name}: {why}", file=sys.stderr)
        else:
            ready.append(name)
    return ready


def run_all(
    args: argparse.Namespace, names: list[str], setup: measure.Setup
) -> Iterator[measure.PeerResult]:
    """``args.runs`` rounds; each round starts one system later, so none always goes first."""
    deadline = time.monotonic() + args.max_seconds
    with redis.Redis.from_url(setup.url, decode_responses=True, socket_timeout=30) as admin:
        for run in range(args.runs):
            shift = run % len(names)
            for name in names[shift:] + names[:shift]:
                if time.monotonic() > deadline:
                    raise BenchError("out of time (--max-seconds)")
                res = measure.run_pass(setup, load(name), admin, run)
                print(report.per_pass_line(res), file=sys.stderr, flush=True)
                yield res
        admin.flushall()


def render(
    args: argparse.Namespace,
    names: list[str],
    results: list[measure.PeerResult],
    info: dict[str, Any],
) -> str:
    labels = {name: load(name).label() for name in names}
    head = (
        f"{args.jobs:,} no-op jobs per pass ({args.jobs // 4:,} added one call at a time, the "
        f"rest in bulk), {args.runs} interleaved run(s); medians (min..max)"
    )
    machine = engine_report.machine_line(info).replace("machine: ", "Machine: ")
    return "\n\n".join([head, report.table(results, labels), machine])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = available(args.systems)
    info = engine_report.machine(DISTS)
    workdir = Path(tempfile.mkdtemp(prefix="cortexflow-peers-"))
    results: list[measure.PeerResult] = []
    with (
        session(workdir, keep=args.keep) as run,
        private_server(workdir / "valkey", appendonly=False) as server,
    ):
        setup = measure.Setup(server.url, workdir, args.jobs, run.children, args.pass_seconds)
        for res in run_all(args, names, setup):  # kept as they come, if interrupted too
            results.append(res)
    if results:
        print(render(args, names, results, info))
    if args.json:
        doc = {"jobs": args.jobs, "runs": [asdict(r) for r in results], "machine": info}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return run.code
