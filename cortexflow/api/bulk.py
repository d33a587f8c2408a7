"""Enqueue a JSON Lines stream (one payload per line): all of it or none of it.

Two passes. The first reads the whole input (each line capped at the payload size limit, while
reading), copies it to a private spool and checks every line: UTF-8, JSON, nesting, the queue's
payload checks. One bad line and nothing is written; the report names every bad line (up to
``MAX_ERRORS``). The second pass writes the spooled lines in atomic batches of ``batch_size``.

Each job's id is derived from the input itself (a digest of the whole input, and the line's
number), so running the same input again adds nothing that is still there: when the server
fails half-way, the report lists the ids already written and a rerun completes the rest
without duplicates. ``fresh_ids`` gives random ids instead (each run adds new jobs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortexflow.api.jsoninput import JsonInputError, parse_json
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.payload import MAX_PAYLOAD_BYTES, encode_data, make_validator
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import PayloadError, ServerFullError

DEFAULT_BATCH = 1000
MAX_ERRORS = 100
SPOOL_IN_MEMORY = 32 * 1024 * 1024

# progress(lines done, bytes done): called after each batch.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LineError:
    line: int
    message: str
    column: int | None = None

    def where(self, source: str) -> str:
        """``source:line[:column]``, the editor-friendly location."""
        col = f":{self.column}" if self.column is not None else ""
        return f"{source}:{self.line}{col}"


@dataclass(frozen=True)
class BatchFailure:
    """Lines ``first..last`` were not enqueued because of ``errors``."""

    first: int
    last: int
    errors: list[LineError]


@dataclass
class BulkReport:
    ids: list[str] = field(default_factory=list)
    failures: list[BatchFailure] = field(default_factory=list)
    lines: int = 0  # non-blank lines read
    more_errors: int = 0  # bad lines beyond the MAX_ERRORS reported
    server_error: str | None = None  # the write that failed half-way, if one did
    unreachable: bool = False  # ... because the connection failed (not a refusal)
    full: bool = False  # ... because the server is out of memory (ServerFullError)
    written_through: int = 0  # the last input line whose job is written

    @property
    def skipped(self) -> int:
        return self.lines - len(self.ids)


def line_job_id(digest: str, number: int) -> str:
    """The id of line ``number``'s job: the same for the same input, on every run."""
    return f"{digest[:20]}-{number}"


class _Checked:
    """The spooled input after the first pass: its digest and where its lines end."""

    def __init__(self) -> None:
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self.sha = hashlib.sha256()
        self.nbytes = 0


async def enqueue_lines(
    engine: QueueEngine,
    stream: IO[bytes],
    *,
    name: str,
    opts: JobOptions | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    line_limit: int = MAX_PAYLOAD_BYTES,
    fresh_ids: bool = False,
) -> BulkReport:
    """Add one job per non-blank line of ``stream``, all or none; see the module docstring."""
    report = BulkReport()
    checked = _Checked()
    try:
        errors, first, last = _check(engine, stream, report, checked, line_limit)
        if errors:
            report.failures.append(BatchFailure(first, last, errors))
            return report
        await _write(engine, checked, report, name, opts, batch_size, progress, fresh_ids)
        return report
    finally:
        checked.spool.close()


def _check(
    engine: QueueEngine,
    stream: IO[bytes],
    report: BulkReport,
    checked: _Checked,
    line_limit: int,
) -> tuple[list[LineError], int, int]:
    validator = make_validator(engine.config)
    errors: list[LineError] = []
    first = last = 0
    number = 0

    def bad(error: LineError) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append(error)
        else:
            report.more_errors += 1

    while True:
        raw = stream.readline(line_limit + 1)
        if not raw:
            break
        number += 1
        if len(raw) > line_limit and not raw.endswith(b"\n"):
            bad(LineError(number, f"line longer than the {line_limit:,} byte limit of a payload"))
            first = first or number
            last = number
            break  # nothing will be written: no need to read the rest
        checked.spool.write(raw)
        checked.sha.update(raw)
        checked.nbytes += len(raw)
        if not raw.strip():
            continue
        report.lines += 1
        first = first or number
        last = number
        try:
            data = parse_json(raw, number)
            encode_data(engine.name, data, validator)
        except JsonInputError as exc:
            where = f"{exc.pointer or '/'}: " if exc.pointer is not None else ""
            bad(LineError(number, where + exc.message, exc.column))
        except PayloadError as exc:
            bad(LineError(number, "; ".join(f"{p or '/'}: {m}" for p, m in exc.violations)))
    return errors, first, last


async def _write(
    engine: QueueEngine,
    checked: _Checked,
    report: BulkReport,
    name: str,
    opts: JobOptions | None,
    batch_size: int,
    progress: Progress | None,
    fresh_ids: bool,
) -> None:
    digest = checked.sha.hexdigest()
    base = opts or JobOptions()
    checked.spool.seek(0)
    jobs: list[tuple[str, Any, JobOptions | None]] = []
    done = nbytes = 0
    last_number = 0
    for number, raw in enumerate(checked.spool, 1):
        nbytes += len(raw)
        if not raw.strip():
            continue
        job_opts = (
            base if fresh_ids else dataclasses.replace(base, job_id=line_job_id(digest, number))
        )
        jobs.append((name, parse_json(raw, number), job_opts))
        last_number = number
        if len(jobs) >= batch_size:
            if not await _flush(engine, jobs, report, last_number):
                return
            done += len(jobs)
            jobs = []
            if progress is not None:
                progress(done, nbytes)
    if jobs and not await _flush(engine, jobs, report, last_number):
        return
    if progress is not None:
        progress(report.lines, nbytes)


async def _flush(
    engine: QueueEngine,
    jobs: list[tuple[str, Any, JobOptions | None]],
    report: BulkReport,
    last_number: int,
) -> bool:
    """Write one batch (atomic); False, with ``server_error`` set, when the server failed."""
    try:
        report.ids.extend(await engine.add_bulk(jobs))
    except ServerFullError as exc:
        report.server_error = str(exc)
        report.full = True
        return False
    except (RedisError, OSError) as exc:
        report.server_error = f"{type(exc).__name__}: {exc}"
        report.unreachable = isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))
        return False
    report.written_through = last_number
    return True
