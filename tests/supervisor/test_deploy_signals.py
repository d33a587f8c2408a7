"""The stop signals of the deployments docs/deploy.md describes, reproduced with real processes
(no systemd or Docker daemon needed):

- systemd ``KillMode=mixed``, ``docker stop`` of a container whose PID 1 is `cortexflow up`
  (or `init: true` forwarding to it), Kubernetes: SIGTERM to the supervisor alone;
- systemd's default ``KillMode=control-group`` (and `tini -g`, Ctrl-C in a terminal): SIGTERM
  to the supervisor *and* every worker at the same moment.

Either way a job whose handler is running must finish once, end completed, and `up` exit 0.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.poll import wait_for

QUEUES_YAML = """\
version: 1
stop_timeout: 20s
queues:
  emails:
    handler: mail:send
    processes: 2
    attempts: 3
"""

HANDLER = """\
import time
from pathlib import Path

HERE = Path(__file__).parent


def send(data):
    runs = HERE / "runs"
    runs.mkdir(exist_ok=True)
    (runs / f"{data['id']}-{time.time_ns()}").touch()  # one file per run of the handler
    time.sleep(data["seconds"])
    (HERE / "sent").mkdir(exist_ok=True)
    (HERE / "sent" / data["id"]).touch()
    return {"sent": data["id"]}
"""


class Up:
    def __init__(self, folder: Path, redis_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CORTEXFLOW_FILE")}
        self.log = folder / "up.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cortexflow", "up", "--redis-url", redis_url],
            cwd=folder,
            env={**env, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"emails\.\d started \(pid (\d+)\)", self.text())]

    def kill_all(self) -> None:
        for pid in [self.proc.pid, *self.worker_pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()


@pytest.fixture
def running(tmp_path: Path, redis_url: str) -> Iterator[tuple[Up, redis.Redis, Path]]:
    (tmp_path / "queues.yaml").write_text(QUEUES_YAML)
    (tmp_path / "mail.py").write_text(HANDLER)
    up = Up(tmp_path, redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: up.text().count(") ready") >= 2, 60)
        yield up, client, tmp_path
    finally:
        up.kill_all()
        client.close()


def enqueue_running_job(folder: Path, redis_url: str, job_id: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cortexflow", "enqueue", "emails", "-", "--redis-url", redis_url,
         "--job-id", job_id],
        cwd=folder, input=f'{{"id": "{job_id}", "seconds": 2}}', capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: (folder / "runs").is_dir() and any((folder / "runs").iterdir()), 30)


def job_state(folder: Path, redis_url: str, job_id: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "cortexflow", "job", "emails", job_id, "--json", "--redis-url",
         redis_url],
        cwd=folder, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def check_clean_stop(up: Up, folder: Path, redis_url: str, job_id: str) -> None:
    code = up.proc.wait(60)
    runs = sorted(p.name for p in (folder / "runs").iterdir())
    shown = job_state(folder, redis_url, job_id)
    assert (folder / "sent" / job_id).exists(), f"the handler did not finish\n{up.text()[-4000:]}"
    assert len(runs) == 1, f"the handler ran {len(runs)} times: {runs}"
    assert '"state": "completed"' in shown, shown + up.text()[-4000:]
    assert code == 0, f"up exited {code}\n{up.text()[-4000:]}"
    assert "Traceback" not in up.text()


def test_sigterm_to_the_supervisor_alone_killmode_mixed(
    running: tuple[Up, redis.Redis, Path], redis_url: str
) -> None:
    up, _, folder = running
    enqueue_running_job(folder, redis_url, "mixed-1")
    up.proc.send_signal(signal.SIGTERM)
    check_clean_stop(up, folder, redis_url, "mixed-1")


def test_sigterm_to_every_process_at_once_killmode_control_group(
    running: tuple[Up, redis.Redis, Path], redis_url: str
) -> None:
    up, _, folder = running
    enqueue_running_job(folder, redis_url, "cg-1")
    pids = [up.proc.pid, *up.worker_pids()]
    assert len(pids) == 3
    started = time.monotonic()
    for pid in pids:  # as systemd does for every process of the unit's cgroup
        os.kill(pid, signal.SIGTERM)
    assert time.monotonic() - started < 0.5
    check_clean_stop(up, folder, redis_url, "cg-1")
