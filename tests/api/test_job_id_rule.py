"""One rule for job ids and one set of option bounds, the same through every face that adds a
job: the Python API (add_job, add_bulk), the CLI (enqueue --job-id, --attempts), the HTTP API,
and the ids the shipped queues derive from their input (issue 23, items 1 and 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cortexflow.api.manager import QueueManager
from cortexflow.engine import payload
from cortexflow.errors import UsageError
from cortexflow.queues.common import job_id as derived_job_id
from tests.helpers.dashboard import ADMIN_TOKEN, serve_dashboard, write_project
from tests.helpers.procs import run_cli

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

REFUSED = [
    "a/b",  # a URL path separator
    "..",  # folded out of any URL path by browsers and proxies, encoded or not
    ".",
    "a b",
    "a:b",
    "tab\there",
    "new\nline",
    "esc\x1b]0;x\x07",
    "nul\x00",
    "c1\x85",
    "rtl\u202eoverride",
    "isolate\u2066x",
    "",
    "x" * 257,
]
ACCEPTED = [
    "kP3v9QmZ0aBcDeFgHiJkLm",  # a generated id: 22 base-62 characters
    "nightly-report@1764517200000",  # a schedule's tick
    "5f3e2d1c0b9a8f7e6d5c-12",  # an enqueue --jsonl line
    "email-u1-2",  # a dead letter's n-th copy, a derived follow-up
    "%2E%2E",
    "%252E%252E",
    "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    "<b>x<\\b>",
    "<img>",
    "?#&=+;,'\"()[]{}\\|^`~!$*@",
    "émoji-🎉-日本",
    "x" * 256,
]


@pytest.mark.parametrize("bad", REFUSED, ids=repr)
def test_the_engine_refuses_an_id_outside_the_rule(bad: str) -> None:
    with pytest.raises(UsageError, match="a job id is 1-256 characters"):
        payload.check_job_id(bad)


@pytest.mark.parametrize("good", ACCEPTED, ids=repr)
def test_the_engine_accepts_ids_the_shipped_code_makes_and_odd_but_showable_ones(good: str) -> None:
    assert payload.check_job_id(good) == good


def test_a_lone_surrogate_is_refused_and_named_without_breaking_the_message() -> None:
    with pytest.raises(UsageError) as caught:
        payload.check_job_id("a\ud800b")
    assert "U+D800" in str(caught.value)
    str(caught.value).encode("utf-8")  # the message itself is printable


def test_ids_derived_from_outside_input_always_pass_the_rule() -> None:
    """A webhook derives its id from the sender's messageId: whatever that holds, the id made
    from it is one the engine accepts (never a refusal of the whole delivery)."""
    for part in [*REFUSED, "../..", "a/../b", "\ud800", "x" * 1000]:
        made = derived_job_id("wh", part)
        assert payload.check_job_id(made) == made
    assert payload.check_job_id(derived_job_id("..")) != ".."


def test_python_api_refuses_bad_ids_and_out_of_range_options(
    tmp_path: Path, redis_url: str
) -> None:
    config = write_project(tmp_path / "proj")

    async def go() -> None:
        async with QueueManager(config, redis_url) as qm:
            for bad in ("a/b", "..", "rtl\u202e"):
                with pytest.raises(UsageError, match="a job id is 1-256"):
                    await qm.add_job("work", "n", {}, job_id=bad)
                with pytest.raises(UsageError, match="a job id is 1-256"):
                    await qm.add_bulk("work", [{"name": "n", "data": {}, "opts": {"jobId": bad}}])
            with pytest.raises(UsageError, match="attempts must be an integer from 1 to"):
                await qm.add_job("work", "n", {}, attempts=10**23)
            with pytest.raises(UsageError, match=r"backoff\.delay must be"):
                await qm.add_job("work", "n", {}, backoff={"type": "fixed", "delay": 1e308})
            with pytest.raises(UsageError, match=r"backoff\.max must be"):
                await qm.add_bulk(
                    "work", [{"name": "n", "data": {}, "opts": {"backoff": {"max": 1e300}}}]
                )
            assert (await qm.get_queue_stats("work"))["waiting"] == 0
            assert await qm.add_job("work", "n", {}, job_id="%2E%2E", attempts=1_000_000) == (
                "%2E%2E"
            )

    asyncio.run(go())


def test_cli_refuses_bad_ids_and_attempts_with_the_rule(tmp_path: Path, redis_url: str) -> None:
    config = write_project(tmp_path / "proj")
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    base = ["enqueue", "work", str(payload), "-f", str(config), "--redis-url", redis_url]
    r = run_cli(*base, "--job-id", "a/b")
    assert r.returncode == 2, r
    assert "a job id is 1-256 characters" in r.stderr
    r = run_cli(*base, "--job-id", "..")
    assert r.returncode == 2 and "'..'" in r.stderr, r
    r = run_cli(*base, "--attempts", str(10**23))
    assert r.returncode == 2 and "from 1 to 1,000,000" in r.stderr, r
    r = run_cli(*base, "--job-id", "%2E%2E", "--attempts", "1000000")
    assert r.returncode == 0 and r.stdout.strip() == "%2E%2E", r


def test_http_api_refuses_the_same_ids_and_options_with_a_json_4xx(
    tmp_path: Path, redis_url: str
) -> None:
    config = write_project(tmp_path / "proj")
    with serve_dashboard(config, redis_url) as base:
        url = f"{base}/api/queues/work/jobs"
        for bad in ("a/b", "..", "esc\x1b", "rtl\u202e"):
            r = httpx.post(
                url, json={"name": "n", "data": {}, "opts": {"jobId": bad}}, headers=ADMIN
            )
            assert r.status_code == 422, r.text
            assert "a job id is 1-256 characters" in r.json()["error"]
        for opts, message in (
            ({"attempts": 10**23}, "attempts must be an integer from 1 to 1,000,000"),
            ({"attempts": 1e23}, "attempts must be an integer"),
            ({"backoff": {"type": "fixed", "delay": 1e308}}, "backoff.delay must be"),
            ({"delay": 1e308}, "delay must be"),
        ):
            r = httpx.post(url, json={"name": "n", "data": {}, "opts": opts}, headers=ADMIN)
            assert r.status_code == 422, (opts, r.text)
            assert message in r.json()["error"], r.text
        assert httpx.get(url, headers=ADMIN).json()["total"] == 0
