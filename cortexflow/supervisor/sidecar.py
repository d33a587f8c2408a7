"""A helper process `up` runs beside the workers: the dashboard (`dashboard:` in queues.yaml).

Started with the supervisor, restarted with a growing delay (1 s doubling to 60 s, back to 1 s
after a minute up) when it exits on its own, stopped (SIGTERM, then SIGKILL past the stop
timeout) with it. It gets SIGTERM from the kernel if `up` dies (cortexflow/pdeathsig.py), and
the resolved Redis URL in its environment, never in argv. Its output goes to `up`'s stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from cortexflow import pdeathsig
from cortexflow.config.model import Config
from cortexflow.logs import ENV_LOG_FORMAT
from cortexflow.supervisor.logmux import LogSink
from cortexflow.worker.env import ENV_REDIS_URL

BACKOFF_MAX = 60.0
STABLE_AFTER = 60.0


class Sidecar:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], sink: LogSink) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.sink = sink
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.next_start = 0.0
        self.delay = 1.0
        self.stop_deadline: float | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tend(self, now: float, stopping: bool) -> None:
        """Reap, restart when due, or kill past the stop deadline; call every tick."""
        if self.proc is not None and self.proc.poll() is not None:
            code, self.proc = self.proc.returncode, None
            if not stopping:
                self.delay = 1.0 if now - self.started >= STABLE_AFTER else self.delay
                self.next_start = now + self.delay
                self.sink.event(
                    f"{self.name} exited with code {code}; restarting in {self.delay:g}s"
                )
                self.delay = min(self.delay * 2, BACKOFF_MAX)
        if stopping:
            if self.running and self.stop_deadline is not None and now >= self.stop_deadline:
                assert self.proc is not None
                self.sink.event(f"{self.name} still running after the stop timeout: SIGKILL")
                self.proc.kill()
                self.stop_deadline = None
            return
        if self.proc is None and now >= self.next_start:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", pdeathsig.__file__, str(os.getpid()), *self.argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is for `up` to handle
            )
            self.started = now
            self.sink.event(f"{self.name} started (pid {self.proc.pid})")

    def stop(self, deadline: float) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            self.stop_deadline = deadline

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


def sidecars(config: Config, redis_url: str, sink: LogSink) -> list[Sidecar]:
    """What queues.yaml asks `up` to run beside the workers."""
    d = config.dashboard
    if d is None:
        return []
    argv = [
        sys.executable, "-m", "cortexflow", "dashboard", "-f", str(config.path.resolve()),
        "--host", d.host, "--port", str(d.port),
        "--max-streams", str(d.max_streams),
        *(["--metrics-public"] if d.metrics_public else []),
        "--no-login-url",  # up's log never carries the token
    ]  # fmt: skip
    env = {**os.environ, ENV_REDIS_URL: redis_url, ENV_LOG_FORMAT: sink.fmt}
    return [Sidecar("dashboard", argv, env, sink)]


def tend_all(cars: list[Sidecar], stopping: bool) -> bool:
    """Tend each; True while one of them still runs."""
    now = time.monotonic()
    for car in cars:
        car.tend(now, stopping)
    return any(car.running for car in cars)


def stop_all(cars: list[Sidecar], deadline: float) -> None:
    for car in cars:
        car.stop(deadline)


def kill_all(cars: list[Sidecar]) -> None:
    for car in cars:
        car.kill()
