"""cortexflow's processing rate as worker processes and Cluster primaries are added.

    python bench/scaling.py                          # 20,000 no-op jobs, 3 runs of each setup
    python bench/scaling.py --jobs 2000 --runs 1     # a quick check (~1 min)
    make bench-scaling                               # JOBS=... RUNS=... ARGS=...

Each pass queues N no-op jobs with ``add_bulk`` first, then starts the worker processes
(``cortexflow worker QUEUE``, bench/systems/cortexflow.py's queue settings: concurrency 10,
rate limit and dead-letter on) and measures the drain from 5% to 100% done, as bench/engine.py
does. The setups:

- processes: one private valkey-server (appendonly off), one queue, 1, 2 and 4 worker
  processes on it (the runs interleaved);
- primaries: a Cluster of 1 primary and one of 3 (no replicas, appendonly everysec, started by
  tests/helpers/topology.py's ``Cluster``), 6 queues chosen so that their hash tags
  ``{cortexflow:QUEUE}`` fall two on each of the 3 primaries, one worker process per queue,
  N/6 jobs each. A queue lives on one primary, so only many queues spread over a Cluster.

The medians of ``--runs`` go to stdout as a Markdown table, with the machine; progress lines
to stderr.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/scaling.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
import yaml
from redis.crc import key_slot

from bench import report
from bench.measure import BenchError, Drain, watch_processing
from bench.procs import Children, ProcessTree, loadavg, private_server, tail
from bench.session import session
from bench.systems import Context
from bench.systems import cortexflow as cf
from cortexflow.engine.cluster import ClusterClient, owner
from cortexflow.engine.connection import connect
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.queue import QueueEngine
from tests.helpers.topology import Cluster

PROCESSES = (1, 2, 4)
PRIMARIES = (1, 3)
SPREAD_QUEUES = 6
SLOTS = 16384


@dataclass(frozen=True)
class Setup:
    queues: tuple[str, ...]
    per_queue: int  # worker processes of each queue
    primaries: int  # 0: one plain server

    @property
    def processes(self) -> int:
        return len(self.queues) * self.per_queue

    @property
    def label(self) -> str:
        def n(count: int, one: str, many: str) -> str:
            return f"{count} {one if count == 1 else many}"

        where = "one server"
        if self.primaries:
            where = f"Cluster, {n(self.primaries, 'primary', 'primaries')}"
        queues = n(len(self.queues), "queue", "queues")
        return f"{where}, {queues} x {n(self.per_queue, 'process', 'processes')}"


@dataclass
class Row:
    setup: Setup
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)


def spread_queues(count: int = SPREAD_QUEUES, primaries: int = 3) -> tuple[str, ...]:
    """``count`` queue names whose slots fall evenly on the equal slot ranges that
    `valkey-cli --cluster create` gives ``primaries`` nodes."""
    want = count // primaries
    taken: dict[int, list[str]] = {i: [] for i in range(primaries)}
    i = 0
    while sum(len(v) for v in taken.values()) < count:
        name = f"spread{i}"
        third = key_slot(QueueKeys(cf.PREFIX, name).meta.encode()) * primaries // SLOTS
        if len(taken[third]) < want:
            taken[third].append(name)
        i += 1
    return tuple(sorted(n for names in taken.values() for n in names))


def write_config(workdir: Path, spread: Sequence[str]) -> Path:
    """bench/systems/cortexflow.py's queues.yaml plus the spread queues, settings copied."""
    cf.prepare(workdir)
    data = yaml.safe_load(cf.QUEUES_YAML)
    for name in spread:
        data["queues"][name] = dict(data["queues"][cf.QUEUE])
    path = workdir / "queues.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def run_pass(ctx: Context, setup: Setup, file: Path, run: int) -> tuple[float, float]:
    """Queue the jobs, drain them with the setup's workers; (jobs/s, worker CPU us per job)."""
    client = connect(ctx.url)
    config = cf.build_config(ctx.workdir, ctx.url)
    procs = []
    try:
        engines = [QueueEngine(client, config.queue(q), cf.PREFIX) for q in setup.queues]
        share = ctx.jobs // len(engines)
        for engine in engines:
            await engine.obliterate(force=True)
            await cf.add_bulk(engine, 0, share)
        metas = [QueueKeys(cf.PREFIX, q).meta for q in setup.queues]
        for i, queue in enumerate(q for q in setup.queues for _ in range(setup.per_queue)):
            log = ctx.workdir / f"worker-{setup.primaries}-{setup.processes}-{run}-{i}.log"
            argv = cf.worker_argv(str(file), ctx.url, queue=queue)
            procs.append(ctx.children.spawn(argv, env=ctx.child_env(), cwd=ctx.workdir, log=log))
        trees = [ProcessTree(p, include_root=True) for p in procs]

        async def done() -> int:
            return sum([int(await client.hget(m, "completed_total") or 0) for m in metas])

        follow = Drain(
            done,
            lambda: sum(t.cpu() for t in trees),
            lambda: all(p.poll() is None for p in procs),
            ctx.server_pid,
        )
        budget = ctx.time_left(max(120.0, ctx.jobs / 50))
        rate, cpu_us, _server = await watch_processing(follow, share * len(engines), budget)
        return rate, cpu_us
    except BenchError as exc:
        logs = sorted(ctx.workdir.glob("worker-*.log"))
        raise BenchError(f"{exc}\n--- {logs[-1].name} ---\n{tail(logs[-1])}") from None
    finally:
        for proc in procs:
            ctx.children.stop(proc)
        await client.aclose()


