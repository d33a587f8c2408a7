"""`cortexflow up`: the reconcile loop, one worker child per (process, replica)
(docs/supervisor.md); a process runs one queue, or the queues that share it (``process:``).

Every tick (100 ms, or at once when a signal arrives) the loop compares the processes that
should run with the ones that do: it reaps exits, decides restarts (policy.py), starts
what is missing, retires replaced children once their successors are ready, and SIGKILLs
whatever outlived its stop deadline. Signal handlers only record the signal; the loop acts.
SIGHUP reloading lives in reload.py, the Redis server's side in server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cortexflow.config.model import Config
from cortexflow.embedded.supervised import SupervisedServer
from cortexflow.logs import ENV_LOG_FORMAT
from cortexflow.redact import redact_url
from cortexflow.supervisor.background import Background
from cortexflow.supervisor.child import (
    Child,
    spawn_child,
)
from cortexflow.supervisor.logmux import LogSink, route_line
from cortexflow.supervisor.plan import (
    Command,
    QueueRun,
    Slot,
    log_names,
    process_rows,
    process_specs,
    select_queues,
    worker_command,
)
from cortexflow.supervisor.policy import ChildState, Verdict, decide_after_exit, describe_exit
from cortexflow.supervisor.reload import Loader, apply_queues, load_reloaded
from cortexflow.supervisor.scheduler import Scheduler
from cortexflow.supervisor.server import ServerWatch
from cortexflow.supervisor.sidecar import kill_all, sidecars, stop_all, tend_all
from cortexflow.supervisor.status import StatusPublisher
from cortexflow.worker.env import (
    ENV_LIFELINE_FD,
    ENV_PARENT_PID,
    ENV_REDIS_URL,
    ENV_REPLICA,
    host_name,
)

# Seconds a ready child runs before `status` shows it "stable". Display only: the restart
# backoff resets after restart.stable_after (queues.yaml, 120 s by default), a separate setting.
SHOWN_STABLE_AFTER = 10.0
# How a child asked to stop may end cleanly: exit 0, killed by our SIGTERM before it set up
# its handlers, or 128+SIGTERM when the SIGTERM came while the CLI was still starting it (the
# CLI unwinds with that code; no job was taken yet).
CLEAN_STOP_CODES = (0, -signal.SIGTERM, 128 + signal.SIGTERM)


@dataclass(frozen=True)
class UpOptions:
    queues: tuple[str, ...] = ()  # a subset to run; empty: every queue
    exit_on_fatal: bool = False
    tick: float = 0.1


class Supervisor:
    def __init__(
        self,
        config: Config,
        redis_url: str,
        sink: LogSink,
        *,
        options: UpOptions = UpOptions(),
        loader: Loader,
        command: Command = worker_command,
        server: SupervisedServer | None = None,
    ) -> None:
        self.config = config
        self.url = redis_url
        self.sink = sink
        self.opts = options
        self.loader = loader
        self.command = command
        self.server = server
        self.queues: dict[str, QueueRun] = {}  # by process name
        self.retiring: list[Child] = []  # asked to stop; no longer any slot's child
        self.signals: list[int] = []
        self.stopping = False
        self.clean = True
        self.exit_code = 0
        self._colors = 0
        self._server_watch = ServerWatch(server)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lifeline = os.pipe()  # children get the read end; the write end never leaves us
        self.started_wall = time.time()
        self.publisher = StatusPublisher(
            self.snapshot, self.expected, lambda: self.config.redis.prefix, sink
        )
        self._apply_queues(select_queues(config, options.queues))  # grouped by process there
        self.scheduler = Scheduler(lambda: self.config, sink.event)
        self.sidecars = sidecars(config, redis_url, sink)  # the dashboard, if queues.yaml asks

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._loop.add_signal_handler(sig, self._record_signal, sig)
        names = ", ".join(
            f"{r.config.describe()} x{r.config.processes}"
            f"{' (auto)' if r.config.processes_auto else ''}"
            for r in self.queues.values()
        )
        self._event(f"up: {names or 'no queues'} on {redact_url(self.url)} (pid {os.getpid()})")
        background = Background(self.sink)
        background.start("status publisher", lambda: self.publisher.run(self.url))
        background.start("scheduler", lambda: self.scheduler.run(self.url))
        try:
            while True:
                self._wake.clear()
                now = time.monotonic()
                self._handle_signals(now)
                self.tick(now)
                if not self.stopping:
                    background.check(now)
                cars_up = tend_all(self.sidecars, self.stopping)
                if self.stopping and not cars_up and not any(True for _ in self.children()):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.opts.tick)
        finally:
            self._emergency_stop()
            self.scheduler.close()
            await background.finish("scheduler")
            self.publisher.close()
            await background.finish("status publisher")
            with contextlib.suppress(Exception):  # the children's cleanup below must run
                await self.publisher.withdraw(self.url)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self._loop.remove_signal_handler(sig)
            for fd in self._lifeline:
                os.close(fd)
        self._event(f"stopped{'' if self.clean else ' (not cleanly)'}")
        return max(self.exit_code, 0 if self.clean else 1)

    def _event(self, message: str) -> None:
        """Log one of the supervisor's own messages; each marks a change `status` should see."""
        self.sink.event(message)
        self.publisher.poke()

    def _record_signal(self, sig: int) -> None:
        """The signal handler: record, wake the loop, nothing else."""
        self.signals.append(sig)
        if self._wake is not None:
            self._wake.set()

    def _handle_signals(self, now: float) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGHUP:
                if not self.stopping:
                    self.reload()
            elif not self.stopping:
                self._event(
                    f"{signal.Signals(sig).name}: stopping; running jobs get "
                    f"{self.config.stop_timeout:g}s to finish (signal again to kill at once)"
                )
                self.begin_stop(now)
            else:
                self._event(f"{signal.Signals(sig).name} again: killing every child now")
                for child in self.children():
                    child.kill()
                self.clean = False

    def tick(self, now: float) -> None:
        self._reap(now)
        if not self.stopping:
            self._promote(now)
            self._start_due(now)
            self._tend_server(now)
        for child in self.children():
            if child.stop_deadline is not None and now >= child.stop_deadline and not child.killed:
                self._event(
                    f"{child.name} (pid {child.pid}) still running after its stop timeout: SIGKILL"
                )
                child.kill()

    def children(self) -> Iterator[Child]:
        for run in self.queues.values():
            for slot in run.slots:
                if slot.child is not None:
                    yield slot.child
                if slot.previous is not None:
                    yield slot.previous
        yield from self.retiring

    # -- exits -----------------------------------------------------------------------------

    def _reap(self, now: float) -> None:
        for child in [c for c in self.retiring if c.poll() is not None]:
            self.retiring.remove(child)
            self._ended(child, "stopped")
        for run in list(self.queues.values()):
            for slot in run.slots:
                old = slot.previous
                if old is not None and old.poll() is not None:
                    slot.previous = None
                    self._ended(old, "stopped")
                current = slot.child
                if current is None or current.poll() is None:
                    continue
                child, slot.child = current, None
                slot.last_exit = child.poll()
                if child.state is ChildState.STOPPING:
                    self._ended(child, "stopped")
                else:
                    self._ended(child, "")
                    self._unexpected_exit(run, slot, child, now)

    def _ended(self, child: Child, verb: str) -> None:
        child.close()
        child.signal_group(signal.SIGKILL)  # grandchildren left in its group
        code = child.poll()
        if self.stopping and (child.killed or code not in CLEAN_STOP_CODES):
            self.clean = False
        if verb:
            self._event(f"{child.name} (pid {child.pid}) {verb}: {describe_exit(code)}")

    def _unexpected_exit(self, run: QueueRun, slot: Slot, child: Child, now: float) -> None:
        code = child.poll()
        decision = decide_after_exit(
            slot.history, code, child.uptime(now), now, self.config.restart
        )
        slot.history = decision.history
        what = f"{child.name} (pid {child.pid}) {describe_exit(code)}"
        if decision.verdict is Verdict.RESTART:
            slot.restart_at = now + decision.delay
            self._event(
                f"{what}; restart {slot.history.consecutive} in a row in {decision.delay:.1f}s"
            )
            return
        if decision.verdict is Verdict.FATAL_CONFIG:
            reason = f"{describe_exit(code)}: its handler or config cannot be loaded"
        else:
            policy = self.config.restart
            reason = (
                f"more than {policy.limit} restarts within {policy.window:g}s "
                f"(last: {describe_exit(code)})"
            )
        self._event(what)
        self._make_fatal(run, reason, child, now)

    def _make_fatal(self, run: QueueRun, reason: str, child: Child, now: float) -> None:
        run.fatal = reason
        tail = (
            "\n".join(
                f"    {text}"
                for line in child.stderr_tail
                for _, text in route_line(child.queue, child.queues, line, "text")
            )
            or "    (no stderr output)"
        )
        spec = run.config
        what = f"queue {spec.name}" if spec.queue_names == (spec.name,) else spec.describe()
        self._event(
            f"{what} is FATAL: {reason}; not restarting it (the other queues "
            f"keep running; fix it and send SIGHUP to retry).\n"
            f"  last stderr lines of {child.name}:\n{tail}"
        )
        for slot in run.slots:
            slot.restart_at = None
            for other in (slot.child, slot.previous):
                if other is not None:
                    self._retire(other, now)
            slot.child = slot.previous = None
        if self.opts.exit_on_fatal and not self.stopping:
            self._event("--exit-on-fatal: stopping every queue")
            self.exit_code = 1
            self.begin_stop(now)

    # -- starts ----------------------------------------------------------------------------

    def _start_due(self, now: float) -> None:
        for run in self.queues.values():
            if run.fatal:
                continue
            for slot in run.slots:
                if slot.child is None and (slot.restart_at is None or now >= slot.restart_at):
                    slot.restart_at = None
                    self._spawn(run, slot, now)

    def _spawn(self, run: QueueRun, slot: Slot, now: float) -> None:
        env = {
            **os.environ,
            ENV_PARENT_PID: str(os.getpid()),
            ENV_LIFELINE_FD: str(self._lifeline[0]),
            ENV_REPLICA: str(slot.replica),
            ENV_REDIS_URL: self.url,
            # A worker's own lines in up's format; a shared process's in JSON, each record
            # naming its queue, which `up` renders in its format under that queue's name.
            ENV_LOG_FORMAT: "json" if len(run.config.queues) > 1 else self.sink.fmt,
        }
        try:
            child = spawn_child(
                slot.queue, slot.replica, self.command(self.config, run.config, slot.replica),
                env, keep_fds=(self._lifeline[0],),
            )  # fmt: skip
            child.queues = run.config.queue_names
        except OSError as exc:
            decision = decide_after_exit(slot.history, None, 0.0, now, self.config.restart)
            slot.history = decision.history
            slot.restart_at = now + max(decision.delay, 1.0)
            self._event(f"{slot.name} could not be started: {exc}")
            return
        assert self._loop is not None
        child.attach(self._loop, self._child_line)
        slot.child = child
        self._event(f"{child.name} started (pid {child.pid})")

    def _child_line(self, child: Child, stream: str, line: str) -> None:
        """One line of a child, under its queue's name: a shared process's records name
        their queue (it writes JSON to `up`, which renders it in `up`'s format)."""
        run = self.queues.get(child.queue)
        base = run.color if run is not None else 0
        for queue, text in route_line(child.queue, child.queues, line, self.sink.fmt):
            color = base + child.queues.index(queue) if queue in child.queues else base
            self.sink.child_line(queue, child.replica, child.pid, stream, text, color)

    def _promote(self, now: float) -> None:
        for run in self.queues.values():
            for slot in run.slots:
                child = slot.child
                if child is None:
                    continue
                if child.state is ChildState.STARTING and child.ready:
                    child.state = ChildState.READY
                    self._event(f"{child.name} (pid {child.pid}) ready")
                if child.state is ChildState.READY and child.uptime(now) >= SHOWN_STABLE_AFTER:
                    child.state = ChildState.STABLE
                if slot.previous is not None and child.state in (
                    ChildState.READY, ChildState.STABLE,
                ):  # fmt: skip
                    self._event(
                        f"{slot.previous.name} (pid {slot.previous.pid}) replaced by pid "
                        f"{child.pid}: stopping the old one"
                    )
                    self._retire(slot.previous, now)
                    slot.previous = None

    def _retire(self, child: Child, now: float) -> None:
        child.request_stop(now + self.config.stop_timeout)
        if child not in self.retiring:
            self.retiring.append(child)

    # -- stop ------------------------------------------------------------------------------

    def begin_stop(self, now: float) -> None:
        self.stopping = True
        deadline = now + self.config.stop_timeout
        for child in self.children():
            child.request_stop(deadline)
        stop_all(self.sidecars, deadline)

    def _emergency_stop(self) -> None:
        """Leave no child behind if the loop ends by an exception (it should not)."""
        kill_all(self.sidecars)
        live = [c for c in self.children() if c.poll() is None]
        if not live:
            return
        self.clean = False
        deadline = time.monotonic() + self.config.stop_timeout
        for child in live:
            child.request_stop(deadline)
        while any(c.poll() is None for c in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in live:
            if child.poll() is None:
                child.kill()
                child.proc.wait()
            child.close()

    # -- the embedded server ---------------------------------------------------------------

    def _tend_server(self, now: float) -> None:
        if not self._server_watch.tend(now, self.config.restart, self._event):
            self.exit_code = 1
            self.begin_stop(now)

    # -- status ----------------------------------------------------------------------------

    def expected(self) -> dict[str, int]:
        """Workers expected per queue (for `health`): each of its process's replicas runs one."""
        return {
            queue: run.config.processes
            for run in self.queues.values()
            for queue in run.config.queue_names
        }

    def snapshot(self) -> dict[str, Any]:
        """What `cortexflow status` shows of this supervisor (published every ~2 s)."""
        return {
            "host": host_name(),
            "pid": os.getpid(),
            "started_at": self.started_wall,
            "file": str(self.config.path),
            "state": "stopping" if self.stopping else "running",
            "embedded_server_pid": self.server.pid if self.server else None,
            **process_rows(self.queues, self.retiring, time.monotonic()),
        }

    # -- reload (SIGHUP) -------------------------------------------------------------------

    def reload(self) -> None:
        path = self.config.path
        loaded = load_reloaded(self.config, self.loader, self.opts.queues, self._event)
        if loaded is None:
            return
        self.config, wanted = loaded
        self.scheduler.reconcile_soon()
        summary = self._apply_queues(wanted)
        self._event(f"SIGHUP: reloaded {path.name}: {summary}")

    def _apply_queues(self, queues: Mapping[str, Any]) -> str:
        """Make ``self.queues`` match the processes of ``queues``; returns what changed."""
        wanted = process_specs(queues)
        summary, self._colors = apply_queues(
            self.queues, wanted, self._retire, self._colors, time.monotonic()
        )
        self.sink.fit(log_names(wanted))
        return summary
