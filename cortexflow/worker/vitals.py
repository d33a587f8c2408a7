"""The worker's watchdog over the parts it cannot run without.

A worker depends on a thread and a few tasks besides its handlers: the lease thread (renews
every running job's lease), the finisher (records outcomes), the dead-letter copier, the
registry heartbeat and the fetch loop. Each is written to ride out Redis errors; an error that
gets past that (a bug, an option a connection refuses) must not leave the worker running on
without it: a worker whose leases nobody renews runs every long job twice.

``Vitals`` checks them every lease/6 (at most every second), so a part that died or stopped
ticking is noticed within lease/3. It then calls ``on_fault`` once with the cause; the worker
logs it, stops taking jobs and exits non-zero (EXIT_WORKER_FAULT), and `cortexflow up` starts a
new one. Its running jobs are not given back: they run again elsewhere once their lease ran
out, never while this run may still be going.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cortexflow.worker.leases import LeaseKeeper

log = logging.getLogger("cortexflow.worker")

EXIT_WORKER_FAULT = 71  # a part the worker depends on died or stalled (EX_OSERR)


def check_interval(lease: float) -> float:
    """How often the watchdog looks: lease/6, between 50 ms and 1 s."""
    return min(max(lease / 6.0, 0.05), 1.0)


class Vitals:
    """Watches the lease thread and the worker's long-lived tasks until ``stop()``."""

    def __init__(self, lease: float, on_fault: Callable[[str], None]) -> None:
        self.lease = lease
        self.stall_after = max(lease / 3.0, 0.2)
        self.interval = check_interval(lease)
        self._on_fault = on_fault
        self._keeper: LeaseKeeper | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._stopped = False
        self.fault: str | None = None

    def keeper(self, keeper: LeaseKeeper) -> None:
        self._keeper = keeper

    def task(self, what: str, task: asyncio.Task[Any]) -> None:
        """``task`` must run until the worker stops; ``what`` names it in the log."""
        self._tasks[what] = task

    def stop(self) -> None:
        """The worker is stopping: parts that end now end on purpose."""
        self._stopped = True

    def check(self, frozen: bool = False) -> str | None:
        """The first fault found, or None. ``frozen``: the whole process was held (SIGSTOP, a
        paused VM) since the last check, so a thread that did not tick meanwhile is no fault."""
        if self._stopped:
            return None
        keeper = self._keeper
        if keeper is not None:
            stall = float("inf") if frozen else self.stall_after
            if fault := keeper.fault(time.monotonic(), stall):
                return fault
        for what, task in self._tasks.items():
            if not task.done():
                continue
            if task.cancelled():
                return f"the {what} was cancelled"
            error = task.exception()
            return f"the {what} died ({error!r})" if error else f"the {what} ended"
        return None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stopped:
            await asyncio.sleep(self.interval)
            now = loop.time()
            # The loop itself was held past lease/3 (the lease thread's watchdog covers a
            # blocked loop): measure the thread afresh rather than blame it.
            frozen = now - last > self.interval + self.stall_after
            last = now
            fault = self.check(frozen)
            if fault is not None:
                self.fault = fault
                self._stopped = True
                self._on_fault(fault)
                return