def measure(ctx: Context, rows: Sequence[Row], file: Path, runs: int) -> None:
    """``runs`` passes of every row on one server (or cluster), the order reversed every
    other run."""
    for run in range(runs):
        for row in rows if run % 2 == 0 else list(reversed(rows)):
            started, load = time.perf_counter(), loadavg()
            rate, cpu_us = uvloop.run(run_pass(ctx, row.setup, file, run))
            row.rates.append(rate)
            row.cpu_us.append(cpu_us)
            row.loads.append(load)
            print(
                f"  [run {run + 1}/{runs}] {row.setup.label:48s} {rate:>8,.0f} jobs/s  "
                f"cpu {cpu_us:>6,.0f} us/job  load {load:.1f}  "
                f"({time.perf_counter() - started:.1f}s)",
                file=sys.stderr,
                flush=True,
            )


@contextmanager
def cluster(root: Path, primaries: int) -> Iterator[tuple[str, int]]:
    """A started Cluster's URL and one node's pid (for the drain's server CPU column)."""
    topology = Cluster(root, primaries, 0, die_with_parent=True)
    try:
        topology.start()
        pid = topology.nodes[0].pid
        assert pid is not None
        yield topology.url(), pid
    finally:
        topology.stop()


async def spread_of(url: str, queues: Sequence[str]) -> dict[str, int]:
    """How many of ``queues`` each primary serves."""
    client = connect(url)
    assert isinstance(client, ClusterClient)
    try:
        nodes = [await owner(client, QueueKeys(cf.PREFIX, q).meta) for q in queues]
    finally:
        await client.aclose()
    return {node: nodes.count(node) for node in sorted(set(nodes))}


def run_all(args: argparse.Namespace, workdir: Path, children: Children) -> list[Row]:
    spread = spread_queues()
    file = write_config(workdir, spread)
    deadline = time.monotonic() + args.max_seconds
    rows = [Row(Setup((cf.QUEUE,), p, 0)) for p in PROCESSES]

    def context(url: str, pid: int) -> Context:
        return Context(workdir, url, pid, children, args.jobs, 0, 0, deadline, "off")

    with private_server(workdir / "valkey", appendonly=False) as server:
        assert server.pid is not None
        measure(context(server.url, server.pid), rows, file, args.runs)
    for primaries in PRIMARIES:
        row = Row(Setup(spread, 1, primaries))
        with cluster(workdir / f"cluster{primaries}", primaries) as (url, pid):
            spread_by_node = uvloop.run(spread_of(url, spread))
            print(f"  queues per primary: {sorted(spread_by_node.values())}", file=sys.stderr)
            measure(context(url, pid), [row], file, args.runs)
        rows.append(row)
    return rows


def render(rows: Sequence[Row], args: argparse.Namespace, info: dict[str, object]) -> str:
    med = statistics.median
    lines = [
        f"cortexflow processing rate, {args.jobs:,} no-op jobs per pass, median of "
        f"{args.runs} run(s) (`python bench/scaling.py --jobs {args.jobs} --runs {args.runs}`)",
        "",
        "| setup | worker processes | jobs/s | jobs/s per process | worker CPU us/job | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if not row.rates:
            continue
        rate, n = med(row.rates), row.setup.processes
        lines.append(
            f"| {row.setup.label} | {n} | {rate:,.0f} | {rate / n:,.0f} | "
            f"{med(row.cpu_us):,.0f} | {med(row.loads):.1f} |"
        )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines += ["", report.machine_line(info), f"CPUs available to the benchmark: {cpus}"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per pass (default 20,000)")
    p.add_argument("--runs", type=int, default=3, help="runs of each setup (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    p.add_argument("--max-seconds", type=float, default=1800.0, help="give up after (1800)")
    args = p.parse_args(argv)
    if args.jobs < 600 or args.runs < 1:
        p.error("--jobs must be at least 600 and --runs at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cortexflow-scaling-"))
    info = report.machine(("redis", "uvloop"))
    print(
        f"bench/scaling.py: {args.jobs:,} jobs, {args.runs} run(s); {info['cpu']} "
        f"x{info['cores']}; {info['server']}; load {loadavg():.1f}",
        file=sys.stderr,
        flush=True,
    )
    rows: list[Row] = []
    with session(workdir, keep=args.keep) as run:
        rows = run_all(args, workdir, run.children)
    print(render(rows, args, info))
    return run.code


if __name__ == "__main__":
    sys.exit(main())
