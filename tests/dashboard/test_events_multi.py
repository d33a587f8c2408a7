"""GET /api/events?queues=a,b (issue 29, item 4): several queues' events through one SSE stream,
in stream-id order, counted as one stream against --max-streams, with the per-queue stream's
auth, errors and Last-Event-ID resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from cortexflow.dashboard.sse import merged
from cortexflow.engine.events import Event
from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    READ_TOKEN,
    dashboard_process,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
TIMEOUT = httpx.Timeout(20)


def add(base: str, queue: str, name: str) -> str:
    r = httpx.post(
        f"{base}/api/queues/{queue}/jobs", json={"name": name, "data": {}}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def events(response: httpx.Response, n: int) -> list[dict[str, Any]]:
    """The next ``n`` events of an open SSE response: {id, event, data}."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(("id: ", "event: ")):
            key, _, value = line.partition(": ")
            current[key] = value
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif not line and current:
            out.append(current)
            current = {}
            if len(out) == n:
                return out
    raise AssertionError(f"the stream ended after {out}")


def test_one_stream_carries_the_named_queues_in_id_order(base: str) -> None:
    url = f"{base}/api/events?queues=work,dead"
    with httpx.stream("GET", url, headers=READ, timeout=TIMEOUT) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        a, b = add(base, "work", "a"), add(base, "dead", "b")
        mail = {"name": "m", "data": {"to": "x", "subject": "not followed"}}
        assert httpx.post(f"{base}/api/queues/mail/jobs", json=mail, headers=ADMIN).is_success
        add(base, "dead", "c")
        got = events(r, 3)
    assert [(e["event"], e["data"]["queue"]) for e in got] == [
        ("added", "work"),
        ("added", "dead"),
        ("added", "dead"),
    ]
    assert [e["data"]["jobId"] for e in got[:2]] == [a, b]
    ids = [tuple(int(x) for x in e["id"].split("-")) for e in got]
    assert ids == sorted(ids) and got[0]["id"] == got[0]["data"]["eventId"]


def test_all_queues_by_default_and_resume_after_an_id_across_queues(base: str) -> None:
    with httpx.stream("GET", f"{base}/api/events", headers=READ, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        for queue in ("work", "dead", "work", "dead"):
            add(base, queue, queue)
        got = events(r, 4)
    assert [e["data"]["queue"] for e in got] == ["work", "dead", "work", "dead"]
    # A browser reconnecting sends the last id it got: the rest follows, from every queue.
    resume = {**READ, "Last-Event-ID": got[1]["id"]}
    with httpx.stream("GET", f"{base}/api/events?queues=all", headers=resume, timeout=TIMEOUT) as r:
        again = events(r, 2)
    assert [e["id"] for e in again] == [e["id"] for e in got[2:]]
    with httpx.stream(
        "GET", f"{base}/api/events?queues=dead&from={got[0]['id']}", headers=READ, timeout=TIMEOUT
    ) as r:
        assert [e["id"] for e in events(r, 2)] == [got[1]["id"], got[3]["id"]]


def test_errors_before_the_stream(base: str) -> None:
    assert httpx.get(f"{base}/api/events").status_code == 401
    r = httpx.get(f"{base}/api/events?queues=work,nope", headers=READ)
    assert r.status_code == 404 and "nope" in r.json()["error"]
    assert httpx.get(f"{base}/api/events?queues=,", headers=READ).status_code == 422
    bad = {**READ, "Last-Event-ID": "x"}
    assert httpx.get(f"{base}/api/events", headers=bad).status_code == 400


def test_a_stream_of_every_queue_counts_once_against_the_cap(project: Path, redis_url: str) -> None:
    with dashboard_process(project, redis_url, "--max-streams", "2") as base:
        url = f"{base}/api/events?queues=all"
        with httpx.stream("GET", url, headers=READ, timeout=TIMEOUT) as first:
            assert first.status_code == 200
            with httpx.stream("GET", url, headers=READ, timeout=TIMEOUT) as second:
                assert second.status_code == 200
                third = httpx.get(f"{base}/api/queues/work/events", headers=READ)
                assert third.status_code == 503, third.text
                assert "too many event streams" in third.json()["error"]
                add(base, "dead", "d")
                assert [e["data"]["queue"] for e in events(second, 1)] == ["dead"]


def ev(queue: str, sid: str) -> Event:
    return Event(sid, queue, "added", None, 0.0)


def test_merged_holds_back_what_a_full_read_may_not_have_reached() -> None:
    # "a" read its 2 (the count): it may have more after 5-0, so "b"'s 6-0 and 9-0 wait.
    per_queue = {"a": [ev("a", "1-0"), ev("a", "5-0")], "b": [ev("b", "2-0"), ev("b", "6-0")]}
    assert [e.id for e in merged(per_queue, 2)] == ["1-0", "2-0", "5-0"]
    per_queue = {"a": [ev("a", "10-0")], "b": [ev("b", "2-1"), ev("b", "3")], "c": []}
    assert [e.id for e in merged(per_queue, 5)] == ["2-1", "3", "10-0"]
