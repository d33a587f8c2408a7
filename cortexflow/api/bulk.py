"""Enqueue a JSON Lines stream (one payload per line) in atomic batches.

A batch is ``batch_size`` consecutive non-blank lines, added with one ``add_bulk`` (all or
none). A line that is not JSON, or a payload its queue's schema refuses, aborts its own batch
only; the report names the line and what is wrong, and the other batches go in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.payload import encode_data, make_validator
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import PayloadError

DEFAULT_BATCH = 1000

# progress(lines read, bytes read): called after each batch.
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

    @property
    def skipped(self) -> int:
        return self.lines - len(self.ids)


@dataclass
class _Batch:
    jobs: list[tuple[str, Any, JobOptions | None]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    first: int = 0
    last: int = 0
    size: int = 0

    def add_line(self, number: int) -> None:
        if self.size == 0:
            self.first = number
        self.last = number
        self.size += 1


def _locate(engine: QueueEngine, batch: _Batch, exc: PayloadError) -> list[LineError]:
    """Every line of a refused batch that the engine's payload checks refuse, and why.

    (add_bulk stops at the first bad payload; the batch is re-checked, on this failure path
    only, to report them all.)
    """
    validator = make_validator(engine.config)
    found: list[LineError] = []
    for number, (_, data, _) in zip(batch.numbers, batch.jobs, strict=True):
        try:
            encode_data(engine.name, data, validator)
        except PayloadError as bad:
            found.append(
                LineError(number, "; ".join(f"{p or '/'}: {m}" for p, m in bad.violations))
            )
    if not found:
        detail = "; ".join(f"{p or '/'}: {m}" for p, m in exc.violations)
        found.append(LineError(batch.first, f"batch refused: {detail}"))
    return found


async def _flush(engine: QueueEngine, batch: _Batch, report: BulkReport) -> None:
    if batch.size == 0:
        return
    if batch.errors:
        report.failures.append(BatchFailure(batch.first, batch.last, batch.errors))
        return
    try:
        report.ids.extend(await engine.add_bulk(batch.jobs))
    except PayloadError as exc:
        report.failures.append(BatchFailure(batch.first, batch.last, _locate(engine, batch, exc)))


async def enqueue_lines(
    engine: QueueEngine,
    lines: Iterable[bytes],
    *,
    name: str,
    opts: JobOptions | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> BulkReport:
    """Add one job per non-blank line of ``lines``; see the module docstring for batches."""
    report = BulkReport()
    batch = _Batch()
    nbytes = 0
    for number, raw in enumerate(lines, 1):
        nbytes += len(raw)
        if not raw.strip():
            continue
        batch.add_line(number)
        report.lines += 1
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            batch.errors.append(LineError(number, f"not valid JSON: {exc.msg}", exc.colno))
        except UnicodeDecodeError as exc:
            batch.errors.append(LineError(number, f"not UTF-8 text: {exc.reason}"))
        else:
            batch.jobs.append((name, data, opts))
            batch.numbers.append(number)
        if batch.size >= batch_size:
            await _flush(engine, batch, report)
            batch = _Batch()
            if progress is not None:
                progress(report.lines, nbytes)
    await _flush(engine, batch, report)
    if progress is not None:
        progress(report.lines, nbytes)
    return report
