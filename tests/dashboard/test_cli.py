"""`cortexflow dashboard` as a real process: the generated token (file 0600, login URL printed
once), tokens from the environment, the bind refusal, a clean stop on SIGTERM, and the way the
docs say to try it (in the folder of queues.yaml, no -f, the embedded server)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cortexflow.embedded import DataFolder
from tests.helpers.dashboard import free_port, wait_healthy, wait_until
from tests.helpers.procs import Proc, cortexflow_argv, wait_gone

CMD = [sys.executable, "-m", "cortexflow", "dashboard", "-f"]


def env_without_tokens(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEXFLOW_")}
    env.pop("REDIS_URL", None)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


class Dashboard:
    """`cortexflow dashboard --port 0`: it binds a free port and prints it in its URL."""

    def __init__(self, project: Path, redis_url: str, env: dict[str, str], *args: str) -> None:
        fd, name = tempfile.mkstemp(prefix="dashboard-", suffix=".err", dir=project.parent)
        os.close(fd)
        self.stderr_path = Path(name)
        self.stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [*CMD, str(project), "--redis-url", redis_url, "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=env,
            start_new_session=True,
        )
        self.base = ""

    def up(self) -> bool:
        if not self.base:
            found = re.search(r"dashboard: open (http://127\.0\.0\.1:\d+)/", self.output())
            if found is None:
                return False
            self.base = found.group(1)
        try:
            return httpx.get(self.base + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.stderr.close()


@pytest.fixture
def started(project: Path, redis_url: str) -> Iterator[list[Dashboard]]:
    running: list[Dashboard] = []
    yield running
    for d in running:
        if d.proc.poll() is None:
            d.stop()


def test_generated_token_file_and_login_url(
    project: Path, redis_url: str, started: list[Dashboard]
) -> None:
    d = Dashboard(project, redis_url, env_without_tokens())
    started.append(d)
    wait_until(d.up, timeout=60, what="dashboard answering /healthz")
    token_file = project.parent / ".cortexflow" / "token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    lines = [line for line in d.output().splitlines() if "dashboard: open" in line]
    assert lines == [f"dashboard: open {d.base}/?token={token} (token kept in {token_file})"]
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.get(d.base + "/api/queues", headers=headers, timeout=20)
    assert r.status_code == 200 and [q["queueName"] for q in r.json()] == ["work", "mail", "dead"]
    assert httpx.get(d.base + "/api/queues", timeout=20).status_code == 401
    assert d.stop() == 0
    assert "Traceback" not in d.output()
    # A second start keeps the same token.
    again = Dashboard(project, redis_url, env_without_tokens())
    started.append(again)
    wait_until(again.up, timeout=60, what="second dashboard")
    assert token_file.read_text().strip() == token
    assert f"?token={token}" in again.output()


def test_tokens_from_the_environment(
    project: Path, redis_url: str, started: list[Dashboard]
) -> None:
    env = env_without_tokens(CORTEXFLOW_TOKEN="env-admin", CORTEXFLOW_READ_TOKEN="env-read")
    d = Dashboard(project, redis_url, env)
    started.append(d)
    wait_until(d.up, timeout=60, what="dashboard answering /healthz")
    assert not (project.parent / ".cortexflow" / "token").exists()
    assert f"dashboard: open {d.base}/ and log in with $CORTEXFLOW_TOKEN" in d.output()
    assert "env-admin" not in d.output()

    def post(token: str) -> int:
        return httpx.post(
            d.base + "/api/queues/work/pause",
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        ).status_code

    assert post("env-read") == 403
    assert post("env-admin") == 200


def test_in_the_folder_of_queues_yaml_without_f_on_the_embedded_server(project: Path) -> None:
    """docs/dashboard.md: `cortexflow dashboard` in the folder of queues.yaml, nothing else: no
    -f, no --redis-url, no REDIS_URL (Proc's environment drops it), no redis: section."""
    assert "redis:" not in project.read_text()
    d = Proc(cortexflow_argv("dashboard", "--port", "0"), cwd=project.parent, name="dash")
    try:
        (url,) = d.wait_for(r"dashboard: open (http://127\.0\.0\.1:\d+)/", 60)
        base = url.group(1)
        wait_healthy(d, base)
        state = DataFolder(project.parent / ".cortexflow").read_state()
        assert state is not None and state.socket and state.port == 0, state  # the unix socket
        assert d.terminate(30) == 0, d.log()
        assert "Traceback" not in d.log()
        assert f"dashboard: open {base}/" in d.err()
        # The server it started for its own length stopped with it.
        assert wait_gone([state.pid], 15) == [], "the embedded server outlived the dashboard"
        assert DataFolder(project.parent / ".cortexflow").read_state() is None
    finally:
        d.kill()


def test_refuses_a_public_bind_without_a_token(project: Path, redis_url: str) -> None:
    r = subprocess.run(
        [*CMD, str(project), "--redis-url", redis_url, "--host", "0.0.0.0", "--port", "8000"],
        env=env_without_tokens(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "refusing to listen on 0.0.0.0" in r.stderr and "CORTEXFLOW_TOKEN" in r.stderr
    assert not (project.parent / ".cortexflow" / "token").exists()


def test_a_read_token_alone_is_refused(project: Path, redis_url: str) -> None:
    started = time.monotonic()
    r = subprocess.run(
        [*CMD, str(project), "--redis-url", redis_url, "--port", str(free_port())],
        env=env_without_tokens(CORTEXFLOW_READ_TOKEN="only-read"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "set an admin token too" in r.stderr
    assert time.monotonic() - started < 60


def test_loopback_checks() -> None:
    from cortexflow.dashboard.auth import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "example.com"))


def test_a_port_in_use_is_a_clear_error_and_port_0_prints_the_port_it_got(
    project: Path, redis_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [*CMD, str(project), "--redis-url", redis_url, "--port", str(port)],
            env=env_without_tokens(CORTEXFLOW_TOKEN="t" * 32),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert r.returncode == 1, r.stderr
    assert f"cannot listen on 127.0.0.1 port {port}: it is in use" in r.stderr
    assert "--port" in r.stderr and "Traceback" not in r.stderr
    assert "dashboard: open" not in r.stderr  # no URL that does not work
    shown = subprocess.run(
        [*CMD, str(project), "--print-url", "--port", "0"],
        env=env_without_tokens(CORTEXFLOW_TOKEN="t" * 32),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 2 and "--print-url needs the port" in shown.stderr, shown.stderr
    assert shown.stdout == ""  # no URL with port 0 in it

    d = Proc(
        cortexflow_argv("dashboard", "-f", str(project), "--redis-url", redis_url, "--port", "0"),
        cwd=project.parent,
        env={"CORTEXFLOW_TOKEN": "t" * 32},
        name="dash",
    )
    try:
        (url,) = d.wait_for(r"dashboard: open (http://127\.0\.0\.1:(\d+))/", 60)
        assert int(url.group(2)) > 0
        wait_healthy(d, url.group(1))
    finally:
        d.kill()


def test_the_listening_socket_follows_uvicorns_rules_for_the_host() -> None:
    from cortexflow.dashboard.serve import base_url, listen
    from cortexflow.errors import UsageError

    with listen("localhost", 0) as sock:  # IPv4, even where localhost also names ::1
        assert sock.family == socket.AF_INET and sock.getsockname()[0] == "127.0.0.1"
    if socket.has_ipv6:
        for host in ("::1", "[::1]"):
            try:
                sock = listen(host, 0)
            except UsageError:  # a machine without IPv6 on its loopback
                continue
            with sock:
                assert sock.family == socket.AF_INET6
                assert base_url(host, sock.getsockname()[1]).startswith("http://[::1]:")
    with pytest.raises(UsageError, match="not an address of this machine"):
        listen("name.invalid", 0)
