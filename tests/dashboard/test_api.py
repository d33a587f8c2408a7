"""The dashboard's HTTP side against a real uvicorn and the real Valkey: every API route,
401/403/404/422, the read-only token, bulk all-or-nothing, SSE, /metrics, login and CSRF."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    READ_TOKEN,
    serve_dashboard,
    wait_until,
    workers,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}

GET_ROUTES = [
    "/api/queues",
    "/api/workers",
    "/api/pipeline",
    "/api/queues/work/jobs",
    "/api/queues/work/jobs/some-id",
    "/api/queues/work/metrics",
]
WRITE_ROUTES = [
    ("POST", "/api/queues/work/jobs"),
    ("DELETE", "/api/queues/work/jobs/some-id"),
    ("POST", "/api/queues/work/jobs/some-id/retry"),
    ("POST", "/api/queues/work/jobs/some-id/promote"),
    ("POST", "/api/queues/work/jobs/some-id/replay"),
    ("POST", "/api/queues/work/pause"),
    ("POST", "/api/queues/work/resume"),
    ("POST", "/api/queues/work/clean"),
    ("POST", "/api/queues/work/drain"),
    ("POST", "/api/queues/work/retry"),
]


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=20.0) as client:
        yield client


def add(http: httpx.Client, queue: str, body: Any) -> httpx.Response:
    return http.post(f"/api/queues/{queue}/jobs", json=body, headers=ADMIN)


def stats(http: httpx.Client, queue: str) -> dict[str, Any]:
    rows = http.get("/api/queues", headers=ADMIN).json()
    return next(r for r in rows if r["queueName"] == queue)


# -- health and auth ------------------------------------------------------------------------


def test_healthz_with_require_workers_fails_while_no_worker_runs(http: httpx.Client) -> None:
    r = http.get("/healthz", params={"require_workers": "1"}, headers=READ)
    assert r.status_code == 503, r.text  # no worker of any queue is running in this test
    body = r.json()
    assert body["ok"] is False and body["healthy"] is False and set(body["queues"])
    assert not any(body["queues"].values())
    # Without a token: healthy or not, and nothing else (no queue names).
    anonymous = http.get("/healthz", params={"require_workers": "1"})
    assert anonymous.status_code == 503 and anonymous.json() == {"ok": False}
    assert http.get("/healthz").status_code == 200  # plain: Redis answers


def test_healthz_needs_no_token(http: httpx.Client) -> None:
    r = http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_healthz_is_503_when_redis_does_not_answer(project: Path) -> None:
    from tests.helpers.dashboard import free_port

    with serve_dashboard(project, f"redis://127.0.0.1:{free_port()}/0") as url:
        r = httpx.get(url + "/healthz", timeout=30)
        assert r.status_code == 503 and r.json()["ok"] is False
        assert httpx.get(url + "/api/queues", headers=ADMIN, timeout=30).status_code == 503
        assert httpx.get(url + "/metrics", headers=ADMIN, timeout=30).status_code == 503


@pytest.mark.parametrize("path", GET_ROUTES)
def test_every_read_route_needs_a_token(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.get(path, headers=READ).status_code in (200, 404)


@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
def test_every_write_route_needs_the_admin_token(
    http: httpx.Client, method: str, path: str
) -> None:
    assert http.request(method, path).status_code == 401
    r = http.request(method, path, headers=READ, json={"name": "x", "data": {}})
    assert r.status_code == 403
    assert "read-only" in r.json()["error"]


def test_read_only_token_changes_nothing(http: httpx.Client, redis_client: redis.Redis) -> None:
    before = sorted(redis_client.keys("*"))
    http.post("/api/queues/work/jobs", json={"name": "x", "data": {}}, headers=READ)
    http.post("/api/queues/work/pause", headers=READ)
    assert sorted(redis_client.keys("*")) == before
    assert stats(http, "work")["paused"] is False


def test_events_and_metrics_need_a_token(http: httpx.Client) -> None:
    assert http.get("/api/queues/work/events").status_code == 401
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers=READ).status_code == 200


# -- queues and jobs ------------------------------------------------------------------------


def test_list_queues_is_the_stats_list(http: httpx.Client) -> None:
    rows = http.get("/api/queues", headers=READ).json()
    assert [r["queueName"] for r in rows] == ["work", "mail", "dead"]
    assert set(rows[0]) == {
        "queueName",
        "waiting",
        "active",
        "completed",
        "failed",
        "delayed",
        "paused",
    }


def test_add_one_job_then_read_it(http: httpx.Client) -> None:
    r = add(http, "work", {"name": "hello", "data": {"n": 1}, "opts": {"priority": 7}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["queue"] == "work"
    job = http.get(f"/api/queues/work/jobs/{body['id']}", headers=READ).json()
    assert job["name"] == "hello" and job["data"] == {"n": 1} and job["priority"] == 7
    assert job["state"] == "waiting" and job["logs"] == []


def test_add_with_options_delay_attempts_job_id(http: httpx.Client) -> None:
    r = add(
        http,
        "work",
        {"name": "later", "data": {}, "opts": {"delay": 60000, "attempts": 5, "jobId": "fixed-1"}},
    )
    assert r.status_code == 201 and r.json()["id"] == "fixed-1"
    job = http.get("/api/queues/work/jobs/fixed-1", headers=READ).json()
    assert job["state"] == "delayed" and job["attempts"] == 5 and job["delay"] == 60.0


def test_unknown_queue_and_job_are_404(http: httpx.Client) -> None:
    assert add(http, "nope", {"name": "x", "data": {}}).status_code == 404
    assert http.get("/api/queues/nope/jobs", headers=READ).status_code == 404
    assert http.get("/api/queues/work/jobs/missing", headers=READ).status_code == 404
    assert http.delete("/api/queues/work/jobs/missing", headers=ADMIN).status_code == 404
    assert http.post("/api/queues/work/jobs/missing/retry", headers=ADMIN).status_code == 404
    assert http.post("/api/queues/work/jobs/missing/promote", headers=ADMIN).status_code == 404
    assert http.post("/api/queues/nope/pause", headers=ADMIN).status_code == 404


def test_invalid_payload_is_422_with_every_violation(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    r = add(http, "mail", {"name": "m", "data": {"subject": "x" * 30}})
    assert r.status_code == 422
    pointers = {v["pointer"] for v in r.json()["violations"]}
    assert pointers == {"", "/subject"}  # "to" missing (at the root), subject too long
    assert stats(http, "mail")["waiting"] == 0
    assert redis_client.keys("*:j:*") == []


@pytest.mark.parametrize(
    "body",
    [
        {"data": {}},
        {"name": "", "data": {}},
        {"name": "x"},
        {"name": "x", "data": {}, "opts": {"priority": -1}},
        {"name": "x", "data": {}, "opts": {"bogus": 1}},
        {"name": "x", "data": [1, 2]},
        [],
        "text",
    ],
)
def test_malformed_bodies_are_422(http: httpx.Client, body: Any) -> None:
    assert add(http, "work", body).status_code == 422


def test_body_that_is_not_json_is_422(http: httpx.Client) -> None:
    r = http.post("/api/queues/work/jobs", content=b"{nope", headers=ADMIN)
    assert r.status_code == 422


def test_bulk_add_is_all_or_nothing(http: httpx.Client) -> None:
    good = {"name": "m", "data": {"to": "a@b.c", "subject": "hi"}}
    bad1 = {"name": "m", "data": {"to": "a@b.c"}}
    bad3 = {"name": "m", "data": {"to": 5, "subject": "hi"}}
    r = add(http, "mail", [good, bad1, good, bad3])
    assert r.status_code == 422
    pointers = sorted(v["pointer"] for v in r.json()["violations"])
    assert pointers == ["/1", "/3/to"]
    assert stats(http, "mail")["waiting"] == 0
    r = add(http, "mail", [good, good, good])
    assert r.status_code == 201
    ids = r.json()["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert stats(http, "mail")["waiting"] == 3


def test_list_jobs_pages_through_a_state(http: httpx.Client) -> None:
    assert add(http, "work", [{"name": f"j{i}", "data": {"i": i}} for i in range(7)]).status_code
    page1 = http.get("/api/queues/work/jobs?state=waiting&start=0&limit=3", headers=READ).json()
    page3 = http.get("/api/queues/work/jobs?state=waiting&start=6&limit=3", headers=READ).json()
    assert page1["total"] == 7 and [j["name"] for j in page1["jobs"]] == ["j0", "j1", "j2"]
    assert [j["name"] for j in page3["jobs"]] == ["j6"]
    assert http.get("/api/queues/work/jobs?state=bogus", headers=READ).status_code == 422
    assert http.get("/api/queues/work/jobs?limit=0", headers=READ).status_code == 422
    assert http.get("/api/queues/work/jobs?start=x", headers=READ).status_code == 422


def test_promote_remove_and_their_refusals(http: httpx.Client) -> None:
    jid = add(http, "work", {"name": "d", "data": {}, "opts": {"delay": 600000}}).json()["id"]
    now = add(http, "work", {"name": "w", "data": {}}).json()["id"]
    assert http.post(f"/api/queues/work/jobs/{now}/promote", headers=ADMIN).status_code == 409
    assert http.post(f"/api/queues/work/jobs/{jid}/retry", headers=ADMIN).status_code == 409
    assert http.post(f"/api/queues/work/jobs/{jid}/promote", headers=ADMIN).status_code == 200
    assert http.get(f"/api/queues/work/jobs/{jid}", headers=READ).json()["state"] == "waiting"
    assert http.delete(f"/api/queues/work/jobs/{jid}", headers=ADMIN).json() == {"removed": jid}
    assert http.get(f"/api/queues/work/jobs/{jid}", headers=READ).status_code == 404


def test_pause_resume_clean_drain(http: httpx.Client) -> None:
    assert http.post("/api/queues/work/pause", headers=ADMIN).json()["paused"] is True
    assert stats(http, "work")["paused"] is True
    assert http.post("/api/queues/work/resume", headers=ADMIN).json()["paused"] is False
    add(http, "work", [{"name": "x", "data": {}}] * 4)
    add(http, "work", {"name": "later", "data": {}, "opts": {"delay": 600000}})
    r = http.post("/api/queues/work/clean", json={"state": "waiting", "limit": 1}, headers=ADMIN)
    assert r.status_code == 200 and len(r.json()["removed"]) == 1
    bad = http.post("/api/queues/work/clean", json={"state": "active"}, headers=ADMIN)
    assert bad.status_code == 422
    assert http.post("/api/queues/work/clean", json={"grace": -1}, headers=ADMIN).status_code == 422
    assert http.post("/api/queues/work/drain", headers=ADMIN).json() == {"removed": 3}
    assert stats(http, "work")["delayed"] == 1
    r = http.post("/api/queues/work/drain", json={"delayed": True}, headers=ADMIN)
    assert r.json() == {"removed": 1}


def test_a_failed_job_retried_runs_again_and_dead_letters_replay(
    http: httpx.Client, project: Path, redis_url: str
) -> None:
    with workers(project, redis_url, ["work"]):
        jid = add(http, "work", {"name": "f", "data": {"fail": "once"}}).json()["id"]
        wait_until(lambda: stats(http, "work")["failed"] == 1, what="job failed")
        job = http.get(f"/api/queues/work/jobs/{jid}", headers=READ).json()
        assert job["error"] == "ValueError: boom: once"
        assert "explode" in job["stacktrace"] and job["logs"] == [f"started {jid}"]
        assert http.post("/api/queues/work/retry", headers=ADMIN).json() == {"retried": [jid]}
        wait_until(
            lambda: (
                len(http.get(f"/api/queues/work/jobs/{jid}", headers=READ).json()["logs"]) == 2
                and stats(http, "work")["failed"] == 1
            ),
            what="job ran again",
        )
        assert http.post(f"/api/queues/work/jobs/{jid}/retry", headers=ADMIN).status_code == 200
        wait_until(lambda: stats(http, "dead")["waiting"] >= 1, what="dead letter")
    letters = http.get("/api/queues/dead/jobs?state=waiting", headers=READ).json()["jobs"]
    letter = letters[0]
    assert letter["data"]["queue"] == "work" and letter["data"]["id"] == jid
    r = http.post(f"/api/queues/dead/jobs/{letter['id']}/replay", headers=ADMIN)
    assert r.status_code == 201 and r.json()["queue"] == "work"
    replayed = http.get(f"/api/queues/work/jobs/{r.json()['id']}", headers=READ).json()
    assert replayed["data"] == {"fail": "once"} and replayed["state"] == "waiting"
    assert http.get(f"/api/queues/dead/jobs/{letter['id']}", headers=READ).status_code == 404
    plain = add(http, "dead", {"name": "x", "data": {"a": 1}}).json()["id"]
    assert http.post(f"/api/queues/dead/jobs/{plain}/replay", headers=ADMIN).status_code == 422


def test_workers_and_metrics_history(http: httpx.Client, project: Path, redis_url: str) -> None:
    with workers(project, redis_url, ["work"]):
        wait_until(lambda: http.get("/api/workers", headers=READ).json(), what="a worker")
        live = http.get("/api/workers", headers=READ).json()
        assert live[0]["queue"] == "work" and live[0]["pid"] > 0 and live[0]["uptime"] >= 0
        add(http, "work", [{"name": "ok", "data": {}}] * 5 + [{"name": "f", "data": {"fail": 1}}])
        wait_until(
            lambda: stats(http, "work")["completed"] == 5 and stats(http, "work")["failed"] == 1
        )
    hist = http.get("/api/queues/work/metrics?minutes=5", headers=READ).json()
    assert len(hist["minutes"]) == 5
    assert sum(m["completed"] for m in hist["minutes"]) == 5
    assert sum(m["failed"] for m in hist["minutes"]) == 1
    assert hist["summary"]["duration"]["count"] == 6
    assert hist["summary"]["wait"]["p50Ms"] is not None
    assert http.get("/api/queues/work/metrics?minutes=0", headers=READ).status_code == 422


def test_metrics_parse_with_prometheus_client(
    http: httpx.Client, project: Path, redis_url: str
) -> None:
    with workers(project, redis_url, ["work"]):
        add(http, "work", [{"name": "ok", "data": {}}] * 3)
        wait_until(lambda: stats(http, "work")["completed"] == 3)
        add(http, "work", {"name": "later", "data": {}, "opts": {"delay": 600000}})
        text = http.get("/metrics", headers=READ).text
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, sample: str, **labels: str) -> float:
        for s in families[family].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
        raise AssertionError(f"no {sample} {labels}")

    assert value("cortexflow_jobs_completed", "cortexflow_jobs_completed_total", queue="work") == 3
    assert value("cortexflow_jobs_delayed", "cortexflow_jobs_delayed", queue="work") == 1
    assert value("cortexflow_queue_paused", "cortexflow_queue_paused", queue="mail") == 0
    assert value("cortexflow_workers_alive", "cortexflow_workers_alive", queue="work") == 1
    h = "cortexflow_job_duration_seconds"
    assert value(h, h + "_count", queue="work") == 3
    assert value(h, h + "_bucket", queue="work", le="+Inf") == 3
    assert families["cortexflow_job_wait_seconds"].type == "histogram"


def test_metrics_public_serves_without_token(project: Path, redis_url: str) -> None:
    with serve_dashboard(project, redis_url, metrics_public=True) as url:
        r = httpx.get(url + "/metrics", timeout=20)
        assert r.status_code == 200 and "cortexflow_jobs_waiting" in r.text
        assert httpx.get(url + "/api/queues", timeout=20).status_code == 401


# -- SSE ------------------------------------------------------------------------------------


def test_sse_delivers_an_event_at_once(http: httpx.Client, base: str) -> None:
    """Within 3 s on a loaded machine (typically milliseconds); a stream that only delivered
    at its 15 s keep-alive, or never, fails."""
    got: list[tuple[float, dict[str, Any]]] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET", base + "/api/queues/work/events", headers=READ, timeout=20
        ) as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith(":"):
                    opened.set()
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    got.append((time.monotonic(), json.loads(line[6:])))
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(10), "the stream did not open"
    sent = time.monotonic()
    jid = add(http, "work", {"name": "sse", "data": {}}).json()["id"]
    thread.join(10)
    assert got, "no event"
    at, data = got[0]
    assert data["event"] == "added" and data["jobId"] == jid and data["name"] == "sse"
    assert at - sent < 3.0, f"event after {at - sent:.3f}s"


def test_sse_resumes_after_last_event_id(http: httpx.Client, base: str) -> None:
    first = add(http, "work", {"name": "a", "data": {}}).json()["id"]
    second = add(http, "work", {"name": "b", "data": {}}).json()["id"]
    ids: list[str] = []
    with httpx.stream(
        "GET", base + "/api/queues/work/events?from=0", headers=READ, timeout=20
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("id: "):
                ids.append(line[4:])
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if data["jobId"] == first:
                    break
    with httpx.stream(
        "GET",
        base + "/api/queues/work/events",
        headers={**READ, "Last-Event-ID": ids[-1]},
        timeout=20,
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                assert json.loads(line[6:])["jobId"] == second
                break


# -- browser session: login redirect, cookie, CSRF ------------------------------------------


def test_token_url_logs_in_with_a_strict_httponly_cookie(base: str) -> None:
    with httpx.Client(base_url=base, timeout=20) as browser:
        r = browser.get("/queues/work?state=failed&token=" + ADMIN_TOKEN)
        assert r.status_code == 303
        assert r.headers["location"] == "/queues/work?state=failed"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert ADMIN_TOKEN not in r.headers["set-cookie"]
        page = browser.get("/queues/work")
        assert page.status_code == 200 and "Retry all failed" in page.text


def test_without_a_session_pages_show_only_the_login_form(http: httpx.Client) -> None:
    add(http, "work", {"name": "secret-name", "data": {"x": 1}})
    for path in ("/", "/queues/work", "/fragments/overview", "/queues/work/jobs/x"):
        r = http.get(path)
        assert r.status_code == 401
        assert 'name="token"' in r.text and "secret-name" not in r.text
        assert "mail" not in r.text
    bad = http.get("/?token=wrong")
    assert bad.status_code == 401 and "not valid" in bad.text
    r = http.post("/login", data={"token": ADMIN_TOKEN})
    assert r.status_code == 303 and "cortexflow_session" in r.headers["set-cookie"]


def test_cookie_writes_need_the_csrf_token(base: str) -> None:
    with httpx.Client(base_url=base, timeout=20) as browser:
        browser.get("/?token=" + ADMIN_TOKEN)
        assert browser.get("/api/queues").status_code == 200  # reads: the cookie is enough
        assert browser.post("/api/queues/work/pause").status_code == 403
        page = browser.get("/").text
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        r = browser.post("/api/queues/work/pause", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
        assert (
            browser.post("/api/queues/work/resume", headers={"X-CSRF-Token": "x" * 64}).status_code
            == 403
        )


def test_read_only_session_cannot_write(base: str) -> None:
    with httpx.Client(base_url=base, timeout=20) as browser:
        browser.get("/?token=" + READ_TOKEN)
        page = browser.get("/").text
        assert 'data-role="read"' in page
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        r = browser.post("/api/queues/work/pause", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403


def test_pages_render(http: httpx.Client, base: str) -> None:
    jid = add(http, "work", {"name": "page", "data": {"k": "v"}}).json()["id"]
    with httpx.Client(base_url=base, timeout=20) as browser:
        browser.get("/?token=" + ADMIN_TOKEN)
        assert "work" in browser.get("/").text
        assert "Throughput" in browser.get("/").text
        assert "<svg" in browser.get("/fragments/chart").text
        q = browser.get("/queues/work")
        assert jid in q.text
        assert jid in browser.get(f"/queues/work/jobs/{jid}").text
        r = browser.get(f"/queues/work?find={jid}")
        assert r.status_code == 303 and r.headers["location"] == f"/queues/work/jobs/{jid}"
        assert "No job" in browser.get("/queues/work?find=nope").text
        assert browser.get("/queues/nope").status_code == 404
        assert browser.get("/queues/work/jobs/nope").status_code == 404
        assert browser.get("/static/dashboard.js").status_code == 200


def test_queue_page_finds_jobs_by_name_beyond_the_page(http: httpx.Client, base: str) -> None:
    jobs = [{"name": "bulk", "data": {}}] * 120 + [{"name": "needle-job", "data": {}}]
    assert add(http, "work", jobs).status_code == 201
    with httpx.Client(base_url=base, timeout=20) as browser:
        browser.get("/?token=" + ADMIN_TOKEN)
        page = browser.get("/queues/work?state=waiting&name=NEEDLE").text
        assert page.count(">needle-job</td>") == 1
        assert "1 found among 121 waiting jobs" in page
        assert ">bulk</td>" not in browser.get("/fragments/queues/work?name=needle").text
