"""`isolation: process`: the handler's own process gets the run's trace context, so what it adds
(with a QueueManager of its own: ``job.add_job`` is not available there, docs/isolation.md) is a
child of the run's span, not the root of a new trace.

A real `cortexflow worker` exports over OTLP/HTTP to the test's receiver; its handler runs in a
child process retired after each job (``max_jobs_per_child: 1``: SIGKILLed as soon as it
answered), so the child must have exported its spans before it answered."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from tests.helpers.jobs import wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, cortexflow_argv, run_cli
from tests.helpers.project import write_project
from tests.otel.conftest import OtlpReceiver

PRODUCER, CONSUMER = 4, 5  # OTLP span kinds

QUEUES = """
queues:
  iso:
    handler: iso:handle
    isolation: process
    max_jobs_per_child: 1
  after:
    handler: iso:handle
"""

HANDLER = """
import os
from cortexflow import QueueManager

async def handle(data, job):
    if job.queue == "iso":
        config = os.path.join(os.path.dirname(__file__), "queues.yaml")
        async with QueueManager(config, data["url"]) as manager:
            await manager.add_job("after", "next", {"pid": os.getpid()})
    return "ok"
"""


def test_add_job_in_a_handler_process_is_a_child_of_the_run(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, otlp: OtlpReceiver
) -> None:
    cfg = write_project(tmp_path / "p", QUEUES, {"iso.py": HANDLER})
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_SERVICE_NAME": "worker-iso",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRICS_EXPORTER": "none",
    }
    argv = cortexflow_argv("worker", "iso", "-f", str(cfg), "--redis-url", redis_url)
    worker = Proc(argv, cwd=cfg.parent, log_dir=tmp_path, env=env, name="worker-iso")
    try:
        wait_workers_ready(redis_client, "iso")
        # added by the CLI, which traces nothing: the run's span is the root of its trace
        added = run_cli(
            "enqueue",
            "iso",
            "-",
            "-f",
            str(cfg),
            "--redis-url",
            redis_url,
            input=json.dumps({"url": redis_url}),
        )
        assert added.returncode == 0, added.stderr
        wait_for(
            lambda: {s["name"] for s in otlp.spans} >= {"process iso", "send after"},
            30,
            message=lambda: f"the run's span and the child's add; got {otlp.spans}\n{worker.log()}",
        )
    finally:
        worker.stop()
    runs = [s for s in otlp.spans if s["name"] == "process iso"]
    sends = [s for s in otlp.spans if s["name"] == "send after"]
    assert len(runs) == 1 and len(sends) == 1, otlp.spans
    run, send = runs[0], sends[0]
    assert run["kind"] == CONSUMER and send["kind"] == PRODUCER
    assert send["trace_id"] == run["trace_id"]
    assert send["parent_id"] == run["span_id"]
    assert send["service"] == "worker-iso"  # the child's resource: the worker's variables
    assert run["attributes"]["cortexflow.job.outcome"] == "completed"
