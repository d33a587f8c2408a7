"""Issue 23, item 5: a random session id per login kept in Redis with a TTL (shared by several
dashboard processes), revoked by logout and by a token change; no login from another site;
failed logins throttled per client address; short tokens refused beyond loopback. Real
`cortexflow dashboard` processes on the test's Valkey."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    READ_TOKEN,
    free_port,
    start_dashboard,
)
from tests.helpers.procs import Proc, clean_env, cortexflow_argv

OTHER_ADMIN = "another-admin-token-0123"
Start = Callable[..., str]


@pytest.fixture
def start(project: Path, redis_url: str) -> Iterator[Start]:
    procs: list[Proc] = []

    def run(admin: str = ADMIN_TOKEN) -> str:
        proc, base = start_dashboard(project, redis_url, admin=admin)
        procs.append(proc)
        return base

    yield run
    for p in procs:
        p.kill()


def login(base: str, token: str = ADMIN_TOKEN, **headers: str) -> httpx.Response:
    return httpx.post(base + "/login", data={"token": token}, headers=headers, timeout=20)


def cookie_of(r: httpx.Response) -> str:
    assert r.status_code == 303, (r.status_code, r.text)
    value = r.cookies.get("cortexflow_session")
    assert value, r.headers
    return value


def api(base: str, cookie: str) -> int:
    r = httpx.get(base + "/api/queues", cookies={"cortexflow_session": cookie}, timeout=20)
    return r.status_code


def session_keys(redis_url: str) -> list[bytes]:
    with redis.Redis.from_url(redis_url) as r:
        return sorted(r.scan_iter(match="*dash:session:*"))


def test_each_login_gets_a_random_session_kept_in_redis_with_a_ttl(
    start: Start, redis_url: str
) -> None:
    base = start()
    first, second = cookie_of(login(base)), cookie_of(login(base))
    assert first != second and len(first) >= 40 and len(second) >= 40
    assert ADMIN_TOKEN not in first
    keys = session_keys(redis_url)
    assert len(keys) == 2 and all(k.startswith(b"{cortexflow}:") for k in keys), keys
    assert not any(first.encode() in k or second.encode() in k for k in keys)  # ids hashed
    with redis.Redis.from_url(redis_url) as r:
        for k in keys:
            assert 29 * 86400 < r.ttl(k) <= 30 * 86400
    assert api(base, first) == 200 and api(base, second) == 200
    assert api(base, first[:-1] + ("A" if first[-1] != "A" else "B")) == 401


def test_logout_revokes_the_session_everywhere(start: Start) -> None:
    one, two = start(), start()
    cookie = cookie_of(login(one))
    assert api(two, cookie) == 200  # another process of the same Redis knows it
    with httpx.Client(base_url=one, timeout=20, cookies={"cortexflow_session": cookie}) as b:
        page = b.get("/").text
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        r = b.post("/logout", data={"csrf": csrf})
        assert r.status_code == 303, r.text
    # A copy of the cookie kept after logout works nowhere.
    assert api(one, cookie) == 401 and api(two, cookie) == 401


def test_a_token_change_revokes_the_sessions_made_with_the_old_one(
    start: Start, redis_url: str
) -> None:
    before = start()
    admin = cookie_of(login(before))
    reader = cookie_of(login(before, READ_TOKEN))
    after = start(OTHER_ADMIN)  # same Redis, new admin token
    assert api(after, admin) == 401
    assert api(after, reader) == 200  # the read token did not change
    assert len(session_keys(redis_url)) == 1  # the stale one is deleted when seen
    assert api(before, admin) == 401  # gone for every process


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host
    ],
)
def test_login_refuses_cross_site_posts(start: Start, headers: dict[str, str]) -> None:
    base = start()
    r = login(base, **headers)
    assert r.status_code == 403 and "another site" in r.json()["error"], r.text
    assert "cortexflow_session" not in r.headers.get("set-cookie", "")


def test_login_from_the_dashboards_own_pages_is_accepted(start: Start) -> None:
    base = start()
    cookie_of(login(base, Origin=base))
    cookie_of(login(base, **{"Sec-Fetch-Site": "same-origin", "Origin": base}))
    cookie_of(login(base, **{"Sec-Fetch-Site": "none"}))  # typed in the address bar
    r = httpx.get(
        base + "/?token=" + ADMIN_TOKEN, headers={"Sec-Fetch-Site": "cross-site"}, timeout=20
    )
    assert r.status_code == 403  # a link on another site cannot log the browser in either


def test_failed_logins_are_throttled_per_client_address(start: Start) -> None:
    base = start()
    for _ in range(10):
        assert login(base, "wrong-token-guess").status_code == 401
    r = login(base)  # even the right token: the address must wait
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx.get(base + "/api/queues", headers=bearer, timeout=20).status_code == 429
    # Another client (uvicorn takes X-Forwarded-For from a proxy on 127.0.0.1) is not held up.
    other = {"X-Forwarded-For": "10.1.2.3"}
    assert cookie_of(login(base, **other))
    # Guessing bearer tokens counts too.
    guess = {**other, "Authorization": "Bearer wrong-token-guess"}
    for _ in range(10):
        assert httpx.get(base + "/api/queues", headers=guess, timeout=20).status_code == 401
    assert httpx.get(base + "/api/queues", headers=guess, timeout=20).status_code == 429


@pytest.mark.parametrize("variable", ["CORTEXFLOW_TOKEN", "CORTEXFLOW_READ_TOKEN"])
def test_a_short_token_is_refused_beyond_loopback(project: Path, variable: str) -> None:
    env = {"CORTEXFLOW_TOKEN": ADMIN_TOKEN, "CORTEXFLOW_READ_TOKEN": READ_TOKEN}
    env[variable] = "fifteen-chars!!"
    r = subprocess.run(
        cortexflow_argv(
            "dashboard", "-f", str(project), "--host", "0.0.0.0", "--port", str(free_port())
        ),
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert f"15-character ${variable}" in r.stderr and "at least 16" in r.stderr, r.stderr
    assert "fifteen-chars" not in r.stderr


def test_the_length_rule_is_for_non_loopback_binds_only() -> None:
    from cortexflow.dashboard.auth import check_bind
    from cortexflow.errors import UsageError

    check_bind("127.0.0.1", {"CORTEXFLOW_TOKEN": "short"})
    check_bind("0.0.0.0", {"CORTEXFLOW_TOKEN": "x" * 16})
    with pytest.raises(UsageError):
        check_bind("::", {"CORTEXFLOW_TOKEN": "x" * 15})
