"""The embedded server as `up`'s child: started for `up`, restarted when it dies, stopped last.

One concept: `up` owning its folder's server (docs/supervisor.md). A server another `up` runs
is refused; one a command started is waited for, then replaced.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cortexflow.embedded.folder import DataFolder, ServerState, pid_alive, terminate_pid
from cortexflow.embedded.process import ServerError, ServerProcess


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
