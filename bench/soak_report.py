"""bench/soak.py's verdicts and table: did memory stay flat, was anything lost."""

from __future__ import annotations

import argparse
from typing import Any

FLAT = 0.10  # the spread (max - min) / min allowed once retention caps are reached
WORKER_WARMUP = 120.0  # seconds a (re)started worker gets before its RSS is judged
MIB = 2**20


def _spread(values: list[float]) -> float:
    low = min(values)
    return (max(values) - low) / low if low else float("inf")


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 60.0 * sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0


def flatness(samples: list[dict[str, Any]], settle: float) -> dict[str, Any]:
    """Server used_memory and each worker's RSS over the samples taken while jobs were added,
    from ``settle`` seconds on (worker processes from WORKER_WARMUP after they appear)."""
    adding = [s for s in samples if not s.get("final")]
    window = [s for s in adding if s["t"] >= settle]
    if len(window) < 3:
        return {"flat": False, "why": f"fewer than 3 samples after {settle:g}s", "workers": {}}
    used = [(s["t"], float(s["used_memory"])) for s in window]
    server = {"spread": _spread([v for _, v in used]), "slope_mib_min": _slope_per_min(used) / MIB}
    born: dict[str, float] = {}
    for s in adding:
        for pid in s["workers"]:
            born.setdefault(pid, s["t"])
    series: dict[str, list[tuple[float, float]]] = {}
    queue_of: dict[str, str] = {}
    for s in window:
        for pid, w in s["workers"].items():
            if s["t"] >= born[pid] + WORKER_WARMUP and w["rss"]:
                series.setdefault(pid, []).append((s["t"], float(w["rss"])))
                queue_of[pid] = w["queue"]
    workers = {
        pid: {
            "queue": queue_of[pid],
            "spread": _spread([v for _, v in pts]),
            "rss_mib": pts[-1][1] / MIB,
            "slope_mib_min": _slope_per_min(pts) / MIB,
        }
        for pid, pts in series.items()
        if len(pts) >= 3
    }
    flat = server["spread"] <= FLAT and all(w["spread"] <= FLAT for w in workers.values())
    return {"flat": flat, "server": server, "workers": workers, "why": ""}


def losses(result: dict[str, Any]) -> dict[str, Any]:
    """Per queue the soak added to: added - completed - failed for good (jobs lost: > 0), and
    failures for good that never reached the dead-letter queue."""
    base, final = result["baseline"], result["final"]
    per_queue = {}
    for queue, added in final["added_by_queue"].items():
        if not added:
            continue
        done = final["completed_by_queue"][queue] - base["completed_by_queue"][queue]
        failed = final["failed_by_queue"][queue] - base["failed_by_queue"][queue]
        per_queue[queue] = {"added": added, "completed": done, "failed": failed}
    failed = final["failed"] - base["failed"]
    dead = final["dead_lettered"] - base["dead_lettered"]
    lost = sum(max(0, q["added"] - q["completed"] - q["failed"]) for q in per_queue.values())
    extra = sum(max(0, q["completed"] + q["failed"] - q["added"]) for q in per_queue.values())
    return {
        "queues": per_queue,
        "lost": lost + max(0, failed - dead),
        "extra": extra,
        "failed": failed,
        "dead_lettered": dead,
        "left": final["waiting"] + final["active"],
    }


def rows(samples: list[dict[str, Any]], every: float) -> list[list[str]]:
    out: list[list[str]] = []
    window: list[float] = []
    mark = every
    for i, s in enumerate(samples):
        window += s["latencies_ms"]
        last = i == len(samples) - 1
        if s["t"] < mark and not last:
            continue
        while mark <= s["t"]:
            mark += every
        window.sort()
        p50 = window[int(0.5 * len(window))] if window else float("nan")
        p99 = window[min(len(window) - 1, int(0.99 * len(window)))] if window else float("nan")
        rss = [w["rss"] / MIB for w in s["workers"].values() if w["rss"]] or [0.0]
        out.append(
            [
                "end (drained)" if s.get("final") else f"{s['t'] / 60:.0f}",
                f"{s['added']:,}",
                f"{s['completed']:,}",
                f"{s['failed']:,}",
                f"{s['dead_lettered']:,}",
                f"{s['waiting']:,}",
                f"{s['active']:,}",
                f"{p50:.0f} / {p99:.0f}",
                f"{s['used_memory'] / MIB:.1f}",
                f"{s['keys']:,}",
                f"{min(rss):.0f}-{max(rss):.0f} ({len(s['workers'])})",
                f"{s['kills']}",
            ]
        )
        window = []
    return out


HEADER = [
    "min",
    "added",
    "completed",
    "failed",
    "dead-lettered",
    "waiting",
    "active",
    "p50 / p99 ms",
    "server MiB",
    "keys",
    "worker RSS MiB (procs)",
    "kills",
]


def render(
    args: argparse.Namespace, result: dict[str, Any], flat: dict[str, Any], lost: dict[str, Any]
) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(result["samples"], args.table_every)]
    lines.append("")
    if flat.get("why"):
        lines.append(f"memory: not judged ({flat['why']})")
    else:
        srv = flat["server"]
        worst = max(flat["workers"].values(), key=lambda w: w["spread"], default=None)
        lines.append(
            f"memory after {args.settle:g} min: server used_memory spread "
            f"{srv['spread']:.1%} (slope {srv['slope_mib_min'] * 1024:+.1f} KiB/min); "
            + (
                f"worst worker ({worst['queue']}) spread {worst['spread']:.1%}, "
                f"{worst['rss_mib']:.0f} MiB"
                if worst
                else "no worker lived long enough to judge"
            )
            + f" -> {'FLAT' if flat['flat'] else 'NOT FLAT'} (within {FLAT:.0%})"
        )
    lines.append(
        f"jobs: {lost['lost']} lost, {lost['extra']} over-counted, {lost['failed']:,} failed for "
        f"good, {lost['dead_lettered']:,} dead-lettered, {lost['left']} left after draining "
        f"({'drained' if result['drained'] else 'NOT drained'}); "
        f"{len(result['kills'])} worker(s) killed with SIGKILL"
    )
    for queue, q in lost["queues"].items():
        lines.append(
            f"  {queue}: added {q['added']:,}, completed {q['completed']:,}, "
            f"failed for good {q['failed']:,}"
        )
    return "\n".join(lines)
