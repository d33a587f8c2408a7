"""cortexflow vs plain taskiq-redis: N no-op jobs through each, one worker process, one server.

    .venv/bin/python bench/engine.py                 # 20,000 jobs, 3 interleaved runs + 1 with AOF
    .venv/bin/python bench/engine.py --quick         # 2,000 jobs, 1 run each (smoke test)
    .venv/bin/python bench/engine.py --json out.json

Starts one private valkey-server (appendonly off) and FLUSHALLs it before every pass; each pass
enqueues N/4 jobs one awaited call at a time and 3N/4 in bulk, then one worker process drains
them (rate and CPU per job from 5% to 100% done), then 200 idle pickups. The systems alternate
their order between runs; the table shows medians. Then (unless --aof-repeat 0) the same once
against a second server with appendonly yes / everysec. Method: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/engine.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
import uvloop

from bench import report
from bench.measure import STAMPS, BenchError, PassResult
from bench.procs import Children, loadavg, private_server
from bench.profile import summarize_profile
from bench.session import session
from bench.systems import Context, all_systems, baseline
from bench.systems import cortexflow as cf_system

PLAN = (("off", False), ("everysec", True))  # (label, appendonly)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add = p.add_argument
    add("--jobs", type=int, help="jobs per pass (default 20,000)")
    add("--quick", action="store_true", help="defaults of 2,000 jobs, 1 run (+1 AOF), 50 pickups")
    add("--repeat", type=int, help="interleaved runs per system (default 3)")
    add("--aof-repeat", type=int, help="runs with appendonly everysec (default 1; 0 skips it)")
    add("--pickups", type=int, help="idle pickup samples (default 200)")
    add("--gather-chunk", type=int, default=100, help="taskiq 'bulk': kiq() per gather (100)")
    add("--systems", default="cortexflow,taskiq-redis", help="comma-separated subset to run")
    add("--json", type=Path, help="also write every run and the medians here")
    add(
        "--cf-worker-cmd",
        help="run this instead of `python -m cortexflow worker` (to compare a patched worker); "
        "{python}, {queue}, {file} and {url} are filled in",
    )
    add(
        "--baseline",
        metavar="REF",
        help="also run cortexflow at this git commit (its package for enqueue and worker), "
        "interleaved with the current code in the same run",
    )
    add(
        "--unix-socket",
        action="store_true",
        help="connect over a unix socket (the embedded default of `cortexflow up`), not TCP",
    )
    add("--profile", type=Path, help="py-spy on the cortexflow worker; stacks go to this folder")
    add("--keep", action="store_true", help="keep the temporary folder (logs)")
    add("--max-seconds", type=float, default=900.0, help="give up after this long (900)")
    args = p.parse_args(argv)
    defaults = (2_000, 1, 1, 50) if args.quick else (20_000, 3, 1, 200)
    for name, value in zip(("jobs", "repeat", "aof_repeat", "pickups"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.jobs < 100:
        p.error("--jobs must be at least 100")
    known = all_systems()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.baseline and "baseline" not in args.systems:
        args.systems.insert(
            args.systems.index("cortexflow") + 1 if "cortexflow" in args.systems else 0, "baseline"
        )
    if "baseline" in args.systems and not args.baseline:
        p.error("system 'baseline' needs --baseline REF")
    for s in args.systems:
        if s not in known:
            p.error(f"unknown system {s!r}; choose from {', '.join(known)}")
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def progress_line(ctx: Context, res: PassResult, repeat: int, seconds: float) -> str:
    s = res.summary()
    return (
        f"  [{ctx.persistence} run {res.run + 1}/{repeat}] {res.system:12s} "
        f"serial {s['enqueue_serial_jobs_s']:>8,.0f}/s  bulk {s['enqueue_bulk_jobs_s']:>8,.0f}/s  "
        f"process {s['process_jobs_s']:>7,.0f}/s  cpu {s['worker_cpu_us_per_job']:>6,.0f} us/job  "
        f"pickup p50 {s['pickup_p50_ms']:.2f} ms  load {res.loadavg:.1f}  ({seconds:.1f}s)"
    )


async def run_on_server(ctx: Context, names: Sequence[str], repeat: int) -> list[PassResult]:
    """``repeat`` runs of every system, the order reversed every other run."""
    systems = all_systems()
    results = []
    admin = aioredis.Redis.from_url(ctx.url, decode_responses=True, socket_timeout=10)
    try:
        for run in range(repeat):
            for name in names if run % 2 == 0 else list(reversed(names)):
                await admin.flushall()
                await admin.delete(STAMPS)
                started, load = time.perf_counter(), loadavg()
                res = await systems[name].run_pass(ctx, admin, run)
                res.loadavg = load
                results.append(res)
                line = progress_line(ctx, res, repeat, time.perf_counter() - started)
                print(line, file=sys.stderr, flush=True)
        await admin.flushall()
    finally:
        await admin.aclose()
    return results


def run_all(args: argparse.Namespace, workdir: Path, children: Children) -> list[PassResult]:
    deadline = time.monotonic() + args.max_seconds
    results: list[PassResult] = []
    for label, aof in PLAN:
        repeat = args.repeat if label == "off" else args.aof_repeat
        if repeat <= 0:
            continue
        with private_server(
            workdir / f"valkey-{label}", appendonly=aof, unix_socket=args.unix_socket
        ) as server:
            assert server.pid is not None
            ctx = Context(
                workdir, server.url, server.pid, children, args.jobs, args.pickups,
                args.gather_chunk, deadline, label, args.cf_worker_cmd, args.profile,
            )  # fmt: skip
            try:
                results += uvloop.run(run_on_server(ctx, args.systems, repeat))
            finally:
                children.stop_all()
    return results


def render(args: argparse.Namespace, results: list[PassResult], info: dict[str, Any]) -> str:
    systems = all_systems()
    labels = {name: systems[name].label_for(args.gather_chunk) for name in args.systems}
    sections = []
    medians = {}
    for label, _ in PLAN:
        if any(r.persistence == label for r in results):
            medians[label] = report.aggregate(results, label, args.systems)
            sections.append(report.markdown(medians[label], label, args.jobs, labels))
    if args.json:
        doc = {
            "command": " ".join(["python", "bench/engine.py", *sys.argv[1:]]),
            "machine": info,
            "jobs": args.jobs,
            "runs": [r.summary() for r in results],
            "medians": medians,
        }
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    worker = " ".join(
        ["python", *cf_system.worker_argv("TMP/queues.yaml", "URL", args.cf_worker_cmd)[1:]]
    )
    tail = [report.machine_line(info), f"cortexflow worker: `{worker}`"]
    return "\n\n".join(sections) + "\n\n" + "\n".join(tail) if sections else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cortexflow-bench-"))
    for module in all_systems().values():
        module.prepare(workdir)
    if args.baseline:
        try:
            baseline.configure(args.baseline, workdir)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    sys.path.insert(0, str(workdir))  # the taskiq app, imported by the producer too
    info = report.machine()
    print(
        f"bench/engine.py: {args.jobs:,} jobs, {args.repeat} run(s) + {args.aof_repeat} with AOF; "
        f"{info['cpu']} x{info['cores']}; {info['server']}",
        file=sys.stderr,
        flush=True,
    )
    results: list[PassResult] = []
    with session(workdir, keep=args.keep) as run:
        results = run_all(args, workdir, run.children)
    print(render(args, results, info))
    for raw in sorted(args.profile.glob("cf-worker-*.txt")) if args.profile else []:
        summary = summarize_profile(raw)
        raw.with_suffix(".summary").write_text(summary + "\n")
        print("\n" + summary)
    return run.code


if __name__ == "__main__":
    sys.exit(main())
