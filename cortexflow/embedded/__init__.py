"""The embedded Valkey/Redis server (docs/supervisor.md): its public names, in one place.

The code lives in one module per concept:

- process: one server process (find the binary, start it, wait for PING, stop it);
- folder: one server per `.cortexflow/` folder, shared by every command run there,
  and `redis_endpoint`, the URL a command uses;
- supervised: the folder's server as `up`'s child.
"""

from __future__ import annotations

from cortexflow.embedded.folder import (
    DATA_DIR_NAME,
    DataFolder,
    Owner,
    ServerState,
    data_dir_for,
    pid_alive,
    redis_endpoint,
    shared_server,
    terminate_pid,
)
from cortexflow.embedded.process import (
    ServerError,
    ServerProcess,
    find_server_binary,
    free_port,
    with_parent_death_signal,
)
from cortexflow.embedded.supervised import SupervisedServer, supervised_server

__all__ = [
    "DATA_DIR_NAME",
    "DataFolder",
    "Owner",
    "ServerError",
    "ServerProcess",
    "ServerState",
    "SupervisedServer",
    "data_dir_for",
    "find_server_binary",
    "free_port",
    "pid_alive",
    "redis_endpoint",
    "shared_server",
    "supervised_server",
    "terminate_pid",
    "with_parent_death_signal",
]
