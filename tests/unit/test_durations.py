"""Durations with units: parse, format, and the two together."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortexflow.durations import DURATION_PATTERN, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("1d2h3m4s5ms", 93784.005),
        (" 5s ", 5.0),
        ("90m", 5400.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["5", "", "s", "5 sec", "5S", "-5s", "1m1h", "5s5s", "1.s", ".5s", "5sec", "1e3s"]
)
def test_refused(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert "5s" in str(info.value) or "largest" in str(info.value)


@pytest.mark.parametrize("value", [5, 5.0, None, True, ["5s"]])
def test_non_strings_refused_with_a_hint(value: object) -> None:
    with pytest.raises(DurationError, match="with a unit"):
        parse_duration(value)  # type: ignore[arg-type]


def test_absurdly_long_is_refused_not_infinite() -> None:
    with pytest.raises(DurationError, match="too long"):
        parse_duration("9" * 400 + "d")


def test_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90.0, "1m30s"), (0.25, "250ms"), (0, "0s"), (600.0, "10m"), (604800.0, "7d"), (1.5, "1s500ms"),
     (93784.005, "1d2h3m4s5ms"), (0.0001, "0s")],
)  # fmt: skip
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_format_refuses_non_durations(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


@given(st.integers(0, 10**12))
def test_format_then_parse_is_exact_to_the_millisecond(ms: int) -> None:
    text = format_duration(ms / 1000)
    assert re.match(DURATION_PATTERN, text)
    assert round(parse_duration(text) * 1000) == ms


_PARTS = st.lists(
    st.tuples(
        st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{1,3})?\Z"), st.sampled_from(["ms", "s", "m", "h", "d"])
    ),
    min_size=1,
    max_size=4,
)


@given(_PARTS)
def test_parse_never_fails_unexpectedly(parts: list[tuple[str, str]]) -> None:
    text = "".join(n + u for n, u in parts)
    assert re.match(DURATION_PATTERN, text)
    try:
        value = parse_duration(text)
    except DurationError:
        return  # e.g. units out of order
    assert value >= 0
