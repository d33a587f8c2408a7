"""Without the otel extra: no cortexflow module imports opentelemetry, adds and runs work, and
nothing is exported even with the OTEL_* variables set (the worker says why, once).

The extra is "absent" through a sitecustomize that refuses every ``opentelemetry*`` import in
the producer and the worker process alike (redis-py tries it too, and copes), recording which
module asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.helpers.jobs import wait_workers_ready
from tests.helpers.procs import Proc, clean_env, cortexflow_argv
from tests.helpers.project import write_project
from tests.otel.conftest import OtlpReceiver

BLOCK = """
import atexit, json, os, sys

_asked = []


class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] != "opentelemetry":
            return None
        frame = sys._getframe(1)
        while frame and (frame.f_code.co_filename.startswith("<") or frame.f_code is _CODE):
            frame = frame.f_back
        _asked.append([name, frame.f_code.co_filename if frame else "?"])
        raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)


_CODE = _Refuse.find_spec.__code__
sys.meta_path.insert(0, _Refuse())


@atexit.register
def _report():
    with open(os.path.join(os.environ["BLOCK_REPORT"], f"{os.getpid()}.json"), "w") as f:
        json.dump({"asked": _asked, "loaded": [m for m in sys.modules if "opentelemetry" in m]}, f)
"""

PRODUCER = """
import asyncio, sys
from cortexflow.api.manager import QueueManager

async def main():
    async with QueueManager(sys.argv[1], sys.argv[2]) as manager:
        job_id = await manager.add_job("plain", "n", {"n": 1})
        engine = await manager._engine("plain")
        job = await engine.wait_finished(job_id, 30)
        print(job.state, job.opts)

asyncio.run(main())
"""

CF = str(Path(__file__).resolve().parents[2] / "cortexflow")

QUEUES = """
queues:
  plain:
    handler: plain:handle
"""


def test_no_extra_no_import_and_nothing_exported(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, otlp: OtlpReceiver
) -> None:
    block, report = tmp_path / "block", tmp_path / "report"
    block.mkdir()
    report.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK)
    cfg = write_project(
        tmp_path / "p",
        QUEUES,
        {"plain.py": "async def handle(data):\n    return data\n", "prod.py": PRODUCER},
    )
    env = {
        "PYTHONPATH": str(block),
        "BLOCK_REPORT": str(report),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
    }
    argv = cortexflow_argv("worker", "plain", "-f", str(cfg), "--redis-url", redis_url)
    worker = Proc(argv, cwd=cfg.parent, log_dir=tmp_path, env=env, name="worker")
    try:
        wait_workers_ready(redis_client, "plain")
        done = subprocess.run(
            [sys.executable, "prod.py", str(cfg), redis_url],
            check=False,
            cwd=cfg.parent,
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[0] == "completed"
        assert "traceparent" not in done.stdout
    finally:
        worker.stop()
    assert "the otel extra is not installed" in worker.err() + worker.out()
    reports = [json.loads(p.read_text()) for p in report.iterdir()]
    assert len(reports) == 2  # the producer and the worker both ran under the block
    assert all(r["loaded"] == [] for r in reports)
    # cortexflow's only try: the worker's probe, because the OTEL_* variables ask for an export
    by_cortexflow = sorted(
        [name, Path(where).name] for r in reports for name, where in r["asked"] if CF in where
    )
    assert by_cortexflow == [["opentelemetry", "telemetry.py"]]
    assert otlp.spans == [] and otlp.metrics == []


def test_sdk_disabled_turns_the_worker_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true: no provider is set up, whatever else the variables ask for."""
    from cortexflow import telemetry as otel

    monkeypatch.setattr(otel, "_configured", None)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert otel.setup_from_env() == (False, False)
