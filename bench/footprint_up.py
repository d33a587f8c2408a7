"""The footprint of `cortexflow up` running the shipped demo (queues.yaml as shipped, the
embedded server): total RSS idle and after a burst of jobs, and the time from start to every
worker ready.

    .venv/bin/python bench/footprint.py up                        # this tree, 3 runs
    .venv/bin/python bench/footprint.py up --jobs 2000 --runs 1   # quicker
    git worktree add /tmp/v010 v0.1.0
    .venv/bin/python bench/footprint.py up --root /tmp/v010       # the same for v0.1.0
    .venv/bin/python bench/footprint.py up --python /tmp/fresh/bin/python  # a fresh install's venv

Each run copies ``ROOT/queues.yaml`` and ``ROOT/schemas/`` into an empty folder and starts
``PYTHON -m cortexflow up`` there with ``PYTHONPATH=ROOT`` (so ROOT's cortexflow runs) and no
Redis URL (the embedded server, as the README types it). Time to ready: from the start to the
last child's "ready" line. RSS: VmRSS summed over `up` and every process under it (workers,
server, their children), 2 s after all are ready, and again 2 s after ``--jobs`` analytics jobs
(added in one `cortexflow enqueue --jsonl`) have all run. Run it on a quiet machine: on a busy one
the time to ready mostly measures the scheduler.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="footprint.py up", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--root", type=Path, default=REPO, help="the checkout to run (default: this)")
    p.add_argument("--python", default=sys.executable, help="the interpreter (default: this one)")
    p.add_argument("--jobs", type=int, default=10_000, help="analytics jobs after idle (10,000)")
    p.add_argument("--runs", type=int, default=3, help="runs; the medians are shown (3)")
    p.add_argument("--json", type=Path, help="also write every run here")
    return p.parse_args(argv)


def _tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _kind(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = b" ".join(argv).decode(errors="replace")
    if "valkey-server" in text or "redis-server" in text:
        return "server"
    if " worker " in text:
        return "worker"
    if " up" in text:
        return "supervisor"
    return "other"


def footprint(root: int) -> dict[str, Any]:
    """Total RSS (MiB) of the tree under ``root``, and per kind of process."""
    kinds: dict[str, list[float]] = {}
    for pid in _tree(root):
        kinds.setdefault(_kind(pid), []).append(_rss_kib(pid) / 1024)
    total = sum(sum(v) for v in kinds.values())
    return {
        "total_mib": round(total, 1),
        "by_kind": {k: [round(x, 1) for x in v] for k, v in sorted(kinds.items())},
    }


class Output:
    """`up`'s stdout and stderr read by threads, each line with when it came."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def all_ready(self) -> float | None:
        """When the last child said ready, once every started child did."""
        with self._lock:
            lines = list(self.lines)
        started = {m for _, line in lines for m in re.findall(r"(\S+) started \(pid", line)}
        ready = {m: t for t, line in lines for m in re.findall(r"(\S+) \(pid \d+\) ready$", line)}
        if started and started <= set(ready):
            return max(ready.values())
        return None

    def text(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)


def _enqueue(args: argparse.Namespace, folder: Path, env: dict[str, str]) -> None:
    lines = "".join(
        json.dumps({"event": "bench", "userId": f"u{i % 500}", "data": {"n": 1}}) + "\n"
        for i in range(args.jobs)
    )
    subprocess.run(
        [args.python, "-m", "cortexflow", "enqueue", "analytics", "--jsonl", "-"],
        cwd=folder, env=env, input=lines.encode(), check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _drained(args: argparse.Namespace, folder: Path, env: dict[str, str]) -> bool:
    out = subprocess.run(
        [args.python, "-m", "cortexflow", "stats", "analytics", "--json"],
        cwd=folder, env=env, capture_output=True, check=True,
    ).stdout  # fmt: skip
    stats = json.loads(out)
    if isinstance(stats, list):
        stats = stats[0]
    if "analytics" in stats and isinstance(stats["analytics"], dict):
        stats = stats["analytics"]
    return int(stats["waiting"]) == 0 and int(stats["active"]) == 0


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="cf-footprint-"))
    shutil.copy(args.root / "queues.yaml", folder / "queues.yaml")
    shutil.copytree(args.root / "schemas", folder / "schemas")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CORTEXFLOW_"))}
    env["PYTHONPATH"] = str(args.root.resolve())
    started = time.monotonic()
    proc = subprocess.Popen(
        [args.python, "-m", "cortexflow", "up", "--no-color"],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    out = Output(proc)
    try:
        deadline = started + 120
        while (ready := out.all_ready()) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"`up` did not get ready:\n{out.text()[-3000:]}")
            time.sleep(0.01)
        time.sleep(2.0)
        idle = footprint(proc.pid)
        t0 = time.monotonic()
        _enqueue(args, folder, env)
        while not _drained(args, folder, env):
            if time.monotonic() - t0 > 600:
                raise SystemExit("the jobs did not run within 10 minutes")
            time.sleep(0.5)
        ran = time.monotonic() - t0
        time.sleep(2.0)
        after = footprint(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "ready_s": round(ready - started, 3),
        "idle": idle,
        "after_jobs": after,
        "jobs": args.jobs,
        "jobs_s": round(ran, 2),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.root = args.root.resolve()
    runs = []
    for i in range(args.runs):
        run = one_run(args)
        runs.append(run)
        print(
            f"run {i + 1}: ready in {run['ready_s']:.2f}s; idle {run['idle']['total_mib']} MiB "
            f"{run['idle']['by_kind']}; after {run['jobs']} jobs ({run['jobs_s']}s) "
            f"{run['after_jobs']['total_mib']} MiB",
            flush=True,
        )
    load = os.getloadavg()[0]
    print(
        f"{args.root} ({args.python}), median of {len(runs)}, load {load:.1f}: "
        f"ready {statistics.median(r['ready_s'] for r in runs):.2f}s, "
        f"idle {statistics.median(r['idle']['total_mib'] for r in runs):.1f} MiB, "
        f"after {args.jobs} jobs "
        f"{statistics.median(r['after_jobs']['total_mib'] for r in runs):.1f} MiB"
    )
    if args.json:
        args.json.write_text(json.dumps({"root": str(args.root), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
