"""The queue gauges over OpenTelemetry, from a real `cortexflow dashboard` process.

The dashboard, with OTEL_EXPORTER_OTLP_ENDPOINT set, exports what /metrics shows as gauges
(jobs waiting/active/delayed, paused, live workers; the Prometheus names, one series per queue,
read from Redis at each collection) and the jobs failed for good as the queue counts them, a
stalled job's failure included, to the test's OTLP receiver."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import redis

from cortexflow.config.model import QueueConfig
from cortexflow.engine import registry
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.options import JobOptions
from tests.helpers.jobs import PREFIX, engine_for
from tests.helpers.poll import wait_for, wait_for_async
from tests.helpers.procs import clean_env, cortexflow_argv
from tests.helpers.project import write_project
from tests.otel.conftest import OtlpReceiver

QUEUES = f"""
redis:
  prefix: {PREFIX}
queues:
  work:
    handler: h:handle
  held:
    handler: h:handle
  brittle:
    handler: h:handle
    lease: 100ms
    max_stalls: 0
"""


async def _fill(url: str) -> None:
    """work: 2 waiting, 1 live worker; held: paused, 1 delayed; brittle: a job its worker
    leased and never renewed (it "died"), failed for good by the next fetch's stall check."""
    async with engine_for(url, QueueConfig(name="work", handler="h:handle")) as e:
        await e.add("a", {})
        await e.add("b", {})
        await registry.publish_worker(e.client, PREFIX, "work", "w1", {"host": "h"}, 60)
    async with engine_for(url, QueueConfig(name="held", handler="h:handle")) as e:
        await e.pause()
        await e.add("later", {}, JobOptions(delay=3_600_000))
    brittle = QueueConfig(name="brittle", handler="h:handle", lease=0.1, max_stalls=0)
    async with engine_for(url, brittle) as e:
        await e.add("s", {}, JobOptions(job_id="s"))
        consumer = QueueConsumer(e, "w", e.client)
        assert len((await consumer.fetch(1)).jobs) == 1

        async def stalled_failed() -> bool:
            await consumer.fetch(1)
            return bool(await e.client.zscore(e.keys.failed, "s"))

        await wait_for_async(stalled_failed, 10, message="the stalled job fails")


async def _add(url: str) -> None:
    async with engine_for(url, QueueConfig(name="work", handler="h:handle")) as e:
        await e.add("c", {})


def _latest(otlp: OtlpReceiver, name: str) -> dict[str, Any]:
    """queue -> the newest value of metric ``name``."""
    out: dict[str, Any] = {}
    with otlp.lock:
        for m in otlp.metrics:
            if m["name"] == name:
                for p in m["points"]:
                    out[p["attributes"]["queue"]] = p["value"]
    return out


def test_dashboard_exports_the_queue_gauges(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, otlp: OtlpReceiver
) -> None:
    cfg = write_project(tmp_path / "p", QUEUES, {"h.py": "async def handle(data):\n    pass\n"})
    asyncio.run(_fill(redis_url))
    env = clean_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "CORTEXFLOW_TOKEN": "t" * 32,
        }
    )
    argv = cortexflow_argv("dashboard", "-f", str(cfg), "--redis-url", redis_url)
    proc = subprocess.Popen(
        [*argv, "--port", "0"],  # it only exports metrics: any free port
        env=env,
        cwd=cfg.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    want = {
        "cortexflow_jobs_waiting": {"work": 2, "held": 0, "brittle": 0},
        "cortexflow_jobs_active": {"work": 0, "held": 0, "brittle": 0},
        "cortexflow_jobs_delayed": {"work": 0, "held": 1, "brittle": 0},
        "cortexflow_queue_paused": {"work": 0, "held": 1, "brittle": 0},
        "cortexflow_workers_alive": {"work": 1, "held": 0, "brittle": 0},
        "cortexflow_queue_jobs_failed": {"work": 0, "held": 0, "brittle": 1},
    }
    try:
        wait_for(
            lambda: all(_latest(otlp, n) == v for n, v in want.items()),
            30,
            message=lambda: f"{ {n: _latest(otlp, n) for n in want} }",
        )
        asyncio.run(_add(redis_url))  # read at each collection: the next export shows it
        wait_for(
            lambda: _latest(otlp, "cortexflow_jobs_waiting")["work"] == 3,
            10,
            message=lambda: f"{_latest(otlp, 'cortexflow_jobs_waiting')}",
        )
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
    kinds = {m["name"]: m["kind"] for m in otlp.metrics}
    assert {kinds[n] for n in want if n != "cortexflow_queue_jobs_failed"} == {"gauge"}
    assert kinds["cortexflow_queue_jobs_failed"] == "sum"
