"""The dashboard over HTTP against hostile input: security
headers on every response, no inline script or style for the CSP to break, bodies capped while
they are read (a 400 MB body keeps a real dashboard process under 100 MB), every malformed
request a 4xx with a JSON error, and odd job ids that round-trip through encoded URLs."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    start_dashboard,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# As docs/dashboard.md states them (written out: the test holds the promise, not the code).
CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
FORM_LIMIT = 4 * 1024
DEFAULT_MAX_BODY = 8 * 1024 * 1024
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _secured(r: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert r.headers.get(name) == value, (r.request.method, r.request.url, r.status_code, name)


def test_every_kind_of_response_carries_the_security_headers(base: str) -> None:
    cookie_login = httpx.get(f"{base}/?token={ADMIN_TOKEN}")  # 303 + cookie
    cases = [
        httpx.get(f"{base}/"),  # the login form (401)
        cookie_login,
        httpx.post(f"{base}/login", data={"token": "wrong"}),
        httpx.get(f"{base}/api/queues"),  # 401
        httpx.get(f"{base}/api/queues", headers=ADMIN),
        httpx.get(f"{base}/api/queues/nope/jobs", headers=ADMIN),  # 404 from the API
        httpx.get(f"{base}/no/such/route"),  # 404 from the router
        httpx.put(f"{base}/api/queues", headers=ADMIN),  # 405
        httpx.get(f"{base}/static/dashboard.js"),
        httpx.get(f"{base}/static/nope.js"),
        httpx.get(f"{base}/favicon.ico"),
        httpx.get(f"{base}/healthz"),
        httpx.get(f"{base}/metrics"),
        httpx.post(f"{base}/login", content=b"x" * (FORM_LIMIT + 1)),  # 413
    ]
    with httpx.Client(base_url=base, cookies=cookie_login.cookies) as browser:
        cases += [
            browser.get("/queues/work"),
            browser.get("/fragments/queues/work"),
            browser.get("/queues/work/jobs/none"),
        ]
    for r in cases:
        _secured(r)
    for r in cases:
        path = r.request.url.path
        page = path == "/" or path.startswith(("/login", "/queues", "/fragments"))  # HTML
        if r.status_code >= 400 and not page:
            assert r.headers["content-type"].startswith("application/json"), r.request.url
            assert "error" in r.json()


def test_templates_and_svg_hold_no_inline_script_or_style_the_csp_would_block() -> None:
    folder = resources.files("cortexflow.dashboard") / "templates"
    for template in folder.iterdir():
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", text, re.I), template.name
    from cortexflow.dashboard.charts import throughput_svg

    svg = throughput_svg({"q": [(0, 1, 1)]})
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=|<script", svg, re.I)


def test_login_and_api_bodies_are_capped_while_read(base: str) -> None:
    r = httpx.post(f"{base}/login", content=b"token=" + b"x" * FORM_LIMIT)
    assert r.status_code == 413 and "byte limit" in r.json()["error"]

    def chunks(total: int) -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(total // 65536 + 1):
            yield b" " * 65536

    r = httpx.post(f"{base}/logout", content=chunks(FORM_LIMIT * 2))
    assert r.status_code == 413
    big = b'{"name": "n", "data": {"x": "' + b"y" * DEFAULT_MAX_BODY + b'"}}'
    r = httpx.post(f"{base}/api/queues/work/jobs", content=big, headers=ADMIN)
    assert r.status_code == 413, r.text
    r = httpx.post(
        f"{base}/api/queues/work/clean", content=chunks(DEFAULT_MAX_BODY + 1), headers=ADMIN
    )
    assert r.status_code == 413, r.text
    # Under the caps everything still works.
    assert httpx.post(f"{base}/login", data={"token": ADMIN_TOKEN}).status_code == 303
    ok = httpx.post(
        f"{base}/api/queues/work/jobs",
        json={"name": "n", "data": {"x": "y" * (3 * 1024 * 1024)}},
        headers=ADMIN,
    )
    assert ok.status_code == 201, ok.text


def test_malformed_requests_answer_4xx_with_a_json_error(base: str) -> None:
    http = httpx.Client(headers=ADMIN, timeout=30)
    add = f"{base}/api/queues/work/jobs"
    deep = b'{"name": "n", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = [
        http.post(add, content=b'{"name": "n", "data": {}, "opts": {"jobId": "\\ud800"}}'),
        http.post(add, content=b'{"name": "n", "data": {"k": "\\udfff"}}'),
        http.post(add, content=b'{"name": "\\ud800x", "data": {}}'),
        http.post(add, content=deep),
        http.post(add, content=b'{"name": "n", "data": ' + b"{" * 101 + b"}"),
        http.post(add, content=b"\xff\xfe not utf-8"),
        http.post(add, json={"name": "n", "data": {}, "opts": {"attempts": 10**23}}),
        http.post(add, json={"name": "n", "data": {}, "opts": {"backoff": {"delay": 1e308}}}),
        http.post(f"{base}/api/queues/work/clean", content=b"[" * 100_000),
        http.post(f"{base}/api/queues/work/drain", content=b"{" * 100_000),
        http.get(f"{add}?start=1e23"),
        http.get(f"{add}?start={10**23}"),
        http.get(f"{add}?start={'9' * 5000}"),
        http.get(f"{add}?limit=-1"),
        http.get(f"{base}/api/queues/work/metrics?minutes={10**30}"),
        http.get(f"{base}/api/queues/work/events", headers={"Last-Event-ID": "garbage"}),
        http.get(f"{base}/api/queues/work/events?from=1-2-3"),
        http.get(f"{base}/api/queues/work/events?from={'9' * 30}"),
        http.get(f"{base}/api/queues/%ED%A0%80/jobs"),
        http.get(f"{add}/%ED%A0%80"),
        # The error quotes where the bad text is: a key holding a lone surrogate (found by
        # the browser property test: the 422 itself could not be encoded, so 500).
        http.post(add, content=b'{"name": "n", "data": {"a\\udf0fb": 1}}'),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json"), r.request.url
        assert r.json()["error"], r.request.url
    assert "nested deeper than 100" in cases[3].json()["error"]
    assert cases[15].status_code == 400 and "not an event id" in cases[15].json()["error"]
    with httpx.Client(base_url=base) as browser:
        browser.get(f"/?token={ADMIN_TOKEN}")
        page = browser.get(f"/queues/work?start={10**23}")
        assert page.status_code == 200, page.text[:300]


ROUND_TRIP = [
    "%2E%2E",
    "%252E%252E",
    "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    "%253Cimg%2520src%253Dx%2520onerror%253Dalert(1)%253E",
    "<img>\"'&",
    "?a=b#c",
    "back\\slash",
    "%2F",
    "é🎉",
]


def test_odd_ids_are_read_retried_and_removed_through_encoded_urls(base: str) -> None:
    """Each id is one path segment, decoded exactly once: `%252E%252E` is that job, never
    `..` (which would make .../jobs/../retry the queue's retry-all)."""
    with httpx.Client(base_url=base, headers=ADMIN) as http:
        other = http.post("/api/queues/work/jobs", json={"name": "other", "data": {}})
        for job_id in ROUND_TRIP:
            r = http.post(
                "/api/queues/work/jobs", json={"name": "n", "data": {}, "opts": {"jobId": job_id}}
            )
            assert r.status_code == 201 and r.json()["id"] == job_id, r.text
            path = f"/api/queues/work/jobs/{quote(job_id, safe='')}"
            assert http.get(path).json()["id"] == job_id
            retried = http.post(f"{path}/retry")  # waiting, not failed: this job's 409
            assert retried.status_code == 409 and repr(job_id) in retried.json()["error"]
            assert http.delete(path).json() == {"removed": job_id}
            assert http.get(path).status_code == 404
        assert http.get(f"/api/queues/work/jobs/{other.json()['id']}").status_code == 200


# -- a 400 MB body against a real dashboard process -------------------------------------------


@contextlib.contextmanager
def dashboard_process(config: Path, redis_url: str, *args: str) -> Iterator[tuple[int, int]]:
    """A real dashboard process: (its pid, its port)."""
    proc, base = start_dashboard(config, redis_url, *args)
    try:
        yield proc.pid, int(base.rsplit(":", 1)[1])
    finally:
        proc.kill()


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def _throw(port: int, head: bytes, total: int, chunked: bool) -> bytes:
    """Send ``head`` then ``total`` bytes of body in 1 MiB chunks (the same buffer each time),
    until the server stops reading; return what it answered (b"" if it reset first)."""
    chunk = b"a" * (1024 * 1024)
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        try:
            while sent < total:
                if chunked:
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    s.sendall(chunk)
                sent += len(chunk)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(OSError):
            while data := s.recv(65536):
                answer += data
    return answer


def test_a_400_mb_body_keeps_the_dashboard_process_under_100_mb(
    project: Path, redis_url: str
) -> None:
    size = 400 * 1024 * 1024
    with dashboard_process(project, redis_url) as (pid, port):
        auth = f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
        heads = [
            (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
             b"\r\nContent-Length: %d\r\n\r\n" % size, False),
            (b"POST /api/queues/work/jobs HTTP/1.1\r\nHost: x\r\n" + auth
             + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size, False),
            (b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", True),
            (b"POST /api/queues/work/jobs HTTP/1.1\r\nHost: x\r\n" + auth
             + b"Transfer-Encoding: chunked\r\n\r\n", True),
        ]  # fmt: skip
        started = time.monotonic()
        for head, chunked in heads:
            answer = _throw(port, head, size, chunked)
            assert not answer or answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert _peak_rss_mb(pid) < 100, f"peak RSS {_peak_rss_mb(pid):.0f} MB"
        assert time.monotonic() - started < 120
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.status_code == 200
        assert _peak_rss_mb(pid) < 100


def test_max_body_sets_the_cap_of_api_writes(project: Path, redis_url: str) -> None:
    """`cortexflow dashboard --max-body 4096`: a 5 KB job is refused (413) before it is read,
    a small one is added."""
    with dashboard_process(project, redis_url, "--max-body", "4096") as (_, port):
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        url = f"http://127.0.0.1:{port}/api/queues/work/jobs"
        big = httpx.post(
            url, json={"name": "n", "data": {"x": "a" * 5000}}, headers=headers, timeout=10
        )
        assert big.status_code == 413, big.text
        small = httpx.post(url, json={"name": "n", "data": {"x": 1}}, headers=headers, timeout=10)
        assert small.status_code in (200, 201), small.text
