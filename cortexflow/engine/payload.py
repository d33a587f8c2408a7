"""Payloads and job options are checked here, before anything is written (docs/engine.md)."""

from __future__ import annotations

import functools
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

import jsonschema

from cortexflow.config.model import Backoff, QueueConfig
from cortexflow.engine.jobs import MAX_PRIORITY, JobOptions
from cortexflow.engine.text import MAX_NAME_BYTES
from cortexflow.errors import PayloadError, UsageError

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
_JOB_ID = re.compile(r"[^\s:]{1,256}")  # fullmatch: no trailing newline slips through


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
    """(job id, priority, delay ms, options JSON) with the queue's defaults filled in."""
    if opts is None:  # the common case: the queue's own (already validated) settings
        q = queue
        options = _options_json(q.attempts, q.backoff, q.timeout, None, None)
        return uuid.uuid4().hex, q.priority, 0, options
    o = opts
    job_id = o.job_id if o.job_id is not None else uuid.uuid4().hex
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise UsageError(
            f"job id {job_id!r} is not valid: use 1-256 characters without spaces or ':'"
        )
    priority = queue.priority if o.priority is None else o.priority
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not 0 <= priority <= MAX_PRIORITY
    ):
        raise UsageError(f"priority must be an integer from 0 to {MAX_PRIORITY}, got {priority!r}")
    delay = 0.0 if o.delay is None else o.delay
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay < 10 * 365 * 86400
    ):
        raise UsageError(f"delay must be a non-negative duration, got {delay!r}")
    attempts = queue.attempts if o.attempts is None else o.attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise UsageError(f"attempts must be an integer >= 1, got {attempts!r}")
    timeout = queue.timeout if o.timeout is None else o.timeout
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise UsageError(f"timeout must be a positive duration, got {timeout!r}")
    backoff = o.backoff or queue.backoff
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
    options = _options_json(attempts, backoff, timeout, o.remove_on_complete, o.remove_on_fail)
    return job_id, priority, round(delay * 1000), options


@functools.lru_cache(maxsize=256, typed=True)  # typed: True and 1 mean different things
def _options_json(
    attempts: int,
    backoff: Backoff,
    timeout: float,
    remove_on_complete: bool | int | None,
    remove_on_fail: bool | int | None,
) -> str:
    """The job's stored options (bulk adds repeat the same few: computed once each)."""
    return json.dumps(
        {
            "attempts": attempts,
            "backoff": {
                "type": backoff.type,
                "delay": backoff.delay,
                "max": backoff.max,
                "jitter": backoff.jitter,
            },
            "timeout": timeout,
            "remove_on_complete": remove_on_complete,
            "remove_on_fail": remove_on_fail,
        },
        separators=(",", ":"),
    )
