"""The warning that --redis-url holds a password (`ps` shows it) finds the userinfo by redact's
rule: a unix:// URL has it only before the socket's path, which may hold ``@`` and ``:``."""

from __future__ import annotations

import argparse

import pytest

from cortexflow.cli._common import _has_password, run_command


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("unix:///a@b:c/v.sock", False),
        ("unix://:pw@/run/v.sock", True),
        ("redis://u:p@h:1/0", True),
        ("redis://h:1/0", False),
    ],
)
def test_a_password_is_found_where_the_url_holds_one(
    url: str, warned: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _has_password(url) is warned
    args = argparse.Namespace(func=lambda _args: 0, redis_url=url, quiet=False)
    assert run_command(args) == 0
    assert ("holds a password" in capsys.readouterr().err) is warned
