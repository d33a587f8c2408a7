"""Retry delay after a failed attempt (DESIGN §3), as a pure function."""

from __future__ import annotations

import random
from collections.abc import Callable


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
        d = delay
    elif kind == "exponential":
        # Bound the exponent: 2**1024 overflows a float long before any cap matters.
        d = delay * 2.0 ** min(failed_attempt - 1, 64)
    else:
        raise ValueError(f"unknown backoff type {kind!r}")
    d = min(d, cap)
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
