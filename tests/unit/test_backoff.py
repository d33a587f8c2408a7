"""Retry waits (docs/engine.md): fixed or exponential, capped, with jitter drawing below the cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortexflow.backoff import backoff_bounds, compute_backoff


def test_fixed_waits_delay_every_time() -> None:
    assert [backoff_bounds("fixed", 2.0, 600.0, 0.0, k) for k in (1, 2, 10)] == [(2.0, 2.0)] * 3


def test_exponential_doubles_from_delay() -> None:
    assert [backoff_bounds("exponential", 1.0, 600.0, 0.0, k)[1] for k in range(1, 6)] == [
        1.0, 2.0, 4.0, 8.0, 16.0,
    ]  # fmt: skip


def test_capped_at_max() -> None:
    assert backoff_bounds("exponential", 1.0, 10.0, 0.0, 5) == (10.0, 10.0)
    assert backoff_bounds("fixed", 30.0, 10.0, 0.0, 1) == (10.0, 10.0)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_bounds("exponential", 1.0, 600.0, 0.0, 10_000) == (600.0, 600.0)


def test_jitter_widens_downwards() -> None:
    assert backoff_bounds("exponential", 1.0, 600.0, 0.25, 3) == (3.0, 4.0)
    assert backoff_bounds("fixed", 4.0, 600.0, 1.0, 1) == (0.0, 4.0)


def test_compute_draws_within_bounds_with_injected_randomness() -> None:
    assert compute_backoff("exponential", 1.0, 600.0, 0.5, 3, rand=lambda: 0.0) == 2.0
    assert compute_backoff("exponential", 1.0, 600.0, 0.5, 3, rand=lambda: 0.5) == 3.0
    assert compute_backoff("exponential", 1.0, 600.0, 0.0, 3) == 4.0


@pytest.mark.parametrize(("kind", "attempt"), [("linear", 1), ("fixed", 0), ("exponential", -1)])
def test_bad_arguments(kind: str, attempt: int) -> None:
    with pytest.raises(ValueError):
        backoff_bounds(kind, 1.0, 10.0, 0.0, attempt)


@given(
    kind=st.sampled_from(["fixed", "exponential"]),
    delay=st.floats(0, 3600),
    cap=st.floats(0, 86400),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 10_000),
    r=st.floats(0, 1, exclude_max=True),
)
def test_wait_is_never_negative_nor_above_cap(
    kind: str, delay: float, cap: float, jitter: float, attempt: int, r: float
) -> None:
    low, high = backoff_bounds(kind, delay, cap, jitter, attempt)
    assert 0.0 <= low <= high <= cap
    wait = compute_backoff(kind, delay, cap, jitter, attempt, rand=lambda: r)
    assert low <= wait <= high


@given(st.integers(1, 200))
def test_exponential_is_monotonic(attempt: int) -> None:
    a = backoff_bounds("exponential", 0.5, 3600.0, 0.0, attempt)[1]
    b = backoff_bounds("exponential", 0.5, 3600.0, 0.0, attempt + 1)[1]
    assert a <= b
