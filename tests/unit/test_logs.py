"""cortexflow/logs.py: the JSON record (one line whatever the message or traceback holds), the
job context, trace ids from the current OTel span, and which format wins."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest

from cortexflow import logs
from cortexflow.logs import JsonFormatter, resolve_format, set_job


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("myapp.part", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_a_record_is_one_line_of_json_with_its_fields() -> None:
    line = JsonFormatter(queue="emails", replica=2).format(record("a\nb %s", "c", exc=True))
    assert "\n" not in line
    r = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"])
    assert (r["level"], r["logger"], r["queue"], r["replica"]) == (
        "ERROR",
        "myapp.part",
        "emails",
        2,
    )
    assert r["message"] == "a\nb c"
    assert r["exc"].startswith("Traceback") and r["exc"].endswith("ValueError: bad\nvalue")
    assert isinstance(r["pid"], int)
    assert "job_id" not in r and "trace_id" not in r


def test_the_job_of_the_current_context_and_only_there() -> None:
    formatter = JsonFormatter()

    async def run(job_id: str, attempt: int) -> dict[str, object]:
        set_job(job_id, attempt)
        await asyncio.sleep(0)
        return dict(json.loads(formatter.format(record("in a run"))))

    async def main() -> list[dict[str, object]]:
        return await asyncio.gather(run("a", 1), run("b", 3))

    a, b = asyncio.run(main())
    assert (a["job_id"], a["attempt"], b["job_id"], b["attempt"]) == ("a", 1, "b", 3)
    assert "job_id" not in json.loads(formatter.format(record("outside")))


def test_trace_and_span_id_of_the_current_span() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider

    logs._trace_looked = False  # looked up again: cortexflow.telemetry may be new here
    tracer = TracerProvider().get_tracer("test")
    formatter = JsonFormatter()
    with tracer.start_as_current_span("run") as span:
        r = json.loads(formatter.format(record("traced")))
    ctx = span.get_span_context()
    assert r["trace_id"] == f"{ctx.trace_id:032x}" and r["span_id"] == f"{ctx.span_id:016x}"
    assert "trace_id" not in json.loads(formatter.format(record("after")))


def test_the_flag_wins_then_the_environment_then_queues_yaml() -> None:
    env = {logs.ENV_LOG_FORMAT: "json"}
    assert resolve_format("text", "json", env) == "text"
    assert resolve_format(None, "text", env) == "json"
    assert resolve_format(None, "json", {}) == "json"
    assert resolve_format(None, "text", {}) == "text"
    assert resolve_format(None, "text", {logs.ENV_LOG_FORMAT: "yaml"}) == "text"
