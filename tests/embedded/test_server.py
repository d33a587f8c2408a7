"""The embedded server: which URL a command uses, and one server per `.cortexflow/` folder."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
import redis

from cortexflow.config.model import Config, RedisConfig
from cortexflow.embedded import (
    DataFolder,
    ServerError,
    data_dir_for,
    pid_alive,
    redis_endpoint,
    supervised_server,
)
from tests.helpers.procs import wait_gone


def _config(tmp_path: Path, url: str | None = None) -> Config:
    return Config(path=tmp_path / "queues.yaml", queues={}, redis=RedisConfig(url=url))


def _gone(pid: int, timeout: float = 10.0) -> bool:
    return wait_gone([pid], timeout) == []


def test_override_beats_config_and_no_server_is_started(tmp_path: Path) -> None:
    config = _config(tmp_path, url="redis://:secret@example.invalid:6379/0")
    with redis_endpoint(config, "redis://127.0.0.1:1/3") as url:
        assert url == "redis://127.0.0.1:1/3"
    with redis_endpoint(config) as url:
        assert url == "redis://:secret@example.invalid:6379/0"
    assert not (tmp_path / ".cortexflow").exists()


def test_no_url_starts_a_server_for_the_command_and_its_data_survives(tmp_path: Path) -> None:
    config = _config(tmp_path)
    folder = DataFolder(data_dir_for(config))
    with redis_endpoint(config) as url:
        state = folder.read_state()
        assert state is not None
        assert state.owner == "command"
        assert url == state.url
        client = redis.Redis.from_url(url)
        client.set("kept", "yes")
        info = client.config_get("*")
        assert info["appendonly"] == "yes"
        assert info["appendfsync"] == "everysec"
        assert info["maxmemory-policy"] == "noeviction"
        assert info["bind"].startswith("127.0.0.1")
        client.close()
    assert folder.read_state() is None
    assert _gone(state.pid)
    with redis_endpoint(config) as url:
        client = redis.Redis.from_url(url)
        assert client.get("kept") == b"yes"
        client.close()
    assert (tmp_path / ".cortexflow" / ".gitignore").exists()


def test_the_last_user_stops_the_server_not_the_one_that_started_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    folder = DataFolder(data_dir_for(config))
    first = redis_endpoint(config)
    url = first.__enter__()
    pid = folder.read_state().pid  # type: ignore[union-attr]
    with redis_endpoint(config) as second_url:
        assert second_url == url
        first.__exit__(None, None, None)  # the starter leaves while the second still uses it
        assert pid_alive(pid)
        assert redis.Redis.from_url(url).ping()
    assert _gone(pid)
    assert folder.read_state() is None


def test_a_second_process_reuses_the_running_server(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "queues.yaml").write_text("version: 1\nqueues:\n  a:\n    handler: h:f\n")
    config = _config(tmp_path)
    with redis_endpoint(config) as url:
        redis.Redis.from_url(url).set("seen", "1")
        # `status` in another process finds this folder's server instead of starting its own.
        result = cli("status", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"
        pid = DataFolder(data_dir_for(config)).read_state().pid  # type: ignore[union-attr]
        assert pid_alive(pid)
    assert _gone(pid)


def test_up_owns_its_server_commands_only_borrow_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with supervised_server(data_dir_for(config)) as server:
        assert server.alive()
        with redis_endpoint(config) as url:
            assert url == server.url
        assert server.alive()  # a command never stops up's server
        second = supervised_server(data_dir_for(config))
        with pytest.raises(ServerError, match="already runs the embedded server"):
            second.__enter__()
        pid = server.pid
    assert pid is not None and _gone(pid)


def test_up_replaces_a_server_a_killed_command_left_behind(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cortexflow.config.model import Config\n"
        "from cortexflow.embedded import redis_endpoint\n"
        "with redis_endpoint(Config(path=Path(sys.argv[1]), queues={})) as url:\n"
        "    print(url, flush=True)\n"
        "    time.sleep(60)\n"
    )
    config = _config(tmp_path)
    folder = DataFolder(data_dir_for(config))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(config.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)  # no chance to stop the server it started
        proc.wait()
        state = folder.read_state()
        assert state is not None and pid_alive(state.pid)
        with supervised_server(folder.path) as server:
            assert server.pid != state.pid
            assert _gone(state.pid)
            assert folder.read_state().owner == "up"  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_up_server_dies_with_its_parent(tmp_path: Path) -> None:
    """The parent-death wrapper: the server gets SIGTERM when the process that spawned it dies."""
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cortexflow.embedded import ServerProcess\n"
        "s = ServerProcess(Path(sys.argv[1]), appendonly=False)\n"
        "s.spawn(die_with_parent=True)\n"
        "s.wait_ready(15)\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "d")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        server_pid = int(proc.stdout.readline())
        assert pid_alive(server_pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _gone(server_pid, timeout=5.0)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_a_picked_port_taken_before_the_server_binds_it_is_replaced(tmp_path: Path) -> None:
    """A port ServerProcess picked itself may be taken (by another process's bind or outgoing
    connection) before the server starts: it picks another. A port the caller chose is kept,
    and its being taken is the start's error."""
    from cortexflow.embedded.process import ServerProcess

    picked = ServerProcess(tmp_path / "picked", appendonly=False)
    with socket.socket() as taken:
        taken.bind((picked.host, picked.port))
        taken.listen()
        first = picked.port
        picked.start()
        try:
            assert picked.port != first
            assert redis.Redis.from_url(picked.url).ping()
        finally:
            picked.stop()
        chosen = ServerProcess(tmp_path / "chosen", appendonly=False, port=first)
        with pytest.raises(ServerError, match="exited"):
            chosen.start()
        assert chosen.port == first and not chosen.alive()

    # Taken by another server, which answers the PING: still not mistaken for this one.
    other = ServerProcess(tmp_path / "other", appendonly=False)
    other.start()
    try:
        late = ServerProcess(tmp_path / "late", appendonly=False)
        late.port = other.port  # the race: another server bound it first
        late.start()
        try:
            assert late.port != other.port
            info = redis.Redis.from_url(late.url).info("server")
            assert info["process_id"] == late.pid
        finally:
            late.stop()
    finally:
        other.stop()
