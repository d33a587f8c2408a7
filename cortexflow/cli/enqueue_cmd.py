"""`cortexflow enqueue`: one job from a JSON file or stdin, or one per line with --jsonl."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from cortexflow.cli._common import err, out, print_json
from cortexflow.cli.queue_ops import duration, int_range, with_manager
from cortexflow.cli.render import ProgressBar, compact
from cortexflow.durations import format_duration
from cortexflow.errors import EXIT_FAILURE, EXIT_OK, PayloadError, UsageError

if TYPE_CHECKING:
    from cortexflow.api.bulk import BulkReport
    from cortexflow.api.manager import QueueManager
    from cortexflow.engine.jobs import JobOptions
    from cortexflow.engine.queue import QueueEngine


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "enqueue",
        parents=parents,
        help="put a job (or, with --jsonl, one job per line) on a queue",
        description="Put a job on QUEUE. The payload is the JSON in FILE, or stdin for `-` (or "
        "when FILE is left out and stdin is not a terminal). Prints the job id.",
    )
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("payload", metavar="FILE", nargs="?", help="JSON payload file, or - for stdin")
    p.add_argument("--name", help="job name (default: the queue's name)")
    p.add_argument("--priority", type=int_range(0, 1_000_000), help="0..1000000, higher runs first")
    p.add_argument(
        "--delay", type=duration, help='run no earlier than this from now, e.g. "5s", "2h"'
    )
    p.add_argument("--attempts", type=int_range(1), help="total runs allowed, the first included")
    p.add_argument("--job-id", help="the job's id; adding an id that still exists adds nothing")
    p.add_argument(
        "--wait", action="store_true", help="wait for the job to finish, print its result"
    )
    p.add_argument(
        "--timeout", type=duration, default=30.0, help="how long --wait waits (default 30s)"
    )
    p.add_argument(
        "--jsonl", action="store_true", help="FILE holds one payload per line (JSON Lines)"
    )
    p.add_argument("--batch-size", type=int_range(1, 100_000), default=1000, help=argparse.SUPPRESS)
    p.set_defaults(func=with_manager(_enqueue))


async def _enqueue(args: argparse.Namespace, manager: QueueManager) -> int:
    from cortexflow.engine.jobs import JobOptions

    engine = manager.get_queue(args.queue)
    if args.jsonl and (args.job_id or args.wait):
        raise UsageError("--job-id and --wait apply to one job; leave them out with --jsonl")
    opts = JobOptions(
        priority=args.priority, delay=args.delay, attempts=args.attempts, job_id=args.job_id
    )
    name = args.name or engine.name
    if args.jsonl:
        return await _enqueue_jsonl(args, manager, engine, name, opts)
    source, text = _read_payload(args.payload)
    data = _parse_payload(source, text)
    if data is None:
        return EXIT_FAILURE
    await manager.connect()
    try:
        job_id = await engine.add(name, data, opts)
    except PayloadError as exc:
        _report_violations(exc)
        return EXIT_FAILURE
    if not args.wait:
        print_json({"id": job_id, "queue": engine.name}) if args.json else out(job_id)
        return EXIT_OK
    return await _wait(args, engine, job_id)


def _read_payload(path: str | None) -> tuple[str, str]:
    if path is None and sys.stdin.isatty():
        raise UsageError(
            "no payload: give a JSON FILE, pipe the JSON in, or pass - and type it "
            "(end with Ctrl-D)"
        )
    if path is None or path == "-":
        return "<stdin>", sys.stdin.read()
    with _open(path, binary=False) as f:
        return path, str(f.read())


@contextlib.contextmanager
def _open(path: str, *, binary: bool) -> Iterator[IO[Any]]:
    try:
        f = open(path, "rb") if binary else open(path, encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        raise UsageError(f"payload file {path!r} not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path!r} is a directory, not a payload file") from None
    with f:
        yield f


def _parse_payload(source: str, text: str) -> Any:
    """The payload, or None after reporting where the JSON is broken."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        err(f"error: {source}:{exc.lineno}:{exc.colno}: payload is not valid JSON: {exc.msg}")
        return None


def _report_violations(exc: PayloadError) -> None:
    n = len(exc.violations)
    err(
        f"error: payload refused by the payload_schema of queue {exc.queue!r} "
        f"({n} violation{'s' if n != 1 else ''}); nothing was enqueued:"
    )
    for pointer, message in exc.violations:
        err(f"  {pointer or '/'}: {message}")


async def _wait(args: argparse.Namespace, engine: QueueEngine, job_id: str) -> int:
    if not args.quiet:
        err(f"enqueued {job_id}; waiting up to {format_duration(args.timeout)} for it to finish")
    job = await engine.wait_finished(job_id, args.timeout)
    if job is None:
        err(
            f"error: job {job_id} did not finish within {format_duration(args.timeout)}; "
            f"it stays queued (see `cortexflow job {engine.name} {job_id}`)"
        )
        return EXIT_FAILURE
    if args.json:
        print_json(job.to_dict())
    elif job.state == "completed":
        out(compact(job.result))
    if job.state != "completed":
        err(f"error: job {job_id} failed after {job.attempts_made} attempt(s): {job.error}")
        return EXIT_FAILURE
    return EXIT_OK


async def _enqueue_jsonl(
    args: argparse.Namespace,
    manager: QueueManager,
    engine: QueueEngine,
    name: str,
    opts: JobOptions,
) -> int:
    from cortexflow.api.bulk import enqueue_lines

    path = args.payload
    with contextlib.ExitStack() as stack:
        if path in (None, "-"):
            source, stream, total = "<stdin>", sys.stdin.buffer, None
        else:
            source, stream = path, stack.enter_context(_open(path, binary=True))
            total = os.fstat(stream.fileno()).st_size
        bar = ProgressBar(sys.stderr, total) if sys.stderr.isatty() and not args.quiet else None
        started = time.monotonic()
        await manager.connect()
        report = await enqueue_lines(
            engine,
            stream,
            name=name,
            opts=opts,
            batch_size=args.batch_size,
            progress=bar.update if bar else None,
        )
    if bar:
        bar.update(report.lines, total or 0, final=True)
    return _jsonl_summary(args, source, engine.name, report, time.monotonic() - started)


def _jsonl_summary(
    args: argparse.Namespace, source: str, queue: str, report: BulkReport, elapsed: float
) -> int:
    if args.json:
        print_json(
            {
                "queue": queue,
                "enqueued": len(report.ids),
                "ids": report.ids,
                "failedBatches": [
                    {
                        "firstLine": f.first,
                        "lastLine": f.last,
                        "errors": [
                            {"line": e.line, "column": e.column, "message": e.message}
                            for e in f.errors
                        ],
                    }
                    for f in report.failures
                ],
            }
        )
    elif args.quiet:
        out(str(len(report.ids)))
    else:
        sys.stdout.write("".join(i + "\n" for i in report.ids))
    for failure in report.failures:
        for e in failure.errors:
            err(f"error: {e.where(source)}: {e.message}")
        err(f"  lines {failure.first}-{failure.last} (one batch) were not enqueued")
    if not args.quiet:
        rate = len(report.ids) / elapsed if elapsed > 0 else 0.0
        err(
            f"enqueued {len(report.ids):,} jobs on {queue!r} in {elapsed:.1f}s ({rate:,.0f} jobs/s)"
            + (f"; {report.skipped:,} lines skipped" if report.failures else "")
        )
    return EXIT_FAILURE if report.failures else EXIT_OK
