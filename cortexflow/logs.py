"""Structured logs: `--log-format json` (or `logging.format: json` in queues.yaml) makes
`up`, `worker` and `dashboard` write one JSON object per line (docs/observability.md, Logs).

A record carries ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``pid``, the
``queue`` and ``replica`` of a worker, ``job_id`` and ``attempt`` while a job runs (the worker
sets them with ``set_job`` around each run: a contextvar, so every line a handler or cortexflow
writes during the run carries them, in threads too), ``trace_id``/``span_id`` when a span is
current (cortexflow/telemetry.py, when present), ``message`` and ``exc`` (a traceback as one
string: never a line break in the output).

A leaf module: the worker, the supervisor, the dashboard and the CLI all use it.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
# The format `up` resolved, for its children (and a worker's handler processes).
ENV_LOG_FORMAT = "CORTEXFLOW_LOG_FORMAT"
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"

_job: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "cortexflow_job", default=None
)


_queue: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cortexflow_queue", default=None
)


def set_queue(name: str) -> None:
    """Mark the current context as working for queue ``name``: in a worker process that
    serves several queues, each queue's tasks run in a context of their own, so every record
    they write carries their queue (over the process's static one)."""
    _queue.set(name)


def set_job(job_id: str, attempt: int) -> contextvars.Token[tuple[str, int] | None]:
    """Mark the current context as running ``job_id``'s ``attempt`` (each run is a task of its
    own, so its context ends with it; ``reset_job(token)`` undoes it elsewhere)."""
    return _job.set((job_id, attempt))


def reset_job(token: contextvars.Token[tuple[str, int] | None]) -> None:
    _job.reset(token)


def current_job() -> tuple[str, int] | None:
    """(job id, attempt) of the run this code is part of, if any."""
    return _job.get()


def resolve_format(
    flag: str | None, configured: str = "text", env: Mapping[str, str] | None = None
) -> LogFormat:
    """The command's flag, else $CORTEXFLOW_LOG_FORMAT (what `up` hands its children), else
    queues.yaml's ``logging.format``, else text."""
    env = os.environ if env is None else env
    for value in (flag, env.get(ENV_LOG_FORMAT), configured):
        if value == "json":
            return "json"
        if value == "text":
            return "text"
    return "text"


def iso_utc(ts: float) -> str:
    """``2026-01-01T12:00:01.123Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_trace_ids: Callable[[], tuple[str, str] | None] | None = None
_trace_looked = False


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, from cortexflow.telemetry when it exists (it
    is looked up once, on the first record, by name: it is optional and imports nothing of
    OpenTelemetry unless the extra is installed)."""
    global _trace_ids, _trace_looked
    if not _trace_looked:
        _trace_looked = True  # first: an import that logs must not look again
        try:
            module = importlib.import_module("cortexflow.telemetry")
            _trace_ids = getattr(module, "current_trace_ids", None)
        except Exception:
            _trace_ids = None
    if _trace_ids is None:
        return None
    try:
        return _trace_ids()
    except Exception:
        return None


def dumps(record: Mapping[str, Any]) -> str:
    """One line of JSON (json escapes every control character, so never a line break)."""
    return json.dumps(record, ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """A logging record as one JSON object; ``static`` (queue, replica) goes into each."""

    def __init__(self, **static: Any) -> None:
        super().__init__()
        static.pop("use_colors", None)  # what uvicorn may pass to its formatters
        self._static = {k: v for k, v in static.items() if v is not None}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process if record.process is not None else os.getpid(),
            **self._static,
        }
        queue = _queue.get()
        if queue is not None:
            out["queue"] = queue
        job = _job.get()
        if job is not None:
            out["job_id"], out["attempt"] = job
        ids = trace_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        out["message"] = record.getMessage()
        exc = ""
        if record.exc_info:
            exc = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            exc = f"{exc}\n{self.formatStack(record.stack_info)}" if exc else record.stack_info
        if exc:
            out["exc"] = exc
        return dumps(out)


def setup_logging(fmt: LogFormat, level: int = logging.INFO, **static: Any) -> None:
    """The root logger writes to stderr in ``fmt``: text is ``LEVEL logger: message`` (added
    only if the root has no handler yet, as logging.basicConfig does); json replaces the root's
    handlers, and warnings.warn() goes through it too."""
    if fmt != "json":
        logging.basicConfig(level=level, stream=sys.stderr, format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(**static))
    logging.captureWarnings(True)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def uvicorn_log_config(fmt: LogFormat) -> dict[str, Any] | None:
    """uvicorn's log config: None (its own, text) or its loggers through JsonFormatter."""
    if fmt != "json":
        return None
    formatter = {"()": f"{__name__}.JsonFormatter"}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn sets use_colors on these two when asked; both are the JSON formatter here.
        "formatters": {"json": formatter, "default": formatter, "access": formatter},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }
