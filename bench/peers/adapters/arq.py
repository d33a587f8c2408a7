"""arq: ``enqueue_job`` one at a time, then gathered (no bulk call); one ``arq`` worker with
max_jobs 10 and arq's other defaults. arq pins redis-py < 6, so it runs from its own venv,
bench/peers/.venv-arq (``make bench-peers-deps``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers.adapters import GATHER, serial_then_gather

NAME = "arq"
JOB_KEYS = "arq:job:*"
VENV = Path(__file__).resolve().parent.parent / ".venv-arq"


def python() -> str:
    return str(VENV / "bin" / "python")


def label() -> str:
    return f"arq {arq_version()} (gather x{GATHER}; max_jobs 10, poll_delay 0.5 s)"


def arq_version() -> str:
    found = sorted(VENV.glob("lib/python*/site-packages/arq-*.dist-info"))
    return found[-1].name.removeprefix("arq-").removesuffix(".dist-info") if found else "?"


def missing() -> str | None:
    if not Path(python()).exists() or arq_version() == "?":
        return "arq's venv is missing (make bench-peers-deps)"
    return None


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return [python(), "-m", "bench.peers.produce", NAME, url, str(serial), str(total)]


def worker_argv(url: str, workdir: Path) -> list[str]:
    return [python(), "-m", "arq", "bench.peers.apps.arq_app.WorkerSettings"]


async def produce(url: str, serial: int, total: int) -> dict[str, Any]:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        return await serial_then_gather(lambda i: pool.enqueue_job("noop", i), serial, total)
    finally:
        await pool.aclose()
