"""Exponential backoff, as pure functions: the one formula behind every wait cortexflow grows.

Used for a job's retries (queues.yaml ``backoff``), the supervisor's restarts of a crashing
worker, and a worker's pauses while Redis is unreachable (``outage_pause``). Not for redis-py's
own retries of one command (engine/transport.py ``backoff_retry``): redis-py computes those
with its ExponentialBackoff, whose parameters are set there once.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# A job's total runs, the first included: the one bound that queues.yaml (`attempts`), the CLI
# (`--attempts`), the Python and HTTP APIs and the engine's check at add all use.
MAX_ATTEMPTS = 1_000_000


def exponential(base: float, n: int, cap: float) -> float:
    """``min(cap, base * 2**(n-1))`` for the n-th wait in a row (n counts from 1)."""
    if n < 1:
        raise ValueError("n counts from 1")
    # Bound the exponent: 2**1024 overflows a float long before any cap matters.
    return min(cap, base * 2.0 ** min(n - 1, 64))


def outage_pause(failures: int) -> float:
    """A worker's pause after ``failures`` calls in a row that Redis did not answer (fetch,
    finish): 0.2 s doubling to 2 s, retried until Redis is back."""
    return exponential(0.2, failures, 2.0)


def backoff_bounds(
    kind: str, delay: float, cap: float, jitter: float, failed_attempt: int
) -> tuple[float, float]:
    """Return the (low, high) bounds in seconds of the wait after the k-th failed run.

    ``fixed`` waits ``delay``; ``exponential`` waits ``delay * 2**(k-1)``; both are capped at
    ``cap``. Jitter ``j`` widens it to ``[D*(1-j), D]``.
    """
    if failed_attempt < 1:
        raise ValueError("failed_attempt counts from 1")
    if kind == "fixed":
        d = min(delay, cap)
    elif kind == "exponential":
        d = exponential(delay, failed_attempt, cap)
    else:
        raise ValueError(f"unknown backoff type {kind!r}")
    return d * (1.0 - jitter), d


def compute_backoff(
    kind: str,
    delay: float,
    cap: float,
    jitter: float,
    failed_attempt: int,
    rand: Callable[[], float] = random.random,
) -> float:
    """Draw the wait in seconds after the k-th failed run, uniformly within backoff_bounds."""
    low, high = backoff_bounds(kind, delay, cap, jitter, failed_attempt)
    return low + (high - low) * rand()
