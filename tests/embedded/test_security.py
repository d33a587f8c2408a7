"""The embedded server's door: its owner only, a stable address, nothing left running.

Real servers, real processes, real signals: the embedded server listens on a unix socket in a
0700 folder and on no TCP port; its files are 0600 whatever the umask; a TCP port opens only on
request and with a password; a command killed by SIGTERM stops the server it started; an app
connected through QueueManager keeps working across a restart of `up`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cortexflow.config.model import Config, RedisConfig
from cortexflow.embedded import DataFolder, ServerError, data_dir_for, pid_alive, redis_endpoint
from cortexflow.embedded.process import free_port
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, clean_env, cortexflow_argv, wait_gone
from tests.helpers.project import SUPERVISED, write_project

ENV_LISTEN = "CORTEXFLOW_EMBEDDED_LISTEN"
ENV_PASSWORD = "CORTEXFLOW_EMBEDDED_PASSWORD"


def _config(folder: Path) -> Config:
    return Config(path=folder / "queues.yaml", queues={}, redis=RedisConfig(url=None))


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """umask 000 while the test runs: nothing cortexflow creates may rely on the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_the_server_listens_on_a_private_socket_and_no_tcp_port(
    tmp_path: Path, loose_umask: None
) -> None:
    config = _config(tmp_path)
    folder = data_dir_for(config)
    with redis_endpoint(config) as url:
        assert url.startswith("unix://"), url
        from cortexflow.embedded.access import socket_path

        client = redis.Redis.from_url(url)
        try:
            client.set("k", "v")
            settings = client.config_get("*")
            assert settings["port"] == "0"  # no TCP port at all
            assert settings["unixsocketperm"] == "700"
            client.config_set("appendfsync", "always")  # the AOF reaches the disk now
            client.set("k2", "v2")
        finally:
            client.close()
        sock = socket_path(folder)
        assert stat.S_ISSOCK(sock.lstat().st_mode)
        assert stat.S_IMODE(sock.lstat().st_mode) & 0o077 == 0
        assert stat.S_IMODE(folder.lstat().st_mode) == 0o700
        modes = _modes(folder)
        assert any(name.startswith("appendonlydir") for name in modes)  # the AOF is there
        for name, mode in modes.items():
            if name.endswith(".sock"):
                continue
            expected = 0o700 if (folder / name).is_dir() else 0o600
            assert mode & ~expected == 0, f"{name} is {oct(mode)} under umask 000"


def test_a_folder_left_open_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / ".cortexflow"
    folder.mkdir()
    os.chmod(folder, 0o755)
    (folder / "server.log").write_text("old log\n")
    os.chmod(folder / "server.log", 0o644)
    (folder / "appendonlydir").mkdir()
    os.chmod(folder / "appendonlydir", 0o755)
    with redis_endpoint(_config(tmp_path)):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "server.log").stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "appendonlydir").stat().st_mode) == 0o700


def test_another_users_folder_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the folder to another user")
    folder = tmp_path / ".cortexflow"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    with (
        pytest.raises(ServerError, match="belongs to uid 65534"),
        redis_endpoint(_config(tmp_path)),
    ):
        pass


def test_a_long_path_gets_a_stable_private_socket_elsewhere(tmp_path: Path) -> None:
    from cortexflow.embedded.access import socket_path

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    config = _config(deep)
    first = socket_path(data_dir_for(config))
    assert first == socket_path(data_dir_for(config))  # one address per data folder
    assert not str(first).startswith(str(deep))
    assert len(os.fsencode(first)) <= 100
    runtime = first.parent
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    assert runtime.stat().st_uid == os.geteuid()
    with redis_endpoint(config) as url:
        assert str(first) in url
        assert redis.Redis.from_url(url).ping()


def test_opening_a_tcp_port_needs_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv(ENV_LISTEN, f"127.0.0.1:{port}")
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    with pytest.raises(ServerError, match=ENV_PASSWORD), redis_endpoint(_config(tmp_path)):
        pass
    monkeypatch.setenv(ENV_PASSWORD, "short")
    with pytest.raises(ServerError, match="at least 16"), redis_endpoint(_config(tmp_path)):
        pass


