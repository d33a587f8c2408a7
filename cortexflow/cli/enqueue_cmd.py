"""`cortexflow enqueue`: one job from a JSON file or stdin, or one per line with --jsonl."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from cortexflow.backoff import MAX_ATTEMPTS
from cortexflow.cli._common import err, out, print_json
from cortexflow.cli.queue_ops import duration, int_range, with_manager
from cortexflow.cli.render import ProgressBar, compact
from cortexflow.durations import format_duration
from cortexflow.engine.payload import JOB_ID_RULE, encode_data, make_validator
from cortexflow.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    CortexflowError,
    PayloadError,
    UsageError,
)

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
    p.add_argument(
        "--attempts",
        type=int_range(1, MAX_ATTEMPTS),
        help=f"total runs allowed, the first included (1-{MAX_ATTEMPTS:,})",
    )
    p.add_argument(
        "--group", help="the job's group (the queue needs `group:`), over the key in its data"
    )
    p.add_argument(
        "--job-id",
        help=f"the job's id ({JOB_ID_RULE}); adding an id that still exists adds nothing",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for the job to finish, print its result"
    )
    p.add_argument(
        "--timeout", type=duration, default=30.0, help="how long --wait waits (default 30s)"
    )
    p.add_argument(
        "--jsonl",
        action="store_true",
        help="FILE holds one payload per line (JSON Lines): every line is checked before the "
        "first is written, and nothing is written if one is bad",
    )
    p.add_argument(
        "--fresh-ids",
        action="store_true",
        help="with --jsonl: random job ids (by default each line's id derives from the input, "
        "so running the same input again adds nothing that is still queued)",
    )
    p.add_argument("--batch-size", type=int_range(1, 100_000), default=1000, help=argparse.SUPPRESS)
    p.set_defaults(func=with_manager(_enqueue))


class InputError(CortexflowError):
    """The payload cannot be read as given (too large); nothing was written."""


async def _enqueue(args: argparse.Namespace, manager: QueueManager) -> int:
    from cortexflow.engine.jobs import JobOptions

    engine = manager.get_queue(args.queue)
    if args.jsonl and (args.job_id or args.wait):
        raise UsageError("--job-id and --wait apply to one job; leave them out with --jsonl")
    opts = JobOptions(
        priority=args.priority,
        delay=args.delay,
        attempts=args.attempts,
        job_id=args.job_id,
        group=args.group,
    )
    name = args.name or engine.name
    if args.jsonl:
        return await _enqueue_jsonl(args, manager, engine, name, opts)
    source, raw = _read_payload(args.payload)
    data = _parse_payload(source, raw)
    if data is None:
        return EXIT_FAILURE
    try:
        encode_data(engine.name, data, make_validator(engine.config))
    except PayloadError as exc:  # refused before connecting: nothing was written
        _report_violations(exc)
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


def _read_payload(path: str | None) -> tuple[str, bytes]:
    """The payload's bytes, read up to the payload size limit and no further."""
    from cortexflow.api.jsoninput import JsonInputError, read_limited
    from cortexflow.engine.payload import MAX_PAYLOAD_BYTES

    if path is None and sys.stdin.isatty():
        raise UsageError(
            "no payload: give a JSON FILE, pipe the JSON in, or pass - and type it "
            "(end with Ctrl-D)"
        )
    source = "<stdin>" if path in (None, "-") else str(path)
    with contextlib.ExitStack() as stack:
        stream = sys.stdin.buffer if path in (None, "-") else stack.enter_context(_open(source))
        try:
            return source, read_limited(stream, MAX_PAYLOAD_BYTES)
        except JsonInputError as exc:
            raise InputError(f"{source}: payload is {exc.message}; nothing was enqueued") from None


@contextlib.contextmanager
def _open(path: str) -> Iterator[IO[bytes]]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise UsageError(f"payload file {path!r} not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path!r} is a directory, not a payload file") from None
    with f:
        yield f


def _parse_payload(source: str, raw: bytes) -> Any:
    """The payload, or None after reporting, in one line, what is wrong and where."""
    from cortexflow.api.jsoninput import JsonInputError, parse_json

    try:
        return parse_json(raw)
    except JsonInputError as exc:
        err(f"error: {exc.where(source)}: payload is {exc.message}; nothing was enqueued")
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
            source, stream = path, stack.enter_context(_open(path))
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
            fresh_ids=args.fresh_ids,
        )
    if bar and not report.failures and not report.server_error:
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
                "error": report.server_error,
                "writtenThroughLine": report.written_through,
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
        if report.more_errors:
            err(f"  ... and {report.more_errors:,} more bad lines")
        err(f"  nothing was enqueued: fix the lines above and run it again (checked {source})")
    if report.server_error:
        err(
            f"error: the server failed after {len(report.ids):,} of {report.lines:,} jobs were "
            f"written (through line {report.written_through} of {source}): "
            f"{report.server_error}"
        )
        err(
            "  the ids written are on stdout; run the same command on the same input again: "
            "each line's job id derives from the input, so the written ones are not added twice"
            if not args.fresh_ids
            else "  the ids written are on stdout; with --fresh-ids a rerun adds them again"
        )
        if report.full:
            return EXIT_TEMPFAIL
        return EXIT_UNAVAILABLE if report.unreachable else EXIT_FAILURE
    if not args.quiet and not report.failures:
        rate = len(report.ids) / elapsed if elapsed > 0 else 0.0
        err(
            f"enqueued {len(report.ids):,} jobs on {queue!r} in {elapsed:.1f}s ({rate:,.0f} jobs/s)"
        )
    return EXIT_FAILURE if report.failures else EXIT_OK
