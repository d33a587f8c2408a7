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
        queues = sorted(
            {q for s in supervisors for p in s.get("processes", []) for q in _queues_of(p)}
        )
        workers: dict[tuple[str, int, str], dict[str, Any]] = {}
        for queue in queues:
            for w in await registry.live_workers(client, prefix, queue):
                workers[(str(w.get("host")), int(w.get("pid") or 0), queue)] = w
    finally:
        await client.aclose()
    now = time.time()
    rows = []
    for sup in sorted(supervisors, key=lambda s: (s.get("host", ""), s.get("pid", 0))):
        for proc in sup.get("processes", []):
            key = (str(sup.get("host")), int(proc.get("pid") or 0))
            per_queue = {q: _counters(workers.get((*key, q))) for q in _queues_of(proc)}
            found = [workers[(*key, q)] for q in per_queue if (*key, q) in workers]
            started = proc.get("started_at")
            rows.append(
                {
                    "host": sup.get("host"),
                    "supervisor_pid": sup.get("pid"),
                    "queue": proc["queue"],
                    "process": proc.get("process", proc["queue"]),
                    "queues": per_queue,
                    "replica": proc["replica"],
                    "pid": proc.get("pid"),
                    "state": proc["state"],
                    "restarts": proc.get("restarts", 0),
                    "uptime": round(now - started, 1) if started else None,
                    "jobs_done": _total(found, "jobs_done"),
                    "jobs_failed": _total(found, "jobs_failed"),
                    "reason": proc.get("reason"),
                    "leases_failing_since": min(
                        (w["leases_failing_since"] for w in found if w.get("leases_failing_since")),
                        default=None,
                    ),
                }
            )
    return rows


def _queues_of(proc: dict[str, Any]) -> list[str]:
    """The queues a process runs (a supervisor older than shared processes lists one)."""
    queues = proc.get("queues")
    return [str(q) for q in queues] if isinstance(queues, list) else [str(proc["queue"])]


def _counters(worker: dict[str, Any] | None) -> dict[str, Any]:
    """One queue's counters in a process, from its worker's heartbeat (None: not yet)."""
    worker = worker or {}
    return {k: worker.get(k) for k in ("jobs_done", "jobs_failed", "active")}


def _total(workers: list[dict[str, Any]], key: str) -> int | None:
    """The sum over the process's queues; None while none of them reported."""
    values = [int(w[key]) for w in workers if w.get(key) is not None]
    return sum(values) if values else None


def any_fatal(rows: list[dict[str, Any]]) -> bool:
    return any(r["state"] == "fatal" for r in rows)
