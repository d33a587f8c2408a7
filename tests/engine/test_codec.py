"""The worker's JSON on its hot path is orjson's; what orjson refuses still works."""

from __future__ import annotations

import asyncio
import json

from cortexflow.config.model import QueueConfig
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind, encode_outcome
from tests.helpers.jobs import engine_for


def test_a_payload_with_an_integer_past_64_bits_reaches_the_handler_exactly(
    redis_url: str,
) -> None:
    async def main() -> None:
        q = QueueConfig(name="bigint", handler="x:y")
        async with engine_for(redis_url, q) as e:
            data = {"n": 2**70 + 1, "m": -(2**80), "s": "é"}
            await e.add("n", data, JobOptions(job_id="big"))
            c = QueueConsumer(e, "w", e.client)
            (got,) = (await c.fetch(1)).jobs
            assert got.job.id == "big" and got.job.data == data
            assert got.job.state == "active"

    asyncio.run(main())


def test_an_outcome_orjson_refuses_is_encoded_by_json() -> None:
    """Outcomes are built clean (no lone surrogate); one built by hand still encodes."""
    o = Outcome(OutcomeKind.FAILED, "j", "t", error="bad \udcff")
    arg = encode_outcome(o)
    assert isinstance(arg, bytes)
    assert json.loads(arg)[4] == "bad \udcff"
    clean = Outcome(OutcomeKind.COMPLETED, "j", "t", result='{"a":1}')
    assert json.loads(encode_outcome(clean)) == ["c", "j", "t", '{"a":1}', "", "", 0, -1, 0]
