"""`isolation: process`: handlers run in a pool of child processes of the worker.

Each child is a fresh interpreter (multiprocessing's spawn, never a fork of the worker with its
event loop and threads) that imports the handler once and then runs one job at a time, sent over
a pipe; the worker keeps its leases, fetches and outcomes as usual. What this buys:

- timeouts are real: a run past its timeout (or a run still going at the stop deadline) gets its
  process SIGKILLed, and a new process takes its place on demand, so a hung or CPU-bound handler
  can never hold a slot, a thread or the worker's event loop;
- a crash of the handler's process (segfault, os._exit, the OOM killer) fails that attempt
  ("the handler's process died") instead of killing the worker and stalling every job in it;
- leaks are bounded: ``max_jobs_per_child`` and ``max_memory_per_child`` (resident memory after
  a job) replace a child when it reaches them.

A queue of taskiq tasks (``tasks:``) works the same way: each child imports the broker, runs its
worker startup and then the tasks (worker/taskrun.py), and the worker never imports the broker's
module; at the worker's stop its idle children run the broker's shutdown (killed ones cannot).

Children ignore SIGTERM/SIGINT (the supervisor signals the worker's whole process group; the
worker decides what happens to them) and die with the worker (parent-death signal, and EOF on
their pipe).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
import traceback
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from cortexflow.config.model import QueueConfig
from cortexflow.engine import tracing
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import UnrecoverableError
from cortexflow.logs import reset_job, set_job
from cortexflow.pdeathsig import die_with_parent
from cortexflow.telemetry import flush_traces, setup_from_env
from cortexflow.worker.context import JobContext
from cortexflow.worker.handlers import HandlerImportError, Requeue, Run, Runner
from cortexflow.worker.pipe import ChildAdds, HandlerProcessDied, answer_adds, recv

_SPAWN = multiprocessing.get_context("spawn")
READY_TIMEOUT = 60.0  # seconds a new child gets to import its handler
# Seconds the idle children of a tasks queue get at the worker's stop to run the broker's
# shutdown (WORKER_SHUTDOWN, middlewares' shutdown) and exit before they are SIGKILLed.
SHUTDOWN_GRACE = 5.0


class HandlerProcessError(Exception):
    """A handler run in a child process raised; ``str()`` is the child's message."""


def _remote_error(name: str, text: str, tb: str, unrecoverable: bool) -> BaseException:
    """The child's exception, rebuilt with its type name and its traceback as the cause."""
    if unrecoverable:
        error: BaseException = UnrecoverableError(text)
    else:
        kind = type(name, (HandlerProcessError,), {"__module__": "handler"})
        error = kind(text)
    error.__cause__ = _RemoteTraceback(tb)
    return error


