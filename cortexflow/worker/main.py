"""``run_worker``: the worker process the supervisor spawns (`cortexflow worker QUEUE...`): a
WorkerGroup of one or more queues (worker/group.py) with signal handling, the parent-death
signal, the lifeline pipe and the readiness pipe."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from cortexflow.config.model import Config
from cortexflow.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    DataFormatError,
    EvictionPolicyError,
    RedisUnavailableError,
    UsageError,
)
from cortexflow.logs import ENV_LOG_FORMAT, LogFormat, set_queue, setup_logging
from cortexflow.pdeathsig import die_with_parent
from cortexflow.worker.env import (
    ENV_LIFELINE_FD,
    ENV_PARENT_PID,
    ENV_READY_FD,
    int_from_env,
    supervised,
)
from cortexflow.worker.group import WorkerGroup
from cortexflow.worker.handlers import HandlerImportError
from cortexflow.worker.lean import freeze_startup_objects
from cortexflow.worker.queue_worker import EXIT_STUCK

log = logging.getLogger("cortexflow.worker")

SAME_REQUEST = 2.0  # seconds within which a repeated signal is the same stop request


def run_worker(
    config: Config,
    queue: str | Sequence[str],
    *,
    redis_url: str,
    replica: int = 0,
    stop_timeout: float | None = None,
    log_format: LogFormat = "text",
) -> int:
    """Run the worker of one queue, or of several sharing this process (one event loop), until
    SIGTERM/SIGINT; returns the exit code."""
    queues = (queue,) if isinstance(queue, str) else tuple(queue)
    if len(queues) == 1:
        setup_logging(log_format, queue=queues[0], replica=replica)
    else:  # each queue's records carry their queue (logs.set_queue); the rest the process's
        setup_logging(log_format, process=config.queue(queues[0]).process_name, replica=replica)
    os.environ[ENV_LOG_FORMAT] = log_format  # the handler processes (isolation: process) too
    logging.getLogger("taskiq").setLevel(logging.WARNING)
    # A failed run is reported once, by cortexflow, with its retry decision.
    logging.getLogger("taskiq.receiver.receiver").setLevel(logging.CRITICAL)
    _die_with_parent()
    runner: Callable[..., Any] = asyncio.run
    with contextlib.suppress(ImportError):  # uvloop is a dependency on POSIX
        import uvloop

        runner = uvloop.run
    code = int(runner(_serve(config, queues, redis_url, replica, stop_timeout)))
    stuck = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
    if len(stuck) > 1:  # besides this main thread: handler threads that never returned
        log.warning("exiting with %d handler thread(s) still running", len(stuck) - 1)
        logging.shutdown()
        os._exit(code)  # the interpreter would wait for them forever
    return code


async def _serve(
    config: Config,
    queues: tuple[str, ...],
    redis_url: str,
    replica: int,
    stop_timeout: float | None,
) -> int:
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[int] = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    _watch_lifeline(loop, signals)
    try:
        worker = WorkerGroup(config, queues, redis_url, replica=replica, exit_on_hang=True)
        await worker.start()
    except (HandlerImportError, UsageError, DataFormatError, EvictionPolicyError) as exc:
        _error(exc)  # data or a server this release cannot work on: restarting will not help
        return EXIT_CONFIG
    except (RedisUnavailableError, RedisError, OSError) as exc:
        _error(exc)
        return EXIT_UNAVAILABLE
    worker.on_give_up = lambda: signals.put_nowait(signal.SIGTERM)
    freeze_startup_objects()
    _signal_ready()
    for one in worker.workers:
        one_ready(one.queue.name, replica, one.queue.concurrency, len(queues))
    first = await signals.get()
    if worker.gave_up:
        log.info("stopping (running jobs may finish)")
    else:
        log.info("got %s: stopping (running jobs may finish)", signal.Signals(first).name)
    stopping = asyncio.create_task(worker.stop(stop_timeout))
    since = time.monotonic()
    while True:
        again = asyncio.create_task(signals.get())
        done, _ = await asyncio.wait({stopping, again}, return_when=asyncio.FIRST_COMPLETED)
        if stopping in done:
            again.cancel()
            stopping.result()
            if worker.failed:
                return EXIT_FAILURE
            return EXIT_STUCK if worker.gave_up else EXIT_OK
        name = signal.Signals(again.result()).name
        if not _second_request(since):
            log.info("got %s again: already stopping (the same stop request)", name)
            continue
        log.warning("second signal: stopping now; jobs not running in threads go back to waiting")
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await stopping
        await worker.abort()
        return EXIT_FAILURE


def one_ready(queue: str, replica: int, concurrency: int, shared: int) -> None:
    """The ready line of one queue (in its own context: a shared process's record names it)."""
    context = contextvars.copy_context()
    context.run(set_queue, queue)
    line = "worker ready: queue=%s replica=%d pid=%d concurrency=%d"
    args: tuple[object, ...] = (queue, replica, os.getpid(), concurrency)
    if shared > 1:
        line += " (one of %d queues in this process)"
        args += (shared,)
    context.run(log.info, line, *args)


def _error(exc: BaseException) -> None:
    """Why the worker cannot start: a plain line, or a log record in the JSON format."""
    if os.environ.get(ENV_LOG_FORMAT) == "json":
        log.error("error: %s", exc)
    else:
        sys.stderr.write(f"error: {exc}\n")


def _second_request(first_at: float) -> bool:
    """Whether another SIGTERM/SIGINT is a second stop request (stop at once).

    systemd (KillMode=control-group), `docker stop` on a process tree and Kubernetes signal
    every process at once, so a worker of `cortexflow up` gets one SIGTERM from them and one
    from the supervisor: under a supervisor every repeat is the same request (the supervisor
    escalates with SIGKILL itself). Run alone, a repeat within SAME_REQUEST seconds is too."""
    if supervised():
        return False
    return time.monotonic() - first_at > SAME_REQUEST


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the supervisor dies; stop if it is already gone."""
    parent = int_from_env(ENV_PARENT_PID)
    if parent and not die_with_parent(parent):
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_lifeline(loop: asyncio.AbstractEventLoop, signals: asyncio.Queue[int]) -> None:
    """EOF on the lifeline pipe means the supervisor is gone: stop as on SIGTERM."""
    fd = os.environ.get(ENV_LIFELINE_FD)
    if not fd:
        return
    lifeline = int(fd)

    def on_readable() -> None:
        try:
            data = os.read(lifeline, 64)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(lifeline)
            signals.put_nowait(signal.SIGTERM)

    with contextlib.suppress(OSError, ValueError):
        loop.add_reader(lifeline, on_readable)


def _signal_ready() -> None:
    fd = os.environ.get(ENV_READY_FD)
    if not fd:
        return
    with contextlib.suppress(OSError, ValueError):
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
