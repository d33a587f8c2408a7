"""Text rendering for the operations commands: tables, job views, a progress bar.

Pure functions from data to text (the progress bar writes to the stream it is given).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from cortexflow.durations import format_duration
from cortexflow.termsafe import escape_controls

WIDTH = 80
# The ERROR column of `jobs` keeps this many characters even if the table gets wider than WIDTH:
# cut shorter, no error is recognisable.
MIN_ERROR = 40


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, two spaces apart; ``right`` columns right-aligned.

    Control characters and newlines in a cell are escaped: a job id or name is data, and
    must neither drive the terminal nor break the table's lines."""
    rows = [[escape_controls(c, keep_newlines=False) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


STATS_COLUMNS = ("waiting", "active", "delayed", "completed", "failed")


def stats_table(stats: Sequence[Mapping[str, Any]]) -> str:
    headers = ["QUEUE", *(c.upper() for c in STATS_COLUMNS), "PAUSED"]
    rows = [
        [
            str(s["queueName"]),
            *(f"{int(s[c]):,}" for c in STATS_COLUMNS),
            "yes" if s.get("paused") else "no",
        ]
        for s in stats
    ]
    return table(headers, rows, right=range(1, 1 + len(STATS_COLUMNS)))


def health_text(report: Mapping[str, Any]) -> str:
    rows = [[name, "ok" if ok else "UNHEALTHY"] for name, ok in report["queues"].items()]
    verdict = "healthy" if report["healthy"] else "UNHEALTHY"
    text = f"{verdict}\n" + table(["QUEUE", "STATUS"], rows)
    for name, n in report.get("leaseRenewalFailing", {}).items():
        text += f"\n{name}: lease renewal failing on {n} worker(s)"
    for key, what in (("deadLettersNotCopied", "dead letter"), ("handoffsNotCopied", "hand-off")):
        for name, n in report.get(key, {}).items():
            text += f"\n{name}: {n} {what}(s) could not be copied and were set aside"
    if report.get("memoryPressure"):
        m = report["memory"]
        text += (
            f"\nmemory pressure: the server uses {m['percent']}% of its maxmemory "
            f"({m['usedMemory']:,} of {m['maxmemory']:,} bytes); once it is full, adds are "
            "refused (exit 75): make room or raise maxmemory"
        )
    return text


def timestamp(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def age(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    seconds = max(0.0, (now if now is not None else time.time()) - ts)
    return format_duration(float(int(seconds))) if seconds >= 1 else "<1s"


def jobs_table(jobs: Sequence[Any], width: int = WIDTH) -> str:
    """ID, STATE, NAME, TRIES (made/allowed, an active job's running attempt counted), PRIO,
    AGE, and ERROR (the first line of the error) when any listed job has one that explains its
    state (a completed job's earlier error is history: not shown); NAME and ERROR shrink to
    keep within ``width`` (ERROR down to MIN_ERROR characters)."""
    now = time.time()
    errors = [first_line(j.current_error) for j in jobs]
    with_error = any(errors)
    rows = [
        [
            j.id,
            j.state,
            j.name,
            f"{j.tries}/{j.attempts}",
            str(j.priority),
            age(j.created_at, now),
            *([error or "-"] if with_error else []),
        ]
        for j, error in zip(jobs, errors, strict=True)
    ]
    headers = ["ID", "STATE", "NAME", "TRIES", "PRIO", "AGE", *(["ERROR"] if with_error else [])]
    elastic = (2, 6) if with_error else (2,)
    fixed = sum(
        max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers) if i not in elastic
    )
    room = max(8 * len(elastic), width - fixed - 2 * (len(headers) - 1))
    natural = [max([len(headers[i]), *(len(r[i]) for r in rows)]) for i in elastic]
    if sum(natural) <= room:
        sizes = natural
    elif with_error:  # the name gets up to a third, the error the rest but at least 40
        name = min(natural[0], max(8, room // 3))
        sizes = [name, min(natural[1], max(MIN_ERROR, room - name))]
    else:
        sizes = [room]
    for r in rows:
        for i, size in zip(elastic, sizes, strict=True):
            r[i] = fit(r[i], size)
    return table(headers, rows, right=(3, 4))


def first_line(text: str | None) -> str:
    """The first non-empty line of an error text ("" for none)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def job_text(job: Any, logs: Sequence[str]) -> str:
    """``job`` as labelled lines: state, attempts, result or error, timestamps, data, logs."""
    fields: list[tuple[str, str]] = [
        ("id", job.id),
        ("queue", job.queue),
        ("name", job.name),
        ("state", job.state),
        ("priority", str(job.priority)),
        ("attempts", attempts_text(job)),
        ("created", timestamp(job.created_at)),
        ("processed", timestamp(job.processed_at)),
        ("finished", timestamp(job.finished_at)),
    ]
    if job.delay:
        fields.append(("delay", format_duration(job.delay)))
    if job.progress is not None:
        fields.append(("progress", compact(job.progress)))
    fields.append(("data", compact(job.data)))
    if job.state == "completed":
        fields.append(("result", compact(job.result)))
    if job.error:
        # A completed job keeps the error of an earlier failed run: history, labelled as such.
        history = job.error_is_history
        fields.append(("last failed attempt" if history else "error", job.error))
    fields += lineage_fields(job)
    lines = [f"{k + ':':<10} {v}" for k, v in fields]
    if job.stacktrace:
        label = "its traceback:" if job.error_is_history else "traceback:"
        lines += [label, *("  " + t for t in job.stacktrace.rstrip().splitlines())]
    if logs:
        lines += ["logs:", *("  " + t for t in logs)]
    return "\n".join(lines)


def lineage_fields(job: Any) -> list[tuple[str, str]]:
    """A pipeline job's parent, children and join (docs/pipelines.md), as `queue/id`."""
    out = []
    if job.parent is not None:
        out.append(("parent", f"{job.parent[0]}/{job.parent[1]}"))
    if job.children_total:
        shown = ", ".join(f"{q}/{i}" for q, i in job.children)
        more = job.children_total - len(job.children)
        out.append(("children", shown + (f" (and {more} more)" if more > 0 else "")))
    if job.join is not None:
        out.append(("join", job.join))
    return out


def attempts_text(job: Any) -> str:
    """Attempts made (runs that ended) of those allowed, runs started (BullMQ's attemptsStarted:
    more than made when a run stalled or was given back, or the job was retried) and stalls."""
    text = f"{job.attempts_made} made of {job.attempts}, {job.started} started"
    if job.state == "active":
        text += " (one running)"
    if job.stalls:
        text += f", {job.stalls} stall(s)"
    return text


class ProgressBar:
    """A one-line bar redrawn in place (``\\r``) at most ten times a second.

    ``total`` is in bytes when known (a file), None for a stream (then: count and rate only).
    """

    def __init__(self, stream: TextIO, total: int | None, label: str = "enqueue") -> None:
        self.stream = stream
        self.total = total
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0
        enc = (getattr(stream, "encoding", None) or "").lower()
        self._fill, self._empty = ("█", "░") if enc.startswith("utf") else ("#", "-")

    def update(self, count: int, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        rate = f"{count / elapsed:,.0f}/s"
        if self.total:
            frac = min(1.0, done / self.total)
            bar = self._fill * round(frac * 30) + self._empty * (30 - round(frac * 30))
            text = f"{self.label} {bar} {frac:4.0%}  {count:,} jobs  {rate}"
        else:
            text = f"{self.label} {count:,} jobs  {rate}"
        self.stream.write("\r" + text + "\x1b[K")
        if final:
            self.stream.write("\n")
        self.stream.flush()


def uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


_QUEUE_COUNTERS = (("jobs_done", "done"), ("jobs_failed", "failed"), ("active", "running"))


def _with_queues(rows: Sequence[Mapping[str, Any]], lines: list[str]) -> list[str]:
    """Each process's line, then for a process shared by several queues one line per queue:
    ``  - notifications: 1200 done, 3 failed, 2 running``."""
    out: list[str] = []
    for r, line in zip(rows, lines, strict=True):
        out.append(line)
        queues = r.get("queues")
        if not isinstance(queues, Mapping) or list(queues) == [r["queue"]]:
            continue
        for name, c in queues.items():
            counts = ", ".join(
                f"{'-' if c.get(k) is None else c[k]} {label}"
                for k, label in (
                    ("jobs_done", "done"),
                    ("jobs_failed", "failed"),
                    ("active", "running"),
                )
            )
            out.append(f"  - {name}: {counts}")
    return out


def status_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """`cortexflow status`: one process per line, then why each FATAL queue gave up."""
    # A row is a process: named after its queue when alone, else its `process:` name.
    header = ("HOST", "PROCESS", "REPLICA", "PID", "STATE", "RESTARTS", "UPTIME", "JOBS DONE")
    cells = [
        (
            str(r["host"]),
            str(r["queue"]),
            str(r["replica"]),
            str(r["pid"] or "-"),
            str(r["state"]),
            str(r["restarts"]),
            uptime(r["uptime"]),
            "-" if r["jobs_done"] is None else str(r["jobs_done"]),
        )
        for r in rows
    ]
    lines = table(header, cells).split("\n")
    lines = [lines[0], *_with_queues(rows, lines[1:])]
    for r in rows:
        if since := r.get("leases_failing_since"):
            lines.append(
                f"worker {r['pid']} of {r['queue']}: lease renewal failing for "
                f"{age(since)} (its running jobs may be run again elsewhere)"
            )
    fatal = [r for r in rows if r["state"] == "fatal" and r.get("reason")]
    seen: set[str] = set()
    for r in fatal:
        if r["queue"] not in seen:
            seen.add(r["queue"])
            lines.append(f"queue {r['queue']} is FATAL: {r['reason']}")
    return "\n".join(lines)
