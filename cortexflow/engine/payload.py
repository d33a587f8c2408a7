"""Payloads and job options are checked here, before anything is written (docs/engine.md)."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import jsonschema

from cortexflow.backoff import MAX_ATTEMPTS
from cortexflow.config.model import Backoff, QueueConfig
from cortexflow.engine.jobs import MAX_PRIORITY, JobOptions, backoff_dict, new_job_id
from cortexflow.engine.text import MAX_NAME_BYTES
from cortexflow.errors import PayloadError, UsageError
from cortexflow.termsafe import UNSAFE_CHARS, escape_controls

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_JOB_ID = 256  # characters
MAX_DELAY = 10 * 365 * 86400.0  # seconds: a job's delay, backoff delay and max, timeout
# What a job id may not hold: whitespace and ':' (key and command-line syntax), '/' (a URL
# path separator, so every id is one path segment of the HTTP API and the UI), and what the
# terminal and the UI could not show as itself: control characters, lone surrogates and the
# bidirectional overrides (cortexflow.termsafe's set). "." and ".." are refused as well: a
# browser or proxy folds them out of any URL path, encoded or not.
JOB_ID_FORBIDDEN = re.compile(f"[\\s:/{UNSAFE_CHARS}]")
JOB_ID_RULE = (
    f"a job id is 1-{MAX_JOB_ID} characters other than whitespace, ':', '/', control "
    "characters and bidirectional overrides, and is not '.' or '..'"
)


def make_validator(queue: QueueConfig) -> jsonschema.protocols.Validator | None:
    if queue.payload_schema_doc is None:
        return None
    schema = dict(queue.payload_schema_doc)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def encode_data(queue: str, data: Any, validator: jsonschema.protocols.Validator | None) -> str:
    """JSON text of ``data`` or PayloadError listing every problem (JSON pointer + message)."""
    if not isinstance(data, Mapping):
        raise PayloadError(queue, [("", f"a job's data must be a JSON object, got {_kind(data)}")])
    try:
        text = json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(queue, [("", f"not JSON-serialisable: {exc}")]) from None
    except RecursionError:
        raise PayloadError(queue, [("", "nested too deeply to serialise")]) from None
    # The limit is in bytes of UTF-8; short text cannot reach it, so it is not encoded twice.
    if len(text) * 4 > MAX_PAYLOAD_BYTES or not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            where = text[max(exc.start - 20, 0) : exc.start].encode("utf-8", "replace")
            raise PayloadError(
                queue,
                [
                    (
                        "",
                        "a string holds a lone surrogate (text decoded with surrogateescape?), "
                        f"which is not valid Unicode; after {where.decode()!r}",
                    )
                ],
            ) from None
        if size > MAX_PAYLOAD_BYTES:
            raise PayloadError(
                queue, [("", f"{size:,} bytes is over the {MAX_PAYLOAD_BYTES:,} byte limit")]
            )
    if validator is not None:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            raise PayloadError(queue, [(_pointer(e.absolute_path), e.message) for e in errors])
    return text


def check_name(name: Any) -> None:
    """A job name is a non-empty string of valid Unicode, at most MAX_NAME_BYTES."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"job name must be a non-empty string, got {name!r}")
    if len(name) * 4 > MAX_NAME_BYTES or not name.isascii():
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            raise UsageError(
                f"job name {name!r} holds a lone surrogate, which is not valid Unicode"
            ) from None
        if size > MAX_NAME_BYTES:
            raise UsageError(f"job name is {size:,} bytes; the limit is {MAX_NAME_BYTES:,}")