class _RemoteTraceback(Exception):
    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n(in the handler's process)\n{self.tb}"


class _Child:
    def __init__(self, proc: Any, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.jobs = 0

    def kill(self) -> None:
        """SIGKILL (the child ignores SIGTERM) and reap it."""
        with contextlib.suppress(ProcessLookupError, OSError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(5)
        self.conn.close()


class ProcessPool:
    """Up to ``size`` child processes running ``queue``'s handler (or its ``tasks:`` broker's
    tasks), one job at a time each."""

    def __init__(self, queue: QueueConfig, base_dir: Path, size: int, redis_url: str) -> None:
        self.queue = queue
        self.redis_url = redis_url
        self.base_dir = base_dir
        self.size = size
        self._idle: list[_Child] = []
        self._busy = 0
        self._spawning = 0  # replacements being started in the background
        self._free = asyncio.Condition()
        self._refills: set[asyncio.Task[None]] = set()
        self._children: set[_Child] = set()  # every child started and not yet killed

    async def start(self) -> None:
        """Start one child and wait until it imported the handler (HandlerImportError if not);
        the other ``size - 1`` start in the background (a prefork pool)."""
        child = await self._spawn()
        self._idle.append(child)
        for _ in range(self.size - 1):
            self._refill()

    async def _spawn(self) -> _Child:
        parent, child_end = _SPAWN.Pipe()
        proc = _SPAWN.Process(
            target=child_main,
            args=(child_end, self.queue, str(self.base_dir), self.redis_url, os.getpid()),
            name=f"cf-{self.queue.name}-handler",
            daemon=True,
        )
        proc.start()
        child_end.close()
        child = _Child(proc, parent)
        self._children.add(child)
        try:
            reply = await asyncio.wait_for(recv(parent), READY_TIMEOUT)
        except (TimeoutError, HandlerProcessDied) as exc:
            child.kill()
            q = self.queue
            what = f"tasks {q.tasks!r}" if q.tasks is not None else f"handler {q.handler!r}"
            raise HandlerImportError(f"{what}: its process did not start ({exc})") from None
        except BaseException:
            child.kill()
            raise
        if reply[0] != "ready":
            child.kill()
            raise HandlerImportError(str(reply[1]))
        return child

    async def _acquire(self) -> _Child:
        async with self._free:
            while not self._idle and self._busy + self._spawning >= self.size:
                await self._free.wait()
            self._busy += 1
            if self._idle:
                return self._idle.pop()
        try:
            return await self._spawn()
        except BaseException:
            await self._release(None)
            raise

    def _refill(self) -> None:
        """Start a replacement for a killed or retired child in the background, so the next
        job finds a process that has imported its handler already (a start takes a second or
        more, which would otherwise count against that job's timeout)."""

        async def refill() -> None:
            try:
                child = await self._spawn()
            except Exception:
                child = None
            async with self._free:
                self._spawning -= 1
                if child is not None:
                    self._idle.append(child)
                self._free.notify()

        self._spawning += 1
        task = asyncio.get_running_loop().create_task(refill())
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _release(self, child: _Child | None) -> None:
        async with self._free:
            self._busy -= 1
            if child is not None:
                self._idle.append(child)
            self._free.notify()

    async def run(self, job: JobContext, run: Run | None = None) -> Any:
        """Run the handler on ``job`` in a child; a cancellation (timeout, stop) kills it.

        The job's timeout counts from when a child has it: waiting for a child to start (a
        fresh interpreter importing the handler: seconds on a loaded machine) is not the
        handler's time."""
        child = await self._acquire()
        if run is not None and run.start_clock is not None:
            run.start_clock()
        keep: _Child | None = None
        try:
            child.conn.send(("job", _job_fields(job)))
            reply = await answer_adds(child.conn, job)  # job.add_job() in the child
            child.jobs += 1
            keep = child if self._keep(child, reply) else None
        finally:
            if keep is None:
                child.kill()
                self._children.discard(child)
                self._refill()
            await self._release(keep)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "requeue":  # a task's Context.requeue(): back to waiting (JobReceiver)
            raise Requeue
        _, name, text, tb, unrecoverable, _ = reply
        raise _remote_error(name, text, tb, unrecoverable)

    def _keep(self, child: _Child, reply: tuple[Any, ...]) -> bool:
        q = self.queue
        if q.max_jobs_per_child is not None and child.jobs >= q.max_jobs_per_child:
            return False
        rss = reply[-1]
        return q.max_memory_per_child is None or rss <= q.max_memory_per_child

    async def aclose(self) -> None:
        """Stop the children. A tasks queue's idle children first get EOF on their pipe and
        SHUTDOWN_GRACE seconds to run the broker's shutdown and exit; the rest are killed."""
        for task in self._refills:
            task.cancel()
        if self.queue.tasks is not None:
            running = [child.proc.sentinel for child in self._idle]
            for child in self._idle:
                child.conn.close()
            deadline = time.monotonic() + SHUTDOWN_GRACE
            while running and (left := deadline - time.monotonic()) > 0:
                ended = await asyncio.to_thread(wait, running, left)
                running = [fd for fd in running if fd not in ended]
        self.close()

    def close(self) -> None:
        for task in self._refills:
            task.cancel()
        for child in list(self._children):
            child.kill()
        self._children.clear()
        self._idle.clear()


def process_runner(pool: ProcessPool) -> Runner:
    async def run_in_process(data: Any, job: JobContext, run: Run) -> Any:
        return await pool.run(job, run)

    run_in_process.starts_clock = True  # type: ignore[attr-defined]  # see Run.start_clock
    return run_in_process


def _job_fields(job: JobContext) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "queue": job.queue,
        "attempt": job.attempt,
        "started": job.started,
        "priority": job.priority,
        "created_at": job.created_at,
        "data": job.data,
        "settings": dict(job.settings),
        # for job.log() / job.update_progress() in the child: the run's lease and the queue
        "token": job._token,
        "prefix": job._engine.prefix,
        # the run's span (W3C traceparent/tracestate; {} when nothing traces): the child makes
        # it current, so what the handler adds or calls there is a child of the run
        "trace": tracing.carrier(),
    }


# -- the child ------------------------------------------------------------------------------------


def child_main(conn: Connection, queue: QueueConfig, base_dir: str, url: str, parent: int) -> None:
    """A handler process: import the handler (or the tasks' broker, and run its worker startup),
    then run jobs from ``conn`` until EOF."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not die_with_parent(parent, signal.SIGKILL):
        return
    from cortexflow.logs import resolve_format, setup_logging

    if resolve_format(None) == "json":  # the worker's format, from its environment
        setup_logging("json")

    loop = asyncio.new_event_loop()
    try:
        runner, broker = _child_runner(loop, queue, Path(base_dir))
    except Exception as exc:
        conn.send(("error", str(exc)))
        return
    from cortexflow.engine.connection import connect

    client = connect(url)  # job.log(), job.update_progress(), job.redis in the child
    from cortexflow.worker.lean import freeze_startup_objects

    freeze_startup_objects()  # the handler's imports, out of the collector's sight
    conn.send(("ready",))
    adds = ChildAdds(conn)  # job.add_job() here asks the worker (worker/pipe.py)
    while True:
        try:
            kind, fields = conn.recv()
        except (EOFError, OSError):
            break
        if kind != "job":
            continue
        reply = _run_one(loop, runner, client, fields, adds)
        adds.settle(loop)  # no add's answer left in the pipe before the outcome
        conn.send(reply)
    if broker is not None:  # the worker stops: the broker's shutdown, as in a worker process
        from cortexflow.worker.tasks import stop_broker

        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(stop_broker(broker), SHUTDOWN_GRACE))


def _child_runner(
    loop: asyncio.AbstractEventLoop, queue: QueueConfig, base_dir: Path
) -> tuple[Runner, Any]:
    """The queue's runner in this child, and its started taskiq broker (None for a handler).
    HandlerImportError with the message the worker would give in its own process."""
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1)
    if queue.tasks is not None:  # the user's broker is imported here, never in the worker
        from cortexflow.worker.taskrun import start_task_runner

        broker, runner = loop.run_until_complete(start_task_runner(queue, base_dir, executor))
        return runner, broker
    from cortexflow.worker.handlers import build_runner, load_handler

    return build_runner(load_handler(queue.handler, base_dir), executor), None


def _run_one(
    loop: asyncio.AbstractEventLoop,
    runner: Runner,
    client: Any,
    fields: dict[str, Any],
    adds: ChildAdds,
) -> Any:
    engine = QueueEngine(client, QueueConfig(name=fields["queue"], handler="-"), fields["prefix"])
    job = JobContext(
        engine,
        fields["token"],
        id=fields["id"],
        name=fields["name"],
        queue=fields["queue"],
        attempt=fields["attempt"],
        started=fields["started"],
        priority=fields["priority"],
        created_at=fields["created_at"],
        data=fields["data"],
        settings=fields["settings"],
        enqueue=adds.enqueue,  # asks the worker (worker/pipe.py)
    )
    running = set_job(job.id, job.attempt)  # the handler's log lines carry them
    traced = _attach_trace(fields.get("trace"))
    try:
        result = loop.run_until_complete(runner(fields["data"], job, Run()))
        return ("ok", result, _rss())
    except Requeue:  # a taskiq task's Context.requeue(): the worker gives the job back
        return ("requeue", _rss())
    except BaseException as exc:  # the handler's failure, reported to the worker
        tb = "".join(traceback.format_exception(exc))
        return (
            "err",
            type(exc).__name__,
            str(exc),
            tb,
            isinstance(exc, UnrecoverableError),
            _rss(),
        )
    finally:
        reset_job(running)
        if traced:
            tracing.detach(traced[0])
            flush_traces()  # this process may be SIGKILLed (retired, timed out) at any time


def _attach_trace(carrier: dict[str, str] | None) -> tuple[Any] | None:
    """Make the run's span (from the worker) the current context, (its token,) when the run
    is traced and this process traces (the OTEL_* variables it inherited set a provider up, or
    the handler's module set one); None otherwise. opentelemetry is imported only then."""
    if not carrier:
        return None
    setup_from_env(metrics=False)  # once; the worker counts the runs, the child only traces
    token = tracing.attach(carrier)
    return None if token is None else (token,)


def _rss() -> int:
    """Resident memory of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
