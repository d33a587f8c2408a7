"""The peers table: per system the median of the runs and their min..max, the processing rate
as a multiple of cortexflow's (median of the per-run ratios: both saw the same machine state)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.peers.measure import PeerResult
from bench.report import fmt

HEADER = [
    "| system | add, one call per job (jobs/s) | bulk add (jobs/s) | processing (jobs/s) "
    "| processing, x cortexflow | worker CPU per job (us) | bytes per waiting job "
    "| MEMORY USAGE of one job (B) |",
    "|---|---|---|---|---|---|---|---|",
]


def spread(values: Sequence[float | None]) -> str:
    """``median (min..max)``, or the value alone for one run, or - for none."""
    xs = [x for x in values if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0])
    return f"{fmt(statistics.median(xs))} ({fmt(min(xs))}..{fmt(max(xs))})"


def ratio_to(results: Sequence[PeerResult], name: str, base: str = "cortexflow") -> str:
    mine = {r.run: r.process_rate for r in results if r.system == name}
    ref = {r.run: r.process_rate for r in results if r.system == base}
    per_run = [mine[k] / ref[k] for k in mine if ref.get(k)]
    return f"{statistics.median(per_run):.2f}x" if per_run else "-"


def row(label: str, rs: Sequence[PeerResult], all_results: Sequence[PeerResult]) -> str:
    def col(get: Callable[[PeerResult], Any]) -> str:
        return spread([get(r) for r in rs])

    return (
        f"| {label} | {col(lambda r: r.serial_rate)} | {col(lambda r: r.bulk_rate)} "
        f"| {col(lambda r: r.process_rate)} | {ratio_to(all_results, rs[0].system)} "
        f"| {col(lambda r: r.worker_cpu_us)} | {col(lambda r: r.bytes_per_job)} "
        f"| {col(lambda r: r.job_key_bytes)} |"
    )


def table(results: Sequence[PeerResult], labels: dict[str, str]) -> str:
    lines = list(HEADER)
    for name, label in labels.items():
        rs = [r for r in results if r.system == name]
        if rs:
            lines.append(row(label, rs, results))
    return "\n".join(lines)


def per_pass_line(r: PeerResult) -> str:
    bulk = "-" if r.bulk_rate is None else f"{r.bulk_rate:,.0f}"
    return (
        f"  [run {r.run + 1}] {r.system:13s} add {r.serial_rate:>7,.0f}/s  bulk {bulk:>7}/s  "
        f"process {r.process_rate:>7,.0f}/s  cpu {r.worker_cpu_us:>5,.0f} us/job  "
        f"{r.bytes_per_job:>5,.0f} B/job  load {r.loadavg:.1f}  ({r.seconds:.1f}s)"
    )
