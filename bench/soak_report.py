"""bench/soak.py's verdicts and table: did memory stay flat, was anything lost."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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


def _fit(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y); 0 when x does not vary."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def queued(s: dict[str, Any]) -> int:
    return int(s["waiting"]) + int(s["active"])


def flatness(samples: list[dict[str, Any]], settle: float) -> dict[str, Any]:
    """Server used_memory and each worker's RSS over the samples taken while jobs were added,
    from ``settle`` seconds on (worker processes from WORKER_WARMUP after they appear)."""
    adding = [s for s in samples if not s.get("final") and not s.get("draining")]
    window = [s for s in adding if s["t"] >= settle]
    if len(window) < 3:
        return {"flat": False, "why": f"fewer than 3 samples after {settle:g}s", "workers": {}}
    used = [(s["t"], float(s["used_memory"])) for s in window]
    net = [(s["t"], float(keys_net(s))) for s in window]
    # used_memory = base + per_job * queued, fitted: what is left once a backlog's share is
    # taken out must stay flat (per_job can be checked against bench/footprint.py).
    per_job = _fit([(float(queued(s)), float(s["used_memory"])) for s in window])
    rest = [(s["t"], float(s["used_memory"]) - per_job * queued(s)) for s in window]
    server = {
        "spread": _spread([v for _, v in used]),
        "slope_mib_min": _slope_per_min(used) / MIB,
        "keys_net_spread": _spread([v for _, v in net]),
        "keys_net_slope_min": _slope_per_min(net),
        "backlog_max": max(int(s["waiting"]) for s in window),
        "per_job": per_job,
        "rest_spread": _spread([v for _, v in rest]),
        "rest_slope_mib_min": _slope_per_min(rest) / MIB,
    }
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
    """Per queue the soak added to: added - completed - failed for good - still queued (jobs
    lost: > 0), and failures for good that never reached the dead-letter queue."""
    base, final = result["baseline"], result["final"]
    queued = final.get("queued_by_queue")  # older --out files: only the total
    per_queue = {}
    for queue, added in final["added_by_queue"].items():
        if not added:
            continue
        done = final["completed_by_queue"][queue] - base["completed_by_queue"][queue]
        failed = final["failed_by_queue"][queue] - base["failed_by_queue"][queue]
        left = queued[queue] if queued else None
        per_queue[queue] = {"added": added, "completed": done, "failed": failed, "left": left}
    left = final["waiting"] + final["active"]
    if queued:
        unaccounted = sum(
            q["added"] - q["completed"] - q["failed"] - q["left"] for q in per_queue.values()
        )
    else:
        unaccounted = (
            sum(q["added"] - q["completed"] - q["failed"] for q in per_queue.values()) - left
        )
    failed = final["failed"] - base["failed"]
    dead = final["dead_lettered"] - base["dead_lettered"]
    return {
        "queues": per_queue,
        "lost": max(0, unaccounted) + max(0, failed - dead),
        "extra": max(0, -unaccounted),
        "failed": failed,
        "dead_lettered": dead,
        "left": left,
    }


def keys_net(s: dict[str, Any]) -> int:
    """Keys less one per waiting, delayed or active job (its hash): what is left does not
    grow with a backlog, so it must stay flat once the caps are reached."""
    return int(s["keys"]) - queued(s)


def row_label(s: dict[str, Any], every: float) -> str:
    if s.get("final"):
        return "end"
    minutes = f"{s['t'] / 60:.0f}" if every >= 60 else f"{s['t'] / 60:.1f}"
    return minutes + (" (draining)" if s.get("draining") else "")


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
                row_label(s, every),
                f"{s['added']:,}",
                f"{s['completed']:,}",
                f"{s['failed']:,}",
                f"{s['dead_lettered']:,}",
                f"{s['waiting']:,}",
                f"{s['active']:,}",
                f"{p50:.0f} / {p99:.0f}",
                f"{s['used_memory'] / MIB:.1f}",
                f"{s['keys']:,}",
                f"{keys_net(s):,}",
                f"{min(rss):.0f}-{max(rss):.0f} ({len(s['workers'])})",
                f"{s['kills']}",
                f"{s['load1']:.1f}" if s.get("load1") is not None else "-",
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
    "keys less queued jobs",
    "worker RSS MiB (procs)",
    "kills",
    "load",
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
            f"{srv['spread']:.1%} (slope {srv['slope_mib_min'] * 1024:+.1f} KiB/min; backlog "
            f"up to {srv['backlog_max']:,} jobs); less the backlog's share "
            f"({srv['per_job']:.0f} B per queued job, fitted) spread {srv['rest_spread']:.1%} "
            f"({srv['rest_slope_mib_min'] * 1024:+.1f} KiB/min); keys less queued jobs spread "
            f"{srv['keys_net_spread']:.1%} ({srv['keys_net_slope_min']:+.1f}/min); "
            + (
                f"worst worker ({worst['queue']}) spread {worst['spread']:.1%}, "
                f"{worst['rss_mib']:.0f} MiB"
                if worst
                else "no worker lived long enough to judge"
            )
            + f" -> {'FLAT' if flat['flat'] else 'NOT FLAT'} (within {FLAT:.0%})"
        )
    lines.append(
        f"jobs: {lost['lost']} lost, {lost['extra']} counted twice, {lost['failed']:,} failed for "
        f"good, {lost['dead_lettered']:,} dead-lettered, {lost['left']:,} still queued at the end "
        f"({'drained' if result['drained'] else 'NOT drained'}); "
        f"{len(result['kills'])} worker(s) killed with SIGKILL"
    )
    for queue, q in lost["queues"].items():
        still = "" if q["left"] is None else f", still queued {q['left']:,}"
        lines.append(
            f"  {queue}: added {q['added']:,}, completed {q['completed']:,}, "
            f"failed for good {q['failed']:,}{still}"
        )
    return "\n".join(lines)


def from_jsonl(path: Path) -> dict[str, Any]:
    """A result as soak.py returns it, from its ``--out`` file (a fresh server: zero baseline)."""
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    final = samples[-1]
    zero = {
        "completed_by_queue": dict.fromkeys(final["completed_by_queue"], 0),
        "failed_by_queue": dict.fromkeys(final["failed_by_queue"], 0),
        "failed": 0,
        "dead_lettered": 0,
    }
    kills = [{} for _ in range(final["kills"])]
    drained = bool(final.get("final")) and final["waiting"] + final["active"] == 0
    return {
        "baseline": zero,
        "samples": samples,
        "final": final,
        "drained": drained,
        "kills": kills,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.soak_report FILE`` renders a soak's ``--out`` file again."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("file", type=Path)
    p.add_argument("--table-every", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=20.0)
    args = p.parse_args(argv)
    result = from_jsonl(args.file)
    flat = flatness(result["samples"], args.settle * 60.0)
    print(render(args, result, flat, losses(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
