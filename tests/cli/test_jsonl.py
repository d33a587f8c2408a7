"""`cortexflow enqueue --jsonl`: 100,000 jobs, a progress bar on a terminal, and bad lines
that stop the whole input (all or nothing)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers.procs import Cli, run_on_terminal


@pytest.mark.slow
def test_100k_jobs_enqueue_with_a_progress_bar_on_a_terminal(cf: Cli, project: Path) -> None:
    jsonl = project.parent / "events.jsonl"
    with jsonl.open("w") as f:
        for i in range(100_000):
            f.write(f'{{"event": "e{i}", "data": {{"n": {i}}}}}\n')
    code, stdout, shown = run_on_terminal(
        ["enqueue", "analytics", str(jsonl), "--jsonl", "--redis-url", cf.redis_url],
        project.parent,
    )
    assert code == 0, shown
    ids = stdout.split()
    assert len(ids) == 100_000 and len(set(ids)) == 100_000
    # The bar redraws in place and ends full.
    assert shown.count("\r") >= 2
    assert "100%" in shown and "100,000 jobs" in shown
    assert re.search(r"enqueue [█#]{30} 100%", shown), shown
    assert cf.stats("analytics")["waiting"] == 100_000  # jobs/s: bench/timings.py


def test_no_bar_without_a_terminal_and_ids_on_stdout(cf: Cli, project: Path) -> None:
    lines = "".join(json.dumps({"event": f"e{i}"}) + "\n" for i in range(5))
    r = cf("enqueue", "analytics", "-", "--jsonl", input=lines)
    assert r.returncode == 0
    ids = r.stdout.split()
    assert len(ids) == 5 and len(set(ids)) == 5
    assert "\r" not in r.stderr and "enqueued 5 jobs on 'analytics'" in r.stderr


@pytest.mark.slow
def test_a_bad_line_stops_the_whole_input(cf: Cli, project: Path) -> None:
    rows = [json.dumps({"userId": f"u{i}", "type": "sms"}) for i in range(1, 3501)]
    rows[1499] = '{"userId": "u1500", "type" "sms"}'  # line 1500: not JSON
    rows[2199] = '{"userId": 2200, "type": "fax"}'  # line 2200: fails the schema
    rows[2499] = '["not", "an", "object"]'  # line 2500: not an object
    rows.insert(100, "")  # blank lines are skipped (and still counted as lines)
    jsonl = project.parent / "mixed.jsonl"
    jsonl.write_text("\n".join(rows) + "\n")

    r = cf("enqueue", "notifications", str(jsonl), "--jsonl")
    assert r.returncode == 1
    # Every bad line is named, and none of the 3,497 good ones is written.
    err = r.stderr
    assert "mixed.jsonl:1501:28: not valid JSON: Expecting ':' delimiter" in err
    assert "mixed.jsonl:2201: /type: 'fax' is not one of ['email', 'sms', 'push']; " in err
    assert "/userId: 2200 is not of type 'string'" in err
    assert "mixed.jsonl:2501: /: a job's data must be a JSON object, got an array" in err
    assert "nothing was enqueued" in err
    assert r.stdout == ""
    assert cf.stats("notifications")["waiting"] == 0

    r = cf(
        "enqueue",
        "notifications",
        "-",
        "--jsonl",
        "--json",
        input='{"userId": "a", "type": "sms"}\n{"x"}\n',
    )
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["enqueued"] == 0 and report["error"] is None
    assert report["failedBatches"] == [
        {
            "firstLine": 1,
            "lastLine": 2,
            "errors": [
                {"line": 2, "column": 5, "message": "not valid JSON: Expecting ':' delimiter"}
            ],
        }
    ]

    r = cf("enqueue", "notifications", "nowhere.jsonl", "--jsonl")
    assert r.returncode == 2 and "payload file 'nowhere.jsonl' not found" in r.stderr
    r = cf("enqueue", "notifications", "-", "--jsonl", "--job-id", "x", input="{}")
    assert r.returncode == 2 and "--job-id and --wait apply to one job" in r.stderr
