"""When to restart a worker child, and when to give up on it (pure functions, docs/supervisor.md).

The supervisor feeds these functions a child's exit and its restart history; they answer with
a decision and a new history. No clock, no randomness of their own: both come in as arguments,
so the tests pin every number.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cortexflow.backoff import exponential
from cortexflow.config.model import RestartPolicy
from cortexflow.errors import EXIT_CONFIG

BACKOFF_BASE = 1.0  # seconds before the first restart
BACKOFF_JITTER = 0.2  # ±20%


class ChildState(StrEnum):
    """What `cortexflow status` and the log show for one (queue, replica)."""

    STARTING = "starting"  # spawned, has not said ready yet
    READY = "ready"  # its handler imported and Redis answered
    STABLE = "stable"  # up long enough (10 s) to count as started
    BACKING_OFF = "backing-off"  # exited; waits before the next start
    FATAL = "fatal"  # given up: not restarted until a reload
    STOPPING = "stopping"  # asked to stop; waiting for it to exit


def restart_delay_bounds(consecutive: int, cap: float) -> tuple[float, float]:
    """(low, high) wait in seconds before the ``consecutive``-th restart in a row (from 1).

    ``min(cap, 1s * 2**(n-1))``, widened by ±20% jitter.
    """
    if consecutive < 1:
        raise ValueError("consecutive counts from 1")
    d = exponential(BACKOFF_BASE, consecutive, cap)
    return d * (1.0 - BACKOFF_JITTER), d * (1.0 + BACKOFF_JITTER)


def restart_delay(consecutive: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Draw the wait before the ``consecutive``-th restart uniformly within its bounds."""
    low, high = restart_delay_bounds(consecutive, cap)
    return low + (high - low) * rand()


def restarts_within(times: tuple[float, ...], now: float, window: float) -> tuple[float, ...]:
    """The restart times that still fall inside the flapping window ending at ``now``."""
    return tuple(t for t in times if now - t < window)


@dataclass(frozen=True)
class RestartHistory:
    """One (queue, replica)'s recent exits: the input of the next decision."""

    times: tuple[float, ...] = ()  # when it exited unasked, within the window
    consecutive: int = 0  # exits in a row without a stable run in between
    total: int = 0  # every restart since `up` started (for status)


class Verdict(StrEnum):
    RESTART = "restart"
    FATAL_CONFIG = "fatal-config"  # exited with the config-error code: retrying never helps
    FATAL_FLAPPING = "fatal-flapping"  # more than `limit` restarts within `window`


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay: float  # seconds to wait before the restart (0 unless RESTART)
    history: RestartHistory


def decide_after_exit(
    history: RestartHistory,
    exit_code: int | None,
    uptime: float,
    now: float,
    policy: RestartPolicy,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What to do about a child that exited without being asked to.

    A child that had been up for ``policy.stable_after`` seconds starts its backoff afresh.
    Exit code 78 (EXIT_CONFIG) is FATAL at once; more than ``policy.limit`` exits within
    ``policy.window`` is FATAL; anything else restarts after the backoff.
    """
    consecutive = 1 if uptime >= policy.stable_after else history.consecutive + 1
    times = (*restarts_within(history.times, now, policy.window), now)
    new = RestartHistory(times=times, consecutive=consecutive, total=history.total)
    if exit_code == EXIT_CONFIG:
        return Decision(Verdict.FATAL_CONFIG, 0.0, new)
    if len(times) > policy.limit:
        return Decision(Verdict.FATAL_FLAPPING, 0.0, new)
    delay = restart_delay(consecutive, policy.backoff_max, rand)
    return Decision(Verdict.RESTART, delay, RestartHistory(times, consecutive, history.total + 1))


def describe_exit(returncode: int | None) -> str:
    """``-9`` -> "killed by SIGKILL", ``78`` -> "exited with code 78 (configuration error)"."""
    if returncode is None:
        return "is running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    if returncode == EXIT_CONFIG:
        return f"exited with code {returncode} (configuration error)"
    return f"exited with code {returncode}"
