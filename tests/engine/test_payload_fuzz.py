"""Any payload a caller can build is either added or refused with PayloadError; a refused one
writes nothing (Hypothesis, against the real server)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortexflow.config.model import QueueConfig
from cortexflow.engine.payload import encode_data, make_validator
from cortexflow.errors import PayloadError
from tests.helpers.jobs import engine_for

SCHEMA = {
    "type": "object",
    "required": ["userId"],
    "properties": {"userId": {"type": "string"}, "n": {"type": "integer", "minimum": 0}},
}
QUEUE = QueueConfig(name="fuzz", handler="x:y", payload_schema_doc=SCHEMA)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=5), st.sampled_from([set(), object(), b"x"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4),
    ),
    max_leaves=20,
)


def _json_clean(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, bool | int | str) or value is None:
        return True
    if isinstance(value, list):
        return all(_json_clean(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_clean(v) for k, v in value.items())
    return False


@settings(max_examples=400, deadline=None)
@given(values)
def test_encode_data_accepts_json_objects_and_refuses_everything_else(value: Any) -> None:
    try:
        text = encode_data("fuzz", value, None)
    except PayloadError as exc:
        assert exc.violations and all(isinstance(m, str) and m for _, m in exc.violations)
        assert not (isinstance(value, dict) and _json_clean(value)), value
    else:
        # Accepted: an object, stored as the JSON the handler will get back. Non-string keys
        # (0, 1.5, True, None) become strings, as json.dumps does (documented in engine.md).
        assert isinstance(value, dict), value
        assert json.loads(text) == json.loads(json.dumps(value)), value


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["userId", "n", "x"]), values, max_size=3))
def test_schema_violations_each_have_a_pointer(value: dict[str, Any]) -> None:
    try:
        encode_data("fuzz", value, make_validator(QUEUE))
    except PayloadError as exc:
        for pointer, message in exc.violations:
            assert pointer == "" or pointer.startswith("/"), pointer
            assert message


def test_deep_and_huge_payloads_are_refused() -> None:
    deep: Any = {}
    for _ in range(100_000):
        deep = {"a": deep}
    with pytest.raises(PayloadError, match="deeply"):
        encode_data("fuzz", deep, None)
    with pytest.raises(PayloadError, match="byte limit"):
        encode_data("fuzz", {"blob": "x" * (5 * 1024 * 1024)}, None)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(values, min_size=1, max_size=4))
def test_refused_bulk_adds_write_nothing(
    redis_url: str, redis_client: Any, batch: list[Any]
) -> None:
    redis_client.flushdb()

    async def main() -> bool:
        async with engine_for(redis_url, QUEUE) as e:
            try:
                await e.add_bulk([("n", v, None) for v in batch])
            except PayloadError:
                return False
            return True

    added = asyncio.run(main())
    if not added:
        assert redis_client.dbsize() == 0
    else:
        assert redis_client.zcard("{cortexflow:fuzz}:wait") == len(batch)
