"""`cortexflow status`: every live supervisor's processes, with the jobs their workers did.

Reads the heartbeats that `up` (supervisor/status.py) and its workers (engine/registry.py)
publish; rendering is the CLI's (cli/render.py).
"""

from __future__ import annotations

import time
from typing import Any

from cortexflow.engine import registry
from cortexflow.engine.connection import connect, ping


async def collect_status(url: str, prefix: str) -> list[dict[str, Any]]:
    """One row per process of every live supervisor, with the jobs its worker reports."""
    client = connect(url, retries=3)
    try:
        await ping(client, url)
        supervisors = await registry.live_supervisors(client, prefix)
        queues = sorted({p["queue"] for s in supervisors for p in s.get("processes", [])})
        workers: dict[tuple[str, int], dict[str, Any]] = {}
        for queue in queues:
            for w in await registry.live_workers(client, prefix, queue):
                workers[(str(w.get("host")), int(w.get("pid") or 0))] = w
    finally:
        await client.aclose()
    now = time.time()
    rows = []
    for sup in sorted(supervisors, key=lambda s: (s.get("host", ""), s.get("pid", 0))):
        for proc in sup.get("processes", []):
            worker = workers.get((str(sup.get("host")), int(proc.get("pid") or 0)), {})
            started = proc.get("started_at")
            rows.append(
                {
                    "host": sup.get("host"),
                    "supervisor_pid": sup.get("pid"),
                    "queue": proc["queue"],
                    "replica": proc["replica"],
                    "pid": proc.get("pid"),
                    "state": proc["state"],
                    "restarts": proc.get("restarts", 0),
                    "uptime": round(now - started, 1) if started else None,
                    "jobs_done": worker.get("jobs_done"),
                    "jobs_failed": worker.get("jobs_failed"),
                    "reason": proc.get("reason"),
                    "leases_failing_since": worker.get("leases_failing_since"),
                }
            )
    return rows


def any_fatal(rows: list[dict[str, Any]]) -> bool:
    return any(r["state"] == "fatal" for r in rows)
