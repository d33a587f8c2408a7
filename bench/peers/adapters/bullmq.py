"""BullMQ (Node): ``queue.add`` one at a time, ``addBulk`` of 100; one Node process with one
Worker at concurrency 10. Runs when ``node`` is on the PATH and ``npm`` has installed bullmq into
bench/peers/bullmq/node_modules (``make bench-peers-deps``); the script is bullmq/bench.mjs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

NAME = "bullmq"
JOB_KEYS = "bull:bench:[0-9]*"
HERE = Path(__file__).resolve().parent.parent / "bullmq"


def label() -> str:
    return f"BullMQ {bullmq_version()} (Node {node_version()}; addBulk x100; 1 Worker x 10)"


def bullmq_version() -> str:
    package = HERE / "node_modules" / "bullmq" / "package.json"
    return str(json.loads(package.read_text())["version"]) if package.exists() else "?"


def node_version() -> str:
    import subprocess

    if shutil.which("node") is None:
        return "?"
    done = subprocess.run(
        [node(), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip().removeprefix("v")


def missing() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not on the PATH"
    if bullmq_version() == "?" or not (HERE / "node_modules" / "ioredis").is_dir():
        return "bullmq is not installed (make bench-peers-deps)"
    return None


def node() -> str:
    return shutil.which("node") or "node"


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return [node(), str(HERE / "bench.mjs"), "produce", url, str(serial), str(total)]


def worker_argv(url: str, workdir: Path) -> list[str]:
    return [node(), str(HERE / "bench.mjs"), "work", url]
