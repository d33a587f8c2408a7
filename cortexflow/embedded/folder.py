"""The data folder: one embedded server per `.cortexflow/`, shared by every command run there.

One concept: sharing a folder's server -- its lock and users lock files, the `server.json`
state file, and `redis_endpoint`, which picks the URL a command uses and starts the folder's
server for the command's length when nothing else serves it. Who may reach that server (the
folder's permissions, the unix socket, an opt-in TCP port) is `embedded.access`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cortexflow.config.model import Config
from cortexflow.embedded.access import (
    exposure_from_env,
    read_auth_file,
    secure_folder,
    socket_path,
)
from cortexflow.embedded.process import (
    ServerError,
    ServerProcess,
    ping,
    preparing,
    server_url,
)

DATA_DIR_NAME = ".cortexflow"
Owner = Literal["up", "command"]


@dataclass(frozen=True)
class ServerState:
    """What `server.json` in the data folder says: which server serves it, started by whom."""

    pid: int
    host: str
    port: int  # 0: no TCP port (the default), the unix socket only
    owner: Owner  # "up" supervises it; "command": started for the length of a command
    owner_pid: int
    socket: str = ""  # the unix socket's path
    auth: bool = False  # the server asks for the password of the folder's auth.conf

    @property
    def socket_path(self) -> Path | None:
        return Path(_name_from_text(self.socket)) if self.socket else None

    @property
    def url(self) -> str:
        """The local URL, without the password (see DataFolder.client_url)."""
        return server_url(self.host, self.port, self.socket_path, None)

    @classmethod
    def of(cls, server: ServerProcess, owner: Owner) -> ServerState:
        return cls(
            pid=int(server.pid or 0),
            host=server.host,
            port=server.port,
            owner=owner,
            owner_pid=os.getpid(),
            socket=_name_as_text(server.unix_socket) if server.unix_socket else "",
            auth=bool(server.password),
        )


def _name_as_text(path: Path) -> str:
    """A file name as server.json keeps it: its bytes as UTF-8, whatever this run's locale."""
    return os.fsencode(path).decode("utf-8", "surrogateescape")


def _name_from_text(text: str) -> str:
    """The name `_name_as_text` wrote, in this run's filesystem encoding."""
    return os.fsdecode(text.encode("utf-8", "surrogateescape"))


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
        if not self.path.is_dir() or not (self.path / ".gitignore").exists():
            secure_folder(self.path)
            with preparing("write to", self.path):
                gitignore = self.path / ".gitignore"
                fd = os.open(gitignore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write("# cortexflow's embedded server data: not for version control\n*\n")
        with preparing("write to", self.path):
            return os.open(self.path / name, os.O_RDWR | os.O_CREAT, 0o600)

    def new_server(self) -> ServerProcess:
        """The folder's server, not started: its unix socket, and TCP only if the operator
        opened it (``CORTEXFLOW_EMBEDDED_LISTEN``, with a password). Tightens the folder first."""
        secure_folder(self.path)
        exposure = exposure_from_env()
        return ServerProcess(
            self.path,
            unix_socket=socket_path(self.path),
            host=exposure.host if exposure else "127.0.0.1",
            port=exposure.port if exposure else 0,
            password=exposure.password if exposure else None,
        )

    def client_url(self, state: ServerState) -> str:
        """The URL a command on this host uses for ``state``'s server (with its password)."""
        password = read_auth_file(self.path / "auth.conf") if state.auth else None
        return server_url(state.host, state.port, state.socket_path, password)

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
                socket=str(raw.get("socket", "")),
                auth=bool(raw.get("auth", False)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_state(self, state: ServerState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        with preparing("write to", self.path):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(asdict(state)))
            tmp.replace(self.state_file)

    def clear_state(self) -> None:
        self.state_file.unlink(missing_ok=True)

    def live_state(self) -> ServerState | None:
        """The recorded server if it still runs and answers PING, else None."""
        state = self.read_state()
        if (
            state is not None
            and pid_alive(state.pid)
            and ping(state.host, state.port, state.socket_path)
        ):
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

    def user_pids(self) -> list[int]:
        """Pids holding the users lock (from /proc/locks; empty where there is none)."""
        try:
            inode = (self.path / "users").stat().st_ino
            lines = Path("/proc/locks").read_text().splitlines()
        except OSError:
            return []
        pids = set()
        for line in lines:
            fields = line.split()
            if "->" in fields:  # a waiter, not a holder
                continue
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
                pids.add(int(fields[4]))
        pids.discard(os.getpid())
        return sorted(pids)

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
    else the embedded server of this folder (docs/supervisor.md): the one running there (`up`'s or
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
    users: int | None = None
    with folder.locked(timeout):
        try:
            state = folder.live_state()
            if state is None:
                folder.clear_state()
                started = folder.new_server()
                started.start()  # its own session: a Ctrl-C meant for one command spares it
                state = ServerState.of(started, "command")
                folder.write_state(state)
            users = folder.join()
            url = folder.client_url(state)
        except BaseException:
            # Whatever failed, a server started here has no user left: it must not run on.
            if users is not None:
                os.close(users)
            if started is not None:
                started.stop()
                with contextlib.suppress(OSError):
                    folder.clear_state()
            raise
    try:
        yield url
    finally:
        with folder.locked(timeout):
            last = folder.leave(users)
            if last and state.owner == "command" and folder.read_state() == state:
                if started is not None:
                    started.stop()
                else:
                    terminate_pid(state.pid)
                folder.clear_state()
