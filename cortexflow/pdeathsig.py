"""Die with the parent: Linux's parent-death signal (PR_SET_PDEATHSIG), set up in one place.

Two users: a worker process calls ``die_with_parent`` at start, and the embedded server is
exec'd through this file run as a script (``python -I -S pdeathsig.py PARENT_PID ARGV...``), which
sets the signal in the child before it becomes the server. So this module imports nothing
outside the standard library. On other systems the signal is not available and only the
already-dead-parent check applies (the lifeline pipe covers the rest).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import NoReturn

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; True when set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (AttributeError, OSError):
        return False


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """Set the parent-death signal, then tell whether ``parent`` is still the parent.

    The check comes after the prctl: a parent that died before it would never send the signal.
    """
    set_parent_death_signal(sig)
    return os.getppid() == parent


def exec_under_parent(argv: list[str]) -> NoReturn:
    """``argv`` = [PARENT_PID, PROGRAM, ARGS...]: exec PROGRAM unless the parent is gone."""
    if not die_with_parent(int(argv[0])):
        sys.exit(1)
    os.execv(argv[1], argv[1:])  # noqa: S606 - the program is ours (the server binary), no shell


if __name__ == "__main__":
    exec_under_parent(sys.argv[1:])
