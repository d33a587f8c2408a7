"""The scheduler inside `cortexflow up`: adds each schedule's job when its tick comes.

Every supervisor runs one, with no leader: all of them try each tick, schedule.lua lets exactly
one add its job (deterministic job id, last tick recorded in the same call). So a supervisor
that starts, stops or dies changes nothing but who wins. A task in the supervisor's event loop
rather than a child process: it runs no handler code, waits on Redis most of the time, and
needs the supervisor's own config (reconciled on start and on SIGHUP).

Timing: it sleeps until the next tick by its estimate of the server's clock (measured with
TIME on every refresh), and the script refuses a tick that is still in the future on the
server, so a tick is never early; it is late by the wake-up and one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from cortexflow.config.model import Config, QueueConfig
from cortexflow.engine import schedules as store
from cortexflow.engine.connection import Client, connect
from cortexflow.engine.scripts import Scripts
from cortexflow.errors import CortexflowError
from cortexflow.ticks import Rule, RuleError, plan

REFRESH = 1.0  # seconds between re-reads of the definitions (runtime upserts are seen within it)

Log = Callable[[str], None]


def rule_of(stored: store.Stored) -> Rule:
    s = stored.schedule
    return Rule.make(cron=s.cron, every=s.every, timezone=s.timezone, start_at=s.start_at)


class Scheduler:
    def __init__(
        self,
        config: Callable[[], Config],
        log: Log,
        *,
        clock: Callable[[], float] = time.time,
        refresh: float = REFRESH,
    ) -> None:
        self._config = config
        self._log = log
        self._clock = clock
        self._refresh = refresh
        self.stored: dict[str, store.Stored] = {}
        self.states: dict[str, store.State] = {}
        self._rules: dict[str, tuple[store.Stored, Rule | None]] = {}
        self._offset_ms = 0
        self.alive_ms: int | None = None  # a scheduler's last sign of life before this look
        self._warned: set[str] = set()
        self._reconcile = True
        self._closing = False
        self._wake: asyncio.Event | None = None
        self.added = 0  # jobs this scheduler added

    # -- control (from the supervisor's loop) ------------------------------------------------

    def reconcile_soon(self) -> None:
        """queues.yaml was (re)loaded: make the stored schedules match it."""
        self._reconcile = True
        self._poke()

    def close(self) -> None:
        self._closing = True
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    @property
    def prefix(self) -> str:
        return self._config().redis.prefix

    def now_ms(self) -> int:
        """The server's clock as this process estimates it."""
        return round(self._clock() * 1000) + self._offset_ms

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, url: str) -> None:
        self._wake = asyncio.Event()
        client = connect(url, retries=1)
        scripts = Scripts(client)
        failing = False
        next_refresh = 0.0
        try:
            while not self._closing:
                self._wake.clear()
                try:
                    if self._reconcile:
                        await self.reconcile(client)
                        next_refresh = 0.0
                    if time.monotonic() >= next_refresh:
                        await self.refresh(client)
                        next_refresh = time.monotonic() + self._refresh
                    wake_ms = await self.step(client, self.now_ms(), scripts)
                except Exception as exc:  # Redis down, or a bug: keep the other schedules going
                    if not failing:
                        what = "Redis failed" if isinstance(exc, RedisError | OSError) else "error"
                        self._log(f"scheduler: {what} ({exc!r}); retrying every second")
                    failing = True
                    wake_ms = self.now_ms() + 1000
                else:
                    if failing:
                        self._log("scheduler: Redis answers again")
                    failing = False
                delay = min((wake_ms - self.now_ms()) / 1000, next_refresh - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(delay, 0.0))
        finally:
            await client.aclose()

    async def reconcile(self, client: Client) -> None:
        self._reconcile = False
        declared = dict(self._config().schedules)
        changed, removed = await store.reconcile(client, self.prefix, declared)
        if changed or removed:
            parts = [f"upserted {', '.join(changed)}"] if changed else []
            parts += [f"removed {', '.join(removed)}"] if removed else []
            self._log(f"schedules from {self._config().path.name}: {'; '.join(parts)}")

    async def refresh(self, client: Client) -> None:
        """Re-read definitions and states, and the server's clock."""
        before = self._clock()
        server = await store.server_ms(client)
        after = self._clock()
        self._offset_ms = server - round((before + after) / 2 * 1000)
        previous = await store.mark_alive(client, self.prefix, server)
        # The first scheduler ever on this server: alive from now (earlier ticks were missed).
        self.alive_ms = server if previous is None else previous
        self.stored = await store.load_all(client, self.prefix)
        self.states = await store.states(client, self.prefix, self.stored)

    def _rule(self, name: str, stored: store.Stored) -> Rule | None:
        cached = self._rules.get(name)
        if cached is not None and cached[0] == stored:
            return cached[1]
        try:
            rule: Rule | None = rule_of(stored)
        except RuleError as exc:
            self._warn(name, f"schedule {name!r} cannot run here: {exc}")
            rule = None
        self._rules[name] = (stored, rule)
        return rule

    def _warn(self, name: str, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._log(message)

    async def step(self, client: Client, now_ms: int, scripts: Scripts) -> int:
        """Add the jobs of every due tick; returns when (server ms) to look again."""
        wake = now_ms + round(self._refresh * 1000)
        queues = self._config().queues
        for name, stored in self.stored.items():
            queue = queues.get(stored.schedule.queue)
            rule = self._rule(name, stored)
            if queue is None:
                self._warn(
                    name,
                    f"schedule {name!r} adds to queue {stored.schedule.queue!r}, which this "
                    "queues.yaml does not declare: left to the supervisors that do",
                )
                continue
            if rule is None:
                continue
            try:
                wake = min(wake, await self._step_one(client, now_ms, scripts, stored, queue, rule))
            except CortexflowError as exc:  # its options no longer fit the queue: the others go on
                self._warn(name, f"schedule {name!r} cannot add its job: {exc}")
        return wake

    async def _step_one(
        self,
        client: Client,
        now_ms: int,
        scripts: Scripts,
        stored: store.Stored,
        queue: QueueConfig,
        rule: Rule,
    ) -> int:
        """One schedule's due ticks; returns when its next one comes (server ms)."""
        name = stored.schedule.name
        wake = now_ms + round(self._refresh * 1000)
        state = self.states.get(name) or store.State(None, None, None)
        last = max(state.last_tick_ms or 0, stored.since_ms)
        todo = plan(rule, last, now_ms, stored.schedule.catch_up, self.alive_ms)
        early = False
        added: list[int] = []
        for tick in todo.fire:
            result = await store.fire(client, self.prefix, stored, queue, tick, scripts=scripts)
            if result.outcome == "early":
                wake = min(wake, now_ms + result.value)
                early = True
                break
            if result.outcome == "added":
                self.added += 1
                added.append(tick)
                last = tick
                state = store.State(tick, None, store.job_id(name, tick))
            else:
                last = max(last, result.value)
        if todo.skip is not None and not early:
            result = await store.fire(
                client, self.prefix, stored, queue, todo.skip, skip=True, scripts=scripts
            )
            last = todo.skip if result.outcome == "added" else max(last, result.value)
            if result.outcome == "added":
                self._log(
                    f"schedule {name!r}: {todo.missed} tick(s) came while no supervisor ran; "
                    "catch_up none: skipped them"
                )
        elif todo.missed and added and added[-1] == todo.fire[-1]:
            mode = stored.schedule.catch_up
            what = f"added {store.job_id(name, added[-1])}" if mode == "one" else "added each"
            self._log(
                f"schedule {name!r}: {todo.missed} tick(s) came while no supervisor ran; "
                f"catch_up {mode}: {what}"
            )
        self.states[name] = store.State(last, state.last_run_ms, state.last_job)
        return min(wake, rule.next_after(max(last, now_ms)))
