"""The dashboard shows which queues each worker process serves: a process shared by several
queues (`process:` in queues.yaml) lists them beside each of its queue's workers, with each
queue's own counters."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers.dashboard import ADMIN_TOKEN, serve_dashboard, wait_until
from tests.helpers.jobs import Jobs
from tests.helpers.procs import Proc, cortexflow_argv
from tests.helpers.project import write_project

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_workers_of_a_shared_process_name_it_and_its_queues(tmp_path: Path, redis_url: str) -> None:
    cfg = write_project(
        tmp_path,
        """
        version: 1
        defaults:
          process: light
        queues:
          a: {handler: "light_tasks:handle"}
          b: {handler: "light_tasks:handle"}
        """,
        {"light_tasks.py": "async def handle(data):\n    return data\n"},
    )
    argv = cortexflow_argv("worker", "--process", "light", "-f", str(cfg), "--redis-url", redis_url)
    worker = Proc(argv, log_dir=tmp_path, name="worker-light")
    try:
        with serve_dashboard(cfg, redis_url) as base, httpx.Client(base_url=base) as http:

            def live() -> list[dict[str, object]]:
                return list(http.get("/api/workers", headers=ADMIN).json())

            wait_until(lambda: len(live()) == 2, timeout=30, what="both queues' workers")
            Jobs(cfg, redis_url).add("a", [{}, {}])
            wait_until(
                lambda: {w["queue"]: w["jobs_done"] for w in live()} == {"a": 2, "b": 0},
                what="a's own counter",
            )
            rows = live()
            assert {w["process"] for w in rows} == {"light"}
            assert all(w["process_queues"] == ["a", "b"] for w in rows)
            assert len({w["pid"] for w in rows}) == 1  # one process
            page = http.get("/fragments/overview", headers=ADMIN).text
            assert page.count('<td data-k="process">light <span class="muted">(a, b)</span>') == 2
    finally:
        worker.kill()
