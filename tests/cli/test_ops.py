"""The operations commands through the real CLI (subprocesses) against a real server.

Each CLI run costs a fresh interpreter (~0.4 s), so each test walks through one command's
story (happy path, then its bad input) instead of one run per test.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import redis

from tests.helpers.jobs import workers_in_thread
from tests.helpers.poll import wait_for
from tests.helpers.procs import Cli, Proc, cortexflow_argv, run_cli, run_on_terminal
from tests.helpers.project import REPO, SECRET_URL

# -- enqueue -----------------------------------------------------------------------------------


def test_enqueue_prints_the_id_and_the_job_shows_its_options(cf: Cli, project: Path) -> None:
    payload = project.parent / "ok.json"
    payload.write_text('{"userId": "u1", "type": "email"}')
    r = cf(
        "enqueue",
        "notifications",
        str(payload),
        "--priority",
        "7",
        "--delay",
        "1h",
        "--attempts",
        "4",
        "--job-id",
        "n-1",
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "n-1\n", "")

    # From stdin, default name = the queue's name; --json gives {id, queue}.
    r = cf(
        "enqueue",
        "notifications",
        "-",
        "--name",
        "custom",
        "--json",
        input='{"userId": "u2", "type": "sms"}',
    )
    assert r.returncode == 0, r.stderr
    second = json.loads(r.stdout)
    assert second["queue"] == "notifications"

    r = cf("job", "notifications", "n-1", "--json")
    job = json.loads(r.stdout)
    assert (job["state"], job["priority"], job["delay"], job["attempts"], job["name"]) == (
        "delayed",
        7,
        3600.0,
        4,
        "notifications",
    )
    r = cf("job", "notifications", second["id"])
    assert r.returncode == 0
    assert "state:     waiting" in r.stdout and "name:      custom" in r.stdout
    assert '"userId": "u2"' in r.stdout

    r = cf("jobs", "notifications")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "NAME", "TRIES", "PRIO", "AGE"]
    assert {ln.split()[0] for ln in lines[1:]} == {"n-1", second["id"]}
    assert all(len(ln) <= 80 for ln in lines)
    r = cf("jobs", "notifications", "--state", "delayed", "--json")
    assert [j["id"] for j in json.loads(r.stdout)] == ["n-1"]
    r = cf("job", "notifications", "nope")
    assert r.returncode == 1 and "no job 'nope'" in r.stderr


def test_enqueue_bad_input(cf: Cli, project: Path) -> None:
    d = project.parent
    (d / "broken.json").write_text('{"userId": "u1",\n "type" "email"}')
    (d / "invalid.json").write_text('{"userId": 5, "type": "fax"}')
    (d / "ok.json").write_text('{"userId": "u1", "type": "email"}')

    r = cf("enqueue", "notifications", "broken.json")
    assert r.returncode == 1
    assert "broken.json:2:9: payload is not valid JSON: Expecting ':' delimiter" in r.stderr

    r = cf("enqueue", "notifications", "invalid.json")
    assert r.returncode == 1
    assert "(2 violations)" in r.stderr
    assert "  /type: 'fax' is not one of ['email', 'sms', 'push']" in r.stderr
    assert "  /userId: 5 is not of type 'string'" in r.stderr

    r = cf("enqueue", "nope", "ok.json")
    assert r.returncode == 2
    assert "unknown queue 'nope'" in r.stderr and "analytics, echo, notifications" in r.stderr

    r = cf("enqueue", "notifications", "missing.json")
    assert r.returncode == 2 and "payload file 'missing.json' not found" in r.stderr

    r = cf("enqueue", "notifications", "ok.json", "--delay", "soon")
    assert r.returncode == 2
    assert "'soon' is not a duration" in r.stderr and '"5s"' in r.stderr

    r = cf("enqueue", "notifications", "ok.json", "--priority", "2000000")
    assert r.returncode == 2 and "from 0 to 1,000,000" in r.stderr

    r = run_cli("enqueue", "notifications", "ok.json", "-f", "nowhere.yaml", cwd=d)
    assert r.returncode == 2 and "nowhere.yaml not found" in r.stderr

    r = cf("enqueue", "notifications", "ok.json", url=SECRET_URL)
    assert r.returncode == 69
    assert "redis://user:***@127.0.0.1:1/0" in r.stderr and "s3cret" not in r.stderr

    assert cf.stats("notifications")["waiting"] == 0  # nothing half-written
    assert "Traceback" not in r.stderr


def test_enqueue_wait_prints_the_result(cf: Cli, project: Path, redis_url: str) -> None:
    with workers_in_thread(project, redis_url, ["notifications", "echo"]):
        r = cf("enqueue", "echo", "-", "--wait", input='{"a": 1}')
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"echo": {"a": 1}, "attempt": 1, "queue": "echo"}
        r = cf(
            "enqueue",
            "notifications",
            "-",
            "--wait",
            "--timeout",
            "10s",
            input='{"userId": "u", "type": "sms", "fail": true}',
        )
        assert r.returncode == 1 and "told to fail" in r.stderr
        r = cf(
            "enqueue",
            "notifications",
            "-",
            "--wait",
            "--timeout",
            "200ms",
            input='{"userId": "u", "type": "sms", "sleep": 2}',
        )
        assert r.returncode == 1 and "did not finish within 200ms" in r.stderr


# -- monitoring --------------------------------------------------------------------------------


@pytest.mark.slow
def test_stats_health_pause_resume(cf: Cli, project: Path, redis_url: str) -> None:
    cf("enqueue", "analytics", "-", input='{"event": "x"}')
    r = cf("pause", "analytics")
    assert r.returncode == 0 and "paused 'analytics'" in r.stderr

    r = cf("stats")
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "QUEUE",
        "WAITING",
        "ACTIVE",
        "DELAYED",
        "COMPLETED",
        "FAILED",
        "PAUSED",
    ]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:]}
    assert rows["analytics"] == ["1", "0", "0", "0", "0", "yes"]
    assert rows["notifications"][-1] == "no"
    assert all(len(ln) <= 80 for ln in lines)

    r = cf("stats", "analytics", "echo", "--json")
    assert json.loads(r.stdout) == [
        {
            "queueName": "analytics",
            "waiting": 1,
            "active": 0,
            "completed": 0,
            "failed": 0,
            "delayed": 0,
            "paused": True,
        },
        {
            "queueName": "echo",
            "waiting": 0,
            "active": 0,
            "completed": 0,
            "failed": 0,
            "delayed": 0,
            "paused": False,
        },
    ]
    r = cf("resume", "analytics", "--json")
    assert json.loads(r.stdout) == {"queue": "analytics", "paused": False}
    assert cf.stats("analytics")["paused"] is False

    r = cf("stats", "nope")
    assert r.returncode == 2 and "analytics, echo, notifications" in r.stderr
    r = cf("pause", "nope")
    assert r.returncode == 2 and "unknown queue 'nope'" in r.stderr

    r = cf("health", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout) == {
        "healthy": True,
        "queues": {"notifications": True, "analytics": True, "echo": True},
    }
    # A supervisor says it runs analytics' workers, and none is alive: unhealthy, exit 1.
    client = redis.Redis.from_url(redis_url)
    client.set("{cortexflow:analytics}:expect", 1, px=60_000)
    client.close()
    r = cf("health")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "UNHEALTHY"
    assert "analytics      UNHEALTHY" in r.stdout

    for args in (["stats"], ["health"], ["pause", "analytics"], ["jobs", "analytics"]):
        r = cf(*args, url=SECRET_URL)
        assert r.returncode == 69, args
        assert "user:***@" in r.stderr and "s3cret" not in r.stderr + r.stdout


def test_stats_watch_refreshes_until_interrupted(
    project: Path, redis_url: str, tmp_path: Path
) -> None:
    argv = cortexflow_argv("stats", "--watch", "--json", "--interval", "100ms")
    watch = Proc([*argv, "--redis-url", redis_url], cwd=project.parent, log_dir=tmp_path)
    try:
        watch.wait_for(r"^\[.*\]$", 60, count=3)  # three whole snapshots, one per line
        snapshots = [json.loads(line) for line in watch.out().splitlines()[:3]]
        assert [s["queueName"] for s in snapshots[0]] == ["notifications", "analytics", "echo"]
        watch.send(signal.SIGINT)
        assert watch.wait_exit(10) == 0
    finally:
        watch.kill()


# -- operations --------------------------------------------------------------------------------


@pytest.mark.slow
def test_failed_jobs_retry_clean_and_job_view(cf: Cli, project: Path, redis_url: str) -> None:
    lines = "\n".join(
        json.dumps({"userId": f"u{i}", "type": "sms", "fail": i < 3}) for i in range(6)
    )
    r = cf("enqueue", "notifications", "-", "--jsonl", "-q", input=lines)
    assert r.stdout == "6\n"
    with workers_in_thread(project, redis_url, ["notifications"]):
        wait_for(lambda: cf.stats("notifications")["completed"] == 3)
        wait_for(lambda: cf.stats("notifications")["failed"] == 3)

    r = cf("jobs", "notifications", "--state", "failed", "--json")
    failed = [j["id"] for j in json.loads(r.stdout)]
    assert len(failed) == 3
    r = cf("job", "notifications", failed[0])
    assert "state:     failed" in r.stdout
    assert "error:     " in r.stdout and "told to fail" in r.stdout
    assert "attempts:  1 made of 1" in r.stdout
    assert "logs:\n  notifying u" in r.stdout
    r = cf("jobs", "notifications", "--state", "completed", "--json")
    done = json.loads(r.stdout)
    assert {j["result"]["sent"] for j in done} == {"u3", "u4", "u5"}

    r = cf("retry", "notifications", failed[0], "missing-id")
    assert r.returncode == 1
    assert r.stdout == f"{failed[0]}\n" and "not retried: missing-id" in r.stderr
    r = cf("retry", "notifications", "--all")
    assert r.returncode == 0 and sorted(r.stdout.split()) == sorted(failed[1:])
    assert cf.stats("notifications")["waiting"] == 3
    r = cf("retry", "notifications")
    assert r.returncode == 2 and "--all" in r.stderr

    r = cf("clean", "notifications", "--grace", "0s", "--state", "completed", "--limit", "2")
    assert r.returncode == 2 and "pass --yes" in r.stderr
    r = cf("clean", "notifications", "--grace", "1h", "--yes")
    assert (r.returncode, r.stdout) == (0, "")  # nothing that old
    r = cf("clean", "notifications", "--grace", "0s", "--limit", "2", "--yes")
    assert r.returncode == 0 and len(r.stdout.split()) == 2
    assert "removed 2 completed job(s) older than 0s" in r.stderr
    r = cf("clean", "notifications", "--grace", "0s", "--yes", "--json")
    assert len(json.loads(r.stdout)["removed"]) == 1
    r = cf("clean", "notifications", "--grace", "later", "--yes")
    assert r.returncode == 2 and "not a duration" in r.stderr


@pytest.mark.slow
def test_promote_remove_drain_obliterate(cf: Cli, project: Path) -> None:
    for i in range(3):
        cf("enqueue", "analytics", "-", "--job-id", f"w{i}", input='{"event": "e"}')
    cf("enqueue", "analytics", "-", "--job-id", "d1", "--delay", "1h", input="{}")
    cf("enqueue", "analytics", "-", "--job-id", "d2", "--delay", "1h", input="{}")

    r = cf("promote", "analytics", "d1")
    assert r.returncode == 0 and "is waiting now" in r.stderr
    r = cf("promote", "analytics", "d1")
    assert r.returncode == 1 and "is waiting, not delayed" in r.stderr
    r = cf("promote", "analytics", "zzz")
    assert r.returncode == 1 and "no job 'zzz'" in r.stderr

    r = cf("remove", "analytics", "w0")
    assert r.returncode == 2 and "pass --yes" in r.stderr
    r = cf("remove", "analytics", "w0", "--yes")
    assert r.returncode == 0 and "removed job w0" in r.stderr
    r = cf("remove", "analytics", "w0", "--yes")
    assert r.returncode == 1 and "no job 'w0'" in r.stderr

    r = cf("drain", "analytics")
    assert r.returncode == 2 and "`drain` deletes jobs" in r.stderr
    r = cf("drain", "analytics", "--yes", "--json")
    assert json.loads(r.stdout) == {"removed": 3}  # w1, w2, d1; d2 is delayed
    assert cf.stats("analytics")["delayed"] == 1
    r = cf("drain", "analytics", "--yes", "--delayed")
    assert r.returncode == 0 and "removed 1 waiting and delayed job(s)" in r.stderr

    cf("enqueue", "analytics", "-", input="{}")
    r = cf("obliterate", "analytics")
    assert r.returncode == 2 and "pass --yes" in r.stderr
    r = cf("obliterate", "analytics", "--yes")
    assert r.returncode == 0 and "obliterated 'analytics': 1 job(s) removed" in r.stderr
    assert cf.stats("analytics")["waiting"] == 0

    for args in (
        ["drain", "nope", "--yes"],
        ["obliterate", "nope", "--yes"],
        ["remove", "nope", "x", "--yes"],
        ["promote", "nope", "x"],
    ):
        r = cf(*args)
        assert r.returncode == 2 and "analytics, echo, notifications" in r.stderr, args
    r = cf("drain", "analytics", "--yes", url=SECRET_URL)
    assert r.returncode == 69 and "s3cret" not in r.stderr


def test_obliterate_refuses_while_a_job_runs(cf: Cli, project: Path, redis_url: str) -> None:
    with workers_in_thread(project, redis_url, ["notifications"]):
        payload = '{"userId": "u", "type": "sms", "sleep": 60}'
        job_id = cf("enqueue", "notifications", "-", input=payload).stdout.strip()
        wait_for(lambda: cf.stats("notifications")["active"] == 1)
        r = cf("obliterate", "notifications", "--yes")
        assert r.returncode == 1 and "active" in r.stderr and "--force" in r.stderr
        r = cf("remove", "notifications", "--yes", job_id)
        assert r.returncode == 1 and "is active" in r.stderr
        r = cf("obliterate", "notifications", "--yes", "--force")
        assert r.returncode == 0 and "1 job(s) removed" in r.stderr


# -- terminal interaction ----------------------------------------------------------------------


def test_destructive_commands_ask_on_a_terminal(cf: Cli, project: Path) -> None:
    cf("enqueue", "analytics", "-", input="{}")
    url = ["--redis-url", cf.redis_url]
    code, _, shown = run_on_terminal(["drain", "analytics", *url], project.parent, answer=b"n\n")
    assert code == 1 and "Remove every waiting job of 'analytics'? [y/N]" in shown
    assert "aborted; nothing was changed" in shown
    assert cf.stats("analytics")["waiting"] == 1
    code, _, shown = run_on_terminal(["drain", "analytics", *url], project.parent, answer=b"y\n")
    assert code == 0 and "removed 1 waiting job(s)" in shown
    assert cf.stats("analytics")["waiting"] == 0


def test_cli_help_lists_every_operations_command() -> None:
    r = run_cli("--help", cwd=REPO)
    for command in (
        "enqueue",
        "stats",
        "health",
        "pause",
        "resume",
        "jobs",
        "job",
        "retry",
        "promote",
        "remove",
        "clean",
        "drain",
        "obliterate",
    ):
        assert command in r.stdout
