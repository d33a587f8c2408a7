"""How a run ended: the retry decision (a pure function) and the one encoding of outcomes
for the finish script.

``decide(job, error, queue, rand)`` says what happens to a job after a run: completed, retried
after a delay, or failed for good (and whether it goes to the dead-letter queue). The worker
turns the decision into an ``Outcome``; ``encode_outcome`` is the only code that knows the
finish script's argument format.
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cortexflow.backoff import compute_backoff
from cortexflow.config.model import QueueConfig
from cortexflow.engine.jobs import Job
from cortexflow.engine.text import (
    MAX_ERROR_BYTES,
    MAX_RESULT_BYTES,
    MAX_STACKTRACE_BYTES,
    bounded,
    replace_surrogates,
)
from cortexflow.errors import UnrecoverableError
from cortexflow.redact import redact_urls_in

# Outcome.keep: follow the queue's retention (the finish script trims by age and count).
KEEP_BY_QUEUE = -1


class OutcomeKind(enum.Enum):
    COMPLETED = "c"
    RETRY = "r"  # failed, runs again after ``delay_ms``
    FAILED = "f"  # failed for good


@dataclass(frozen=True)
class Decision:
    """What happens to the job after a run (see ``decide``)."""

    kind: OutcomeKind
    delay: float = 0.0  # RETRY: seconds until the next run
    keep: int = KEEP_BY_QUEUE  # COMPLETED/FAILED: -1 queue retention, 0 remove now, N newest N
    dead_letter: bool = False  # FAILED: copy the job to the queue's dead-letter queue
    run: int = 1  # which run this was (1 for the first)


@dataclass(frozen=True)
class Outcome:
    """One run's outcome as the finish script records it.

    ``result`` (COMPLETED) is JSON text; ``error`` / ``stacktrace`` (RETRY, FAILED) are plain
    text. Build outcomes with ``completed()`` / ``failed()``, which bound and clean the texts.
    """

    kind: OutcomeKind
    job_id: str
    token: str
    result: str = "null"
    error: str = ""
    stacktrace: str = ""
    delay_ms: int = 0
    keep: int = KEEP_BY_QUEUE
    dead_letter: bool = False
    # `next:` hand-off groups (engine/routes.py encode_handoffs) and the parent's `children`.
    handoffs: tuple[Any, ...] = ()
    children: str = ""


def keep_rule(option: Any, keep_by_queue: bool) -> int:
    """A job's remove_on_complete / remove_on_fail and the queue's retention -> Outcome.keep."""
    if not keep_by_queue or option is True:
        return 0
    if isinstance(option, int) and not isinstance(option, bool) and option >= 0:
        return option
    return KEEP_BY_QUEUE


def decide(
    job: Job,
    error: BaseException | None,
    queue: QueueConfig,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """The retry decision after a run of ``job`` that raised ``error`` (None: it succeeded).

    Attempts count runs, the first included; the backoff comes from the job's options (its own
    or, where it set none, the queue's current ones) and is drawn with ``rand``.
    UnrecoverableError fails at once.
    """
    opts: Mapping[str, Any] = job.opts
    run = job.attempts_made + 1
    if error is None:
        keep = keep_rule(opts.get("remove_on_complete"), queue.retention.completed.keep)
        return Decision(OutcomeKind.COMPLETED, keep=keep, run=run)
    if run < job.attempts and not isinstance(error, UnrecoverableError):
        b = opts.get("backoff") or {}
        qb = queue.backoff
        delay = compute_backoff(
            b.get("type", qb.type),
            b.get("delay", qb.delay),
            b.get("max", qb.max),
            b.get("jitter", qb.jitter),
            run,
            rand,
        )
        return Decision(OutcomeKind.RETRY, delay=delay, run=run)
    keep = keep_rule(opts.get("remove_on_fail"), queue.retention.failed.keep)
    return Decision(
        OutcomeKind.FAILED, keep=keep, dead_letter=queue.dead_letter is not None, run=run
    )


def result_json(value: Any) -> str:
    """The stored form of a handler's return value: JSON text of at most MAX_RESULT_BYTES.

    Raises TypeError/ValueError when the value is not JSON-serialisable. Lone surrogates in
    strings become U+FFFD. A longer result is stored as a JSON string holding the start of its
    JSON text and the cut marker (a cut JSON text is not JSON).
    """
    if value is None:  # most handlers return nothing
        return "null"
    text = replace_surrogates(json.dumps(value, allow_nan=False, ensure_ascii=False))
    if len(text) * 4 > MAX_RESULT_BYTES and len(text.encode("utf-8")) > MAX_RESULT_BYTES:
        # Quotes and backslashes double when the text becomes a JSON string: half the room.
        text = json.dumps(bounded(text, MAX_RESULT_BYTES // 2), ensure_ascii=False)
    return text


def completed(job_id: str, token: str, result: str, decision: Decision) -> Outcome:
    return Outcome(OutcomeKind.COMPLETED, job_id, token, result=result, keep=decision.keep)


def failed(job_id: str, token: str, message: str, stacktrace: str, decision: Decision) -> Outcome:
    """A RETRY or FAILED outcome; the texts are cleaned and bounded here."""
    return Outcome(
        decision.kind,
        job_id,
        token,
        error=bounded(redact_urls_in(message), MAX_ERROR_BYTES),
        stacktrace=bounded(redact_urls_in(stacktrace), MAX_STACKTRACE_BYTES, keep_tail=True),
        delay_ms=round(decision.delay * 1000),
        keep=decision.keep,
        dead_letter=decision.dead_letter,
    )


def encode_outcome(o: Outcome) -> bytes:
    """The finish script's argument for one run: a JSON array
    ``[kind, id, token, result, error, stacktrace, delay_ms, keep, dead_letter (0/1)]``.

    Every text in it is valid UTF-8 (the builders above clean them), so cjson accepts it.
    orjson writes it (one per run on the worker's hot path: 0.2 us, where json.dumps takes 5);
    json.dumps is the fallback for what orjson refuses (a lone surrogate passed in by hand)."""
    run: tuple[Any, ...] = (
        o.kind.value,
        o.job_id,
        o.token,
        o.result,
        o.error,
        o.stacktrace,
        o.delay_ms,
        o.keep,
        1 if o.dead_letter else 0,
    )
    if o.handoffs:
        run = (*run, o.handoffs, o.children)
    try:
        return orjson.dumps(run)
    except TypeError:
        return json.dumps(run).encode()
