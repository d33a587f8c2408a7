"""Leases that belong to the worker process, not to its event loop.

A thread of the worker renews every lease the worker holds, every lease/3, over a blocking Redis
connection of its own (short socket timeouts, retried every tick after a failure), so an async
handler that blocks the event loop (CPU work written as ``async def``, a blocking client library)
no longer loses its jobs to another worker. The same thread is the loop's watchdog: it posts a
probe to the loop every tick and measures how long the loop takes to run it.

- The loop blocked for more than lease/4: a warning naming the running jobs (and one more line
  with the total once it runs again).
- The loop blocked, in one stretch, for longer than the timeout of a running job (plus a grace of
  one renewal interval): that timeout can never fire, so the worker gives up: ``on_hang`` is
  called from the thread (the worker process logs the job ids and exits; its jobs stall and are
  run again elsewhere, and ``cortexflow up`` starts a new worker). Many short blocks in a row
  only delay timeouts; they do not count.

The thread must never be silently gone: an unexpected error in it is logged with its traceback
and kept in ``failure``, and ``fault()`` tells the worker's watchdog (worker/vitals.py) that the
thread died or stopped ticking, so the worker stops and a new one takes its place instead of
running jobs whose leases nobody renews.

Leases are keyed by delivery, (job id, lease token), never by job id alone: the same job can be
held twice by one worker (its lease ran out and it was leased again), and each delivery's run,
renewal and outcome must stay apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from redis.exceptions import RedisClusterException, RedisError

from cortexflow.engine.renewal import SyncRenewer

log = logging.getLogger("cortexflow.worker")

TICK = 0.1  # seconds between the thread's checks (probe, renewal due, retry after a failure)
FAILURE_LOG_EVERY = 5.0  # seconds between two "renewal failed" lines during an outage
FROZEN = 1.0  # the thread itself missed its ticks this long: the process was stopped, not the loop
EXIT_LOOP_BLOCKED = 70  # the worker process gave up on an event loop blocked past a job's timeout
WARN_FRACTION = 0.25  # warn when the loop was blocked for more than this share of the lease
# What a renewal may raise while Redis is away: retried. RedisClusterException is not a
# RedisError (a whole Cluster unreachable, a slot not covered).
TRANSIENT = (RedisError, RedisClusterException, OSError)


def call_timeout(lease: float) -> float:
    """Socket timeout of the renewal connection: well inside lease/3, so a renewal stuck on a
    half-open connection fails (and is retried) long before the lease can run out."""
    return min(max(lease / 6.0, 0.1), 5.0)


Delivery = tuple[str, str]  # (job id, lease token)


# (job ids past their timeout, seconds the loop has been blocked) -> None; runs in the thread
HangCallback = Callable[[list[str], float], None]


class LeaseThread:
    """The thread that ticks the lease keepers of one worker process: one keeper per queue,
    so queues sharing a process (``process:`` in queues.yaml) share one thread. It ends once
    its last keeper detached."""

    def __init__(self, name: str = "cortexflow-leases") -> None:
        self.name = name
        self.keepers: list[LeaseKeeper] = []
        self.failure: BaseException | None = None  # what ended the thread, if anything did
        self._lock = threading.Lock()  # held while one keeper ticks, and to detach one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, keeper: LeaseKeeper) -> None:
        with self._lock:
            self.keepers.append(keeper)
            if self._thread is None:
                self._thread = threading.Thread(target=self._guarded, name=self.name, daemon=True)
                self._thread.start()

    def detach(self, keeper: LeaseKeeper) -> None:
        """Tick ``keeper`` no more (returns once its tick under way, if any, is over); the last
        one to go ends the thread."""
        with self._lock:
            if keeper in self.keepers:
                self.keepers.remove(keeper)
            last = not self.keepers
            if last:
                self._stop.set()
        thread = self._thread
        if last and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # any error: the watchdog must learn it, and the log
            self.failure = exc
            log.critical("the lease renewal thread died: %r", exc, exc_info=exc)

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            for keeper in list(self.keepers):
                with self._lock:
                    if keeper in self.keepers:
                        keeper.tick(time.monotonic())


class LeaseKeeper:
    """The leases of one queue's worker, renewed from a LeaseThread (its own, or one shared by
    the queues of its process)."""

    def __init__(
        self,
        renewer: SyncRenewer,
        lease: float,
        *,
        on_hang: HangCallback,
        name: str = "cortexflow-leases",
    ) -> None:
        self._renewer = renewer
        self.lease = lease
        self.interval = max(lease / 3.0, 0.1)
        self.warn_after = max(lease * WARN_FRACTION, TICK * 2)
        self._on_hang = on_hang
        self._name = name
        # delivery -> its run's timeout (None: not running, fetched or finished)
        self._held: dict[Delivery, float | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: LeaseThread | None = None
        self._next_renewal = 0.0
        self._last = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe_sent: float | None = None  # when the pending probe was posted
        self._warned = False
        self._hung = False
        self._failed_logged = 0.0  # when a failed renewal was last logged (0: renewals work)
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []
        self.last_tick = 0.0  # monotonic time of the thread's last tick (0: not started)
        self.failure: BaseException | None = None  # what ended the thread, if anything did
        self.failing_since: float | None = None  # wall clock of the first failed renewal

    # -- the loop's side: one dict operation each, on the hot path ----------------------------
    # No lock: single dict operations are atomic under the GIL, and the thread only ever reads
    # the dict through dict.copy(), one C call that no other thread can interleave with.

    def hold(self, delivery: Delivery, timeout: float | None = None) -> None:
        """Renew this delivery's lease from now on; ``timeout``: its run starts now."""
        self._held[delivery] = timeout

    def drop(self, delivery: Delivery) -> None:
        """Stop renewing (the outcome is written, or the job was given back)."""
        self._held.pop(delivery, None)

    def held(self) -> int:
        return len(self._held)

    def start(self, loop: asyncio.AbstractEventLoop, thread: LeaseThread | None = None) -> None:
        """Start renewing from ``thread`` (shared by the queues of one process), or from a
        thread of this keeper's own."""
        self._loop = loop
        self.last_tick = self._last = time.monotonic()
        self._next_renewal = self._last + self.interval
        self._thread = thread if thread is not None else LeaseThread(self._name)
        self._thread.attach(self)

    def fault(self, now: float, stall_after: float) -> str | None:
        """Why the thread can no longer be trusted with the leases, or None: it died (with
        ``failure``), or it has not ticked for ``stall_after`` seconds (monotonic ``now``)."""
        if self._thread is None or self._stop.is_set():
            return None
        failure = self.failure or self._thread.failure
        if failure is not None or not self._thread.alive():
            cause = repr(failure) if failure is not None else "it ended"
            return f"the lease renewal thread died ({cause})"
        if now - self.last_tick > stall_after:
            return (
                f"the lease renewal thread has not run for {now - self.last_tick:.1f}s "
                f"(more than lease/3 = {stall_after:.1f}s)"
            )
        return None

    async def renewed(self, timeout: float) -> bool:
        """Wait until a renewal that started after this call succeeded (after an outage: the
        worker's own live jobs are renewed before it fetches, so its fetch cannot take them for
        stalled). False after ``timeout`` seconds without one."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.append((time.monotonic(), fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.detach(self)
        self._renewer.close()

    # -- in the thread -------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """One check, every TICK: probe the loop, renew when due (or right after a failure)."""
        self.last_tick = now
        if now - self._last > FROZEN:
            # This thread did not run either: the whole process was stopped (SIGSTOP, a
            # paused VM), not its event loop blocked. Measure the loop afresh.
            self._probe_sent = None
        self._last = now
        self._watch(now)
        if now >= self._next_renewal or self._waiters:
            self._next_renewal = now + (self.interval if self._renew(now) else 0.0)

    def _renew(self, started: float) -> bool:
        held = list(self._held.copy())
        try:
            lost = self._renewer.renew(held)
        except TRANSIENT as exc:
            if self.failing_since is None:
                self.failing_since = time.time()
            # Retried every tick: say so once, then every few seconds, not ten times a second.
            if started - self._failed_logged >= FAILURE_LOG_EVERY:
                self._failed_logged = started
                log.warning("lease renewal failed (%s); retrying every %gs", exc, TICK)
            return False
        if self._failed_logged:
            log.info("lease renewals work again")
            self._failed_logged = 0.0
        self.failing_since = None
        if lost:
            now_held = self._held.copy()
            # A lease dropped meanwhile was finished or given back, not lost.
            gone = [d for d in held if d[0] in lost and d in now_held]
            for job_id, token in gone:
                log.warning(
                    "lease of job %s (delivery %s) lost: another worker may run it now",
                    job_id,
                    token,
                )
        self._wake_waiters(started)
        return True

    def _wake_waiters(self, started: float) -> None:
        with self._lock:
            ready = [f for t, f in self._waiters if t <= started]
            self._waiters = [(t, f) for t, f in self._waiters if t > started]
        for fut in ready:
            self._call_in_loop(_set_done, fut)

    def _watch(self, now: float) -> None:
        """Probe the event loop; warn, or give up, when it does not answer."""
        sent = self._probe_sent
        if sent is None:
            self._probe_sent = now
            self._call_in_loop(self._answer, now)
            return
        blocked = now - sent
        if blocked < self.warn_after or self._hung:
            return
        running = {d[0]: t for d, t in self._held.copy().items() if t is not None}
        if not self._warned:
            self._warned = True
            log.warning(
                "the event loop has been blocked for %.1fs (a handler that does not await: CPU "
                "work or a blocking call in an async def); running jobs: %s",
                blocked,
                ", ".join(sorted(running)) or "none",
            )
        overdue = sorted(j for j, t in running.items() if blocked > t + self.interval)
        if overdue:
            self._hung = True
            self._on_hang(overdue, blocked)

    def _answer(self, sent: float) -> None:
        """Runs in the loop: the probe got through."""
        blocked = time.monotonic() - sent
        if self._warned:
            log.warning("the event loop ran again after being blocked for %.1fs", blocked)
        self._warned = False
        self._probe_sent = None

    def _call_in_loop(self, fn: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(fn, *args)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
