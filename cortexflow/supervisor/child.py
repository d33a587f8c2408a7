"""One worker child of the supervisor: spawn it, read its output and its ready pipe, signal it.

The child is a fresh interpreter in its own process group (so a Ctrl-C meant for `up` does not
reach it, and a kill reaches its grandchildren too). Its stdout, stderr and ready pipe are read
with non-blocking ``os.read`` from the supervisor's event loop, so a child writing a 1 MB line,
or closing its stdout, or never writing anything, cannot stall the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from cortexflow.supervisor.logmux import LineSplitter, decode_line
from cortexflow.supervisor.policy import ChildState
from cortexflow.worker.env import ENV_READY_FD

STDERR_TAIL = 20  # lines kept to show when a queue goes FATAL
_READ_SIZE = 65536
_DRAIN_LIMIT = 16 * 1024 * 1024  # bytes read from a pipe after its child exited

LineCallback = Callable[["Child", str, str], None]  # (child, stream, line)


class Child:
    """A running (or just exited) worker process and the pipes the supervisor reads."""

    def __init__(
        self,
        queue: str,
        replica: int,
        proc: subprocess.Popen[bytes],
        fds: Mapping[str, int],
    ) -> None:
        self.queue = queue  # the process's name (a queue's own for a queue that runs alone)
        self.queues: tuple[str, ...] = (queue,)  # the queues it runs
        self.replica = replica
        self.proc = proc
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.state = ChildState.STARTING
        self.ready = False
        self.stop_deadline: float | None = None
        self.killed = False  # we had to SIGKILL it
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._fds = dict(fds)  # stream name ("stdout", "stderr", "ready") -> read end
        self._splitters = {name: LineSplitter() for name in ("stdout", "stderr")}
        self._ready_buf = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_line: LineCallback | None = None

    @property
    def name(self) -> str:
        return f"{self.queue}.{self.replica}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def uptime(self, now: float) -> float:
        return now - self.started

    def poll(self) -> int | None:
        return self.proc.poll()

    def attach(self, loop: asyncio.AbstractEventLoop, on_line: LineCallback) -> None:
        """Start reading the child's pipes from ``loop``."""
        self._loop = loop
        self._on_line = on_line
        for stream, fd in self._fds.items():
            loop.add_reader(fd, self._readable, stream)

    def _readable(self, stream: str) -> None:
        fd = self._fds.get(stream)
        if fd is None:
            return
        try:
            chunk = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._consume(stream, chunk)
        else:
            self._close_stream(stream)

    def _consume(self, stream: str, chunk: bytes) -> None:
        if stream == "ready":
            self._ready_buf = (self._ready_buf + chunk)[-64:]
            if b"ready" in self._ready_buf:
                self.ready = True
            return
        for raw in self._splitters[stream].feed(chunk):
            self._emit(stream, decode_line(raw))

    def _emit(self, stream: str, line: str) -> None:
        if stream == "stderr":
            self.stderr_tail.append(line)
        if self._on_line is not None:
            self._on_line(self, stream, line)

    def _close_stream(self, stream: str) -> None:
        fd = self._fds.pop(stream, None)
        if fd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(fd)
        os.close(fd)
        if stream in self._splitters:
            for raw in self._splitters[stream].flush():
                self._emit(stream, decode_line(raw))

    def close(self) -> None:
        """After the child exited: read what its pipes still hold, then close them.

        A grandchild may keep a pipe open forever; what it has not written yet is dropped.
        """
        for stream in list(self._fds):
            fd = self._fds[stream]
            budget = _DRAIN_LIMIT
            while budget > 0:
                try:
                    chunk = os.read(fd, _READ_SIZE)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                budget -= len(chunk)
                self._consume(stream, chunk)
            self._close_stream(stream)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child's whole process group (it leads its own session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def request_stop(self, deadline: float) -> None:
        """SIGTERM once; the supervisor SIGKILLs the group if it outlives ``deadline``."""
        if self.state is ChildState.STOPPING:
            if self.stop_deadline is not None:
                self.stop_deadline = min(self.stop_deadline, deadline)
            return
        self.state = ChildState.STOPPING
        self.stop_deadline = deadline
        self.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self.killed = True
        self.signal_group(signal.SIGKILL)


def spawn_child(
    queue: str,
    replica: int,
    argv: Sequence[str],
    env: Mapping[str, str],
    keep_fds: Sequence[int] = (),
) -> Child:
    """Start ``argv`` in a new session with piped output and a ready pipe.

    ``keep_fds`` (the lifeline's read end) stay open in the child under the same numbers.
    """
    pipes = {name: os.pipe() for name in ("stdout", "stderr", "ready")}
    ready_w = pipes["ready"][1]
    child_env = {**env, ENV_READY_FD: str(ready_w), "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=pipes["stdout"][1],
            stderr=pipes["stderr"][1],
            pass_fds=(*keep_fds, ready_w),
            start_new_session=True,
            env=child_env,
        )
    except OSError:
        for r, w in pipes.values():
            os.close(r)
            os.close(w)
        raise
    for _, w in pipes.values():
        os.close(w)
    reads = {name: r for name, (r, _) in pipes.items()}
    for fd in reads.values():
        os.set_blocking(fd, False)
    return Child(queue, replica, proc, reads)
