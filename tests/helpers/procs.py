"""Real processes: run the CLI once, or start a long-running command (`cortexflow up`, a worker,
an example app) in its own session, read its output, send it signals, and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortexflow.embedded import pid_alive
from cortexflow.worker.env import ENV_PARENT_PID, ENV_REDIS_URL
from tests.helpers.poll import wait_for

# What a user's shell may hold that would steer a child away from what the test gives it.
_INHERITED = ("REDIS_URL", "CORTEXFLOW_FILE", ENV_PARENT_PID, ENV_REDIS_URL)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without cortexflow's variables, NO_COLOR set, then ``extra``."""
    env = dict(os.environ)
    for key in _INHERITED:
        env.pop(key, None)
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def cortexflow_argv(*args: str) -> list[str]:
    """`python -m cortexflow ARGS` with this interpreter."""
    return [sys.executable, "-m", "cortexflow", *args]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60.0,
) -> CliResult:
    """Run `python -m cortexflow ARGS` as a real subprocess; fail the test past ``timeout``."""
    proc = subprocess.run(
        cortexflow_argv(*args),
        cwd=cwd,
        env=clean_env(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


class Cli:
    """run_cli bound to a project (run in its folder) and a database."""

    def __init__(self, project: Path, redis_url: str) -> None:
        self.project = project
        self.redis_url = redis_url

    def __call__(self, *args: str, input: str | None = None, url: str | None = None) -> CliResult:
        return run_cli(
            *args, "--redis-url", url or self.redis_url, cwd=self.project.parent, input=input
        )

    def stats(self, queue: str) -> dict[str, Any]:
        """`cortexflow stats QUEUE --json`'s one row."""
        r = self("stats", queue, "--json")
        assert r.returncode == 0, r.stderr
        [stats] = json.loads(r.stdout)
        return dict(stats)


# Lines in which `up` names the processes it started (children and the embedded server).
_STARTED = (
    r"started \(pid (\d+)\)",
    r"embedded server \(pid (\d+)\)",
    r"server restarted \(pid (\d+)\)",
)


class Proc:
    """A long-running command in its own session (its own process group), stdout and stderr in
    files (a pipe could fill up and block it); ``stop()`` ends it gracefully, ``kill()`` at once,
    and both also kill whatever it said it started. ``env`` is added to ``clean_env()``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
        name: str = "proc",
    ) -> None:
        folder = log_dir or cwd
        assert folder is not None, "Proc needs a folder for its output"
        stem = f"{name}-{time.monotonic_ns()}"
        self.out_path = folder / f"{stem}.out"
        self.err_path = folder / f"{stem}.err"
        self._out = self.out_path.open("wb")
        self._err = self.err_path.open("wb")
        self._killed = False
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def log(self) -> str:
        """stderr then stdout."""
        return self.err() + self.out()

    def _tails(self) -> str:
        return (
            f"exit={self.proc.poll()}\n--- stderr\n{self.err()[-6000:]}\n"
            f"--- stdout\n{self.out()[-3000:]}"
        )

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` times in the output; fail with the output
        (at once if the process exited without it)."""
        rx = re.compile(pattern, re.M)

        def seen() -> list[re.Match[str]] | None:
            found = list(rx.finditer(self.log()))
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.2)  # it exited: its last lines may still be arriving
                found = list(rx.finditer(self.log()))
                if len(found) >= count:
                    return found
                raise AssertionError(f"{pattern!r} x{count} not seen; {self._tails()}")
            return None

        result: list[re.Match[str]] = wait_for(
            seen, timeout, message=lambda: f"{pattern!r} x{count} not seen; {self._tails()}"
        )
        return result

    def started_pids(self) -> list[int]:
        """The children it reported starting (`NAME started (pid N)`)."""
        return [int(p) for p in re.findall(_STARTED[0], self.err())]

    def child_pid(self, name: str, nth: int = 1) -> int:
        """The pid of the ``nth`` start of ``name`` (e.g. "work.0")."""
        found = self.wait_for(rf"{re.escape(name)} started \(pid (\d+)\)", 30, nth)
        return int(found[nth - 1].group(1))

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """Its exit code; fail if it still runs after ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.proc.args!r} did not exit within {timeout}s\n{self._tails()}"
            ) from None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then its exit code (``subprocess.TimeoutExpired`` past ``timeout``); what is
        left of it is killed either way."""
        if self.alive():
            self.send(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and up to ``timeout`` to exit, then kill whatever of it is left."""
        if self.alive():
            self.send(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL its process group and every process it reported starting; idempotent."""
        if self._killed:
            return
        self._killed = True
        log = self.err() + self.out()
        pids = [int(p) for pattern in _STARTED for p in re.findall(pattern, log)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._out.close()
        self._err.close()


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` runs; return those still alive at the deadline."""
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout)
    return [p for p in pids if pid_alive(p)]


def kill_children_of_up(up: Proc, names: str, seconds: float = 20.0, every: float = 2.0) -> int:
    """Chaos: every ``every`` seconds for ``seconds``, SIGKILL one live child of ``up`` whose
    name (``queue.replica`` in up's log) matches the regex ``names``, chosen at random; the
    supervisor restarts it. Returns how many were killed."""
    rng = random.Random()
    kills = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(every)
        latest = {}
        for name, pid in re.findall(rf"({names}) started \(pid (\d+)\)", up.err()):
            latest[name] = int(pid)
        live = [p for p in latest.values() if pid_alive(p)]
        if live:
            os.kill(rng.choice(live), signal.SIGKILL)
            kills += 1
    return kills


def run_on_terminal(
    args: list[str], cwd: Path, answer: bytes | None = None, timeout: float = 120.0
) -> tuple[int, str, str]:
    """Run the CLI with stdin and stderr on a pseudo-terminal (stdout a pipe).

    Returns (exit code, stdout, what the terminal showed). ``answer`` is typed once a prompt
    ("[y/N]") appears.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cortexflow_argv(*args),
        cwd=cwd,
        stdin=slave,
        stderr=slave,
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    stdout_chunks: list[bytes] = []
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    open_fds = {master, out_fd}
    try:
        while open_fds and time.monotonic() < deadline:
            ready, _, _ = select.select(list(open_fds), [], [], 0.2)
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the pty's other side closed
                    chunk = b""
                if not chunk:
                    open_fds.discard(fd)
                elif fd == master:
                    shown += chunk
                    if answer is not None and b"[y/N]" in shown:
                        os.write(master, answer)
                        answer = None
                else:
                    stdout_chunks.append(chunk)
        code = proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        proc.stdout.close()
    return code, b"".join(stdout_chunks).decode(), shown.decode(errors="replace")
