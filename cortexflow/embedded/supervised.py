"""The embedded server as `up`'s child: started for `up`, restarted when it dies, stopped last.

One concept: `up` owning its folder's server. A server another `up` runs is refused;
one a command started is waited for, then replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
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
    def address(self) -> str:
        """Where it listens, for logs: the unix socket (and the TCP port, if opened)."""
        where = str(self.server.unix_socket or "")
        if self.server.port:
            where += f" and {self.server.host}:{self.server.port}"
        return where

    @property
    def pid(self) -> int | None:
        return self.server.pid

    def alive(self) -> bool:
        return self.server.alive()

    def exit_code(self) -> int | None:
        return None if self.server.proc is None else self.server.proc.poll()

    def restart(self) -> None:
        """Start it again at the same socket, without waiting (its clients retry).

        The socket lives in the owner's 0700 folder, so no other user can take the address
        while the server is down (a TCP port could be taken in that gap)."""
        self.server.spawn(die_with_parent=True)
        self._record()

    def _record(self) -> None:
        self.folder.write_state(ServerState.of(self.server, "up"))

    def stop(
        self, grace: float = 5.0, timeout: float = 10.0, log: Callable[[str], None] | None = None
    ) -> None:
        """Give other commands using it up to ``grace`` seconds to finish, then stop it.

        ``log`` hears what the stop waits for: the processes still connected (an app holding a
        QueueManager, a `stats --watch`), so a slow stop is never a silent one.
        """
        say = log or (lambda _text: None)
        with self.folder.locked():
            deadline = time.monotonic() + grace
            fcntl.flock(self._users, fcntl.LOCK_UN)
            if not DataFolder._alone(self._users):
                pids = self.folder.user_pids()
                who = f" (pid {', '.join(map(str, pids))})" if pids else ""
                say(
                    f"waiting up to {grace:.0f}s for {len(pids) or 'some'} other process(es)"
                    f"{who} using the embedded server to finish"
                )
                while not DataFolder._alone(self._users) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not DataFolder._alone(self._users):
                    say(
                        "stopping the embedded server while other processes still use it; "
                        "they reconnect to the same socket when it runs again"
                    )
            say(f"stopping the embedded server (pid {self.pid}): saving its data")
            self.server.stop(timeout)
            self.folder.clear_state()
            os.close(self._users)


@contextmanager
def supervised_server(
    data_dir: Path, wait: float = 10.0, log: Callable[[str], None] | None = None
) -> Iterator[SupervisedServer]:
    """Start the folder's embedded server for `up`, which owns it until the block ends.

    Refuses (ServerError) when another `up` already runs this folder. A server a command started
    is waited for (up to ``wait`` seconds) while the command uses it, then taken over: stopped
    (it saves its data) and started again as `up`'s, at the same socket, where the processes
    that used it (an app holding a QueueManager, say) reconnect by themselves.
    """
    say = log or (lambda _text: None)
    folder = DataFolder(data_dir)
    deadline = time.monotonic() + wait
    announced = False
    while True:
        with folder.locked():
            state = folder.live_state()
            if state and state.owner == "up" and pid_alive(state.owner_pid):
                raise ServerError(
                    f"another `cortexflow up` (pid {state.owner_pid}) already runs the embedded "
                    f"server of {data_dir}; stop it first, or point this one at a Redis URL"
                )
            if state:
                busy = folder.has_users()
                users = ", ".join(map(str, folder.user_pids())) or "?" if busy else ""
                if busy and time.monotonic() > deadline:
                    say(
                        f"taking over the embedded server (pid {state.pid}) that another "
                        f"command (pid {users}) started and still uses; it restarts at the "
                        "same socket and its users reconnect"
                    )
                if not busy or time.monotonic() > deadline:
                    terminate_pid(state.pid)  # saves its data; or a killed command's leftover
                    state = None
                elif not announced:
                    announced = True
                    say(
                        f"the embedded server (pid {state.pid}) was started by another command "
                        f"(pid {users}); waiting up to {wait:.0f}s for it to finish before "
                        "taking the server over"
                    )
            if state is None:
                handle = _start(folder)
                break
        time.sleep(0.2)
    try:
        yield handle
    finally:
        if handle.server.proc is not None:
            handle.stop(log=log)


def _start(folder: DataFolder) -> SupervisedServer:
    """Start the folder's server as `up`'s and record it (under ``folder.locked``); whatever
    fails once it runs stops it again, for nobody would own it."""
    folder.clear_state()
    server = folder.new_server()
    server.start(die_with_parent=True)
    users: int | None = None
    try:
        users = folder.join()
        handle = SupervisedServer(folder, server, users)
        handle._record()
    except BaseException:
        if users is not None:
            os.close(users)
        server.stop()
        with contextlib.suppress(OSError):
            folder.clear_state()
        raise
    return handle
