"""Issue 23, items 7 and 8: `.cortexflow/` made 0700 by the dashboard even under umask 000, the
token file created 0600 without following links and refused when it is a link, another user's,
or open to others; `up` never prints the token (it says where it is and how to see the URL)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from cortexflow.dashboard.auth import load_tokens
from cortexflow.errors import UsageError
from tests.helpers.dashboard import free_port, wait_until
from tests.helpers.procs import Proc, clean_env, cortexflow_argv, run_cli


def test_dashboard_makes_the_folder_0700_and_the_token_0600_under_umask_000(
    project: Path, redis_url: str
) -> None:
    folder = project.parent / ".cortexflow"
    assert not folder.exists()
    port = free_port()
    proc = subprocess.Popen(
        cortexflow_argv(
            "dashboard", "-f", str(project), "--redis-url", redis_url, "--port", str(port)
        ),
        cwd=project.parent,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=0,
        start_new_session=True,
    )
    try:
        wait_until((folder / "token").exists, timeout=60, what="the token file")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    finally:
        proc.kill()
        proc.wait(30)


def test_print_url_under_umask_000_too(project: Path) -> None:
    r = subprocess.run(
        cortexflow_argv("dashboard", "--print-url"),
        cwd=project.parent,
        env=clean_env(),
        capture_output=True,
        text=True,
        umask=0,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    folder = project.parent / ".cortexflow"
    token = (folder / "token").read_text().strip()
    assert r.stdout == f"http://127.0.0.1:8000/?token={token}\n"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600


def test_a_planted_link_is_neither_followed_nor_written_through(tmp_path: Path) -> None:
    folder = tmp_path / ".cortexflow"
    folder.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    (folder / "token").symlink_to(target)  # dangling: the old code created it with the token
    with pytest.raises(UsageError, match=r"symbolic link.*remove it"):
        load_tokens({}, folder)
    assert not target.exists()
    target.write_text("a-token-someone-chose\n")  # and not read through either
    target.chmod(0o600)
    with pytest.raises(UsageError, match="symbolic link"):
        load_tokens({}, folder)


def test_another_users_token_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / ".cortexflow"
    folder.mkdir(mode=0o700)
    token = folder / "token"
    token.write_text("a-token-someone-chose\n")
    token.chmod(0o600)
    os.chown(token, os.geteuid() + 4242, -1)  # the tests run as root: give it away
    with pytest.raises(UsageError, match=r"belongs to uid \d+, not to you.*remove it"):
        load_tokens({}, folder)


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o640], ids=oct)
def test_a_token_file_others_may_write_or_read_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / ".cortexflow"
    folder.mkdir(mode=0o700)
    token = folder / "token"
    token.write_text("a-token-someone-chose\n")
    token.chmod(mode)
    with pytest.raises(UsageError, match=rf"mode {mode:04o}.*chmod 600 {re.escape(str(token))}"):
        load_tokens({}, folder)
    token.chmod(0o600)
    assert load_tokens({}, folder).admin == "a-token-someone-chose"


def test_the_cli_says_how_to_fix_it_with_exit_2(project: Path) -> None:
    folder = project.parent / ".cortexflow"
    folder.mkdir(mode=0o700)
    (folder / "token").write_text("planted-token-value\n")
    (folder / "token").chmod(0o666)
    r = run_cli("dashboard", "--port", str(free_port()), cwd=project.parent, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "chmod 600" in r.stderr and "Traceback" not in r.stderr


def test_up_never_prints_the_token(project: Path, redis_url: str) -> None:
    port = free_port()
    project.write_text(project.read_text() + f"dashboard:\n  port: {port}\n")
    up = Proc(
        cortexflow_argv("up", "-f", str(project), "--redis-url", redis_url),
        cwd=project.parent,
        name="up",
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=60, what="the dashboard under up")
        token_file = project.parent / ".cortexflow" / "token"
        token = token_file.read_text().strip()
        up.wait_for(r"dashboard: serving", 30)
        assert token not in up.log() and "?token=" not in up.log()
        assert str(token_file) in up.err() and "cortexflow dashboard --print-url" in up.err()
        # The command it names shows the URL that logs in.
        shown = run_cli("dashboard", "--print-url", cwd=project.parent, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == f"{base}/?token={token}"
        r = httpx.get(shown.stdout.strip(), timeout=20)
        assert r.status_code == 303 and "cortexflow_session" in r.headers["set-cookie"]
        assert up.terminate(60) == 0
    finally:
        up.kill()
