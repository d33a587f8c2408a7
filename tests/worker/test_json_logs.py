"""`cortexflow worker --log-format json` (and `logging.format: json`): every line one JSON
object; the lines written during a run carry its job id and attempt, in the handler's thread
and its process too; a traceback is one string, never a second line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.helpers.jobs import Jobs
from tests.helpers.project import write_project

HANDLERS = """
import logging
import threading

log = logging.getLogger("myapp")


async def work(data, job):
    log.info("working on %s", data["n"])
    if data.get("fail"):
        raise ValueError("told to fail\\nits second line")
    if data.get("caught"):
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("caught one")


def sync_work(data, job):
    log.warning("sync %s in %s", data["n"], threading.current_thread().name)
"""

QUEUES = """
version: 1
{logging}
queues:
  work:
    handler: handlers:work
    attempts: 2
    backoff: {{type: fixed, delay: 50ms}}
  sync:
    handler: handlers:sync_work
  isolated:
    handler: handlers:sync_work
    isolation: process
    processes: 1
"""

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def records(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as JSON (a line that is not fails the test, naming it)."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- all:\n{text}") from None
        assert isinstance(out[-1], dict), line
    return out


def test_worker_json_lines_carry_the_job_and_the_exception(
    tmp_path: Path, redis_url: str, workers
) -> None:
    path = write_project(tmp_path, QUEUES.format(logging=""), {"handlers.py": HANDLERS})
    worker = workers(path, "work", redis_url, "--log-format", "json", "--replica", "3")
    worker.wait_for("worker ready", 30)
    jobs = Jobs(path, redis_url)
    ok, failing, caught = jobs.add(
        "work", [{"n": 1}, {"n": 2, "fail": True}, {"n": 3, "caught": 1}]
    )
    jobs.wait_stats("work", lambda s: s["completed"] == 2 and s["failed"] == 1, 30)
    worker.terminate()
    assert worker.out() == ""
    lines = records(worker.err())
    for r in lines:
        assert RFC3339_MS.fullmatch(r["ts"]), r
        assert r["pid"] == worker.pid and r["queue"] == "work" and r["replica"] == 3, r
        assert {"level", "logger", "message"} <= set(r), r
    ready = next(r for r in lines if r["message"].startswith("worker ready"))
    assert ready["level"] == "INFO" and ready["logger"] == "cortexflow.worker"
    assert "job_id" not in ready and "attempt" not in ready  # not about a job

    mine = {r["message"]: r for r in lines if r["logger"] == "myapp"}
    assert (mine["working on 1"]["job_id"], mine["working on 1"]["attempt"]) == (ok, 1)
    assert mine["working on 3"]["job_id"] == caught
    assert mine["caught one"]["level"] == "ERROR"
    assert mine["caught one"]["exc"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError" in mine["caught one"]["exc"]

    failures = [r for r in lines if r["message"].startswith(f"job {failing} failed")]
    assert [(r["job_id"], r["attempt"], r["level"]) for r in failures] == [
        (failing, 1, "WARNING"),
        (failing, 2, "WARNING"),
    ]
    assert "told to fail\nits second line" in failures[1]["message"]  # one line all the same
    assert "for good" in failures[1]["message"]


def test_logging_format_json_in_queues_yaml_and_the_flag_wins(
    tmp_path: Path, redis_url: str, workers
) -> None:
    path = write_project(
        tmp_path, QUEUES.format(logging="logging: {format: json}"), {"handlers.py": HANDLERS}
    )
    sync = workers(path, "sync", redis_url)  # no flag: queues.yaml's json
    isolated = workers(path, "isolated", redis_url)
    text = workers(path, "work", redis_url, "--log-format", "text")
    for w in (sync, isolated, text):
        w.wait_for("worker ready", 30)
    jobs = Jobs(path, redis_url)
    [in_thread] = jobs.add("sync", [{"n": 5}])
    [in_process] = jobs.add("isolated", [{"n": 6}])
    jobs.wait_stats("sync", lambda s: s["completed"] == 1, 30)
    jobs.wait_stats("isolated", lambda s: s["completed"] == 1, 30)
    for w in (sync, isolated, text):
        w.terminate()

    thread_line = next(r for r in records(sync.err()) if r["logger"] == "myapp")
    assert thread_line["message"].startswith("sync 5 in ")  # a handler thread's line ...
    assert (thread_line["job_id"], thread_line["attempt"]) == (in_thread, 1)  # ... has the job
    process_line = next(r for r in records(isolated.err()) if r["logger"] == "myapp")
    assert process_line["message"].startswith("sync 6 in ")  # the handler's own process
    assert (process_line["job_id"], process_line["attempt"]) == (in_process, 1)
    assert process_line["pid"] != isolated.pid

    assert re.search(r"^INFO cortexflow\.worker: worker ready: queue=work", text.err(), re.M)
    assert "{" not in text.err()
