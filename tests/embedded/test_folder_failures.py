"""A project folder the embedded server cannot use as is: a clear answer, and no server left.

Real CLI runs and real servers: a folder whose name is not UTF-8 (or not ASCII under the C
locale) gets its socket elsewhere and works; a data folder that cannot be prepared (a file
where it goes, a read-only folder) is a one-line error, not a traceback; and whatever fails
after the server started, that server is stopped before the error is reported.

The tests run as root, which writes to read-only folders: the failures are made with files
where folders must go (and vice versa), which stop root too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortexflow.embedded import DataFolder, ServerError, shared_server, supervised_server
from cortexflow.embedded.access import socket_path
from tests.helpers.procs import clean_env

QUEUES = "version: 1\nqueues:\n  a:\n    handler: h:f\n"
C_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


@pytest.fixture(autouse=True)
def _no_leftover(tmp_path: Path) -> Iterator[None]:
    """A server a failing test leaves behind does not outlive the test."""
    yield
    for pid in servers_in(tmp_path, under=True):
        os.kill(pid, signal.SIGKILL)


def servers_in(data_dir: bytes | Path, under: bool = False) -> list[int]:
    """Pids of Valkey/Redis servers working in ``data_dir`` (or below it, ``under``): the server
    chdirs to its `dir`; its command line is no help, the server rewrites it."""
    want = os.fsencode(data_dir)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
            cwd = os.readlink(f"/proc/{entry}/cwd".encode())
        except OSError:
            continue
        inside = cwd == want or (under and cwd.startswith(want + b"/"))
        if os.path.basename(exe).startswith(("valkey-server", "redis-server")) and inside:
            found.append(int(entry))
    return found


def _project(parent: Path, name: bytes) -> bytes:
    folder = os.path.join(os.fsencode(parent), name)
    os.mkdir(folder)
    with open(os.path.join(folder, b"queues.yaml"), "w") as f:
        f.write(QUEUES)
    return folder


def _cli(
    cwd: bytes | Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`cortexflow ARGS` with no -f and no REDIS_URL: the folder's embedded server."""
    python = [sys.executable, "-X", "utf8=0"] if env == C_LOCALE else [sys.executable]
    return subprocess.run(
        [*python, "-m", "cortexflow", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        timeout=90,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "env"),
    [
        (b"proj\xe9", C_LOCALE),  # not UTF-8, read with an ASCII filesystem encoding
        ("projé".encode(), C_LOCALE),  # UTF-8, but not ASCII: the same under the C locale
        (b"proj\xe9", None),  # not UTF-8 under the usual UTF-8 locale
    ],
)
def test_a_folder_name_no_url_can_carry_works_and_leaves_no_server(
    tmp_path: Path, name: bytes, env: dict[str, str] | None
) -> None:
    project = _project(tmp_path, name)
    data_dir = os.path.join(project, b".cortexflow")
    for _ in range(2):  # the second run finds the folder as the first one left it
        r = _cli(project, "stats", "--json", env=env)
        assert b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert [row["queueName"] for row in json.loads(r.stdout)] == ["a"]
        assert servers_in(data_dir) == [], "the command left its embedded server running"
    assert not os.path.exists(os.path.join(data_dir, b"server.json"))


def test_the_socket_of_a_folder_with_a_non_utf8_name_moves_to_the_runtime_folder(
    tmp_path: Path,
) -> None:
    data_dir = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"proj\xe9", b".cortexflow")))
    moved = socket_path(data_dir)
    assert moved.parent != data_dir
    str(moved).encode("utf-8")  # a client finds it from a URL
    assert socket_path(data_dir) == moved  # the same address every time
    # A folder whose name a URL carries keeps its socket (a short path: a long one, as pytest's
    # under xdist can be, moves to the runtime folder for its length alone).
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        plain = Path(short) / "plain" / ".cortexflow"
        assert socket_path(plain).parent == plain


def test_a_failure_after_the_server_started_stops_it(tmp_path: Path) -> None:
    """server.json cannot be written (a folder stands where its temporary file goes): the
    command says so, and the server it had just started does not run on without users."""
    (tmp_path / "queues.yaml").write_text(QUEUES)
    data_dir = tmp_path / ".cortexflow"
    (data_dir / "server.tmp").mkdir(parents=True)
    r = _cli(tmp_path, "stats")
    err = r.stderr.decode()
    assert b"Traceback" not in r.stderr, err
    assert r.returncode != 0
    assert "error: cannot write to" in err and str(data_dir) in err, err
    assert "REDIS_URL" in err
    assert servers_in(data_dir) == [], "the embedded server was left running"
    assert not (data_dir / "server.json").exists()


def test_up_stops_the_server_it_started_when_it_cannot_record_it(tmp_path: Path) -> None:
    data_dir = tmp_path / ".cortexflow"
    (data_dir / "server.tmp").mkdir(parents=True)
    with pytest.raises(ServerError, match="cannot write to"), supervised_server(data_dir):
        pass
    assert servers_in(data_dir) == []
    assert DataFolder(data_dir).read_state() is None


def test_a_file_where_the_data_folder_goes_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(QUEUES)
    (tmp_path / ".cortexflow").write_text("not a folder\n")
    r = _cli(tmp_path, "stats")
    err = r.stderr.decode()
    assert b"Traceback" not in r.stderr, err
    assert r.returncode != 0
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(tmp_path / ".cortexflow") in err and "REDIS_URL" in err, err


def test_a_data_folder_that_cannot_be_made_is_a_server_error(tmp_path: Path) -> None:
    """mkdir fails as it would in a read-only folder (here: its parent is a regular file)."""
    (tmp_path / "file").write_text("")
    data_dir = tmp_path / "file" / ".cortexflow"
    with pytest.raises(ServerError) as info, shared_server(data_dir):
        pass
    message = str(info.value)
    assert str(data_dir) in message
    assert "Not a directory" in message
    assert f"Make {tmp_path / 'file'} a folder you can write to" in message
    assert "REDIS_URL" in message and "redis.url" in message


def test_a_data_folder_whose_lock_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(QUEUES)
    (tmp_path / ".cortexflow" / "lock").mkdir(parents=True)
    (tmp_path / ".cortexflow" / ".gitignore").write_text("*\n")
    r = _cli(tmp_path, "stats")
    err = r.stderr.decode()
    assert b"Traceback" not in r.stderr, err
    assert r.returncode != 0
    assert "error: cannot write to" in err and str(tmp_path / ".cortexflow" / "lock") in err, err
