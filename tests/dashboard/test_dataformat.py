"""The dashboard on a server whose data a newer release wrote in a format this one cannot work
on: /healthz, the JSON API and the pages answer 503 with what is stored and what to do."""

from __future__ import annotations

import json

import httpx
import redis

from tests.helpers.dashboard import ADMIN_TOKEN

NEWER = {"version": 99, "oldest_reader": 99, "written_by": "cortexflow 9.0.0"}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_a_newer_data_format_is_a_503_that_says_what_to_do(
    redis_client: redis.Redis, base: str
) -> None:
    redis_client.set("{cortexflow}:format", json.dumps(NEWER))
    with httpx.Client(base_url=base, timeout=10) as http:
        health = http.get("/healthz", headers=AUTH)
        assert health.status_code == 503
        assert "is in format 99" in health.json()["error"]
        api = http.get("/api/queues", headers=AUTH)
        assert api.status_code == 503
        message = api.json()["error"]
        assert "is in format 99" in message and "Upgrade cortexflow" in message, message
        assert "does not answer" not in message
    assert json.loads(redis_client.get("{cortexflow}:format") or b"") == NEWER
