"""The pipe between a worker and one of its handler processes (`isolation: process`).

The worker sends ``("job", fields)``; the child answers with the run's outcome. While the run
goes on, the child may ask the worker to add a job (``job.add_job()`` in the handler):
``("add", queue, name, data, options)``, answered with ``("added", id)`` or ``("add_error",
module, type name, message, attributes)``. The worker adds it with the run's own JobContext, so
an add from a child is exactly an add from an in-process handler (the queue's payload schema,
options, tracing, a Cluster's slots), and the child needs no configuration of other queues.

The child's adds go one at a time, and an add once sent always takes its answer off the pipe,
even when the handler stops waiting for it (a cancelled ``wait_for``, a task group): the child
lets every add in flight finish before it sends the run's outcome, so no answer is left behind
to be read as the next message.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
from multiprocessing.connection import Connection
from typing import Any

from cortexflow.engine.options import AddOptions
from cortexflow.worker.context import JobContext

# Modules whose exceptions an add's failure is rebuilt as in the child (anything else: its
# message in a RuntimeError).
_KNOWN = frozenset({"cortexflow.errors", "redis.exceptions", "builtins"})


class HandlerProcessDied(Exception):
    """The child process running the handler died before it answered."""


async def recv(conn: Connection) -> tuple[Any, ...]:
    """The next message on ``conn``, read without blocking the event loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[Any, ...]] = loop.create_future()
    fd = conn.fileno()

    def readable() -> None:
        if fut.done():
            return
        try:
            fut.set_result(conn.recv())
        except (EOFError, OSError) as exc:
            fut.set_exception(HandlerProcessDied(f"the handler's process died ({exc or 'EOF'})"))
        except Exception as exc:  # it cannot be unpickled here (a class of the handler's own)
            fut.set_exception(
                HandlerProcessDied(
                    f"the other end of the handler's pipe sent what cannot be read here "
                    f"({type(exc).__name__}: {exc}); pass JSON values to job.add_job() and "
                    "return one"
                )
            )

    loop.add_reader(fd, readable)
    try:
        return await fut
    finally:
        loop.remove_reader(fd)


async def answer_adds(conn: Connection, job: JobContext) -> tuple[Any, ...]:
    """The child's answer to the run (worker side), carrying out each add it asks for first."""
    while (message := await recv(conn))[0] == "add":
        _, queue, name, data, options = message
        try:
            answer: tuple[Any, ...] = ("added", await job.add_job(queue, name, data, **options))
        except Exception as exc:  # the handler's to handle: raised in the child
            answer = _described(exc)
        try:
            conn.send(answer)
        except OSError as exc:
            raise HandlerProcessDied(f"the handler's process died ({exc})") from None
    return message


class ChildAdds:
    """``job.add_job()`` in the child (one per child process): each add asks the worker, one
    at a time, in a task of its own that takes its answer off the pipe even when its caller
    was cancelled; ``settle()`` waits for those still in flight."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock: asyncio.Lock | None = None
        self._inflight: set[asyncio.Task[tuple[Any, ...]]] = set()

    async def enqueue(self, queue: str, name: str, data: Any, options: AddOptions) -> str:
        message = ("add", queue, name, data, dict(options))
        task = asyncio.ensure_future(self._exchange(message))
        self._inflight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._inflight.discard)
        answer = await asyncio.shield(task)
        if answer[0] == "added":
            return str(answer[1])
        raise _rebuilt(*answer[1:])

    async def _exchange(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._conn.send(message)
            return await recv(self._conn)

    def settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Before the run's outcome is sent: every add in flight gets its answer."""
        while self._inflight:
            loop.run_until_complete(asyncio.wait(set(self._inflight)))


def _settled(task: asyncio.Task[Any]) -> None:
    """Retrieve the outcome of an add whose caller stopped waiting (no 'never retrieved')."""
    if not task.cancelled():
        task.exception()


def _described(exc: Exception) -> tuple[Any, ...]:
    cls = type(exc)
    state = dict(vars(exc))
    try:
        pickle.dumps(state)
    except Exception:
        state = {}
    return ("add_error", cls.__module__, cls.__qualname__, str(exc), state)


def _rebuilt(module: str, qualname: str, text: str, state: dict[str, Any]) -> Exception:
    """The worker's exception, as the same type where it is one of ours, redis's or a builtin
    (so ``except PayloadError`` works in the handler), else a RuntimeError with its message."""
    found: Any = None
    if module in _KNOWN:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part, None)
    if not (isinstance(found, type) and issubclass(found, Exception)):
        return RuntimeError(f"{qualname}: {text}")
    exc = found.__new__(found)
    Exception.__init__(exc, text)
    exc.__dict__.update(state)
    return exc
