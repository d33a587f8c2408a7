"""Medians over the runs, the Markdown table and notes, and the machine the numbers came from."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.measure import PassResult

REPO = Path(__file__).resolve().parent.parent
CF, TQ = "cortexflow", "taskiq-redis"


def median(xs: Sequence[float | None]) -> float:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else float("nan")


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None or x != x:  # NaN
        return "-"
    return f"{x:,.{digits}f}"


def system_medians(rs: Sequence[PassResult]) -> dict[str, Any]:
    return {
        "runs": len(rs),
        "enqueue_serial_jobs_s": median([r.serial_rate for r in rs]),
        "enqueue_bulk_jobs_s": median([r.bulk_rate for r in rs]),
        "enqueue_bulk_schema_jobs_s": median([r.bulk_schema_rate for r in rs]),
        "process_jobs_s": median([r.process_rate for r in rs]),
        "worker_cpu_us_per_job": median([r.worker_cpu_us for r in rs]),
        "server_cpu_us_per_job": median([r.server_cpu_us for r in rs]),
        "pickup_p50_ms": median([r.pickup(0.50) for r in rs]),
        "pickup_p99_ms": median([r.pickup(0.99) for r in rs]),
        "failed": sum(r.failed for r in rs),
        "loadavg_1m_at_start": median([r.loadavg for r in rs]),
        "server_calls_per_job": rs[-1].server_calls,
    }


def ratios(results: Sequence[PassResult], cf: dict[str, Any], tq: dict[str, Any]) -> dict[str, Any]:
    """cortexflow / taskiq-redis. Processing: the median of the per-run ratios, since both systems
    of one run saw the same machine state."""
    per_run = []
    for run in sorted({r.run for r in results}):
        c = next((r for r in results if r.run == run and r.system == CF), None)
        t = next((r for r in results if r.run == run and r.system == TQ), None)
        if c and t and t.process_rate:
            per_run.append(c.process_rate / t.process_rate)
    of_medians = cf["process_jobs_s"] / tq["process_jobs_s"]
    return {
        "process_cf_over_tq": median(per_run) if per_run else of_medians,
        "process_cf_over_tq_of_medians": of_medians,
        "process_cf_over_tq_per_run": [round(x, 3) for x in per_run],
        "worker_cpu_tq_over_cf": tq["worker_cpu_us_per_job"] / cf["worker_cpu_us_per_job"],
        "bulk_cf_over_tq": cf["enqueue_bulk_jobs_s"] / tq["enqueue_bulk_jobs_s"],
        "serial_cf_over_tq": cf["enqueue_serial_jobs_s"] / tq["enqueue_serial_jobs_s"],
    }


def aggregate(
    results: Sequence[PassResult], persistence: str, names: Sequence[str]
) -> dict[str, Any]:
    mine = [r for r in results if r.persistence == persistence]
    out: dict[str, Any] = {}
    for name in names:
        rs = [r for r in mine if r.system == name]
        if rs:
            out[name] = system_medians(rs)
    if CF in out and TQ in out:
        out["ratios"] = ratios(mine, out[CF], out[TQ])
    return out


def table(agg: dict[str, Any], labels: dict[str, str]) -> list[str]:
    lines = [
        "| system | enqueue jobs/s serial / bulk | process jobs/s | worker CPU us/job "
        "| server CPU us/job | idle pickup p50 / p99 |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in labels.items():
        s = agg.get(name)
        if s:
            lines.append(
                f"| {label} | {fmt(s['enqueue_serial_jobs_s'])} / "
                f"{fmt(s['enqueue_bulk_jobs_s'])} | {fmt(s['process_jobs_s'])} | "
                f"{fmt(s['worker_cpu_us_per_job'])} | {fmt(s['server_cpu_us_per_job'])} | "
                f"{fmt(s['pickup_p50_ms'], 2)} / {fmt(s['pickup_p99_ms'], 2)} ms |"
            )
    return lines


def notes(agg: dict[str, Any], names: Sequence[str]) -> list[str]:
    lines = []
    r, cf = agg.get("ratios"), agg.get(CF)
    if r:
        per_run = ", ".join(f"{x:.2f}" for x in r["process_cf_over_tq_per_run"])
        ok = "met" if r["process_cf_over_tq"] >= 1.5 else "NOT met"
        lines.append(
            f"- processing, cortexflow / taskiq-redis: **{r['process_cf_over_tq']:.2f}x** "
            f"(median of the runs' ratios {per_run}; target >= 1.5x: {ok}); worker CPU per job, "
            f"taskiq-redis / cortexflow: {r['worker_cpu_tq_over_cf']:.2f}x"
        )
        lines.append(
            f"- enqueue, cortexflow / taskiq-redis: serial {r['serial_cf_over_tq']:.2f}x, "
            f"bulk {r['bulk_cf_over_tq']:.2f}x"
        )
    if cf:
        ok = "met" if cf["enqueue_bulk_jobs_s"] >= 20_000 else "NOT met"
        lines.append(
            f"- cortexflow add_bulk: **{fmt(cf['enqueue_bulk_jobs_s'])} jobs/s** (target >= "
            f"20,000: {ok}); with a payload_schema validated per job: "
            f"{fmt(cf['enqueue_bulk_schema_jobs_s'])} jobs/s"
        )
    for name in names:
        s = agg.get(name)
        if s and s["server_calls_per_job"]:
            calls = ", ".join(f"{k} {v:g}" for k, v in s["server_calls_per_job"].items())
            lines.append(f"- {name}: server commands per job while processing: {calls}")
    loads = [agg[k]["loadavg_1m_at_start"] for k in names if k in agg]
    lines.append(
        f"- 1-minute load average at the start of the passes (median): {median(loads):.1f}"
    )
    if cf and cf["failed"]:
        lines.append(f"- WARNING: {cf['failed']} cortexflow job(s) failed")
    return lines


def markdown(agg: dict[str, Any], persistence: str, jobs: int, labels: dict[str, str]) -> str:
    runs = max(v["runs"] for k, v in agg.items() if k != "ratios")
    head = [f"### {jobs:,} no-op jobs, appendonly {persistence}, medians of {runs} run(s)", ""]
    return "\n".join([*head, *table(agg, labels), "", *notes(agg, list(labels))])


def run_text(argv: list[str]) -> str:
    with contextlib.suppress(Exception):
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()
    return "unknown"


def dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def first_line_value(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine(dists: Sequence[str] = ("taskiq", "taskiq-redis", "redis", "uvloop")) -> dict[str, Any]:
    """CPU model, cores, memory, kernel, Python, the server's version, library versions, the
    commit (and how many files in cortexflow/ differ from it)."""
    from cortexflow.embedded import find_server_binary

    mem = first_line_value("/proc/meminfo", "MemTotal").split()[0]
    git = ["git", "-C", str(REPO)]
    dirty = run_text([*git, "status", "--porcelain", "cortexflow"])
    return {
        "cpu": first_line_value("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory": f"{int(mem) / 1024 / 1024:.0f} GiB" if mem.isdigit() else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "server": run_text([find_server_binary(), "--version"]),
        "versions": {d: dist_version(d) for d in dists},
        "commit": run_text([*git, "rev-parse", "--short", "HEAD"]),
        "cortexflow_dirty_files": len(dirty.splitlines()) if dirty != "unknown" else 0,
    }


def machine_line(info: dict[str, Any]) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    dirty = info["cortexflow_dirty_files"]
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, Linux "
        f"{info['kernel']}, Python {info['python']}, {info['server']}; {libs}; cortexflow "
        f"{info['commit']}" + (f" (+{dirty} uncommitted files in cortexflow/)" if dirty else "")
    )
