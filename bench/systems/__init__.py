"""The systems ``bench/engine.py`` compares. Each is one module with the same small interface:

- ``NAME``: its name on the command line and in the table;
- ``label_for(gather_chunk)``: its row label (how it enqueues and how its worker runs);
- ``prepare(workdir)``: write its files (handler, app, queues.yaml) into the temporary folder;
- ``run_pass(ctx, admin, run)``: one pass on a flushed server -> ``PassResult``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType

from bench.measure import BenchError
from bench.procs import Children

REPO = Path(__file__).resolve().parents[2]
CONCURRENCY = 10


@dataclass(frozen=True)
class Context:
    """Everything a pass needs: the server, the folder, the sizes, the time left."""

    workdir: Path
    url: str
    server_pid: int
    children: Children
    jobs: int
    pickups: int
    gather_chunk: int
    deadline: float
    persistence: str
    cf_worker_cmd: str | None = None
    profile: Path | None = None

    @property
    def serial_jobs(self) -> int:
        return self.jobs // 4

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["BENCH_REDIS_URL"] = self.url
        env["BENCH_WORKDIR"] = str(self.workdir)
        # --baseline: that commit's cortexflow package comes first (bench/systems/baseline.py)
        tree = [t] if (t := os.environ.get("BENCH_CORTEXFLOW_TREE")) else []
        env["PYTHONPATH"] = os.pathsep.join([*tree, str(self.workdir), str(REPO)])
        env.pop("CORTEXFLOW_PARENT_PID", None)
        return env

    def time_left(self, want: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BenchError("out of time (--max-seconds)")
        return min(want, left)


def all_systems() -> Mapping[str, ModuleType]:
    """name -> module, in the order of the table."""
    from bench.systems import baseline, cortexflow, taskiq_redis

    return MappingProxyType({m.NAME: m for m in (cortexflow, baseline, taskiq_redis)})
