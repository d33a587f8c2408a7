"""One pass of one system on a flushed server: add N jobs (timed by the producer process), the
server memory they take, then one worker process drains them (timed by its own handler)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from bench.measure import BenchError
from bench.peers.tally import RESULT_KEY
from bench.procs import Children, loadavg, tail

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setup:
    """What every pass shares: the server, the folder for logs, N, the children, the limits."""

    url: str
    workdir: Path
    jobs: int
    children: Children
    pass_seconds: float

    @property
    def serial(self) -> int:
        return self.jobs // 4

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(BENCH_REDIS_URL=self.url, BENCH_JOBS=str(self.jobs), PYTHONPATH=str(REPO))
        env.pop("CORTEXFLOW_PARENT_PID", None)
        return env


@dataclass(frozen=True)
class PeerResult:
    system: str
    run: int
    serial_rate: float
    bulk_rate: float | None
    process_rate: float
    worker_cpu_us: float
    bytes_per_job: float
    job_key_bytes: int | None
    loadavg: float
    seconds: float


def used_memory(admin: redis.Redis) -> int:
    """The server's used_memory once only this client is connected and nothing waits to be
    freed (a closing client's buffers, or a lazy flush, would count otherwise)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = admin.info()
        if int(info["connected_clients"]) <= 1 and int(info["lazyfree_pending_objects"]) == 0:
            break
        time.sleep(0.02)
    return int(admin.info("memory")["used_memory"])


def one_job_key_bytes(admin: redis.Redis, pattern: str | None) -> int | None:
    """MEMORY USAGE (every element counted) of the first key that matches ``pattern``."""
    if pattern is None:
        return None
    for key in admin.scan_iter(match=pattern, count=1000):
        return int(admin.memory_usage(key, samples=0) or 0)
    return None


def wait_exit(proc: Any, deadline: float) -> None:
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise BenchError("the producer did not finish in time")
        time.sleep(0.05)


def produce(setup: Setup, adapter: ModuleType, run: int) -> dict[str, Any]:
    """Run the adapter's producer process; its last output line is the JSON of its rates."""
    log = setup.workdir / f"{adapter.NAME}-produce-{run}.log"
    argv = adapter.produce_argv(setup.url, setup.serial, setup.jobs)
    proc = setup.children.spawn(argv, env=setup.env(), cwd=REPO, log=log)
    try:
        wait_exit(proc, time.monotonic() + setup.pass_seconds)
    finally:
        setup.children.stop(proc)
    lines = log.read_text(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchError(f"{adapter.NAME}: the producer failed\n{tail(log)}")
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


def drain(setup: Setup, adapter: ModuleType, admin: redis.Redis, run: int) -> dict[str, Any]:
    """Start one worker; wait for its handler's report (BLPOP), then stop it."""
    log = setup.workdir / f"{adapter.NAME}-worker-{run}.log"
    argv = adapter.worker_argv(setup.url, setup.workdir)
    proc = setup.children.spawn(argv, env=setup.env(), cwd=setup.workdir, log=log)
    deadline = time.monotonic() + setup.pass_seconds
    try:
        while True:
            got = admin.blpop([RESULT_KEY], timeout=1)
            if got is not None:
                doc: dict[str, Any] = json.loads(got[1])
                return doc
            if proc.poll() is not None:
                raise BenchError(f"{adapter.NAME}: the worker exited\n{tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"{adapter.NAME}: not drained in {setup.pass_seconds:.0f}s")
    finally:
        setup.children.stop(proc)


def run_pass(setup: Setup, adapter: ModuleType, admin: redis.Redis, run: int) -> PeerResult:
    started, load = time.perf_counter(), loadavg()
    admin.execute_command("FLUSHALL", "SYNC")  # type: ignore[no-untyped-call]  # Valkey 8 is lazy
    base = used_memory(admin)
    rates = produce(setup, adapter, run)
    waiting = (used_memory(admin) - base) / setup.jobs
    key_bytes = one_job_key_bytes(admin, adapter.JOB_KEYS)
    done = drain(setup, adapter, admin, run)
    return PeerResult(
        system=adapter.NAME,
        run=run,
        serial_rate=float(rates["serial"]),
        bulk_rate=None if rates.get("bulk") is None else float(rates["bulk"]),
        process_rate=float(done["rate"]),
        worker_cpu_us=float(done["cpu_us"]),
        bytes_per_job=waiting,
        job_key_bytes=key_bytes,
        loadavg=load,
        seconds=time.perf_counter() - started,
    )