def _pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def resolve_options(queue: QueueConfig, opts: JobOptions | None) -> tuple[str, int, int, str]:
    """(job id, priority, delay ms, overrides JSON): the JSON holds only the options the job
    sets itself ('' when none: the job follows the queue's settings, docs/engine.md)."""
    if opts is None:  # the common case: the queue's own (already validated) settings
        return new_job_id(), queue.priority, 0, ""
    o = opts
    job_id = new_job_id() if o.job_id is None else check_job_id(o.job_id)
    priority = queue.priority if o.priority is None else o.priority
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not 0 <= priority <= MAX_PRIORITY
    ):
        raise UsageError(f"priority must be an integer from 0 to {MAX_PRIORITY}, got {priority!r}")
    delay = 0.0 if o.delay is None else o.delay
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < MAX_DELAY:
        raise UsageError(f"delay must be a non-negative duration under 10 years, got {delay!r}")
    if o.attempts is not None and (
        isinstance(o.attempts, bool)
        or not isinstance(o.attempts, int)
        or not 1 <= o.attempts <= MAX_ATTEMPTS
    ):
        raise UsageError(
            f"attempts must be an integer from 1 to {MAX_ATTEMPTS:,}, got {o.attempts!r}"
        )
    if o.backoff is not None:
        for what, seconds in (("delay", o.backoff.delay), ("max", o.backoff.max)):
            if not _duration_ok(seconds):
                raise UsageError(
                    f"backoff.{what} must be a non-negative duration under 10 years, "
                    f"got {seconds!r} s"
                )
    if o.timeout is not None and (not _duration_ok(o.timeout) or o.timeout <= 0):
        raise UsageError(f"timeout must be a positive duration under 10 years, got {o.timeout!r}")
    for name, value in (
        ("remove_on_complete", o.remove_on_complete),
        ("remove_on_fail", o.remove_on_fail),
    ):
        if (
            value is not None
            and not isinstance(value, bool)
            and (not isinstance(value, int) or value < 0)
        ):
            raise UsageError(f"{name} must be true, false or a count >= 0, got {value!r}")
    options = _overrides_json(
        o.attempts, o.backoff, o.timeout, o.remove_on_complete, o.remove_on_fail
    )
    return job_id, priority, round(delay * 1000), options


def check_job_id(job_id: Any) -> str:
    """``job_id`` when it is a valid job id (JOB_ID_RULE), else UsageError saying why. The one
    check of every face: the Python API, the CLI, the HTTP API and schedules all add through
    the engine, which calls it."""
    if not isinstance(job_id, str):
        raise UsageError(f"a job id is a string, got {job_id!r}; {JOB_ID_RULE}")
    shown = escape_controls(job_id[:80], keep_newlines=False) + ("..." if len(job_id) > 80 else "")
    if not 1 <= len(job_id) <= MAX_JOB_ID:
        raise UsageError(
            f"job id '{shown}' is not valid: it has {len(job_id):,} characters; {JOB_ID_RULE}"
        )
    bad = JOB_ID_FORBIDDEN.search(job_id)
    if bad:
        char = bad.group()
        what = repr(char) if char.isascii() and char.isprintable() else f"U+{ord(char):04X}"
        raise UsageError(
            f"job id '{shown}' is not valid: character {bad.start() + 1} is {what}; {JOB_ID_RULE}"
        )
    if job_id in (".", ".."):
        raise UsageError(f"job id {job_id!r} is not valid; {JOB_ID_RULE}")
    return job_id


def _duration_ok(seconds: Any) -> bool:
    return (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and 0 <= seconds < MAX_DELAY
    )


@functools.lru_cache(maxsize=256, typed=True)  # typed: True and 1 mean different things
def _overrides_json(
    attempts: int | None,
    backoff: Backoff | None,
    timeout: float | None,
    remove_on_complete: bool | int | None,
    remove_on_fail: bool | int | None,
) -> str:
    """The job's stored options: only those it sets ('' for none; bulk adds repeat the same
    few, computed once each). Readers fill the rest from the queue (jobs.queue_options)."""
    stored: dict[str, Any] = {}
    if attempts is not None:
        stored["attempts"] = attempts
    if backoff is not None:
        stored["backoff"] = backoff_dict(backoff)
    if timeout is not None:
        stored["timeout"] = timeout
    if remove_on_complete is not None:
        stored["remove_on_complete"] = remove_on_complete
    if remove_on_fail is not None:
        stored["remove_on_fail"] = remove_on_fail
    return json.dumps(stored, separators=(",", ":")) if stored else ""