def test_an_opened_port_asks_everyone_for_the_password_and_ps_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    secret = "s3cret/#?@-" + "x" * 16
    monkeypatch.setenv(ENV_LISTEN, f"127.0.0.1:{port}")
    monkeypatch.setenv(ENV_PASSWORD, secret)
    (tmp_path / "queues.yaml").write_text("version: 1\nqueues:\n  a:\n    handler: h:f\n")
    config = _config(tmp_path)
    with redis_endpoint(config) as url:
        state = DataFolder(data_dir_for(config)).read_state()
        assert state is not None and state.auth and state.port == port
        cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        assert b"requirepass" not in cmdline
        remote = redis.Redis(host="127.0.0.1", port=port)
        with pytest.raises(redis.AuthenticationError):
            remote.ping()
        remote.close()
        remote = redis.Redis(host="127.0.0.1", port=port, password=secret)
        assert remote.ping()
        remote.close()
        assert redis.Redis.from_url(url).ping()  # the local URL carries it
        # Another command in another shell, without the variables, still gets in (auth.conf).
        env = clean_env()
        env.pop(ENV_LISTEN, None)
        env.pop(ENV_PASSWORD, None)
        result = subprocess.run(
            cortexflow_argv("status", "--json"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
        assert stat.S_IMODE((data_dir_for(config) / "auth.conf").stat().st_mode) == 0o600


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_a_command_stops_the_server_it_started(
    tmp_path: Path, sig: signal.Signals
) -> None:
    (tmp_path / "queues.yaml").write_text("version: 1\nqueues:\n  a:\n    handler: h:f\n")
    folder = DataFolder(tmp_path / ".cortexflow")
    out = (tmp_path / "watch.out").open("wb")
    proc = subprocess.Popen(
        cortexflow_argv("stats", "--watch", "--interval", "200ms"),
        cwd=tmp_path,
        env=clean_env(),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (tmp_path / "watch.out").read_text().count("QUEUE") >= 1, 60)
        state = folder.read_state()
        assert state is not None and state.owner == "command" and pid_alive(state.pid)
        proc.send_signal(sig)
        assert proc.wait(30) != 0
        assert wait_gone([state.pid], 15) == [], "the command's server outlived it"
        assert folder.read_state() is None
    finally:
        proc.kill()
        proc.wait()
        out.close()


@pytest.mark.slow
def test_an_app_stays_connected_across_a_restart_of_up(
    tmp_path: Path, start_up: Callable[..., Proc]
) -> None:
    """The socket is the same for every start of the folder's server: a QueueManager that was
    connected before `up` restarted succeeds on its next call, without reconnecting by hand."""
    from cortexflow import QueueManager

    write_project(
        tmp_path,
        """
        version: 1
        queues:
          work:
            handler: handlers:sleepy
        """,
        SUPERVISED,
    )
    up = start_up(tmp_path)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 60)
    loop = asyncio.new_event_loop()
    manager = QueueManager(tmp_path / "queues.yaml")
    try:
        first = loop.run_until_complete(manager.add_job("work", "j", {"seconds": 0}))
        assert first
        up.send(signal.SIGTERM)
        assert up.wait_exit(60) == 0

        again = start_up(tmp_path)
        again.wait_for(r"work\.0 \(pid \d+\) ready", 60)
        second = loop.run_until_complete(manager.add_job("work", "j", {"seconds": 0}))
        deadline = time.monotonic() + 60
        while True:
            job = loop.run_until_complete(manager.get_queue("work").get_job(second))
            if job is not None and job.state == "completed":
                break
            assert time.monotonic() < deadline, f"job {second} never completed: {job}"
            time.sleep(0.1)
        again.send(signal.SIGTERM)
        assert again.wait_exit(60) == 0
        # Each stop said what it waited for: this process, still connected.
        assert f"(pid {os.getpid()}) using the embedded server" in up.log()
    finally:
        loop.run_until_complete(manager.close())
        loop.close()


@pytest.mark.slow
def test_up_takes_over_the_server_of_an_app_that_started_first(
    tmp_path: Path, start_up: Callable[..., Proc]
) -> None:
    """An app connected before `up` started (so it started the server itself) keeps working:
    `up` waits a little, then takes the server over at the same socket."""
    from cortexflow import QueueManager

    write_project(
        tmp_path,
        """
        version: 1
        queues:
          work:
            handler: handlers:sleepy
        """,
        SUPERVISED,
    )
    loop = asyncio.new_event_loop()
    manager = QueueManager(tmp_path / "queues.yaml")
    try:
        first = loop.run_until_complete(manager.add_job("work", "j", {"seconds": 0}))
        state = DataFolder(tmp_path / ".cortexflow").read_state()
        assert state is not None and state.owner == "command"
        up = start_up(tmp_path)
        up.wait_for(r"work\.0 \(pid \d+\) ready", 90)
        assert "taking over the embedded server" in up.log()
        second = loop.run_until_complete(manager.add_job("work", "j", {"seconds": 0}))
        deadline = time.monotonic() + 60
        queue = manager.get_queue("work")
        while True:
            jobs = [loop.run_until_complete(queue.get_job(i)) for i in (first, second)]
            if all(j is not None and j.state == "completed" for j in jobs):
                break
            assert time.monotonic() < deadline, f"jobs never completed: {jobs}"
            time.sleep(0.1)
        up.send(signal.SIGTERM)
        assert up.wait_exit(60) == 0
    finally:
        loop.run_until_complete(manager.close())
        loop.close()
