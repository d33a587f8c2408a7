"""Hostile and careless input to `cortexflow enqueue` and what reaches the terminal.

Each bad payload gets one line saying what is wrong and where, a non-zero exit and nothing
written; options go anywhere among the arguments; `--jsonl` is all or nothing, and a rerun
after a server failure half-way adds only what was missing; control characters in ids and names
are shown escaped, never sent raw to the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from cortexflow.embedded import ServerProcess
from tests.helpers.procs import Cli


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _keys(redis_url: str) -> int:
    """Keys holding jobs or queue state: the data format key a first connection records
    (engine/dataformat.py) is no part of what a refused command must not write."""
    client = redis.Redis.from_url(redis_url)
    try:
        return len([k for k in client.scan_iter() if k != b"{cortexflow}:format"])
    finally:
        client.close()


def test_options_may_come_anywhere_among_the_arguments(cf: Cli, project: Path) -> None:
    payload = project.parent / "payload.json"
    payload.write_text('{"userId": "u1", "type": "sms"}')
    r = cf("enqueue", "notifications", "--priority", "5", str(payload))
    assert r.returncode == 0, r.stderr
    job = json.loads(cf("job", "notifications", r.stdout.strip(), "--json").stdout)
    assert job["priority"] == 5
    batch = project.parent / "batch.jsonl"
    batch.write_text('{"event": "a"}\n{"event": "b"}\n')
    r = cf("enqueue", "analytics", "--jsonl", str(batch))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 2


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        (b'{"userId":\n  "\xff\xfe", "type": "sms"}', "bad.json:2:4:", "not UTF-8"),
        (b'{"userId": "\\udcff", "type": "sms"}', "bad.json#/userId:", "lone surrogate"),
        (b'{"\\ud800": 1}', "bad.json#/", "lone surrogate"),
        (
            b'{"userId": "u", "type": "sms", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "bad.json:1:",
            "nested deeper",
        ),
        (
            b'{"userId": "u", "type": "sms", "x": ' + b"[" * 150 + b"]" * 150 + b"}",
            "bad.json:1:",
            "nested deeper",
        ),
    ],
)
def test_a_hostile_payload_is_one_line_and_writes_nothing(
    cf: Cli, project: Path, redis_url: str, content: bytes, where: str, what: str
) -> None:
    (project.parent / "bad.json").write_bytes(content)
    r = cf("enqueue", "notifications", "bad.json")
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert where in line and what in line, line
    assert "nothing was enqueued" in line
    assert _keys(redis_url) == 0


def test_a_payload_over_the_limit_is_refused_while_reading(
    cf: Cli, project: Path, redis_url: str
) -> None:
    big = project.parent / "big.json"
    with big.open("wb") as f:
        f.write(b'{"userId": "u", "type": "sms", "pad": "')
        f.write(b"x" * (5 * 1024 * 1024))
        f.write(b'"}')
    r = cf("enqueue", "notifications", str(big))
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert "big.json" in line and "byte limit" in line
    assert _keys(redis_url) == 0


def test_jsonl_is_all_or_nothing_even_for_a_hostile_line_at_the_end(
    cf: Cli, project: Path, redis_url: str
) -> None:
    good = "".join(json.dumps({"event": f"e{i}"}) + "\n" for i in range(2500))
    for bad, what in [
        ("[" * 20000 + "]" * 20000, "nested deeper"),
        ('{"event": "\\udcff"}', "lone surrogate"),
        ('{"event": "x"', "not valid JSON"),
    ]:
        r = cf("enqueue", "analytics", "-", "--jsonl", input=good + bad + "\n")
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert "<stdin>:2501" in r.stderr and what in r.stderr, r.stderr
        assert r.stdout == ""
        assert _keys(redis_url) == 0
    raw = project.parent / "latin1.jsonl"
    raw.write_bytes(b'{"event": "a"}\n{"event": "caf\xe9"}\n')
    r = cf("enqueue", "analytics", str(raw), "--jsonl")
    assert r.returncode == 1 and "latin1.jsonl:2" in r.stderr and "not UTF-8" in r.stderr
    assert _keys(redis_url) == 0


def test_jsonl_rerun_adds_nothing_twice(cf: Cli, project: Path) -> None:
    batch = project.parent / "batch.jsonl"
    batch.write_text("".join(json.dumps({"event": f"e{i}"}) + "\n" for i in range(30)))
    first = cf("enqueue", "analytics", str(batch), "--jsonl")
    again = cf("enqueue", "analytics", str(batch), "--jsonl")
    assert first.returncode == again.returncode == 0
    assert first.stdout == again.stdout and len(set(first.stdout.split())) == 30
    assert cf.stats("analytics")["waiting"] == 30


def test_jsonl_server_failure_half_way_reports_what_was_written_and_a_rerun_completes(
    tmp_path: Path, project: Path
) -> None:
    server = ServerProcess(tmp_path / "oom", appendonly=False)
    server.start()
    try:
        admin = redis.Redis(host=server.host, port=server.port)
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", str(used + 3 * 1024 * 1024))
        url = f"redis://{server.host}:{server.port}/0"
        lines = "".join(
            json.dumps({"event": f"e{i}", "pad": "p" * 2000}) + "\n" for i in range(4000)
        )
        cf = Cli(project, url)
        r = cf("enqueue", "analytics", "-", "--jsonl", "--batch-size", "500", input=lines)
        assert r.returncode == 75, r.stderr  # the server is full (maxmemory reached)
        assert "the Redis server is full" in r.stderr
        written = r.stdout.split()
        assert 0 < len(written) < 4000, r.stderr
        assert len(written) % 500 == 0
        assert f"written (through line {len(written)} of <stdin>)" in r.stderr
        assert "run the same command on the same input again" in r.stderr
        admin.config_set("maxmemory", "0")
        again = cf("enqueue", "analytics", "-", "--jsonl", "--batch-size", "500", input=lines)
        assert again.returncode == 0, again.stderr
        assert again.stdout.split()[: len(written)] == written
        assert cf.stats("analytics")["waiting"] == 4000
        admin.close()
    finally:
        server.stop()


def test_control_characters_in_ids_and_names_are_shown_not_obeyed(cf: Cli, project: Path) -> None:
    """An id with control characters is refused at add (the job id rule), and the error shows
    it escaped; a name with them is kept and shown escaped wherever it is printed."""
    payload = project.parent / "p.json"
    payload.write_text('{"event": "x"}')
    hostile_id = "a\x1b]0;owned\x07b"
    refused = cf("enqueue", "analytics", str(payload), "--job-id", hostile_id)
    assert refused.returncode == 2, refused.stderr
    assert "\x1b" not in refused.stdout + refused.stderr
    assert "\\x1b]0;owned\\x07" in refused.stderr and "is not valid" in refused.stderr
    r = cf("enqueue", "analytics", str(payload), "--job-id", "calm", "--name", "n\x1b[2Jm")
    assert r.returncode == 0, r.stderr
    listing = cf("jobs", "analytics")
    assert listing.returncode == 0, listing.stderr
    assert "\x1b" not in listing.stdout and "\x07" not in listing.stdout
    assert "\\x1b[2J" in listing.stdout
    shown = cf("job", "analytics", "calm")
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout + shown.stderr


def test_log_lines_from_children_are_escaped() -> None:
    from cortexflow.supervisor.logmux import format_text

    text = format_text(0.0, "work.0", 8, "job \x1b]0;owned\x07 done\r\x1b[2J")
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "\\x1b]0;owned\\x07" in text
