"""The environment contract between `cortexflow up` and its worker processes.

The supervisor sets these variables when it spawns a worker (supervisor/loop.py, child.py);
the worker reads them (worker/main.py, cli/run_cmds.py). Both sides import the names from here.
"""

from __future__ import annotations

import os
import socket

# stop if the parent changes (and the parent-death signal)
ENV_PARENT_PID = "CORTEXFLOW_PARENT_PID"
# read end of a pipe only the supervisor can write: EOF means the supervisor is gone
ENV_LIFELINE_FD = "CORTEXFLOW_LIFELINE_FD"
# write b"ready\n" once the handler imported and Redis answered
ENV_READY_FD = "CORTEXFLOW_READY_FD"
ENV_REPLICA = "CORTEXFLOW_REPLICA"
# the resolved Redis URL (in the environment, not argv: `ps` shows argv)
ENV_REDIS_URL = "CORTEXFLOW_REDIS_URL"
# set by the user: the host name `status` shows (default: the machine's). Containers that share
# a host name, or several `up` in one machine standing for several hosts, set it apart.
ENV_HOST = "CORTEXFLOW_HOST"


def int_from_env(name: str) -> int:
    """The integer in ``$name``; 0 when unset or empty."""
    return int(os.environ.get(name, "0") or 0)


def supervised() -> bool:
    """True when this process was started by `cortexflow up`."""
    return bool(os.environ.get(ENV_PARENT_PID))


def host_name() -> str:
    """``$CORTEXFLOW_HOST``, else the machine's host name."""
    return os.environ.get(ENV_HOST) or socket.gethostname()
