"""Harness for the end-to-end supervisor tests: run the real `cortexflow up`, read its log,
put jobs on its queues, and leave no process behind.

(Named test_supervisor_* so it sits with the tests it serves; it holds no test itself.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cortexflow.config import load_config
from cortexflow.embedded import pid_alive
from cortexflow.engine import connect
from cortexflow.engine.queue import QueueEngine

HANDLERS = textwrap.dedent(
    '''
    """Handlers for the supervisor tests."""
    import asyncio
    import os
    import sys
    import time
    from pathlib import Path

    HERE = Path(__file__).parent


    async def sleepy(data):
        if data.get("mark"):  # tell the test this job's handler runs
            (HERE / "running").mkdir(exist_ok=True)
            (HERE / "running" / data["mark"]).touch()
        await asyncio.sleep(data.get("seconds", 0))
        return {"pid": os.getpid()}


    async def long(data):
        """Runs a minute, unless a file named `fast` appears beside this module."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (HERE / "fast").exists():
            await asyncio.sleep(0.05)
        return {"pid": os.getpid()}


    def noisy(data):
        """Writes a huge line to stdout, then closes stdout and goes on on stderr."""
        if data.get("huge"):
            sys.stdout.write("H" * data["huge"] + "\\n")
            sys.stdout.flush()
        if data.get("close_stdout"):
            sys.stdout.flush()
            os.close(1)
        print("still-alive", data.get("n"), file=sys.stderr, flush=True)
        return None
    '''
)


def write_project(folder: Path, queues_yaml: str) -> Path:
    """queues.yaml plus the test handler modules; returns the queues.yaml path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handlers.py").write_text(HANDLERS)
    (folder / "bad.py").write_text('raise RuntimeError("bad handler module: boom at import")\n')
    (folder / "crashy.py").write_text("import os\nos._exit(3)\n")
    path = folder / "queues.yaml"
    path.write_text(textwrap.dedent(queues_yaml))
    return path


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("REDIS_URL", "CORTEXFLOW_FILE", "CORTEXFLOW_PARENT_PID", "CORTEXFLOW_REDIS_URL"):
        env.pop(key, None)
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


class Up:
    """One `cortexflow up` process, its output captured in files (a pipe could fill up)."""

    def __init__(self, folder: Path, args: Sequence[str], env: dict[str, str] | None = None):
        self.folder = folder
        self.out_path = folder / f"up-{time.monotonic_ns()}.out"
        self.err_path = self.out_path.with_suffix(".err")
        self._out = self.out_path.open("wb")
        self._err = self.err_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cortexflow", "up", *args],
            cwd=folder,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def log(self) -> str:
        return self.err() + self.out()

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` times in the output; fail with the log."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            found = list(rx.finditer(self.log()))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} x{count} not in up's output within {timeout}s; "
                    f"exit={self.proc.poll()}\n--- stderr\n{self.err()[-6000:]}\n"
                    f"--- stdout\n{self.out()[-3000:]}"
                )
            if self.proc.poll() is not None and len(found) < count:
                time.sleep(0.2)  # the last lines may still be arriving
                if len(list(rx.finditer(self.log()))) < count:
                    deadline = min(deadline, time.monotonic())
            time.sleep(0.05)

    def child_pid(self, name: str, nth: int = 1) -> int:
        """The pid of the ``nth`` start of ``name`` (e.g. "work.0")."""
        found = self.wait_for(rf"{re.escape(name)} started \(pid (\d+)\)", 30, nth)
        return int(found[nth - 1].group(1))

    def started_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"started \(pid (\d+)\)", self.err())]

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"up did not exit within {timeout}s\n--- stderr\n{self.err()[-6000:]}"
            ) from None

    def cleanup(self) -> None:
        """SIGKILL whatever of this run is still alive: supervisor, workers, server."""
        pids = self.started_pids()
        pids += [int(p) for p in re.findall(r"embedded server \(pid (\d+)\)", self.err())]
        pids += [int(p) for p in re.findall(r"server restarted \(pid (\d+)\)", self.err())]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._out.close()
        self._err.close()


@pytest.fixture
def start_up() -> Iterator[Callable[..., Up]]:
    """``start_up(folder, *args)`` runs `cortexflow up ARGS` in ``folder``; all are killed after."""
    runs: list[Up] = []

    def start(folder: Path, *args: str, env: dict[str, str] | None = None) -> Up:
        up = Up(folder, args, env)
        runs.append(up)
        return up

    yield start
    for up in runs:
        up.cleanup()


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` runs; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if pid_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


# -- jobs, through the engine ---------------------------------------------------------------------


class Jobs:
    """Enqueue and inspect jobs of one project on one Redis (sync wrappers over the engine)."""

    def __init__(self, path: Path, url: str) -> None:
        self.config = load_config(path, check_imports=False)
        self.url = url

    def _run(self, queue: str, op: Callable[[QueueEngine], Any]) -> Any:
        async def go() -> Any:
            client = connect(self.url)
            try:
                engine = QueueEngine(client, self.config.queues[queue], self.config.redis.prefix)
                return await op(engine)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def add(self, queue: str, datas: Sequence[dict[str, Any]]) -> list[str]:
        jobs = [("job", d, None) for d in datas]
        return list(self._run(queue, lambda e: e.add_bulk(jobs)))

    def stats(self, queue: str) -> dict[str, Any]:
        return dict(self._run(queue, lambda e: e.stats()))

    def states(self, queue: str, ids: Sequence[str]) -> list[str]:
        async def op(e: QueueEngine) -> list[str]:
            return [(j.state if j else "missing") for j in [await e.get_job(i) for i in ids]]

        return list(self._run(queue, op))

    def wait_stats(
        self, queue: str, pred: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats(queue)
            if pred(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"stats of {queue} never matched within {timeout}s: {s}")
            time.sleep(0.05)


def status_json(path: Path, url: str | None) -> tuple[int, list[dict[str, Any]]]:
    args = [sys.executable, "-m", "cortexflow", "status", "--json", "-f", str(path)]
    if url:
        args += ["--redis-url", url]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=60, env=clean_env(), check=False
    )
    return proc.returncode, json.loads(proc.stdout or "null") or []
