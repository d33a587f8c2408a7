"""When a schedule ticks: cron rules (by cronsim) and intervals, as pure functions of time.

Times are integer milliseconds since the epoch (UTC), the unit the engine stores. A cron rule
is read in its IANA timezone with Debian cron's DST behaviour, which cronsim reproduces: a
fixed-time job in a skipped hour (spring forward) runs once at the first minute after the gap,
one in a repeated hour (fall back) runs once, at the first pass; `*`-hour jobs follow real time.

An `every` rule ticks at ``anchor + k * every``: the anchor is ``start_at`` when given, else the
epoch, so every supervisor computes the same ticks without having to agree on a start.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CatchUp = Literal["none", "one", "all"]
MIN_EVERY_MS = 1000
# At most this many due ticks run in one look (the newest ones), e.g. for catch_up: all.
CATCH_UP_CAP = 100
# A tick is missed (every supervisor down; catch_up decides) when it came more than this long
# after the last sign of life of any scheduler (each gives one a second).
MISSED_SLACK_MS = 3_000

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class RuleError(ValueError):
    """A cron expression, timezone or interval that cannot make a schedule."""


@functools.cache
def zone(name: str) -> tzinfo:
    """The timezone of an IANA name; RuleError if this machine does not know it."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleError(
            f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin or UTC"
        ) from exc


def normalize_cron(expr: str) -> str:
    """The five-field form of ``expr`` (aliases such as @daily expanded); RuleError if invalid."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise RuleError(
                f"unknown cron alias {text!r}: use one of {', '.join(ALIASES)} or five fields"
            )
        return ALIASES[text.lower()]
    fields = text.split(" ")
    if len(fields) != 5:
        raise RuleError(
            f"cron expression {expr!r} has {len(fields)} fields; it needs five: "
            "minute hour day-of-month month day-of-week"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise RuleError(f"invalid cron expression {expr!r}: {exc}") from None
    return text


@dataclass(frozen=True)
class Rule:
    """A schedule's timing: exactly one of ``cron`` and ``every_ms``."""

    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    start_ms: int | None = None

    @classmethod
    def make(
        cls,
        *,
        cron: str | None = None,
        every: float | None = None,
        timezone: str = "UTC",
        start_at: float | None = None,
    ) -> Rule:
        """Check and build a rule (``every`` and ``start_at`` in seconds); RuleError if wrong."""
        if (cron is None) == (every is None):
            raise RuleError("a schedule needs exactly one of cron and every")
        zone(timezone)
        start_ms = None if start_at is None else round(start_at * 1000)
        if cron is not None:
            return cls(cron=normalize_cron(cron), timezone=timezone, start_ms=start_ms)
        assert every is not None
        every_ms = round(every * 1000)
        if every_ms < MIN_EVERY_MS:
            raise RuleError(f"every must be at least 1s, got {every:g}s")
        return cls(every_ms=every_ms, timezone=timezone, start_ms=start_ms)

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron}"
        from cortexflow.durations import format_duration

        assert self.every_ms is not None
        return f"every {format_duration(self.every_ms / 1000)}"

    def next_after(self, t_ms: int) -> int:
        """The first tick strictly after ``t_ms``."""
        if self.start_ms is not None and t_ms < self.start_ms:
            t_ms = self.start_ms - 1
        if self.every_ms is not None:
            anchor = self.start_ms or 0
            return anchor + ((t_ms - anchor) // self.every_ms + 1) * self.every_ms
        assert self.cron is not None
        dt = datetime.fromtimestamp(t_ms / 1000, zone(self.timezone))
        return _ms(next(CronSim(self.cron, dt)))

    def ticks_upto(self, after_ms: int, upto_ms: int, limit: int) -> list[int]:
        """The newest ``limit`` ticks t with ``after_ms < t <= upto_ms``, oldest first."""
        if upto_ms <= after_ms or limit <= 0:
            return []
        first = self.start_ms if self.start_ms is not None else None
        if self.every_ms is not None:
            anchor = self.start_ms or 0
            if upto_ms < anchor:
                return []
            newest = anchor + (upto_ms - anchor) // self.every_ms * self.every_ms
            out: list[int] = []
            t = newest
            while t > after_ms and len(out) < limit and (first is None or t >= first):
                out.append(t)
                t -= self.every_ms
            return out[::-1]
        assert self.cron is not None
        dt = datetime.fromtimestamp(upto_ms / 1000, zone(self.timezone))
        if dt.microsecond == 0:
            dt += timedelta(microseconds=1)  # reverse iteration then includes upto itself
        out = []
        for tick in CronSim(self.cron, dt, reverse=True):
            t = _ms(tick)
            if t <= after_ms or len(out) >= limit or (first is not None and t < first):
                break
            out.append(t)
        return out[::-1]


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


@dataclass(frozen=True)
class Plan:
    """What a scheduler does for one schedule now: add a job for each of ``fire`` in order,
    then (``skip`` set) record that tick as passed without a job (catch_up: none)."""

    fire: tuple[int, ...] = ()
    skip: int | None = None
    missed: int = 0  # due ticks that came while every supervisor was down (catch_up applied)


def plan(
    rule: Rule, last_ms: int, now_ms: int, catch_up: CatchUp, alive_ms: int | None = None
) -> Plan:
    """The ticks due after ``last_ms`` (the last tick handled) up to ``now_ms``.

    ``alive_ms``: when a scheduler (any supervisor's) last said it was running, before this
    look; None if none ever did. A due tick at most MISSED_SLACK_MS after that came while a
    scheduler ran, one merely late (a busy machine, a slow Redis): it runs, whatever
    ``catch_up`` says. Later ticks were *missed*, every supervisor being down; for those:

    - ``one``: only the newest runs (after downtime: once, not once per missed tick);
    - ``all``: each runs, oldest first;
    - ``none``: none runs; the newest is recorded as passed.

    At most CATCH_UP_CAP ticks run in all (the newest).
    """
    due = rule.ticks_upto(last_ms, now_ms, CATCH_UP_CAP)
    if not due:
        return Plan()
    seen_until = -1 if alive_ms is None else alive_ms + MISSED_SLACK_MS
    covered = tuple(t for t in due if t <= seen_until)
    missed = [t for t in due if t > seen_until]
    if catch_up == "all":
        return Plan(fire=tuple(due), missed=len(missed))
    if not missed:
        return Plan(fire=tuple(due))
    if catch_up == "one":
        return Plan(fire=(*covered, missed[-1]), missed=len(missed))
    return Plan(fire=covered, skip=missed[-1], missed=len(missed))


def parse_start_at(text: str) -> float:
    """Epoch seconds of an ISO 8601 time with a UTC offset or Z; RuleError otherwise."""
    try:
        dt = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise RuleError(
            f"start_at {text!r} is not an ISO 8601 time, e.g. 2026-12-01T00:00:00Z"
        ) from None
    if dt.tzinfo is None:
        raise RuleError(
            f"start_at {text!r} has no UTC offset: add Z or e.g. +01:00 so every host reads it "
            "the same"
        )
    return dt.timestamp()
