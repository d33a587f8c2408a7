"""Any bytes at all: a payload, or one JsonInputError with a place, never another exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cortexflow.api.jsoninput import MAX_DEPTH, JsonInputError, parse_json

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_value_or_a_located_error(raw: bytes) -> None:
    try:
        parse_json(raw)
    except JsonInputError as exc:
        assert exc.message
        assert exc.line is not None or exc.pointer is not None or "limit" in exc.message


@settings(max_examples=300, deadline=None)
@given(_json)
def test_valid_json_round_trips(value: object) -> None:
    raw = json.dumps(value).encode()
    try:
        assert parse_json(raw) == value
    except JsonInputError as exc:  # only lone surrogates, which st.text() can draw
        assert "surrogate" in exc.message


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=MAX_DEPTH + 1, max_value=50_000), st.sampled_from("[{"))
def test_any_depth_past_the_limit_is_refused_without_recursion(depth: int, bracket: str) -> None:
    if bracket == "[":
        raw = ("[" * depth + "]" * depth).encode()
    else:
        raw = ('{"a":' * depth + "1" + "}" * depth).encode()
    try:
        parse_json(raw)
    except JsonInputError as exc:
        assert "nested deeper" in exc.message and exc.line == 1
    else:
        raise AssertionError("accepted")
